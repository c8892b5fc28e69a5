/**
 * The triggers of garbage collection: `POST`/`GET /admin/gc` (who may call it with and without
 * access control, the admin token, dry runs, the report), the metrics and the log event of a
 * run, and `deno task gc` against a running registry and offline.
 */

import assert from "node:assert/strict";
import { DEFAULTS } from "../../src/config/mod.ts";
import { adminFilePath, readAdminFile } from "../../src/gc/admin_file.ts";
import type { GcReport } from "../../src/gc/collector.ts";
import { htpasswdFile, TEST_AUTH, USERS } from "../auth/helpers.ts";
import {
  PROJECT_ROOT,
  pushBlob,
  randomBytes,
  spawnRegistry,
  tempRegistry,
} from "../helpers/registry.ts";

const NO_GRACE = { ...DEFAULTS.gc, intervalMs: 0, graceMs: 0 };

function basic(user: keyof typeof USERS): string {
  return `Basic ${btoa(`${user}:${USERS[user]}`)}`;
}

Deno.test("without access control, /admin/gc answers loopback clients only", async () => {
  await using reg = await tempRegistry({
    config: { gc: NO_GRACE, metrics: { enabled: true, path: "/metrics" } },
  });
  const digest = await pushBlob(reg, "org/app", randomBytes(100));
  const unlink = await reg.fetch(`/v2/org/app/blobs/${digest}`, { method: "DELETE" });
  assert.equal(unlink.status, 202);
  const proxied = await reg.fetch("/admin/gc", {
    method: "POST",
    headers: { "x-forwarded-for": "203.0.113.9" },
  });
  assert.equal(proxied.status, 403);
  await proxied.body?.cancel();
  const dry = await reg.fetch("/admin/gc?dryRun=true&wait=true", { method: "POST" });
  assert.equal(dry.status, 200);
  const dryReport = await dry.json() as GcReport;
  assert.equal(dryReport.dryRun, true);
  assert.deepEqual(dryReport.blobs, [{ digest, size: 100 }]);
  const started = await reg.fetch("/admin/gc?wait=true", { method: "POST" });
  const report = await started.json() as GcReport;
  assert.equal(report.bytesFreed, 100);
  const status = await (await reg.fetch("/admin/gc")).json();
  assert.equal(status.running, null);
  assert.deepEqual(status.last, report);
  // One log event per run, and the metrics.
  const events = reg.logs.filter((line) => line.includes('msg="garbage collection"'));
  assert.equal(events.length, 2);
  assert.match(events[1], /dry_run=false .*blobs=1 .*bytes_freed=100/);
  const metrics = await reg.app.metrics!.render();
  assert.match(metrics, /registry_gc_runs_total\{kind="run",outcome="ok"\} 1/);
  assert.match(metrics, /registry_gc_runs_total\{kind="dry_run",outcome="ok"\} 1/);
  assert.match(metrics, /registry_gc_deleted_total\{kind="blob"\} 1/);
  assert.match(metrics, /registry_gc_freed_bytes_total 100/);
  assert.match(metrics, /registry_gc_duration_seconds_count 2/);
});

Deno.test("with access control, /admin/gc needs an admin or the admin token", async () => {
  await using file = await htpasswdFile();
  await using reg = await tempRegistry({
    config: {
      gc: NO_GRACE,
      auth: { ...DEFAULTS.auth, ...TEST_AUTH, htpasswdPath: file.path },
    },
    auth: { checkIntervalMs: 0 },
  });
  const post = async (headers: Record<string, string>) => {
    const response = await reg.fetch("/admin/gc?dryRun=true&wait=true", {
      method: "POST",
      headers,
    });
    await response.body?.cancel();
    return response.status;
  };
  assert.equal(await post({}), 401);
  assert.equal(await post({ authorization: basic("bob") }), 403);
  assert.equal(await post({ authorization: basic("alice") }), 200);
  assert.equal(await post({ "x-registry-admin-token": "not-the-token" }), 401);
  assert.equal(await post({ "x-registry-admin-token": reg.app.adminToken }), 200);
});

Deno.test("read-only mode refuses a collection but not a dry run", async () => {
  await using reg = await tempRegistry({ config: { gc: NO_GRACE, readOnly: true } });
  const real = await reg.fetch("/admin/gc", { method: "POST" });
  assert.equal(real.status, 405);
  assert.equal(real.headers.get("allow"), "GET, HEAD");
  await real.body?.cancel();
  const dry = await reg.fetch("/admin/gc?dryRun=true&wait=true", { method: "POST" });
  assert.equal(dry.status, 200);
  await dry.body?.cancel();
});

async function gcCommand(dataDir: string, ...args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${PROJECT_ROOT}src/gc/cli.ts`, "--data", dataDir, ...args],
    env: { NO_COLOR: "1", REGISTRY_STORAGE_GC_GRACE: "0s" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  return { code: output.code, stdout, stderr };
}

Deno.test("deno task gc asks the running registry, or collects offline", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "registry-gc-cli-" });
  try {
    const bytes = [randomBytes(300), randomBytes(400)];
    {
      await using registry = await spawnRegistry(dataDir, [], {
        REGISTRY_STORAGE_GC_GRACE: "0s",
      });
      const file = await readAdminFile(dataDir);
      assert.equal(file?.pid, registry.pid);
      assert.equal(file?.url, registry.url);
      assert.equal((await Deno.stat(adminFilePath(dataDir))).mode! & 0o777, 0o600);
      const reg = {
        fetch: (path: string, init?: RequestInit) => fetch(`${registry.url}${path}`, init),
      };
      const pushUnlinked = async (b: Uint8Array<ArrayBuffer>) => {
        const digest = await pushBlob(reg, "org/app", b);
        const unlink = await reg.fetch(`/v2/org/app/blobs/${digest}`, { method: "DELETE" });
        await unlink.body?.cancel();
        assert.equal(unlink.status, 202);
      };
      await pushUnlinked(bytes[0]);
      const dry = await gcCommand(dataDir, "--dry-run");
      assert.equal(dry.code, 0, dry.stderr);
      assert.equal((JSON.parse(dry.stdout) as GcReport).bytesFreed, 300);
      const run = await gcCommand(dataDir);
      assert.equal(run.code, 0, run.stderr);
      assert.equal((JSON.parse(run.stdout) as GcReport).bytesFreed, 300);
      await pushUnlinked(bytes[1]);
      await registry.kill("SIGTERM");
      assert.equal(await readAdminFile(dataDir), null, "removed at a clean stop");
    }
    // Nobody holds the root: offline. The second blob was unlinked but never collected.
    const offline = await gcCommand(dataDir);
    assert.equal(offline.code, 0, offline.stderr);
    const report = JSON.parse(offline.stdout) as GcReport;
    assert.equal(report.bytesFreed, 400);
    assert.equal(report.counts.blobs, 1);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
