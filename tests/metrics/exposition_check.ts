/** A check that a text exposition (format 0.0.4) is well-formed, line by line. */

import assert from "node:assert/strict";

/** A sample line: name, optional `{label="value",…}` with escaped values, a float. */
const SAMPLE = new RegExp(
  String.raw`^[a-zA-Z_:][a-zA-Z0-9_:]*` +
    String.raw`(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"` +
    String.raw`(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})?` +
    String.raw` (?:[+-]?Inf|NaN|-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)$`,
);
const COMMENT =
  /^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram))$/;

/** Asserts that every line of an exposition is a valid comment or sample line. */
export function assertValidExposition(text: string): void {
  assert.ok(text === "" || text.endsWith("\n"), "ends with a newline");
  for (const line of text.split("\n").slice(0, -1)) {
    assert.ok(COMMENT.test(line) || SAMPLE.test(line), `invalid line: ${JSON.stringify(line)}`);
  }
}

/** The samples of an exposition by series (`name{labels}` as written), values parsed. */
export function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    const value = line.slice(space + 1);
    out.set(
      line.slice(0, space),
      value === "+Inf" ? Infinity : value === "-Inf" ? -Infinity : Number(value),
    );
  }
  return out;
}
