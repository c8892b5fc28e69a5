/**
 * Who the client is: IP parsing, trusted proxy ranges (IPv4, IPv6, CIDR), and the client
 * address and scheme taken from `X-Forwarded-For`/`X-Forwarded-Proto` only when the peer is a
 * trusted proxy; otherwise the scheme of the request's URL (https on the TLS listener).
 */

import assert from "node:assert/strict";
import { clientOf, parseIp, trustedMatcher } from "../../src/pipeline/client.ts";

const request = (
  remoteAddress: string,
  headers: Record<string, string> = {},
  url = "http://registry/v2/",
) => ({
  method: "GET",
  url,
  headers: new Headers(headers),
  remoteAddress,
});

Deno.test("parseIp reads IPv4, IPv6 (compressed, bracketed, IPv4-mapped) and refuses junk", () => {
  assert.deepEqual([...parseIp("10.1.2.3")!.bytes], [10, 1, 2, 3]);
  assert.equal(parseIp("::1")!.bytes.length, 16);
  assert.equal(parseIp("::1")!.bytes[15], 1);
  assert.equal(parseIp("[2001:db8::5]")!.bytes[15], 5);
  assert.deepEqual([...parseIp("::ffff:192.168.0.9")!.bytes], [192, 168, 0, 9]);
  for (const bad of ["", "1.2.3", "256.1.1.1", "1::2::3", "12345::", "example.com", "1.2.3.4/8"]) {
    assert.equal(parseIp(bad), null, bad);
  }
});

Deno.test("trusted ranges match single addresses and CIDRs of either family", () => {
  const trusted = trustedMatcher(["10.0.0.0/8", "192.168.1.7", "fd00::/8", "::1"]);
  assert.ok(trusted("10.200.3.4"));
  assert.ok(trusted("192.168.1.7"));
  assert.ok(!trusted("192.168.1.8"));
  assert.ok(trusted("fd12::1"));
  assert.ok(trusted("::1"));
  assert.ok(!trusted("fe80::1"));
  assert.ok(!trusted("11.0.0.1"));
  assert.ok(!trustedMatcher([])("127.0.0.1"), "nothing is trusted by default");
  assert.ok(!trustedMatcher(["not an address", "10.0.0.0/99"])("10.0.0.1"));
});

Deno.test("an untrusted peer is the client, whatever X-Forwarded-For says", () => {
  const trusted = trustedMatcher(["10.0.0.1"]);
  const spoof = request("203.0.113.9", {
    "X-Forwarded-For": "1.2.3.4",
    "X-Forwarded-Proto": "https",
  });
  assert.deepEqual(clientOf(spoof, trusted), { client: "203.0.113.9", scheme: "http" });
});

Deno.test("behind trusted proxies the client is the last untrusted hop, the scheme the proxy's", () => {
  const trusted = trustedMatcher(["10.0.0.0/8"]);
  const viaTwo = request("10.0.0.1", {
    "X-Forwarded-For": "6.6.6.6, 198.51.100.4, 10.0.0.2",
    "X-Forwarded-Proto": "https",
  });
  assert.deepEqual(clientOf(viaTwo, trusted), { client: "198.51.100.4", scheme: "https" });
  const garbage = request("10.0.0.1", {
    "X-Forwarded-For": "not-an-ip",
    "X-Forwarded-Proto": "ftp",
  });
  assert.deepEqual(clientOf(garbage, trusted), { client: "10.0.0.1", scheme: "http" });
});

Deno.test("a client of the TLS listener used https; a trusted proxy not saying keeps that", () => {
  const trusted = trustedMatcher(["10.0.0.1"]);
  const direct = request("203.0.113.9", { "X-Forwarded-Proto": "http" }, "https://registry/v2/");
  assert.deepEqual(clientOf(direct, trusted), { client: "203.0.113.9", scheme: "https" });
  const silent = request("10.0.0.1", { "X-Forwarded-For": "198.51.100.4" }, "https://r/v2/");
  assert.deepEqual(clientOf(silent, trusted), { client: "198.51.100.4", scheme: "https" });
  const plain = request("10.0.0.1", { "X-Forwarded-Proto": "http" }, "https://r/v2/");
  assert.deepEqual(clientOf(plain, trusted), { client: "10.0.0.1", scheme: "http" });
});
