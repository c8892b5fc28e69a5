/**
 * `notifications.endpoints` (src/config/endpoints.ts): Distribution's fields and defaults,
 * validation naming the entry and field, and masking for `--print-config`.
 */

import assert from "node:assert/strict";
import { ENDPOINT_DEFAULTS, parseEndpoints, showEndpoints } from "../../src/config/endpoints.ts";
import { parseYaml } from "../../src/config/file.ts";
import { Place } from "../../src/config/values.ts";

const place = (line = 0) => Place.file("c.yml", "notifications.endpoints", line);
const parse = (yaml: string) => parseEndpoints(parseYaml(yaml, "c.yml"), place());

Deno.test("an endpoint with every field", () => {
  const [e] = parse(`
- name: alistener
  disabled: true
  url: https://my.listener.com/event
  headers:
    Authorization: [Bearer x]
  timeout: 500ms
  threshold: 5
  backoff: 2s
  ignoredmediatypes: [application/octet-stream]
  ignore:
    mediatypes: [application/json]
    actions: [pull, mount]
`);
  assert.deepEqual(e, {
    name: "alistener",
    url: "https://my.listener.com/event",
    headers: { Authorization: ["Bearer x"] },
    timeoutMs: 500,
    threshold: 5,
    backoffMs: 2000,
    ignoredMediaTypes: ["application/octet-stream", "application/json"],
    ignoredActions: ["pull", "mount"],
    disabled: true,
  });
});

Deno.test("an endpoint with only name and url gets Distribution's defaults", () => {
  const [e] = parse("- {name: a, url: 'http://h/e'}");
  assert.equal(e.timeoutMs, ENDPOINT_DEFAULTS.timeoutMs);
  assert.equal(e.threshold, 10);
  assert.equal(e.backoffMs, 1000);
  assert.deepEqual(e.headers, {});
  assert.equal(e.disabled, false);
});

Deno.test("no endpoints: null or an empty list", () => {
  assert.deepEqual(parse("~"), []);
  assert.deepEqual(parse("[]"), []);
});

Deno.test("errors name the entry and the field", () => {
  const cases: [string, RegExp][] = [
    ["- {url: 'http://h/'}", /Missing name in c\.yml key notifications\.endpoints\[0\]/],
    ["- {name: a}", /Missing url/],
    ["- {name: a, url: 'http://h/'}\n- {name: b, url: nope}", /endpoints\[1\]\.url \(line 2\)/],
    ["- {name: a, url: 'http://h/', timeout: 1000}", /endpoints\[0\]\.timeout.*with a unit/],
    ["- {name: a, url: 'http://h/', threshold: 0}", /threshold/],
    ["- {name: a, url: 'http://h/', ignore: {actions: [fly]}}", /ignore\.actions\[0\]/],
    ["- {name: a, url: 'http://h/', ignore: {colors: [x]}}", /Unknown c\.yml key .*ignore\.colors/],
    ["- {name: a, url: 'http://h/', retries: 3}", /Unknown .*endpoints\[0\]\.retries/],
    ["- {name: a, url: 'http://h/'}\n- {name: a, url: 'http://i/'}", /Duplicate endpoint name "a"/],
    ["{name: a}", /a list of endpoints/],
  ];
  for (const [yaml, message] of cases) assert.throws(() => parse(yaml), message, yaml);
});

Deno.test("shown with credentials masked: header values but harmless ones, URL user:password and query", () => {
  const endpoints = parse(
    "- {name: a, url: 'https://u:pw@h/e', headers: {Authorization: [Bearer t], X-A: [b], Content-Type: [c]}}",
  );
  const [shown] = showEndpoints(endpoints, true);
  assert.equal(shown.url, "https://***@h/e");
  assert.deepEqual(shown.headers, {
    Authorization: ["********"],
    "X-A": ["********"],
    "Content-Type": ["c"],
  });
  const [plain] = showEndpoints(endpoints, false);
  assert.equal(plain.url, "https://u:pw@h/e");
  assert.deepEqual(plain.headers.Authorization, ["Bearer t"]);
});
