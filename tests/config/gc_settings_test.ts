/**
 * The garbage collection settings (`storage.gc.*`): the schedule's `off`, the defaults, the
 * retention rules' shape and their errors, and how `--print-config` writes them back.
 */

import assert from "node:assert/strict";
import { printConfig } from "../../src/config/mod.ts";
import { fails, file, load } from "./helpers.ts";

Deno.test("the schedule runs hourly with an hour of grace unless told otherwise", () => {
  const defaults = load([]);
  assert.equal(defaults.gc.intervalMs, 3_600_000);
  assert.equal(defaults.gc.graceMs, 3_600_000);
  assert.deepEqual(defaults.gc.retention, []);
  assert.equal(load([], { REGISTRY_STORAGE_GC_INTERVAL: "0" }).gc.intervalMs, 0);
  assert.equal(load([], { REGISTRY_STORAGE_GC_INTERVAL: "90s" }).gc.intervalMs, 90_000);
  assert.equal(load([], { REGISTRY_STORAGE_GC_GRACE: "0s" }).gc.graceMs, 0);
  fails([], { REGISTRY_STORAGE_GC_INTERVAL: "500ms" }, /REGISTRY_STORAGE_GC_INTERVAL/);
  fails([], { REGISTRY_STORAGE_GC_GRACE: "soon" }, /expected a duration/);
});

Deno.test("retention rules refuse unknown fields, a missing glob and bad values", () => {
  const rules = (yaml: string) => file(`storage:\n  gc:\n    retention:\n${yaml}`);
  fails(
    ["--config", rules("      - repositories: [a]\n        keep: 3\n")],
    {},
    /Unknown .*storage\.gc\.retention\[0\]\.keep .*expected one of repositories, keeptags/,
  );
  fails(
    ["--config", rules("      - keeptags: 3\n")],
    {},
    /Missing repositories in .*storage\.gc\.retention\[0\]/,
  );
  fails(
    ["--config", rules("      - repositories: [a]\n        keeptags: -1\n")],
    {},
    /storage\.gc\.retention\[0\]\.keeptags/,
  );
  fails(
    ["--config", rules("      - repositories: [a]\n        untaggedafter: 7d\n")],
    {},
    /storage\.gc\.retention\[0\]\.untaggedafter/,
  );
  fails(
    ["--config", rules("      - repositories: [A/B]\n")],
    {},
    /repository globs/,
  );
});

Deno.test("--print-config writes the rules back as the file has them", () => {
  const config = load([], {
    REGISTRY_STORAGE_GC_INTERVAL: "off",
    REGISTRY_STORAGE_GC_RETENTION: "[{repositories: ['**'], keeptags: 3, untaggedafter: 24h}]",
  });
  const text = printConfig(config);
  assert.match(text, /interval: off/);
  assert.match(text, /keeptags: 3/);
  assert.match(text, /untaggedafter: 24h/);
  assert.doesNotMatch(text, /keeppulledwithin/);
});
