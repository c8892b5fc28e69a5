/**
 * The settings Distribution does not have, under our own top-level key `registry:` (so they
 * can never collide with a Distribution key): environment variables `REGISTRY_REGISTRY_...`.
 */

import type { YamlNode } from "./file.ts";
import { define, type Setting } from "./setting.ts";
import type { Place } from "./values.ts";
import { DEFAULTS } from "./types.ts";
import {
  boolean,
  duration,
  formatDuration,
  integer,
  invalid,
  isIpOrCidr,
  oneOf,
  seconds,
  stringList,
  text,
} from "./values.ts";

const LEGACY_MOUNT = ["on", "off", "true", "false"];

/** Our own settings, under `registry.`. */
export const OWN_SETTINGS: readonly Setting[] = [
  define<"builtin" | "deno">({
    key: "registry.server",
    type: "`builtin` or `deno`",
    default: `\`${DEFAULTS.server}\``,
    help: "the HTTP server: the registry's own HTTP/1.1 server, or `Deno.serve` " +
      "(slow on chunked uploads in Deno 2.9)",
    parse: oneOf(["builtin", "deno"]),
    apply: (d, v) => d.server = v,
    show: (c) => c.server,
    aliases: [{
      flag: "server",
      arg: "builtin|deno",
      env: "REGISTRY_SERVER",
      help: "HTTP server: the registry's own, or Deno.serve",
      parse: (node, place) => {
        const value = text(node, place, "builtin or deno");
        if (value !== "builtin" && value !== "deno") throw invalid(node, place, "builtin or deno");
        return value;
      },
    }],
  }),
  define<boolean>({
    key: "registry.automaticmount",
    type: "boolean",
    default: "`true`",
    help: "a mount without `from` links the blob from any repository holding it (201); " +
      "off, it opens an upload session (202)",
    parse: boolean,
    apply: (d, v) => d.automaticMount = v,
    show: (c) => c.automaticMount,
    aliases: [{
      flag: "automatic-mount",
      arg: "on|off",
      env: "REGISTRY_AUTOMATIC_MOUNT",
      help: 'a mount without "from" links the blob from any repository holding it',
      parse: (node, place) => {
        const value = text(node, place, "on or off");
        if (!LEGACY_MOUNT.includes(value)) throw invalid(node, place, "on or off");
        return value === "on" || value === "true";
      },
    }],
  }),
  define<number>({
    key: "registry.limits.maxmanifestbytes",
    type: "integer",
    default: `\`${DEFAULTS.maxManifestBytes}\``,
    help: "the largest manifest accepted, in bytes (413 above it)",
    parse: integer(1, 1024 * 1024 * 1024),
    apply: (d, v) => d.maxManifestBytes = v,
    show: (c) => c.maxManifestBytes,
    aliases: [{
      flag: "max-manifest-bytes",
      arg: "N",
      env: "REGISTRY_MAX_MANIFEST_BYTES",
      help: "largest manifest accepted",
      parse: integer(1, 1024 * 1024 * 1024),
    }],
  }),
  define<number>({
    key: "registry.limits.maxheaderbytes",
    type: "integer",
    default: `\`${DEFAULTS.maxHeaderBytes}\``,
    help: "the largest request head accepted, in bytes (431 above it; at most 61440)",
    // Deno.serve refuses request heads above about 64 KiB before the registry sees them.
    parse: integer(1024, 60 * 1024),
    apply: (d, v) => d.maxHeaderBytes = v,
    show: (c) => c.maxHeaderBytes,
    aliases: [{
      flag: "max-header-bytes",
      arg: "N",
      env: "REGISTRY_MAX_HEADER_BYTES",
      help: "largest request head accepted",
      parse: integer(1024, 60 * 1024),
    }],
  }),
  define<number>({
    key: "registry.limits.maxconnections",
    type: "integer",
    default: "`0`: a quarter of the open-file limit, 64 to 1024",
    help: "the most connections served at once (built-in server); at the limit one idle " +
      "for 5 s is closed for a new one, else the new one waits",
    parse: integer(0, 1_000_000),
    apply: (d, v) => d.maxConnections = v,
    show: (c) => c.maxConnections,
    aliases: [],
  }),
  define<number>({
    key: "registry.limits.bodyidletimeout",
    type: "duration",
    default: `\`${formatDuration(DEFAULTS.bodyIdleTimeoutMs)}\``,
    help: "a request body that sends nothing this long is cut (408)",
    parse: duration(1000, 86_400_000),
    apply: (d, v) => d.bodyIdleTimeoutMs = v,
    show: (c) => formatDuration(c.bodyIdleTimeoutMs),
    aliases: [{
      flag: "body-idle-timeout",
      arg: "SECONDS",
      env: "REGISTRY_BODY_IDLE_TIMEOUT",
      help: "cut a request body idle this long",
      parse: seconds(1, 24 * 3600),
    }],
  }),
  define<string[]>({
    key: "registry.http.trustedproxies",
    type: "list",
    default: "none",
    help: "IPs or CIDRs of reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` " +
      "are believed (a variable may list them comma-separated)",
    structured: true,
    parse: (node, place) => {
      const list = node.kind === "scalar" && node.value !== null
        ? { kind: "list" as const, items: splitList(node), line: node.line }
        : node;
      return stringList("IP addresses or CIDRs (10.0.0.0/8, ::1)", isIpOrCidr)(list, place);
    },
    apply: (d, v) => d.trustedProxies = v,
    show: (c) => c.trustedProxies,
  }),
  define<string[]>({
    key: "registry.http.cors.origins",
    type: "list",
    default: "none",
    help: "origins of browser UIs allowed cross-origin requests (`https://ui.example.com`, " +
      "`*` for any; a variable may list them comma-separated); none: CORS is off",
    structured: true,
    parse: commaList("origins like https://ui.example.com, or *", isOrigin),
    apply: (d, v) => d.cors = { ...d.cors, origins: v },
    show: (c) => c.cors.origins,
  }),
  define<string[]>({
    key: "registry.http.cors.methods",
    type: "list",
    default: `\`${DEFAULTS.cors.methods.join(",")}\``,
    help: "the methods a CORS preflight allows",
    structured: true,
    parse: commaList("HTTP methods", (v) => /^[A-Za-z]+$/.test(v)),
    apply: (d, v) => d.cors = { ...d.cors, methods: v.map((m) => m.toUpperCase()) },
    show: (c) => c.cors.methods,
  }),
  define<string[]>({
    key: "registry.http.cors.headers",
    type: "list",
    default: `\`${DEFAULTS.cors.headers.join(",")}\``,
    help: "the request headers a CORS preflight allows",
    parse: commaList("header names", (v) => /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(v)),
    apply: (d, v) => d.cors = { ...d.cors, headers: v },
    show: (c) => c.cors.headers,
  }),
  define<number>({
    key: "registry.http.cors.maxage",
    type: "duration",
    default: `\`${formatDuration(DEFAULTS.cors.maxAgeS * 1000)}\``,
    help: "how long a browser may cache a CORS preflight's answer",
    parse: duration(0, 86_400_000),
    apply: (d, v) => d.cors = { ...d.cors, maxAgeS: Math.floor(v / 1000) },
    show: (c) => formatDuration(c.cors.maxAgeS * 1000),
  }),
  define<number>({
    key: "registry.health.minfreebytes",
    type: "integer",
    default: `\`${DEFAULTS.readyMinFreeBytes}\``,
    help: "`/readyz` fails when the data root's file system has less free space, in bytes",
    parse: integer(0, Number.MAX_SAFE_INTEGER),
    apply: (d, v) => d.readyMinFreeBytes = v,
    show: (c) => c.readyMinFreeBytes,
  }),
];

/** A list, or (from a variable) a comma-separated scalar, of values passing `check`. */
function commaList(expected: string, check: (value: string) => boolean) {
  const parse = stringList(expected, check);
  return (node: YamlNode, place: Place) =>
    parse(
      node.kind === "scalar" && node.value !== null
        ? { kind: "list" as const, items: splitList(node), line: node.line }
        : node,
      place,
    );
}

/** `*`, or a scheme, a host and maybe a port, without a path. */
function isOrigin(value: string): boolean {
  return value === "*" ||
    /^https?:\/\/[A-Za-z0-9.-]+(?::\d{1,5})?$|^https?:\/\/\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/.test(
      value,
    );
}

function splitList(node: YamlNode): YamlNode[] {
  const value = node.kind === "scalar" ? node.value ?? "" : "";
  return value.split(",").map((part) => ({ kind: "scalar", value: part.trim(), line: node.line }));
}
