/**
 * Value parsers shared by the settings: each takes a YAML node (a flag's or a variable's text
 * arrives as a scalar node) and the place it came from, and returns the value or throws a
 * one-line ConfigError naming that place and what is expected.
 */

import type { YamlNode } from "./file.ts";
import { ConfigError } from "./types.ts";

/** Where a value came from: a key of the configuration file, a variable, or a flag. */
export class Place {
  private constructor(
    /** `file`, `env` or `flag`. */
    readonly kind: "file" | "env" | "flag",
    /** The file's path, the variable, or the flag (`--port`). */
    readonly name: string,
    /** The dotted key of the value (`http.addr`, `notifications.endpoints[0].url`). */
    readonly key: string,
    /** The file line, 0 when unknown. */
    readonly line: number,
    private readonly top: string,
  ) {}

  /** A key of the configuration file `path`. */
  static file(path: string, key: string, line: number): Place {
    return new Place("file", path, key, line, key);
  }

  /** An environment variable setting `key`. */
  static env(variable: string, key: string): Place {
    return new Place("env", variable, key, 0, key);
  }

  /** A command-line flag (`--port`) setting `key`. */
  static flag(flag: string, key: string): Place {
    return new Place("flag", flag, key, 0, key);
  }

  /** The place of a value inside this one (`key` is the full dotted key). */
  at(key: string, line: number): Place {
    return new Place(this.kind, this.name, key, this.kind === "file" ? line : 0, this.top);
  }

  /** `config.yml key http.addr (line 3)`, `REGISTRY_HTTP_ADDR` or `--port`. */
  toString(): string {
    if (this.kind === "file") {
      return `${this.name} key ${this.key}${this.line ? ` (line ${this.line})` : ""}`;
    }
    if (this.kind === "env" && this.key !== this.top) return `${this.name} key ${this.key}`;
    return this.name;
  }
}

/** A parser of one setting's value. */
export type Parser<T> = (node: YamlNode, place: Place) => T;

/** The error for a value that is not what `expected` says (the value is not shown if secret). */
export function invalid(node: YamlNode, place: Place, expected: string, secret = false) {
  let shown = "";
  if (!secret) {
    if (node.kind === "map") shown = " (a mapping)";
    else if (node.kind === "list") shown = " (a list)";
    else {
      const text = node.value ?? "";
      shown = ` ${JSON.stringify(text.length > 60 ? `${text.slice(0, 57)}...` : text)}`;
    }
  }
  return new ConfigError(`Invalid value${shown} for ${place}: expected ${expected}`);
}

/** The text of a scalar; a mapping, a list or null is refused. */
export function text(node: YamlNode, place: Place, expected: string, secret = false): string {
  if (node.kind !== "scalar" || node.value === null) {
    throw invalid(node, place, expected, secret);
  }
  return node.value;
}

/** `true`/`false` (and YAML 1.1's `yes`/`no`/`on`/`off`, as Distribution reads them). */
export const boolean: Parser<boolean> = (node, place) => {
  const value = text(node, place, "true or false").toLowerCase();
  if (["true", "yes", "on"].includes(value)) return true;
  if (["false", "no", "off"].includes(value)) return false;
  throw invalid(node, place, "true or false");
};

/** An integer of plain digits in min..max. */
export function integer(min: number, max: number): Parser<number> {
  return (node, place) => {
    const value = text(node, place, `an integer in ${min}..${max}`);
    const n = Number(value);
    if (!/^[0-9]+$/.test(value) || n < min || n > max) {
      throw invalid(node, place, `an integer in ${min}..${max}`);
    }
    return n;
  };
}

/** One of `values`; `aliases` maps other accepted spellings (compared in lower case). */
export function oneOf<T extends string>(
  values: readonly T[],
  aliases: Readonly<Record<string, T>> = {},
): Parser<T> {
  const expected = values.length === 2
    ? `${values[0]} or ${values[1]}`
    : `one of ${values.join(", ")}`;
  return (node, place) => {
    const value = text(node, place, expected).toLowerCase();
    if ((values as readonly string[]).includes(value)) return value as T;
    if (Object.hasOwn(aliases, value)) return aliases[value];
    throw invalid(node, place, expected);
  };
}

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go duration (`300ms`, `1.5h`, `2h45m`, `0`) into milliseconds; null when it is not
 * one, is negative, or is not a whole number of milliseconds.
 */
export function parseGoDuration(value: string): number | null {
  if (value === "0") return 0;
  if (value === "") return null;
  let rest = value;
  let total = 0;
  while (rest !== "") {
    const m = /^([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)/.exec(rest);
    if (!m || (m[1] === "" && !m[2])) return null;
    const unit = UNIT_MS[m[3]];
    total += Number(m[1] || "0") * unit + (m[2] ? Number(`0.${m[2]}`) * unit : 0);
    rest = rest.slice(m[0].length);
  }
  const ms = Math.round(total * 1e6) / 1e6;
  return Number.isSafeInteger(ms) ? ms : null;
}

/** Writes milliseconds as a Go duration: `1h30m`, `90s`, `1.5s`, `500ms`, `0s`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms < 1000) return `${ms}ms`;
  const hours = Math.floor(ms / 3_600_000);
  const minutes = Math.floor((ms % 3_600_000) / 60_000);
  const seconds = (ms % 60_000) / 1000;
  return (hours ? `${hours}h` : "") + (minutes ? `${minutes}m` : "") +
    (seconds ? `${seconds}s` : "");
}

/** A Go duration between min and max milliseconds. */
export function duration(minMs: number, maxMs: number): Parser<number> {
  const expected = `a duration from ${formatDuration(minMs)} to ${
    formatDuration(maxMs)
  } with a unit (like 500ms, 10s, 1h30m)`;
  return (node, place) => {
    const ms = parseGoDuration(text(node, place, expected));
    if (ms === null || ms < minMs || ms > maxMs) throw invalid(node, place, expected);
    return ms;
  };
}

/** A whole number of seconds in min..max, as milliseconds (the legacy flags' unit). */
export function seconds(min: number, max: number): Parser<number> {
  const parse = integer(min, max);
  return (node, place) => parse(node, place) * 1000;
}

/** A host and port: `host:port`, `:port` (every IPv4 interface: `0.0.0.0`), `[::1]:port`. */
export const address: Parser<{ host: string; port: number }> = (node, place) => {
  const expected = "host:port, like :5000, 127.0.0.1:5000 or [::1]:5000";
  const value = text(node, place, expected);
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):([0-9]{1,5})$/.exec(value);
  if (!m || Number(m[3]) > 65535) throw invalid(node, place, expected);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port: Number(m[3]) };
};

/** Writes a host and port as `http.addr` takes them. */
export function formatAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** An absolute http or https URL, without query or fragment, returned without a trailing `/`. */
export function httpUrl(secretUserinfo: boolean): Parser<string> {
  const expected = "an absolute http:// or https:// URL";
  return (node, place) => {
    const value = text(node, place, expected);
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw invalid(node, place, expected, secretUserinfo);
    }
    if (!["http:", "https:"].includes(url.protocol) || url.search || url.hash || !url.host) {
      throw invalid(node, place, expected, secretUserinfo);
    }
    return url.href.replace(/\/+$/, "");
  };
}

/** A URL with any `user:password@` replaced by `***@` and every query value by `***`. */
export function maskUrl(value: string): string {
  const masked = value.replace(/^([a-z]+:\/\/)[^/@]*@/i, "$1***@");
  const query = masked.indexOf("?");
  if (query < 0) return masked;
  const params = masked.slice(query + 1).replace(/=([^&#]*)/g, "=***");
  return `${masked.slice(0, query)}?${params}`;
}

/** A list of scalars (a single scalar is a list of one). */
export function stringList(expected: string, check: (value: string) => boolean): Parser<string[]> {
  return (node, place) => {
    if (node.kind === "scalar" && node.value === null) return [];
    const items = node.kind === "list" ? node.items : [node];
    return items.map((item, i) => {
      const where = node.kind === "list" ? place.at(`${place.key}[${i}]`, item.line) : place;
      const value = text(item, where, expected);
      if (!check(value)) throw invalid(item, where, expected);
      return value;
    });
  };
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Header name → list of values, as Distribution's `http.headers` (a single value is a list). */
export const headers: Parser<Record<string, string[]>> = (node, place) => {
  if (node.kind === "scalar" && node.value === null) return {};
  if (node.kind !== "map") throw invalid(node, place, "a mapping of header names to lists");
  const result: Record<string, string[]> = {};
  const values = stringList("header values (no line breaks)", (v) => !/[\r\n\0]/.test(v));
  for (const entry of node.entries) {
    const where = place.at(`${place.key}.${entry.key}`, entry.line);
    if (!TOKEN.test(entry.key)) {
      throw new ConfigError(`Invalid header name ${JSON.stringify(entry.key)} in ${place}`);
    }
    const list = values(entry.value, where);
    if (list.length === 0) throw invalid(entry.value, where, "a list of header values");
    result[entry.key] = [...(result[entry.key] ?? []), ...list];
  }
  return result;
};

/** Whether `value` is an IPv4 or IPv6 address, optionally with a `/prefix` (a CIDR). */
export function isIpOrCidr(value: string): boolean {
  const [ip, prefix, extra] = value.split("/");
  if (extra !== undefined) return false;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  let bits: number;
  if (v4) {
    if (!v4.slice(1).every((b) => Number(b) <= 255)) return false;
    bits = 32;
  } else {
    if (!/^[0-9A-Fa-f:.]+$/.test(ip) || !ip.includes(":")) return false;
    if (!URL.canParse(`http://[${ip}]/`)) return false;
    bits = 128;
  }
  return prefix === undefined || (/^[0-9]{1,3}$/.test(prefix) && Number(prefix) <= bits);
}
