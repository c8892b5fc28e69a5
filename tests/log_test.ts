/**
 * The logger: levels filter lines, text lines are `key=value` with quoting where needed, JSON
 * lines are one object each, and undefined fields are left out. The batch that writes lines
 * to standard output: every line whole and in order, each write within its buffer, a line too
 * long for it written alone, any text encoded as UTF-8, pending lines written within a few
 * milliseconds.
 */

import assert from "node:assert/strict";
import { createLogger, LineBatch } from "../src/log.ts";

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

/** A batch over a recording writer (copies: the batch reuses its buffer). */
function recordedBatch(size: number) {
  const writes: Uint8Array[] = [];
  const batch = new LineBatch((bytes) => writes.push(bytes.slice()), size);
  const text = () => writes.map((w) => new TextDecoder().decode(w)).join("");
  return { batch, writes, text };
}

Deno.test("line batch: lines whole and in order, writes within the buffer, long lines alone", () => {
  const { batch, writes, text } = recordedBatch(64);
  const lines = [
    "a",
    "second line",
    "é and 😀 and 世界", // 2-, 4- and 3-byte UTF-8 sequences
    "x".repeat(30),
    "y".repeat(40),
    "z".repeat(100), // longer than the buffer: written on its own
    "last",
  ];
  for (const line of lines) batch.push(line);
  batch.flush();
  assert.equal(text(), lines.map((l) => `${l}\n`).join(""));
  const long = writes.findIndex((w) => w.length === 101);
  assert.ok(long > 0, "the long line went out in a write of its own, after what was pending");
  for (const [i, write] of writes.entries()) {
    if (i !== long) assert.ok(write.length <= 64, `write ${i} is ${write.length} bytes`);
  }
  batch.flush(); // nothing pending: no empty write
  assert.equal(writes.length, writes.filter((w) => w.length > 0).length);
});

Deno.test("line batch: pending lines are written within a few milliseconds", async () => {
  const { batch, writes, text } = recordedBatch(64 * 1024);
  batch.push("one");
  batch.push("two");
  assert.equal(writes.length, 0, "nothing is written at once");
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(writes.length, 1);
  assert.equal(text(), "one\ntwo\n");
});
