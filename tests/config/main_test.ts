/**
 * main.ts end to end with a configuration file: `--config FILE` with `http.addr: 127.0.0.1:0`
 * starts and serves `/v2/`; Debian's Distribution file starts with its root and address taken
 * from the environment; a bad value, a refused key or a YAML error exits 2 with one stderr
 * line and no stack trace; `--version`, `--help` and `--print-config` print and exit 0.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { PROJECT_ROOT } from "../helpers/registry.ts";

const MAIN = `${PROJECT_ROOT}main.ts`;
const FIXTURES = `${PROJECT_ROOT}tests/fixtures/distribution/`;

function command(args: string[], env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs main.ts to its end. */
async function finish(args: string[], env: Record<string, string> = {}) {
  const { code, stdout, stderr } = await command(args, env).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code, stdout: decode(stdout), stderr: decode(stderr) };
}

/** Starts main.ts, waits for its listening line, checks GET /v2/, stops it with SIGTERM. */
async function serveOnce(args: string[], env: Record<string, string> = {}): Promise<string> {
  const child = command(args, env).spawn();
  const errors = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  try {
    let m: RegExpExecArray | null = null;
    while (!(m = /listening on (http:\/\/127\.0\.0\.1:[0-9]+)\/v2\//.exec(seen))) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`registry exited before listening: ${seen}`);
      seen += value;
    }
    const res = await fetch(`${m[1]}/v2/`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
  } finally {
    child.kill("SIGTERM");
    await reader.cancel();
    await child.status;
  }
  return seen + (await errors);
}

Deno.test("--config FILE with http.addr 127.0.0.1:0 starts and serves /v2/", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "config.yml");
    await Deno.writeTextFile(
      path,
      `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: 127.0.0.1:0\n`,
    );
    const output = await serveOnce(["--config", path]);
    assert.match(output, new RegExp(`storing in ${dir}/data`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Debian's config.yml without auth starts, with the root and address from the environment", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const output = await serveOnce([], {
      REGISTRY_CONFIGURATION_PATH: `${FIXTURES}debian_noauth.yml`,
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: dir,
      REGISTRY_HTTP_ADDR: "127.0.0.1:0",
    });
    assert.match(output, /Ignoring .*debian_noauth\.yml key log\.fields \(line 5\)/);
    assert.match(output, /Ignoring .*debian_noauth\.yml key storage\.cache \(line 8\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a bad value, a refused key or a YAML error: exit 2, one stderr line, no stack trace", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bad = join(dir, "bad.yml");
    await Deno.writeTextFile(bad, "http:\n  addr: nope\n");
    const broken = join(dir, "broken.yml");
    await Deno.writeTextFile(broken, "http:\n  addr: [1,\n");
    const cases: [string[], Record<string, string>, RegExp][] = [
      [
        ["--config", bad],
        {},
        /^Invalid value "nope" for .*bad\.yml key http\.addr \(line 2\): expected host:port/,
      ],
      [
        ["--config", `${FIXTURES}docs/auth.yml`],
        {},
        /^Unsupported .*auth\.yml key auth\.silly \(line \d+\): the silly authenticator/,
      ],
      [["--config", broken], {}, /^Invalid YAML in .*broken\.yml at line \d+/],
      [
        ["--port", "70000"],
        {},
        /^Invalid value "70000" for --port: expected an integer in 0\.\.65535/,
      ],
      [[], { REGISTRY_HTTP_ADDR: "x" }, /^Invalid value "x" for REGISTRY_HTTP_ADDR: /],
      [["--nope"], {}, /^Unknown option --nope/],
    ];
    for (const [args, env, message] of cases) {
      const { code, stdout, stderr } = await finish(args, env);
      assert.equal(code, 2, args.join(" "));
      assert.equal(stdout, "");
      const lines = stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, stderr);
      assert.match(lines[0], message);
      assert.match(lines[0], / \(see --help\)$/);
      assert.ok(!/\bat .*:\d+:\d+/.test(stderr), "no stack trace");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--version, --help and --print-config print and exit 0", async () => {
  const deno = JSON.parse(await Deno.readTextFile(`${PROJECT_ROOT}deno.json`));
  const version = await finish(["--version"]);
  assert.deepEqual([version.code, version.stdout], [0, `registry ${deno.version}\n`]);
  const help = await finish(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: /);
  const printed = await finish(["--print-config", "--port", "6000"], {
    REGISTRY_HTTP_SECRET: "t0psecret",
  });
  assert.equal(printed.code, 0);
  assert.match(printed.stdout, /addr: 127\.0\.0\.1:6000/);
  assert.ok(!printed.stdout.includes("t0psecret"));
  assert.match(printed.stdout, /secret: "\*{8}"/);
});
