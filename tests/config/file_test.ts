/**
 * YAML reading (src/config/file.ts): scalars as text, nulls, line numbers, aliases, and one
 * ConfigError line naming the file and line for a syntax error or an unreadable file.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseYaml, readConfigFile, toYaml, type YamlNode } from "../../src/config/file.ts";
import { ConfigError } from "../../src/config/types.ts";

function entry(node: YamlNode, key: string): YamlNode {
  assert.equal(node.kind, "map");
  const found = node.kind === "map" ? node.entries.find((e) => e.key === key) : undefined;
  assert.ok(found, key);
  return found.value;
}

Deno.test("scalars are kept as written; plain empty, ~ and null are null", () => {
  const doc = parseYaml(
    'a: 0123\nb: 1e3\nc: yes\nd:\ne: ~\nf: null\ng: "null"\nh: ""\ni: :5000\n',
    "t.yml",
  );
  const value = (key: string) => {
    const node = entry(doc, key);
    return node.kind === "scalar" ? node.value : node.kind;
  };
  assert.equal(value("a"), "0123");
  assert.equal(value("b"), "1e3");
  assert.equal(value("c"), "yes");
  assert.equal(value("d"), null);
  assert.equal(value("e"), null);
  assert.equal(value("f"), null);
  assert.equal(value("g"), "null");
  assert.equal(value("h"), "");
  assert.equal(value("i"), ":5000");
});

Deno.test("keys carry their line; lists and flow collections are read", () => {
  const doc = parseYaml("version: 0.1\nhttp:\n  addr: :5000\n  headers:\n    X: [a, b]\n", "t");
  assert.equal(doc.kind, "map");
  if (doc.kind !== "map") return;
  assert.deepEqual(doc.entries.map((e) => [e.key, e.line]), [["version", 1], ["http", 2]]);
  const http = entry(doc, "http");
  assert.equal(http.kind === "map" && http.entries[1].line, 4);
  const list = entry(entry(http, "headers"), "X");
  assert.equal(list.kind, "list");
});

Deno.test("aliases resolve to their anchor's value", () => {
  const doc = parseYaml("a: &x {k: v}\nb: *x\n", "t");
  const [a, b] = [entry(doc, "a"), entry(doc, "b")];
  assert.ok(a.kind === "map" && b.kind === "map");
  assert.deepEqual(b.entries, a.entries);
});

Deno.test("a syntax error is one line naming the file and the line", () => {
  for (
    const [text, line] of [
      ["a: 1\nb: [1,\nc: 2\n", /line \d/],
      ["a: 1\na: 2\n", /line 2, column 1: map keys must be unique/],
      ["a: 1\n---\nb: 2\n", /line 2/],
      ["a:\n\tb: 1\n", /line 2/],
    ] as const
  ) {
    assert.throws(() => parseYaml(text, "conf.yml"), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /^Invalid YAML in conf\.yml at /);
      assert.match(error.message, line);
      assert.ok(!error.message.includes("\n"), error.message);
      return true;
    });
  }
});

Deno.test("a missing or unreadable file is one ConfigError line", () => {
  const dir = Deno.makeTempDirSync();
  try {
    assert.throws(() => readConfigFile(join(dir, "none.yml")), /none\.yml: no such file$/);
    assert.throws(() => readConfigFile(dir), /it is a directory$/);
    Deno.writeTextFileSync(join(dir, "ok.yml"), "version: 0.1\n");
    assert.equal(readConfigFile(join(dir, "ok.yml")).kind, "map");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("toYaml writes what parseYaml reads back", () => {
  const value = { http: { addr: ":5000", headers: { X: ["a"] } }, n: 5, t: true, s: "0.1" };
  const doc = parseYaml(toYaml(value), "t");
  const http = entry(doc, "http");
  assert.deepEqual(entry(http, "addr"), { kind: "scalar", value: ":5000", line: 2 });
  assert.equal((entry(doc, "s") as { value: string }).value, "0.1");
});
