/**
 * The documentation generated from the settings table (src/config/doc.ts, usage.ts): the
 * README's configuration table and Distribution key lists are what `deno task config-doc`
 * writes, and `--help` names every flag, variable and key.
 */

import assert from "node:assert/strict";
import { blocks, readBlock, settingsTable, updateReadme } from "../../src/config/doc.ts";
import { SETTINGS } from "../../src/config/settings.ts";
import { USAGE } from "../../src/config/usage.ts";

const README = Deno.readTextFileSync(new URL("../../README.md", import.meta.url));

/** Markdown with the differences `deno fmt` makes (padding, wrapping) taken out. */
function normalize(markdown: string): string {
  return markdown.replace(/ *\| */g, "|").replace(/-{3,}/g, "---").replace(/\s+/g, " ").trim();
}

Deno.test("the README holds the generated blocks (run deno task config-doc after a change)", () => {
  for (const block of blocks()) {
    const found = readBlock(README, block.name);
    assert.ok(found !== null, `README.md lacks the ${block.name} markers`);
    assert.equal(normalize(found), normalize(block.markdown), block.name);
  }
});

Deno.test("regenerating the README changes nothing but formatting", () => {
  assert.equal(normalize(updateReadme(README)), normalize(README));
});

Deno.test("the table has a row per setting naming its key and variable", () => {
  const table = settingsTable();
  const rows = table.split("\n").slice(2);
  assert.equal(rows.length, SETTINGS.length);
  SETTINGS.forEach((s, i) => {
    assert.ok(rows[i].startsWith(`| \`${s.key}\``), s.key);
    if (s.env) assert.ok(rows[i].includes(`\`${s.env}\``), s.env);
    for (const a of s.aliases) {
      if (a.flag) assert.ok(rows[i].includes(`\`--${a.flag}\``), a.flag);
      if (a.env) assert.ok(rows[i].includes(`\`${a.env}\``), a.env);
    }
  });
  assert.ok(!table.includes("\\|"), "no escaped pipes needed");
});

Deno.test("--help names every flag, legacy variable and key, in lines of at most 100", () => {
  for (const s of SETTINGS) {
    assert.ok(USAGE.includes(`  ${s.key}: `), s.key);
    for (const a of s.aliases) {
      if (a.flag) assert.ok(USAGE.includes(`--${a.flag}`), a.flag);
      if (a.env) assert.ok(USAGE.includes(a.env), a.env);
    }
  }
  for (const flag of ["--config", "--print-config", "--version", "--help"]) {
    assert.ok(USAGE.includes(flag), flag);
  }
  assert.ok(USAGE.includes("REGISTRY_CONFIGURATION_PATH"));
  for (const line of USAGE.split("\n")) assert.ok(line.length <= 100, line);
});
