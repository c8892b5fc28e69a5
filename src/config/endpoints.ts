/**
 * `notifications.endpoints`: Distribution's list of event receivers, validated into
 * `NotificationEndpoint`s, and written back (secrets masked) for `--print-config`.
 */

import type { YamlMap, YamlNode } from "./file.ts";
import { ConfigError, type NotificationEndpoint } from "./types.ts";
import {
  boolean,
  duration,
  formatDuration,
  headers,
  httpUrl,
  integer,
  invalid,
  maskUrl,
  type Place,
  stringList,
  text,
} from "./values.ts";

/** The defaults of an endpoint's optional fields (Distribution's documented values). */
export const ENDPOINT_DEFAULTS = { timeoutMs: 1000, threshold: 10, backoffMs: 1000 } as const;

/** The event actions `ignore.actions` may name. */
export const ACTIONS = ["push", "pull", "mount", "delete"] as const;

const FIELDS = [
  "name",
  "disabled",
  "url",
  "headers",
  "timeout",
  "threshold",
  "backoff",
  "ignoredmediatypes",
  "ignore",
];
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$/;
const mediaTypes = stringList("a list of media types (type/subtype)", (v) => MEDIA_TYPE.test(v));
const actions = stringList(
  `a list of actions (${ACTIONS.join(", ")})`,
  (v) => (ACTIONS as readonly string[]).includes(v),
);

/** Parses `notifications.endpoints` (null: none). */
export function parseEndpoints(node: YamlNode, place: Place): NotificationEndpoint[] {
  if (node.kind === "scalar" && node.value === null) return [];
  if (node.kind !== "list") throw invalid(node, place, "a list of endpoints");
  const names = new Set<string>();
  return node.items.map((item, i) => {
    const where = place.at(`${place.key}[${i}]`, item.line);
    const endpoint = parseEndpoint(item, where);
    if (names.has(endpoint.name)) {
      throw new ConfigError(`Duplicate endpoint name ${JSON.stringify(endpoint.name)} in ${where}`);
    }
    names.add(endpoint.name);
    return endpoint;
  });
}

function parseEndpoint(node: YamlNode, place: Place): NotificationEndpoint {
  if (node.kind !== "map") {
    throw invalid(node, place, "an endpoint (a mapping with name and url)");
  }
  const field = fieldsOf(node, place, FIELDS);
  const get = <T>(key: string, parse: (n: YamlNode, p: Place) => T, fallback: T): T => {
    const entry = field(key);
    return entry ? parse(entry.node, entry.place) : fallback;
  };
  const name = get("name", (n, p) => text(n, p, "a name"), null);
  const url = get("url", httpUrl(true), null);
  if (name === null || url === null) {
    throw new ConfigError(`Missing ${name === null ? "name" : "url"} in ${place}`);
  }
  const ignore = field("ignore");
  let ignored = { mediatypes: [] as string[], actions: [] as string[] };
  if (ignore && !(ignore.node.kind === "scalar" && ignore.node.value === null)) {
    if (ignore.node.kind !== "map") {
      throw invalid(ignore.node, ignore.place, "a mapping with mediatypes and actions");
    }
    const inner = fieldsOf(ignore.node, ignore.place, ["mediatypes", "actions"]);
    const list = (key: string, parse: typeof actions) => {
      const entry = inner(key);
      return entry ? parse(entry.node, entry.place) : [];
    };
    ignored = { mediatypes: list("mediatypes", mediaTypes), actions: list("actions", actions) };
  }
  return {
    name,
    url,
    headers: get("headers", headers, {}),
    timeoutMs: get("timeout", duration(1, 3_600_000), ENDPOINT_DEFAULTS.timeoutMs),
    threshold: get("threshold", integer(1, 10_000), ENDPOINT_DEFAULTS.threshold),
    backoffMs: get("backoff", duration(1, 86_400_000), ENDPOINT_DEFAULTS.backoffMs),
    ignoredMediaTypes: [
      ...new Set([...get("ignoredmediatypes", mediaTypes, []), ...ignored.mediatypes]),
    ],
    ignoredActions: ignored.actions,
    disabled: get("disabled", boolean, false),
  };
}

/** A lookup of a mapping's fields, refusing keys not in `known`; null values count as absent. */
function fieldsOf(node: YamlMap, place: Place, known: readonly string[]) {
  const found = new Map<string, { node: YamlNode; place: Place }>();
  for (const entry of node.entries) {
    const where = place.at(`${place.key}.${entry.key}`, entry.line);
    if (!known.includes(entry.key)) {
      throw new ConfigError(`Unknown ${where}; expected one of ${known.join(", ")}`);
    }
    if (entry.value.kind === "scalar" && entry.value.value === null) continue;
    found.set(entry.key, { node: entry.value, place: where });
  }
  return (key: string) => found.get(key);
}

const SECRET_HEADERS = new Set(["authorization", "proxy-authorization", "cookie"]);

/** Header values with credentials (`Authorization` and the like) replaced by `********`. */
export function maskHeaders(
  values: Readonly<Record<string, readonly string[]>>,
): Record<string, string[]> {
  return Object.fromEntries(
    Object.entries(values).map((
      [name, list],
    ) => [name, SECRET_HEADERS.has(name.toLowerCase()) ? list.map(() => "********") : [...list]]),
  );
}

/** Endpoint headers whose values are shown by `--print-config`; every other value is masked. */
const PLAIN_ENDPOINT_HEADERS = new Set(["accept", "content-type", "user-agent"]);

/** An endpoint's header values, all masked but the plainly harmless ones. */
function maskEndpointHeaders(
  values: Readonly<Record<string, readonly string[]>>,
): Record<string, string[]> {
  return Object.fromEntries(
    Object.entries(values).map((
      [name, list],
    ) => [
      name,
      PLAIN_ENDPOINT_HEADERS.has(name.toLowerCase()) ? [...list] : list.map(() => "********"),
    ]),
  );
}

/** The endpoints as the configuration file writes them, secrets masked when `mask`. */
export function showEndpoints(endpoints: readonly NotificationEndpoint[], mask: boolean) {
  return endpoints.map((e) => ({
    name: e.name,
    disabled: e.disabled,
    url: mask ? maskUrl(e.url) : e.url,
    headers: mask ? maskEndpointHeaders(e.headers) : e.headers,
    timeout: formatDuration(e.timeoutMs),
    threshold: e.threshold,
    backoff: formatDuration(e.backoffMs),
    ignoredmediatypes: e.ignoredMediaTypes,
    ignore: { mediatypes: [], actions: e.ignoredActions },
  }));
}
