/**
 * Graceful shutdown: on SIGTERM the registry stops accepting requests (503 while it drains,
 * then the port closes), lets in-flight requests finish within the grace period
 * (`--shutdown-grace`), cuts the bodies still being read after it (503), exits, and leaves
 * every interrupted upload resumable after a restart.
 */

import assert from "node:assert/strict";
import { portOf, readResponse, writeAllTo } from "../helpers/raw_http.ts";
import { PROJECT_ROOT, randomBytes, sha256Digest, spawnRegistry } from "../helpers/registry.ts";
import { checkStore } from "../helpers/store_check.ts";

const GRACE_S = 2;

async function post(base: string, name: string): Promise<string> {
  const res = await fetch(`${base}/v2/${name}/blobs/uploads/`, { method: "POST" });
  await res.body?.cancel();
  assert.equal(res.status, 202);
  return res.headers.get("location")!;
}

async function status(base: string, location: string): Promise<string | null> {
  const res = await fetch(`${base}${location}`);
  await res.body?.cancel();
  assert.equal(res.status, 204, `status of ${location}`);
  return res.headers.get("range");
}

Deno.test({
  name:
    "SIGTERM: new requests refused, in-flight requests finish, stalled ones are cut at the bound, uploads resumable",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const root = await Deno.makeTempDir({ prefix: "registry-shutdown-" });
    try {
      const reg = await spawnRegistry(root, ["--shutdown-grace", String(GRACE_S)]);
      const port = portOf(reg.url);
      const slowBytes = randomBytes(300_000);
      const stalledBytes = randomBytes(200_000);
      const slow = await post(reg.url, "shutdown/slow");
      const stalled = await post(reg.url, "shutdown/stalled");
      // The stalled upload has one acknowledged chunk before it stalls.
      const first = await fetch(`${reg.url}${stalled}`, {
        method: "PATCH",
        headers: { "Content-Range": "0-49999" },
        body: stalledBytes.slice(0, 50_000),
      });
      await first.body?.cancel();
      assert.equal(first.status, 202);

      // A slow PATCH that finishes 1 s after the signal (inside the grace period).
      const slowConn = await Deno.connect({ hostname: "127.0.0.1", port });
      await writeAllTo(
        slowConn,
        `PATCH ${slow} HTTP/1.1\r\nHost: x\r\nContent-Length: ${slowBytes.length}\r\n\r\n`,
      );
      await writeAllTo(slowConn, slowBytes.subarray(0, 100_000));
      // A PATCH that stalls forever after some bytes.
      const stallConn = await Deno.connect({ hostname: "127.0.0.1", port });
      await writeAllTo(
        stallConn,
        `PATCH ${stalled} HTTP/1.1\r\nHost: x\r\nContent-Range: 50000-199999\r\n` +
          `Content-Length: 150000\r\n\r\n`,
      );
      await writeAllTo(stallConn, stalledBytes.subarray(50_000, 80_000));
      await new Promise((resolve) => setTimeout(resolve, 200));

      const signalled = Date.now();
      const exited = reg.kill("SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 300));

      await t.step("new requests are refused with 503 and Retry-After while draining", async () => {
        const res = await fetch(`${reg.url}/v2/`);
        assert.equal(res.status, 503);
        assert.equal(res.headers.get("retry-after"), "1");
        assert.equal((await res.json()).errors[0].code, "UNKNOWN");
      });
      await t.step("the in-flight PATCH finishes with 202", async () => {
        await new Promise((resolve) => setTimeout(resolve, 700));
        await writeAllTo(slowConn, slowBytes.subarray(100_000));
        const res = await readResponse(slowConn, 5000);
        slowConn.close();
        assert.equal(res?.status, 202);
        assert.equal(res?.headers.get("range"), `0-${slowBytes.length - 1}`);
      });
      await t.step("the stalled PATCH is cut with 503 once the grace period is over", async () => {
        const res = await readResponse(stallConn, 10_000);
        stallConn.close();
        const elapsed = Date.now() - signalled;
        assert.equal(res?.status, 503);
        assert.equal(JSON.parse(res!.body).errors[0].code, "UNKNOWN");
        assert.ok(elapsed >= GRACE_S * 1000 - 100, `cut after ${elapsed} ms`);
      });
      await t.step("the process exits within the bound", async () => {
        const result = await exited;
        const elapsed = Date.now() - signalled;
        assert.equal(result.code, 0);
        assert.ok(elapsed < GRACE_S * 1000 + 2500, `exited after ${elapsed} ms`);
        await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }), "port closed");
      });

      await t.step("after a restart both uploads resume and complete", async () => {
        await using again = await spawnRegistry(root);
        assert.equal(await status(again.url, slow), `0-${slowBytes.length - 1}`);
        assert.equal(await status(again.url, stalled), "0-49999");
        const rest = await fetch(`${again.url}${stalled}`, {
          method: "PATCH",
          headers: { "Content-Range": "50000-199999" },
          body: stalledBytes.slice(50_000),
        });
        await rest.body?.cancel();
        assert.equal(rest.status, 202);
        for (const [location, bytes] of [[slow, slowBytes], [stalled, stalledBytes]] as const) {
          const put = await fetch(`${again.url}${location}?digest=${await sha256Digest(bytes)}`, {
            method: "PUT",
          });
          await put.body?.cancel();
          assert.equal(put.status, 201);
        }
        assert.deepEqual((await checkStore(root)).problems, []);
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "SIGTERM on an idle registry exits at once",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "registry-shutdown-" });
    try {
      const reg = await spawnRegistry(root);
      const res = await fetch(`${reg.url}/v2/`);
      await res.body?.cancel();
      const signalled = Date.now();
      const result = await reg.kill("SIGTERM");
      assert.equal(result.code, 0);
      assert.ok(Date.now() - signalled < 1500, "no waiting for the grace period");
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

/** `deno task start` in a process group of its own; its output is collected. */
function startTask(root: string, args: string[]) {
  const child = new Deno.Command("setsid", {
    args: [Deno.execPath(), "task", "start", "--port", "0", "--data", root, ...args],
    cwd: PROJECT_ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const decoder = new TextDecoder();
  const collect = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeTo(
      new WritableStream({ write: (chunk) => void (output += decoder.decode(chunk)) }),
    );
  const drained = Promise.all([collect(child.stdout), collect(child.stderr)]);
  return {
    child,
    output: () => output,
    /** The address once the listening line appears. */
    async url(): Promise<string> {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const m = /listening on (http:\/\/[0-9.]+:[0-9]+)\/v2\//.exec(output);
        if (m) return m[1]!;
        if (Date.now() > deadline) throw new Error(`no listening line: ${output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    /** Waits for the task runner to exit and its output to end. */
    async finished() {
      const status = await child.status;
      await drained;
      return status;
    },
  };
}

Deno.test({
  name:
    "SIGTERM to the process group of `deno task start` (as systemd and Ctrl+C send it) drains: the in-flight PATCH finishes",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "registry-shutdown-" });
    const task = startTask(root, ["--shutdown-grace", "10"]);
    try {
      const url = await task.url();
      const bytes = randomBytes(200_000);
      const location = await post(url, "shutdown/group");
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(url) });
      await writeAllTo(
        conn,
        `PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Length: ${bytes.length}\r\n\r\n`,
      );
      await writeAllTo(conn, bytes.subarray(0, 50_000));
      await new Promise((resolve) => setTimeout(resolve, 200));
      // the whole group: the task runner and the registry each get it, and the task runner
      // passes its copy on to the registry
      Deno.kill(-task.child.pid, "SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 500));
      await writeAllTo(conn, bytes.subarray(50_000));
      const res = await readResponse(conn, 10_000);
      conn.close();
      assert.equal(res?.status, 202, task.output());
      assert.equal(res?.headers.get("range"), `0-${bytes.length - 1}`);
      const status = await task.finished();
      assert.equal(status.code, 0, task.output());
      assert.match(task.output(), /shutting down/);
      assert.match(task.output(), /msg="?stopped/);
    } finally {
      try {
        Deno.kill(-task.child.pid, "SIGKILL");
      } catch {
        // gone already
      }
      await task.finished();
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "a repeated SIGTERM right away is the same stop; one more than a second later exits without waiting for the grace",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "registry-shutdown-" });
    try {
      const reg = await spawnRegistry(root, ["--shutdown-grace", "60"]);
      const location = await post(reg.url, "shutdown/twice");
      // a PATCH that stalls: the drain waits for it up to the grace period
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(reg.url) });
      await writeAllTo(
        conn,
        `PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n`,
      );
      await writeAllTo(conn, randomBytes(10_000));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const exited = reg.kill("SIGTERM");
      // once it drains (two signals sent back to back may be delivered as one), a repeat
      // right away is the same stop: the drain goes on
      for (;;) {
        const res = await fetch(`${reg.url}/v2/`);
        await res.body?.cancel();
        if (res.status === 503) break;
      }
      Deno.kill(reg.pid, "SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const res = await fetch(`${reg.url}/v2/`);
      await res.body?.cancel();
      assert.equal(res.status, 503, "still draining after the repeated signal");
      const second = Date.now();
      Deno.kill(reg.pid, "SIGTERM");
      const result = await exited;
      assert.equal(result.code, 0);
      assert.ok(Date.now() - second < 2000, "exited at once");
      conn.close();
      // and said why, before it went (the last lines may still be on their way from the pipe)
      const said = (text: string) => reg.output.some((line) => line.includes(text));
      for (let i = 0; i < 100 && !said("exiting without waiting"); i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(said("the same stop"), reg.output.join("\n"));
      assert.ok(said("exiting without waiting"), reg.output.join("\n"));
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
