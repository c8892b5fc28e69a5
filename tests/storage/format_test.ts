/**
 * The data root's format record (`format.json`): a new root is marked format 1, a format 1
 * root opens untouched, and a root of a newer format or with an unreadable record is refused
 * with a StartupError whose message is one line naming the root; checked on the memory driver
 * and through `createServices` over a real temporary root (which also releases the root's
 * lock when it refuses the format).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULTS } from "../../src/config/mod.ts";
import { StartupError } from "../../src/errors.ts";
import { createServices } from "../../src/services/registry.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { lockRoot } from "../../src/storage/drivers/fs_lock.ts";
import { checkFormat, FORMAT_VERSION } from "../../src/storage/format.ts";
import { FORMAT_KEY } from "../../src/storage/keys.ts";

const decoder = new TextDecoder();

/** Asserts a StartupError with a one-line message naming `root` (and containing `also`). */
function isStartupError(root: string, also?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof StartupError, String(error));
    assert.ok(!error.message.includes("\n"), `one line: ${error.message}`);
    assert.ok(error.message.includes(root), `names the root: ${error.message}`);
    if (also) assert.match(error.message, also);
    return true;
  };
}

Deno.test("the registry writes format 1", () => {
  assert.equal(FORMAT_VERSION, 1);
});

Deno.test('a new root gets format.json holding {"format":1}', async () => {
  const driver = new MemoryDriver();
  await checkFormat(driver, "/data/new");
  const bytes = await driver.get(FORMAT_KEY);
  assert.ok(bytes);
  assert.deepEqual(JSON.parse(decoder.decode(bytes)), { format: 1 });
});

Deno.test("a format 1 root opens and its record is left as it was", async () => {
  const driver = new MemoryDriver();
  await driver.put(FORMAT_KEY, `{ "format": 1, "note": "kept" }`);
  await checkFormat(driver, "/data/old");
  assert.equal(decoder.decode((await driver.get(FORMAT_KEY))!), `{ "format": 1, "note": "kept" }`);
});

Deno.test("a root of a newer format is refused with a StartupError naming the root", async () => {
  const driver = new MemoryDriver();
  await driver.put(FORMAT_KEY, `{"format":2}\n`);
  await assert.rejects(checkFormat(driver, "/data/newer"), isStartupError("/data/newer", /2/));
  assert.equal(decoder.decode((await driver.get(FORMAT_KEY))!), `{"format":2}\n`, "untouched");
});

for (
  const [what, record] of [
    ["not JSON", "format one"],
    ["an empty file", ""],
    ["no format field", `{"version":1}`],
    ["a string format", `{"format":"1"}`],
    ["a fractional format", `{"format":1.5}`],
    ["format 0", `{"format":0}`],
    ["a negative format", `{"format":-1}`],
    ["a JSON array", `[1]`],
    ["JSON null", `null`],
  ]
) {
  Deno.test(`a format record that is ${what} is refused with a StartupError naming the root`, async () => {
    const driver = new MemoryDriver();
    await driver.put(FORMAT_KEY, record);
    await assert.rejects(
      checkFormat(driver, "/data/unreadable"),
      isStartupError("/data/unreadable", /format\.json/),
    );
  });
}

Deno.test("createServices marks a new filesystem root format 1", async () => {
  const root = await Deno.makeTempDir({ prefix: "format-test-" });
  try {
    const services = await createServices({ ...DEFAULTS, dataDir: root });
    services.close();
    const record = JSON.parse(await Deno.readTextFile(join(root, "format.json")));
    assert.deepEqual(record, { format: 1 });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("createServices opens an existing format 1 root", async () => {
  const root = await Deno.makeTempDir({ prefix: "format-test-" });
  try {
    await Deno.writeTextFile(join(root, "format.json"), `{"format":1}\n`);
    const services = await createServices({ ...DEFAULTS, dataDir: root });
    services.close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("createServices refuses a newer root and releases its lock", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "format-test-" }));
  try {
    await Deno.writeTextFile(join(root, "format.json"), `{"format":99}\n`);
    await assert.rejects(
      createServices({ ...DEFAULTS, dataDir: root }),
      isStartupError(root, /99/),
    );
    const lock = await lockRoot(root); // not left held by the refused start
    lock.release();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("createServices refuses an unreadable record and releases the lock", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "format-test-" }));
  try {
    await Deno.writeTextFile(join(root, "format.json"), "{");
    await assert.rejects(createServices({ ...DEFAULTS, dataDir: root }), isStartupError(root));
    (await lockRoot(root)).release();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
