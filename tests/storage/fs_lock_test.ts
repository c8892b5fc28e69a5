/**
 * One owner per data root (`lockRoot`): within one process a second lock of a root fails at
 * once naming the root and this PID, and the root can be locked again once released; across
 * processes a second registry (`main.ts`) on a root in use exits with code 2 and one stderr
 * line naming the root and the first registry's PID, and after the first is killed
 * (SIGKILL, so nothing is cleaned up) a new registry starts on the root.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { StartupError } from "../../src/errors.ts";
import { lockRoot } from "../../src/storage/drivers/fs_lock.ts";
import { PROJECT_ROOT, spawnRegistry } from "../helpers/registry.ts";

async function tempRoot(): Promise<string> {
  return await Deno.realPath(await Deno.makeTempDir({ prefix: "fs-lock-test-" }));
}

Deno.test("a second lock of a held root in this process throws StartupError naming the root and this PID", async () => {
  const root = await tempRoot();
  const lock = await lockRoot(root);
  try {
    await assert.rejects(lockRoot(root), (error: unknown) => {
      assert.ok(error instanceof StartupError);
      assert.ok(error.message.includes(root), error.message);
      assert.ok(error.message.includes(`PID ${Deno.pid}`), error.message);
      assert.ok(!error.message.includes("\n"));
      return true;
    });
  } finally {
    lock.release();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("the lock file holds the holder's PID", async () => {
  const root = await tempRoot();
  const lock = await lockRoot(root);
  try {
    assert.equal((await Deno.readTextFile(join(root, ".lock"))).trim(), String(Deno.pid));
  } finally {
    lock.release();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a released root can be locked again; release is idempotent", async () => {
  const root = await tempRoot();
  try {
    const first = await lockRoot(root);
    first.release();
    first.release();
    const second = await lockRoot(root);
    await assert.rejects(lockRoot(root), StartupError);
    second.release();
    (await lockRoot(root)).release();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("locks of different roots are independent", async () => {
  const a = await tempRoot();
  const b = await tempRoot();
  const lockA = await lockRoot(a);
  try {
    const lockB = await lockRoot(b);
    lockB.release();
  } finally {
    lockA.release();
    await Deno.remove(a, { recursive: true });
    await Deno.remove(b, { recursive: true });
  }
});

Deno.test("a second registry process on a root in use exits 2 naming the root and the holder's PID; after SIGKILL of the holder a new one starts", async () => {
  const root = await tempRoot();
  try {
    const first = await spawnRegistry(root);
    try {
      const second = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${PROJECT_ROOT}main.ts`, "--port", "0", "--data", root],
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
      const stderr = new TextDecoder().decode(second.stderr).trim();
      assert.equal(second.code, 2, stderr);
      assert.equal(stderr.split("\n").length, 1, `one line: ${stderr}`);
      assert.ok(stderr.includes(root), stderr);
      assert.ok(stderr.includes(`PID ${first.pid}`), stderr);
      assert.equal(new TextDecoder().decode(second.stdout), "", "it never listened");
      // The first one is untouched.
      const ping = await fetch(`${first.url}/v2/`);
      assert.equal(ping.status, 200);
      await ping.body?.cancel();
    } finally {
      await first.kill("SIGKILL");
    }
    await using third = await spawnRegistry(root);
    const ping = await fetch(`${third.url}/v2/`);
    assert.equal(ping.status, 200);
    await ping.body?.cancel();
    assert.equal((await Deno.readTextFile(join(root, ".lock"))).trim(), String(third.pid));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a .lock that is a symbolic link is refused, and its target is left alone", async () => {
  const root = await Deno.makeTempDir({ prefix: "lock-link-" });
  const victim = await Deno.makeTempFile({ prefix: "lock-victim-" });
  try {
    await Deno.writeTextFile(victim, "precious data");
    await Deno.symlink(victim, join(root, ".lock"));
    await assert.rejects(lockRoot(root), StartupError);
    assert.equal(await Deno.readTextFile(victim), "precious data");
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(victim);
  }
});
