/**
 * The debug listener: `/metrics` in the text format when metrics are on, `/debug/health` in
 * Distribution's shape (200 `{}`, or 503 naming the failing storage check), 404 otherwise.
 */

import assert from "node:assert/strict";
import type { Config } from "../../src/config/mod.ts";
import { startDebugServer } from "../../src/debug_server.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { memoryRegistry } from "../helpers/registry.ts";
import { assertValidExposition } from "../metrics/exposition_check.ts";

const LOOPBACK = { host: "127.0.0.1", port: 0 };

class FlakyDriver extends MemoryDriver {
  failing = false;
  override put(key: string, bytes: Uint8Array | string): Promise<void> {
    if (this.failing) return Promise.reject(new Error("No space left on device (os error 28)"));
    return super.put(key, bytes);
  }
}

async function get(base: string, path: string, method = "GET") {
  const res = await fetch(`${base}${path}`, { method });
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

Deno.test("debug server: metrics and health on their own port", async () => {
  const settings: Partial<Config> = {
    debugAddr: LOOPBACK,
    metrics: { enabled: true, path: "/custom-metrics" },
  };
  await using reg = await memoryRegistry({ config: settings });
  const debug = startDebugServer(reg.app, reg.app.services.config)!;
  try {
    const base = `http://127.0.0.1:${debug.addr.port}`;
    const res = await reg.fetch("/v2/");
    await res.body?.cancel();
    const metrics = await get(base, "/custom-metrics");
    assert.equal(metrics.status, 200);
    assert.equal(metrics.type, "text/plain; version=0.0.4; charset=utf-8");
    assertValidExposition(metrics.text);
    assert.match(
      metrics.text,
      /registry_http_requests_total\{handler="base",method="get",code="200"\} 1/,
    );
    const health = await get(base, "/debug/health");
    assert.deepEqual([health.status, health.type, health.text], [200, "application/json", "{}"]);
    assert.equal((await get(base, "/metrics")).status, 404);
    assert.equal((await get(base, "/custom-metrics", "POST")).status, 404);
    assert.equal((await get(base, "/v2/")).status, 404, "the registry is not served here");
    const head = await get(base, "/debug/health", "HEAD");
    assert.deepEqual([head.status, head.text], [200, ""]);
  } finally {
    await debug.shutdown();
  }
});

Deno.test("debug server: /debug/health is 503 naming the storage driver check", async () => {
  const driver = new FlakyDriver();
  await using reg = await memoryRegistry({
    driver,
    config: {
      debugAddr: LOOPBACK,
      storageHealth: { enabled: true, intervalMs: 3_600_000, threshold: 1 },
    },
  });
  const debug = startDebugServer(reg.app, reg.app.services.config)!;
  try {
    const base = `http://127.0.0.1:${debug.addr.port}`;
    driver.failing = true;
    await reg.app.health.checkStorage();
    const health = await get(base, "/debug/health");
    assert.equal(health.status, 503);
    assert.deepEqual(JSON.parse(health.text), {
      storagedriver_memory: "Cannot write to the storage: No space left on device (os error 28)",
    });
    assert.equal((await get(base, "/metrics")).status, 404, "metrics are off");
    const ready = await reg.fetch("/readyz");
    assert.equal(ready.status, 503);
    assert.deepEqual(Object.keys(await ready.json()), ["storagedriver_memory"]);
  } finally {
    await debug.shutdown();
  }
});

Deno.test("debug server: none without http.debug.addr", async () => {
  await using reg = await memoryRegistry();
  assert.equal(startDebugServer(reg.app, reg.app.services.config), null);
});
