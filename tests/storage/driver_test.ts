/**
 * Runs the driver conformance suite against the filesystem and memory drivers, plus what is
 * particular to the filesystem: symbolic links under the root are refused.
 */

import assert from "node:assert/strict";
import { FsDriver } from "../../src/storage/drivers/fs.ts";
import { canonicalRoot, LinkedPathError } from "../../src/storage/drivers/fs_files.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { driverSuite } from "./driver_suite.ts";

async function fsFixture() {
  const root = await canonicalRoot(await Deno.makeTempDir({ prefix: "driver-test-" }));
  return {
    driver: new FsDriver(root),
    root,
    dispose: () => Deno.remove(root, { recursive: true }),
  };
}

driverSuite("filesystem", fsFixture);
driverSuite(
  "memory",
  () => Promise.resolve({ driver: new MemoryDriver(), dispose: async () => {} }),
);

Deno.test("filesystem driver: a symbolic link under the root is never followed", async () => {
  const { driver, root, dispose } = await fsFixture();
  const outside = await Deno.makeTempDir({ prefix: "driver-outside-" });
  try {
    await Deno.writeTextFile(`${outside}/secret`, "secret");
    await Deno.mkdir(`${root}/repositories`);
    await Deno.symlink(outside, `${root}/repositories/evil`);
    await assert.rejects(driver.get("repositories/evil/secret"), LinkedPathError);
    await assert.rejects(driver.put("repositories/evil/planted", "x"), LinkedPathError);
    await assert.rejects(driver.read("repositories/evil/secret"), LinkedPathError);
    await assert.rejects(driver.list("repositories/evil"), LinkedPathError);
    await Deno.symlink(`${outside}/secret`, `${root}/repositories/file-link`);
    await assert.rejects(driver.get("repositories/file-link"), LinkedPathError);
    assert.deepEqual([...Deno.readDirSync(outside)].map((e) => e.name), ["secret"]);
  } finally {
    await dispose();
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("filesystem driver: objects are plain files at their keys, small writes leave no temporary file", async () => {
  const { driver, root, dispose } = await fsFixture();
  try {
    await driver.put("blobs/sha256/ab/abc", "bytes");
    assert.equal(await Deno.readTextFile(`${root}/blobs/sha256/ab/abc`), "bytes");
    assert.deepEqual([...Deno.readDirSync(`${root}/blobs/sha256/ab`)].map((e) => e.name), ["abc"]);
    await driver.delete("blobs/sha256/ab/abc");
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), ["blobs"], "top level kept");
  } finally {
    await dispose();
  }
});

Deno.test("filesystem driver: lazy deletes are gone at once; settle flushes their folders, pruned ones too", async () => {
  const { driver, root, dispose } = await fsFixture();
  try {
    await driver.put("blobs/sha256/aa/one", "1");
    await driver.put("blobs/sha256/aa/two", "2");
    await driver.put("blobs/sha256/bb/three", "3");
    assert.equal(await driver.delete("blobs/sha256/aa/one", { lazy: true }), true);
    assert.equal(await driver.delete("blobs/sha256/bb/three", { lazy: true }), true);
    assert.equal(await driver.delete("blobs/sha256/bb/three", { lazy: true }), false);
    assert.equal(await driver.get("blobs/sha256/aa/one"), null);
    assert.deepEqual(await driver.list("blobs/sha256"), ["aa"], "the emptied folder is pruned");
    await assert.rejects(Deno.stat(`${root}/blobs/sha256/bb`), Deno.errors.NotFound);
    await driver.settle(); // flushes `aa`, and for the pruned `bb` its parent
    await driver.settle(); // nothing left to flush
    assert.deepEqual(await driver.list("blobs/sha256/aa"), ["two"]);
  } finally {
    await dispose();
  }
});
