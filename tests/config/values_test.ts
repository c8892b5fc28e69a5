/**
 * The value parsers (src/config/values.ts): Go durations, `host:port` addresses, booleans,
 * integers, URLs, header maps, IP/CIDR lists, and the place an error names.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { scalar } from "../../src/config/file.ts";
import { ConfigError } from "../../src/config/types.ts";
import {
  address,
  boolean,
  duration,
  formatAddress,
  formatDuration,
  headers,
  httpUrl,
  integer,
  isIpOrCidr,
  maskUrl,
  parseGoDuration,
  Place,
} from "../../src/config/values.ts";
import { parseYaml } from "../../src/config/file.ts";

const HERE = Place.env("REGISTRY_X", "x");

Deno.test("Go durations: units, fractions, sums and zero", () => {
  const cases: [string, number][] = [
    ["500ms", 500],
    ["10s", 10_000],
    ["1m", 60_000],
    ["1h30m", 5_400_000],
    ["168h", 604_800_000],
    ["1.5h", 5_400_000],
    ["2h45m", 9_900_000],
    ["1m30.5s", 90_500],
    [".5s", 500],
    ["1000us", 1],
    ["1000µs", 1],
    ["1000000ns", 1],
    ["0", 0],
    ["0s", 0],
    ["1h0m0s", 3_600_000],
  ];
  for (const [text, ms] of cases) assert.equal(parseGoDuration(text), ms, text);
});

Deno.test("Go durations: no unit, unknown units, signs, spaces and sub-millisecond values are refused", () => {
  for (
    const text of [
      "",
      "10",
      "1d",
      "-1s",
      "+1s",
      "5 s",
      "1h 30m",
      ".s",
      "s",
      "100us",
      "1.0001ms",
      "1e3s",
    ]
  ) {
    assert.equal(parseGoDuration(text), null, text);
  }
});

Deno.test("durations are written back in Go's syntax and read back unchanged", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(500), "500ms");
  assert.equal(formatDuration(1500), "1.5s");
  assert.equal(formatDuration(90_000), "1m30s");
  assert.equal(formatDuration(5_400_000), "1h30m");
  assert.equal(formatDuration(604_800_000), "168h");
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 10 * 365 * 86_400_000 }), (ms) => {
      assert.equal(parseGoDuration(formatDuration(ms)), ms);
    }),
    { numRuns: 500 },
  );
});

Deno.test("a duration outside its range names the range", () => {
  const parse = duration(1000, 3_600_000);
  assert.equal(parse(scalar("1s"), HERE), 1000);
  assert.throws(() => parse(scalar("999ms"), HERE), /from 1s to 1h/);
  assert.throws(() => parse(scalar("2h"), HERE), /Invalid value "2h" for REGISTRY_X/);
});

Deno.test("addresses: host:port, :port is every IPv4 interface, [v6]:port", () => {
  assert.deepEqual(address(scalar(":5000"), HERE), { host: "0.0.0.0", port: 5000 });
  assert.deepEqual(address(scalar("[::1]:5000"), HERE), { host: "::1", port: 5000 });
  assert.deepEqual(address(scalar("localhost:80"), HERE), { host: "localhost", port: 80 });
  assert.deepEqual(address(scalar("127.0.0.1:0"), HERE), { host: "127.0.0.1", port: 0 });
  for (const bad of ["5000", "host:", ":99999", "[::1]", "a b:1", "http://x:1", "::1:5000", ""]) {
    assert.throws(() => address(scalar(bad), HERE), ConfigError, bad);
  }
  assert.equal(formatAddress("::1", 5000), "[::1]:5000");
  assert.equal(formatAddress("0.0.0.0", 5000), "0.0.0.0:5000");
});

Deno.test("booleans take true/false and YAML 1.1's yes/no/on/off, in any case", () => {
  for (const t of ["true", "True", "TRUE", "yes", "on"]) {
    assert.equal(boolean(scalar(t), HERE), true);
  }
  for (const f of ["false", "False", "no", "off"]) assert.equal(boolean(scalar(f), HERE), false);
  for (const bad of ["1", "0", "", "enabled"]) {
    assert.throws(() => boolean(scalar(bad), HERE), /expected true or false/);
  }
});

Deno.test("integers are plain digits within their range", () => {
  const parse = integer(1, 100);
  assert.equal(parse(scalar("100"), HERE), 100);
  for (const bad of ["0", "101", "1.0", "+5", " 5", "0x10", "1e2", ""]) {
    assert.throws(() => parse(scalar(bad), HERE), /an integer in 1\.\.100/, bad);
  }
});

Deno.test("URLs must be absolute http(s) without query; the trailing slash goes", () => {
  const parse = httpUrl(false);
  assert.equal(parse(scalar("https://reg.example.com/"), HERE), "https://reg.example.com");
  assert.equal(parse(scalar("http://h:5000/base/"), HERE), "http://h:5000/base");
  for (const bad of ["reg.example.com", "ftp://h/", "https://h/?a=1", "https://h/#x", "/v2/"]) {
    assert.throws(() => parse(scalar(bad), HERE), ConfigError, bad);
  }
  assert.equal(maskUrl("https://user:pw@h/e"), "https://***@h/e");
  assert.equal(maskUrl("https://h/e"), "https://h/e");
  assert.equal(maskUrl("https://u:p@h/e?token=abc&x=1"), "https://***@h/e?token=***&x=***");
});

Deno.test("a URL with credentials is not echoed in its error when secret", () => {
  assert.throws(() => httpUrl(true)(scalar("ftp://u:pw@h/"), HERE), (e: Error) => {
    assert.ok(!e.message.includes("pw"));
    return true;
  });
});

Deno.test("header maps: lists of values, a single value, valid names only", () => {
  const node = parseYaml("X-A: [a, b]\nX-B: c\n", "test");
  assert.deepEqual(headers(node, HERE), { "X-A": ["a", "b"], "X-B": ["c"] });
  assert.throws(() => headers(parseYaml("Bad Name: [x]", "t"), HERE), /Invalid header name/);
  assert.throws(() => headers(parseYaml("X-A: []", "t"), HERE), /a list of header values/);
  assert.throws(() => headers(scalar("X-A"), HERE), /a mapping of header names/);
});

Deno.test("trusted proxy entries are IPv4 or IPv6 addresses or CIDRs", () => {
  for (const ok of ["10.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "0.0.0.0/0", "::ffff:10.0.0.1"]) {
    assert.ok(isIpOrCidr(ok), ok);
  }
  for (const bad of ["10.0.0.256", "10.0.0.0/33", "::1/129", "host", "10.0.0.1/8/8", "", "1.2.3"]) {
    assert.ok(!isIpOrCidr(bad), bad);
  }
});

Deno.test("a place names the file, key and line; the variable; or the flag", () => {
  assert.equal(
    String(Place.file("config.yml", "http.addr", 3)),
    "config.yml key http.addr (line 3)",
  );
  assert.equal(String(Place.env("REGISTRY_HTTP_ADDR", "http.addr")), "REGISTRY_HTTP_ADDR");
  assert.equal(String(Place.flag("--port", "http.addr")), "--port");
  const inner = Place.env("REGISTRY_NOTIFICATIONS_ENDPOINTS", "notifications.endpoints")
    .at("notifications.endpoints[0].url", 7);
  assert.equal(
    String(inner),
    "REGISTRY_NOTIFICATIONS_ENDPOINTS key notifications.endpoints[0].url",
  );
});
