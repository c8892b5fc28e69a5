/**
 * The logger: levels filter lines, text lines are `key=value` with quoting where needed, JSON
 * lines are one object each, and undefined fields are left out.
 */

import assert from "node:assert/strict";
import { createLogger } from "../src/log.ts";

const fixed = () => new Date("2026-12-01T10:00:00.000Z");

Deno.test("lines below the level are dropped", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "warn", sink: (l) => lines.push(l), now: fixed });
  log.debug("d");
  log.info("i");
  log.warn("w");
  log.error("e");
  assert.equal(lines.length, 2);
  assert.ok(log.enabled("error") && log.enabled("warn") && !log.enabled("info"));
});

Deno.test("text lines: time, level, quoted message, bare or quoted values", () => {
  const lines: string[] = [];
  const log = createLogger({ format: "text", sink: (l) => lines.push(l), now: fixed });
  log.info("request", { path: "/v2/a/b?n=1&last=x", status: 200, user: undefined, ok: true });
  assert.equal(
    lines[0],
    'time=2026-12-01T10:00:00.000Z level=info msg="request" path="/v2/a/b?n=1&last=x" status=200 ok=true',
  );
});

Deno.test("JSON lines: one object with time, level, msg and the fields", () => {
  const lines: string[] = [];
  const log = createLogger({ format: "json", sink: (l) => lines.push(l), now: fixed });
  log.error("storage failure", { error: 'line "one"\nline two', skipped: undefined });
  assert.deepEqual(JSON.parse(lines[0]), {
    time: "2026-12-01T10:00:00.000Z",
    level: "error",
    msg: "storage failure",
    error: 'line "one"\nline two',
  });
  assert.ok(!lines[0].includes("\n"));
});
