/**
 * `/livez`, `/readyz` and the checks behind them: a writable root, an unwritable one (503
 * naming the storage check), the drain, free space below the minimum, and the periodic
 * storage check with its threshold (Distribution's `health.storagedriver`).
 */

import assert from "node:assert/strict";
import { DEFAULTS } from "../../src/config/mod.ts";
import type { Config } from "../../src/config/mod.ts";
import { libcStatvfs, nodeStatfs } from "../../src/health/free_space.ts";
import { Health, PROBE_KEY } from "../../src/health/health.ts";
import { createLogger } from "../../src/log.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { tempRegistry } from "../helpers/registry.ts";

/** A memory driver whose writes fail while `failing` is set. */
class FlakyDriver extends MemoryDriver {
  failing = false;
  override put(key: string, bytes: Uint8Array | string): Promise<void> {
    if (this.failing) return Promise.reject(new Error("Read-only file system (os error 30)"));
    return super.put(key, bytes);
  }
}

function healthOver(driver: MemoryDriver, settings: Partial<Config>, lines: string[] = []) {
  const config: Config = { ...DEFAULTS, dataDir: "memory", ...settings };
  const log = createLogger({ level: "info", format: "text", sink: (l) => lines.push(l) });
  return new Health(config, driver, log, { freeSpace: null });
}

Deno.test("health: /livez answers ok and /readyz {} over a writable root", async () => {
  await using reg = await tempRegistry();
  const live = await reg.fetch("/livez");
  assert.equal(live.status, 200);
  assert.equal(await live.text(), "ok\n");
  const ready = await reg.fetch("/readyz");
  assert.equal(ready.status, 200);
  assert.equal(ready.headers.get("content-type"), "application/json");
  assert.deepEqual(await ready.json(), {});
  const post = await reg.fetch("/readyz", { method: "POST" });
  await post.body?.cancel();
  assert.equal(post.status, 405);
  // The probe leaves nothing behind.
  await assert.rejects(Deno.stat(`${reg.dataDir}/${PROBE_KEY}`), Deno.errors.NotFound);
});

Deno.test("health: an unwritable data root makes /readyz 503, naming the check", async () => {
  await using reg = await tempRegistry();
  // Even root cannot replace a non-empty folder with a file: the probe's write fails.
  await Deno.mkdir(`${reg.dataDir}/${PROBE_KEY}/in-the-way`, { recursive: true });
  const ready = await reg.fetch("/readyz");
  assert.equal(ready.status, 503);
  const body = await ready.json();
  assert.deepEqual(Object.keys(body), ["storagedriver_filesystem"]);
  assert.match(body.storagedriver_filesystem, /^Cannot write to the storage: /);
  const live = await reg.fetch("/livez");
  await live.body?.cancel();
  assert.equal(live.status, 200, "alive all the same");
  await Deno.remove(`${reg.dataDir}/${PROBE_KEY}`, { recursive: true });
  await reg.app.health.checkStorage();
  const again = await reg.fetch("/readyz");
  assert.equal(again.status, 200);
  assert.deepEqual(await again.json(), {});
});

Deno.test("health: while draining /readyz is 503 naming the drain; /livez stays 200", async () => {
  await using reg = await tempRegistry();
  await reg.app.drain(0);
  const ready = await reg.fetch("/readyz");
  assert.equal(ready.status, 503);
  assert.deepEqual(await ready.json(), { draining: "The registry is shutting down" });
  const live = await reg.fetch("/livez");
  await live.body?.cancel();
  assert.equal(live.status, 200);
  const base = await reg.fetch("/v2/");
  await base.body?.cancel();
  assert.equal(base.status, 503, "registry requests are refused");
});

Deno.test("health: free space below readyMinFreeBytes makes /readyz 503", async () => {
  await using reg = await tempRegistry({
    config: { readyMinFreeBytes: Number.MAX_SAFE_INTEGER },
  });
  const ready = await reg.fetch("/readyz");
  assert.equal(ready.status, 503);
  const body = await ready.json();
  assert.deepEqual(Object.keys(body), ["free_space"]);
  assert.match(body.free_space, /^Free space on the data root is \d+ bytes, below the minimum/);
});

Deno.test("health: the periodic check reports after threshold failures in a row", async () => {
  const driver = new FlakyDriver();
  const lines: string[] = [];
  const health = healthOver(driver, {
    storageHealth: { enabled: true, intervalMs: 3_600_000, threshold: 2 },
  }, lines);
  try {
    assert.equal(health.storageCheck, "storagedriver_memory");
    await health.checkStorage();
    assert.deepEqual(health.debugStatus(), {});
    driver.failing = true;
    await health.checkStorage();
    assert.deepEqual(health.debugStatus(), {}, "one failure is below the threshold");
    assert.deepEqual(await health.readiness(false), {});
    await health.checkStorage();
    const failing = {
      storagedriver_memory: "Cannot write to the storage: Read-only file system (os error 30)",
    };
    assert.deepEqual(health.debugStatus(), failing);
    assert.deepEqual(await health.readiness(false), failing);
    await health.checkStorage();
    driver.failing = false;
    await health.checkStorage();
    assert.deepEqual(health.debugStatus(), {});
    assert.equal(lines.filter((l) => l.includes("storage health check fails")).length, 1);
    assert.equal(lines.filter((l) => l.includes("passes again")).length, 1);
  } finally {
    health.close();
  }
});

Deno.test("health: the periodic check runs on its interval", async () => {
  const driver = new FlakyDriver();
  driver.failing = true;
  const health = healthOver(driver, {
    storageHealth: { enabled: true, intervalMs: 10, threshold: 1 },
  });
  try {
    const deadline = Date.now() + 5000;
    while (Object.keys(health.debugStatus()).length === 0 && Date.now() < deadline) {
      await new Promise((wake) => setTimeout(wake, 10));
    }
    assert.deepEqual(Object.keys(health.debugStatus()), ["storagedriver_memory"]);
  } finally {
    health.close();
    await health.settled();
  }
});

Deno.test("health: disabled, /debug/health says nothing and /readyz checks on demand", async () => {
  const driver = new FlakyDriver();
  driver.failing = true;
  const health = healthOver(driver, {});
  assert.deepEqual(await health.readiness(false), {
    storagedriver_memory: "Cannot write to the storage: Read-only file system (os error 30)",
  });
  assert.deepEqual(health.debugStatus(), {});
  driver.failing = false;
  // Checked at most once per few seconds: the failure stands until then.
  assert.equal(Object.keys(await health.readiness(false)).length, 1);
  await health.checkStorage();
  assert.deepEqual(await health.readiness(false), {});
  health.close();
});

Deno.test({
  name: "health: statfs and statvfs through FFI measure the same free space",
  // The C library stays loaded for the process.
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const viaNode = await nodeStatfs(dir);
      const viaLibc = await libcStatvfs()?.(dir);
      assert.ok(viaNode !== null && viaNode > 0);
      if (viaLibc === undefined) return; // not 64-bit Linux
      assert.ok(viaLibc !== null);
      assert.ok(Math.abs(viaNode - viaLibc) < 64 * 1024 * 1024, `${viaNode} vs ${viaLibc}`);
      assert.equal(await nodeStatfs(`${dir}/missing`), null);
    } finally {
      await Deno.remove(dir);
    }
  },
});
