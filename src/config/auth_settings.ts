/**
 * The access-control settings: Distribution's `auth.htpasswd.realm` and `auth.htpasswd.path`,
 * and ours under `registry.auth.` (policies, groups, admins, the failure delay) plus
 * `registry.immutabletags`, which applies with or without authentication.
 */

import type { YamlMap, YamlNode } from "./file.ts";
import { define, type Setting } from "./setting.ts";
import { type AccessPolicy, ConfigError, DEFAULTS } from "./types.ts";
import { boolean, duration, formatDuration, httpUrl, invalid, type Place, text } from "./values.ts";

const USER = /^[^:\s[\]{},"']{1,256}$/;
const GROUP = /^[A-Za-z0-9._-]{1,128}$/;
const REPOSITORY_GLOB = /^[a-z0-9._*/-]{1,255}$/;
const TAG_GLOB = /^[A-Za-z0-9_.*-]{1,128}$/;
const ACTIONS = ["pull", "push", "delete"] as const;
const QUOTABLE = /^[^"\\\r\n\0\s]{1,200}$/;
const TOKEN_PATH = /^\/(?!v2(?:\/|$))[A-Za-z0-9._~-]+(?:\/[A-Za-z0-9._~-]+)*$/;
const POLICY_KEYS = new Set(["repositories", "users", "groups", "anonymous", "actions"]);

/** The access-control settings, in the order of `--help` and the README. */
export const AUTH_SETTINGS: readonly Setting[] = [
  define<string>({
    key: "auth.htpasswd.realm",
    type: "string",
    default: `\`${DEFAULTS.auth.realm}\``,
    help: "the realm of the `Basic` challenge",
    parse: (node, place) => {
      const value = text(node, place, "a realm without quotes or line breaks");
      if (!/^[^"\\\r\n\0]{1,200}$/.test(value)) {
        throw invalid(node, place, "a realm without quotes or line breaks");
      }
      return value;
    },
    apply: (d, v) => d.auth = { ...d.auth, realm: v },
    show: (c) => c.auth.realm,
  }),
  define<string>({
    key: "auth.htpasswd.path",
    type: "path",
    default: "none",
    help: "the htpasswd file of bcrypt entries (`htpasswd -B`); unset, there is no " +
      "authentication; set, every request needs credentials unless a policy allows it anonymously",
    parse: (node, place) => text(node, place, "a file path"),
    apply: (d, v) => d.auth = { ...d.auth, htpasswdPath: v },
    show: (c) => c.auth.htpasswdPath,
  }),
  define<string>({
    key: "auth.token.realm",
    type: "URL",
    default: "none",
    help: "the token endpoint clients are sent to: an external token server's (needed with " +
      "`auth.token.rootcertbundle` or `auth.token.jwks`), or our own, which turns the built-in " +
      "issuer on; none: the request's origin + `registry.auth.token.path`",
    parse: (node, place) => {
      const value = httpUrl(false)(node, place);
      if (!QUOTABLE.test(value)) throw invalid(node, place, "a URL without quotes or spaces");
      return value;
    },
    apply: (d, v) => d.auth = { ...d.auth, token: { ...d.auth.token, realm: v } },
    show: (c) => c.auth.token.realm,
  }),
  define<string>({
    key: "auth.token.service",
    type: "string",
    default: `\`${DEFAULTS.auth.token.service}\``,
    help: "the service name clients ask tokens for (the tokens' audience)",
    parse: (node, place) => quotable(node, place, "a service name without quotes or spaces"),
    apply: (d, v) => d.auth = { ...d.auth, token: { ...d.auth.token, service: v } },
    show: (c) => c.auth.token.service,
  }),
  define<string>({
    key: "auth.token.issuer",
    type: "string",
    default: `\`${DEFAULTS.auth.token.issuer}\``,
    help: "the issuer named in the tokens (`iss`): the built-in issuer's name, or the one " +
      "external tokens must carry",
    parse: (node, place) => quotable(node, place, "an issuer name without quotes or spaces"),
    apply: (d, v) => d.auth = { ...d.auth, token: { ...d.auth.token, issuer: v } },
    show: (c) => c.auth.token.issuer,
  }),
  define<string>({
    key: "auth.token.rootcertbundle",
    type: "path",
    default: "none",
    help: "PEM certificates of an external token issuer: a token is trusted when its `x5c` " +
      "chain ends in one, or its `kid` names one's key (libtrust key ID or RFC 7638 " +
      "thumbprint); read at start and on SIGHUP",
    parse: (node, place) => text(node, place, "a file path"),
    apply: (d, v) => d.auth = { ...d.auth, token: { ...d.auth.token, rootCertBundle: v } },
    show: (c) => c.auth.token.rootCertBundle,
  }),
  define<string>({
    key: "auth.token.jwks",
    type: "path",
    default: "none",
    help: "a JSON Web Key Set file of an external token issuer: a token is trusted when its " +
      "`kid` names one of its keys (its `kid` or RFC 7638 thumbprint); read at start and on " +
      "SIGHUP",
    parse: (node, place) => text(node, place, "a file path"),
    apply: (d, v) => d.auth = { ...d.auth, token: { ...d.auth.token, jwks: v } },
    show: (c) => c.auth.token.jwks,
  }),
  define<boolean>({
    key: "registry.auth.token.builtin",
    type: "boolean",
    default: "`false`",
    help: "issue tokens at `registry.auth.token.path` to the htpasswd users; registry routes " +
      "then need a `Bearer` token (Basic is refused there)",
    parse: boolean,
    apply: (d, v) => d.auth = { ...d.auth, token: { ...d.auth.token, builtin: v } },
    show: (c) => c.auth.token.builtin,
  }),
  define<string>({
    key: "registry.auth.token.path",
    type: "path",
    default: `\`${DEFAULTS.auth.token.path}\``,
    help: "the path of the built-in token endpoint (not under `/v2/`)",
    parse: (node, place) => {
      const value = text(node, place, "a path like /token, not under /v2/");
      if (!TOKEN_PATH.test(value)) throw invalid(node, place, "a path like /token, not under /v2/");
      return value;
    },
    apply: (d, v) => d.auth = { ...d.auth, token: { ...d.auth.token, path: v } },
    show: (c) => c.auth.token.path,
  }),
  define<number>({
    key: "registry.auth.token.expiration",
    type: "duration",
    default: `\`${formatDuration(DEFAULTS.auth.token.expirationMs)}\``,
    help: "how long an access token lasts (60 s to 24 h)",
    parse: duration(60_000, 24 * 3_600_000),
    apply: (d, v) => d.auth = { ...d.auth, token: { ...d.auth.token, expirationMs: v } },
    show: (c) => formatDuration(c.auth.token.expirationMs),
  }),
  define<string>({
    key: "registry.auth.token.signingkey",
    type: "path",
    default: "none",
    help: "a PEM (PKCS #8) P-256 key to sign tokens with (ES256); none: one is generated " +
      "and kept in the data root",
    parse: (node, place) => text(node, place, "a file path"),
    apply: (d, v) => d.auth = { ...d.auth, token: { ...d.auth.token, signingKey: v } },
    show: (c) => c.auth.token.signingKey,
  }),
  define<AccessPolicy[]>({
    key: "registry.auth.policies",
    type: "list",
    default: "none",
    help: "who may do what where (nothing but admins without one): entries of `repositories` " +
      "(globs), `users`, `groups`, `anonymous`, `actions` (`pull`, `push`, `delete`)",
    structured: true,
    parse: parsePolicies,
    apply: (d, v) => d.auth = { ...d.auth, policies: v },
    show: (c) => c.auth.policies,
  }),
  define<Record<string, string[]>>({
    key: "registry.auth.groups",
    type: "mapping",
    default: "none",
    help: "group names to lists of users, for the policies",
    structured: true,
    parse: parseGroups,
    apply: (d, v) => d.auth = { ...d.auth, groups: v },
    show: (c) => c.auth.groups,
  }),
  define<string[]>({
    key: "registry.auth.admins",
    type: "list",
    default: "none",
    help: "users allowed everything (a variable may list them comma-separated)",
    parse: (node, place) => names(commaList(node), place, "user names", USER),
    apply: (d, v) => d.auth = { ...d.auth, admins: v },
    show: (c) => c.auth.admins,
  }),
  define<number>({
    key: "registry.auth.faildelay",
    type: "duration",
    default: `\`${formatDuration(DEFAULTS.auth.failDelayMs)}\``,
    help: "a failed authentication from an address waits this long, doubling with each " +
      "failure in a row up to ten times as long; `0` turns it off",
    parse: duration(0, 60_000),
    apply: (d, v) => d.auth = { ...d.auth, failDelayMs: v },
    show: (c) => formatDuration(c.auth.failDelayMs),
  }),
  define<string[]>({
    key: "registry.immutabletags",
    type: "list",
    default: "none",
    help: "tag patterns (`*` any characters) whose tags cannot be moved to another digest " +
      "(403); with or without authentication (a variable may list them comma-separated)",
    parse: (node, place) => names(commaList(node), place, "tag patterns (v*, release-*)", TAG_GLOB),
    apply: (d, v) => d.immutableTags = v,
    show: (c) => c.immutableTags,
  }),
];

function quotable(node: YamlNode, place: Place, expected: string): string {
  const value = text(node, place, expected);
  if (!QUOTABLE.test(value)) throw invalid(node, place, expected);
  return value;
}

/** A scalar from a variable may list values comma-separated. */
function commaList(node: YamlNode): YamlNode {
  if (node.kind !== "scalar" || node.value === null) return node;
  const items = node.value.split(",").map((part) => ({
    kind: "scalar" as const,
    value: part.trim(),
    line: node.line,
  }));
  return { kind: "list", items, line: node.line };
}

/** A list of names matching `pattern` (a single scalar is a list of one). */
function names(node: YamlNode, place: Place, expected: string, pattern: RegExp): string[] {
  if (node.kind === "scalar" && node.value === null) return [];
  if (node.kind === "map") throw invalid(node, place, `a list of ${expected}`);
  const items = node.kind === "list" ? node.items : [node];
  return items.map((item, i) => {
    const where = node.kind === "list" ? place.at(`${place.key}[${i}]`, item.line) : place;
    const value = text(item, where, `one of ${expected}`);
    if (!pattern.test(value)) throw invalid(item, where, `one of ${expected}`);
    return value;
  });
}

function parseGroups(node: YamlNode, place: Place): Record<string, string[]> {
  if (node.kind === "scalar" && node.value === null) return {};
  if (node.kind !== "map") throw invalid(node, place, "a mapping of group names to user lists");
  const groups: Record<string, string[]> = {};
  for (const entry of node.entries) {
    const where = place.at(`${place.key}.${entry.key}`, entry.line);
    if (!GROUP.test(entry.key)) {
      throw new ConfigError(`Invalid group name ${JSON.stringify(entry.key)} in ${place}`);
    }
    groups[entry.key] = names(entry.value, where, "user names", USER);
  }
  return groups;
}

function parsePolicies(node: YamlNode, place: Place): AccessPolicy[] {
  if (node.kind === "scalar" && node.value === null) return [];
  if (node.kind !== "list") throw invalid(node, place, "a list of policies");
  return node.items.map((item, i) => parsePolicy(item, place.at(`${place.key}[${i}]`, item.line)));
}

function parsePolicy(node: YamlNode, place: Place): AccessPolicy {
  if (node.kind !== "map") {
    throw invalid(node, place, "a policy (repositories, users, groups, anonymous, actions)");
  }
  const field = (key: string) => fieldOf(node, key);
  for (const entry of node.entries) {
    if (!POLICY_KEYS.has(entry.key)) {
      throw new ConfigError(
        `Unknown key ${JSON.stringify(entry.key)} in ${place}: expected repositories, users, ` +
          "groups, anonymous or actions",
      );
    }
  }
  const at = (key: string) => place.at(`${place.key}.${key}`, field(key)?.line ?? place.line);
  const list = (key: string, expected: string, pattern: RegExp) => {
    const value = field(key);
    return value ? names(value, at(key), expected, pattern) : [];
  };
  const repositories = list(
    "repositories",
    "repository globs (team/*, public/**)",
    REPOSITORY_GLOB,
  );
  if (repositories.length === 0) {
    throw new ConfigError(`Missing repositories in ${place}: expected a list of globs`);
  }
  const actionsNode = field("actions");
  const actionNames = actionsNode
    ? names(
      actionsNode,
      at("actions"),
      "actions (pull, push, delete, *)",
      /^(?:pull|push|delete|\*)$/,
    )
    : [];
  if (actionNames.length === 0) {
    throw new ConfigError(`Missing actions in ${place}: expected pull, push, delete or *`);
  }
  const actions = actionNames.includes("*")
    ? [...ACTIONS]
    : ACTIONS.filter((a) => actionNames.includes(a));
  const anonymousNode = field("anonymous");
  return {
    repositories,
    users: list("users", "user names", USER),
    groups: list("groups", "group names", GROUP),
    anonymous: anonymousNode ? boolean(anonymousNode, at("anonymous")) : false,
    actions,
  };
}

function fieldOf(node: YamlMap, key: string): YamlNode | undefined {
  return node.entries.find((e) => e.key === key)?.value;
}
