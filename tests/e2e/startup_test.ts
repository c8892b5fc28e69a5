/**
 * Starting `main.ts` as an operator would: what cannot work (a port in use, an address that is
 * not this machine's, an unknown host, a data root that is a file, on a read-only file system,
 * or held by another registry) is one line on standard error and exit code 2, never a stack
 * trace; an IPv6 address is printed in brackets; SIGTERM drains and exits 0.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { PROJECT_ROOT, spawnRegistry } from "../helpers/registry.ts";

/** Runs main.ts with `args` until it exits (at most 20 s); its code and output. */
async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${PROJECT_ROOT}main.ts`, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const out = await child.output();
  clearTimeout(timer);
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Asserts a failed start: code 2 and exactly one stderr line matching `pattern`. */
function assertOneLine(result: { code: number; stderr: string }, pattern: RegExp) {
  assert.equal(result.code, 2, result.stderr);
  const lines = result.stderr.trim().split("\n");
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0], pattern);
  assert.ok(!/\n\s+at /.test(result.stderr), "no stack trace");
}

Deno.test("a port in use: one line naming the address, exit 2", async () => {
  const root = await Deno.makeTempDir({ prefix: "startup-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    assertOneLine(
      await run(["--port", String(port), "--data", root]),
      new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: the address is already in use`),
    );
  } finally {
    taken.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("an address not of this machine, or an unknown host: one line, exit 2", async () => {
  const root = await Deno.makeTempDir({ prefix: "startup-" });
  try {
    assertOneLine(
      await run(["--host", "192.0.2.1", "--port", "0", "--data", root]),
      /cannot listen on 192\.0\.2\.1:0: 192\.0\.2\.1 is not an address of this machine/,
    );
    assertOneLine(
      await run(["--host", "no-such-host.invalid", "--port", "0", "--data", root]),
      /cannot listen on no-such-host\.invalid:0: unknown host/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a data root that is a file, or below one: one line, exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "startup-" });
  try {
    const file = join(dir, "afile");
    await Deno.writeTextFile(file, "x");
    assertOneLine(
      await run(["--port", "0", "--data", join(file, "data")]),
      /data root .*afile\/data is not a folder/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const canMount = Deno.build.os === "linux" && (() => {
  const probe = Deno.makeTempDirSync({ prefix: "startup-mount-probe-" });
  try {
    const mounted = new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", probe],
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
    if (mounted) new Deno.Command("umount", { args: [probe] }).outputSync();
    return mounted;
  } catch {
    return false;
  } finally {
    Deno.removeSync(probe);
  }
})();

Deno.test({
  name: "a data root on a read-only file system: one line, exit 2",
  ignore: !canMount,
  async fn() {
    const mountPoint = await Deno.makeTempDir({ prefix: "startup-ro-" });
    new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", mountPoint] })
      .outputSync();
    try {
      assertOneLine(
        await run(["--port", "0", "--data", join(mountPoint, "data")]),
        /data root .* is on a read-only file system/,
      );
    } finally {
      new Deno.Command("umount", { args: ["-l", mountPoint] }).outputSync();
      await Deno.remove(mountPoint, { recursive: true });
    }
  },
});

Deno.test("a data root held by a running registry: one line naming the holder, exit 2", async () => {
  const root = await Deno.makeTempDir({ prefix: "startup-" });
  try {
    await using first = await spawnRegistry(root);
    assertOneLine(
      await run(["--port", "0", "--data", root]),
      new RegExp(`data root .* is in use by another registry process \\(PID ${first.pid}\\)`),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("IPv6: the start line prints [::1]; SIGTERM drains and exits 0", async () => {
  const root = await Deno.makeTempDir({ prefix: "startup-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${PROJECT_ROOT}main.ts`, "--host", "::1", "--port", "0", "--data", root],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    let url = "";
    while (!url) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`exited before listening: ${seen}`);
      seen += value;
      url = /listening on (http:\/\/\[::1\]:[0-9]+)\/v2\//.exec(seen)?.[1] ?? "";
    }
    const res = await fetch(`${url}/v2/`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
    child.kill("SIGTERM");
    const rest = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return seen;
        seen += value;
      }
    })();
    const status = await child.status;
    assert.equal(status.code, 0);
    assert.match(await rest, /msg="stopped"/);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(root, { recursive: true });
  }
});
