/**
 * Who the client is behind a reverse proxy: when the peer is a trusted proxy, the client's
 * address is the last untrusted address of `X-Forwarded-For` and its scheme the proxy's
 * `X-Forwarded-Proto`; otherwise the peer is the client, and the scheme the one it reached us
 * with (`https` on the TLS listener). Untrusted peers cannot spoof either.
 */

import type { IncomingRequest } from "../http/request.ts";

/** Parses trusted proxy entries (IPv4/IPv6 addresses or CIDRs) into a matcher. */
export function trustedMatcher(entries: readonly string[]): (address: string) => boolean {
  const ranges = entries.map(parseCidr);
  if (ranges.length === 0) return () => false;
  return (address) => {
    const ip = parseIp(address);
    return ip !== null && ranges.some((r) => r !== null && inRange(ip, r));
  };
}

/** The client address and scheme of a request. */
export function clientOf(
  request: IncomingRequest,
  trusted: (address: string) => boolean,
): { client: string; scheme: string } {
  const peer = request.remoteAddress ?? "";
  const own = request.url.startsWith("https:") ? "https" : "http";
  if (!peer || !trusted(peer)) return { client: peer, scheme: own };
  let client = peer;
  const forwarded = request.headers.get("x-forwarded-for");
  if (forwarded) {
    // Walk from the nearest hop back while hops are trusted proxies themselves.
    const hops = forwarded.split(",").map((hop) => hop.trim()).filter((hop) => hop !== "");
    for (let i = hops.length - 1; i >= 0; i--) {
      if (parseIp(hops[i]) === null) break;
      client = hops[i];
      if (!trusted(hops[i])) break;
    }
  }
  const proto = request.headers.get("x-forwarded-proto")?.split(",")[0].trim().toLowerCase();
  return { client, scheme: proto === "https" || proto === "http" ? proto : own };
}

interface Ip {
  readonly bytes: Uint8Array;
}

interface Range {
  readonly base: Uint8Array;
  readonly bits: number;
}

function parseCidr(entry: string): Range | null {
  const [address, prefix] = entry.trim().split("/");
  const ip = parseIp(address);
  if (ip === null) return null;
  const max = ip.bytes.length * 8;
  const bits = prefix === undefined ? max : Number(prefix);
  if (!Number.isInteger(bits) || bits < 0 || bits > max) return null;
  return { base: ip.bytes, bits };
}

function inRange(ip: Ip, range: Range): boolean {
  if (ip.bytes.length !== range.base.length) return false;
  for (let bit = 0; bit < range.bits; bit += 8) {
    const take = Math.min(8, range.bits - bit);
    const mask = (0xff << (8 - take)) & 0xff;
    if ((ip.bytes[bit / 8] & mask) !== (range.base[bit / 8] & mask)) return false;
  }
  return true;
}

/** Parses an IPv4 or IPv6 address (an IPv4-mapped IPv6 one as IPv4); null when invalid. */
export function parseIp(text: string): Ip | null {
  const value = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(value);
  if (v4) {
    const bytes = v4.slice(1).map(Number);
    return bytes.every((b) => b <= 255) ? { bytes: new Uint8Array(bytes) } : null;
  }
  const mapped = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i.exec(value);
  if (mapped) return parseIp(mapped[1]);
  if (!/^[0-9a-fA-F:]+$/.test(value) || value.split("::").length > 2) return null;
  const [left, right = ""] = value.includes("::") ? value.split("::") : [value, ""];
  const head = left === "" ? [] : left.split(":");
  const tail = right === "" ? [] : right.split(":");
  const missing = 8 - head.length - tail.length;
  if ((!value.includes("::") && missing !== 0) || missing < 0) return null;
  const groups = [...head, ...Array(missing).fill("0"), ...tail];
  if (groups.length !== 8 || groups.some((g) => g.length === 0 || g.length > 4)) return null;
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    const n = parseInt(group, 16);
    bytes[2 * i] = n >> 8;
    bytes[2 * i + 1] = n & 0xff;
  });
  return { bytes };
}
