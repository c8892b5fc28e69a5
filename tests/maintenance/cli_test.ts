/**
 * The maintenance commands as subprocesses (`deno task fsck`, `du`, `repo-delete`): exit
 * codes, output, the settings they read (`--config`, `REGISTRY_*`), and what they do while a
 * registry holds the data root; and in the scale-out mode (`storage.s3` with `database.url`):
 * fsck and du refuse in one line, repo-delete deletes in the database under the replicas'
 * advisory locks.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { measureUsage } from "../../src/maintenance/usage.ts";
import { FsDriver } from "../../src/storage/drivers/fs.ts";
import { PROJECT_ROOT, spawnRegistry, tempRegistry } from "../helpers/registry.ts";
import { buildStore, type BuiltStore, keysUnder } from "./fixtures.ts";
import { repositoryLock } from "../../src/services/locks.ts";
import { PostgresMetadataStore } from "../../src/storage/metadata/postgres.ts";
import { PostgresLockManager } from "../../src/storage/postgres/locks.ts";
import type { Digest, RepositoryName, Tag } from "../../src/types/oci.ts";
import { connect } from "../../src/storage/postgres/client.ts";
import { testDatabase } from "../helpers/postgres.ts";

interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function cliCommand(
  command: "fsck" | "du" | "repo_delete",
  args: string[],
  env: Record<string, string> = {},
  cwd?: string,
): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(PROJECT_ROOT, "src/maintenance/cli", `${command}.ts`), ...args],
    env: { NO_COLOR: "1", ...env },
    ...(cwd === undefined ? {} : { cwd }),
    stdout: "piped",
    stderr: "piped",
  });
}

async function cli(
  command: "fsck" | "du" | "repo_delete",
  args: string[],
  env: Record<string, string> = {},
  cwd?: string,
): Promise<Ran> {
  const output = await cliCommand(command, args, env, cwd).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

async function builtRoot(): Promise<{ root: string; built: BuiltStore } & AsyncDisposable> {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "registry-cli-" }));
  let built: BuiltStore;
  {
    await using reg = await tempRegistry({ dataDir: root });
    built = await buildStore(reg);
  }
  return { root, built, [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }) };
}

Deno.test("fsck: exit 0 on a sound store, 1 with one line per finding, --json", async () => {
  await using store = await builtRoot();
  const clean = await cli("fsck", ["--data", store.root]);
  assert.equal(clean.code, 0, clean.stderr);
  assert.equal(clean.stdout, "");
  assert.match(clean.stderr, /^sound: 15 blobs, 3 repositories/);

  const hex = store.built.app.image1.layers[0].digest.slice(7);
  const path = join(store.root, "blobs/sha256", hex.slice(0, 2), hex);
  const bytes = await Deno.readFile(path);
  bytes[10] ^= 0x80;
  await Deno.writeFile(path, bytes);
  const broken = await cli("fsck", ["--data", store.root]);
  assert.equal(broken.code, 1);
  const lines = broken.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 1);
  assert.match(
    lines[0],
    new RegExp(`^blob-digest blobs/sha256/${hex.slice(0, 2)}/${hex} bytes hash to sha256:`),
  );

  const json = await cli("fsck", ["--json", "--data", store.root]);
  assert.equal(json.code, 1);
  const report = JSON.parse(json.stdout);
  assert.equal(report.ok, false);
  assert.equal(report.live, false);
  assert.equal(report.root, store.root);
  assert.deepEqual(report.findings.map((f: { kind: string }) => f.kind), ["blob-digest"]);
});

Deno.test("fsck reads the settings of deno task start: --config and REGISTRY_* variables", async () => {
  await using store = await builtRoot();
  const config = join(store.root, "..", `registry-cli-${crypto.randomUUID()}.yml`);
  await Deno.writeTextFile(config, `storage:\n  filesystem:\n    rootdirectory: ${store.root}\n`);
  try {
    const byFile = await cli("fsck", ["--config", config]);
    assert.equal(byFile.code, 0, byFile.stderr);
    assert.match(byFile.stderr, new RegExp(`checked in ${store.root}$`, "m"));
  } finally {
    await Deno.remove(config);
  }
  const byEnv = await cli("fsck", ["--json"], {
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: store.root,
  });
  assert.equal(byEnv.code, 0, byEnv.stderr);
  assert.equal(JSON.parse(byEnv.stdout).root, store.root);
});

Deno.test("the commands answer 2 to usage errors", async () => {
  const parent = await Deno.makeTempDir({ prefix: "registry-cli-" });
  const missing = join(parent, "nothing-here");
  const cases: [Parameters<typeof cli>[0], string[], RegExp][] = [
    ["fsck", ["--bogus"], /Unknown option --bogus/],
    ["fsck", ["--data", missing], /does not exist/],
    ["fsck", ["--data", missing, "extra"], /Unexpected argument "extra"/],
    ["du", ["--data", missing], /does not exist/],
    ["du", ["--port", "x"], /Invalid value "x"/],
    ["repo_delete", ["--data", missing], /Expected one repository name/],
    ["repo_delete", ["--data", missing, "Bad..Name"], /Invalid repository name/],
  ];
  for (const [command, args, message] of cases) {
    const ran = await cli(command, args);
    assert.equal(ran.code, 2, `${command} ${args.join(" ")}: ${ran.stderr}`);
    assert.match(ran.stderr, message);
  }
  assert.deepEqual(await Array.fromAsync(Deno.readDir(parent)), [], "nothing was created");
  await Deno.remove(parent);
  const help = await cli("fsck", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: deno task fsck/);
});

Deno.test("du: the same figures as the usage module, as JSON and as text", async () => {
  await using store = await builtRoot();
  const expected = await measureUsage(new FsDriver(store.root));
  const json = await cli("du", ["--json", "--data", store.root]);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), JSON.parse(JSON.stringify(expected)));
  const text = await cli("du", ["--data", store.root, "other"]);
  assert.equal(text.code, 0, text.stderr);
  const lines = text.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 2);
  const other = expected.repositories.find((r) => r.name === "other")!;
  const unit = String.raw`(?: \([0-9.]+ [KMGT]iB\))?`;
  assert.match(
    lines[1],
    new RegExp(
      `^other: exclusive ${other.exclusiveBytes} B${unit}, shared ${other.sharedBytes} B${unit}; ` +
        "1 manifests, 1 tags, 2 blobs$",
    ),
  );
  const unknown = await cli("du", ["--data", store.root, "nope"]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /Repository "nope" is not known/);
});

Deno.test("repo-delete offline: deletes once, then the repository is unknown", async () => {
  await using store = await builtRoot();
  const driver = new FsDriver(store.root);
  const otherBefore = await keysUnder(driver, "repositories/other");
  const blobsBefore = await keysUnder(driver, "blobs");
  const first = await cli("repo_delete", ["--data", store.root, "app"]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(
    first.stdout.trim(),
    "deleted app: 2 tags, 4 manifests, 1 referrer entries, 6 layer links (blob bytes stay)",
  );
  const second = await cli("repo_delete", ["--data", store.root, "app"]);
  assert.equal(second.code, 1);
  assert.match(second.stderr, /Repository "app" is not known/);
  assert.deepEqual(await keysUnder(driver, "repositories/other"), otherBefore);
  assert.deepEqual(await keysUnder(driver, "blobs"), blobsBefore);
  // The store is still sound, and the registry agrees.
  assert.equal((await cli("fsck", ["--data", store.root])).code, 0);
  await using reg = await tempRegistry({ dataDir: store.root });
  const catalog = await (await reg.fetch("/v2/_catalog")).json();
  assert.deepEqual(catalog, { repositories: ["app/sub", "other"] });
});

Deno.test("while a registry runs: repo-delete asks it over HTTP, fsck checks without the lock", async () => {
  await using store = await builtRoot();
  await using registry = await spawnRegistry(store.root);
  const port = new URL(registry.url).port;

  const fsck = await cli("fsck", ["--data", store.root]);
  assert.equal(fsck.code, 0, fsck.stderr);
  assert.match(
    fsck.stderr,
    /in use by another registry process \(PID \d+\): checking without the lock/,
  );
  const fsckJson = await cli("fsck", ["--json", "--data", store.root]);
  assert.equal(fsckJson.code, 0, fsckJson.stderr);
  assert.equal(JSON.parse(fsckJson.stdout).live, true);

  // With access control on, the command cannot act for an admin: it names the endpoint.
  const authOn = await cli("repo_delete", ["--data", store.root, "--port", port, "app"], {
    REGISTRY_AUTH_HTPASSWD_PATH: "/nonexistent/htpasswd",
  });
  assert.equal(authOn.code, 1);
  assert.match(
    authOn.stderr,
    new RegExp(`curl -X DELETE -u ADMIN http://127\\.0\\.0\\.1:${port}/admin/repositories/app`),
  );

  const deleted = await cli("repo_delete", ["--data", store.root, "--port", port, "app"]);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.match(deleted.stdout, /^deleted app: 2 tags, 4 manifests/);
  const tags = await fetch(`${registry.url}/v2/app/tags/list`);
  await tags.body?.cancel();
  assert.equal(tags.status, 404);
  const again = await cli("repo_delete", ["--data", store.root, "--port", port, "app"]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /the registry answered 404: Repository "app" is not known/);
});

// --- the scale-out mode ---

const pg = await testDatabase();

/** The settings of the scale-out mode (the bucket is never reached by these commands). */
function scaleOut(databaseUrl: string): Record<string, string> {
  return {
    REGISTRY_STORAGE_S3_ACCESSKEY: "access",
    REGISTRY_STORAGE_S3_SECRETKEY: "secret",
    REGISTRY_STORAGE_S3_REGION: "us-east-1",
    REGISTRY_STORAGE_S3_REGIONENDPOINT: "http://127.0.0.1:9",
    REGISTRY_STORAGE_S3_BUCKET: "registry",
    REGISTRY_DATABASE_URL: databaseUrl,
  };
}

Deno.test("scale-out: fsck and du refuse in one line, exit 2, and leave the data root alone", async () => {
  const dir = await Deno.makeTempDir({ prefix: "registry-cli-s3-" });
  try {
    const env = scaleOut("postgres://registry@127.0.0.1:9/registry");
    for (const command of ["fsck", "du"] as const) {
      // No --data (the loader refuses it beside storage.s3): the default ./data, here `dir`.
      const ran = await cli(command, [], env, dir);
      assert.equal(ran.code, 2, ran.stderr);
      assert.equal(ran.stdout, "");
      assert.equal(
        ran.stderr.trim(),
        `deno task ${command} works on a data root only; storage.s3 is configured (the ` +
          "scale-out mode), whose data is in the bucket and the database: nothing " +
          (command === "fsck" ? "checked" : "measured"),
      );
    }
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no data root made");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

pg.test(
  "scale-out: repo-delete deletes in the database, under the replicas' repository lock",
  async (url) => {
    const sql = connect(url, { max: 4 });
    const lockSql = connect(url, { max: 2 });
    try {
      const store = await PostgresMetadataStore.open(sql);
      const app = "app" as RepositoryName;
      const other = "other" as RepositoryName;
      const digest = (seed: string) => `sha256:${seed.repeat(64)}` as Digest;
      await store.linkLayer(app, digest("a"));
      await store.putRevision(app, digest("b"), { mediaType: "x", size: 1 });
      await store.putTag(app, "v1" as Tag, digest("b"));
      await store.linkLayer(other, digest("a"));
      // A replica holds the repository's lock: the command waits for it.
      const locks = new PostgresLockManager(lockSql);
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let entered!: () => void;
      const inside = new Promise<void>((resolve) => (entered = resolve));
      const holder = locks.run(repositoryLock(app), async () => {
        entered();
        await held;
      });
      await inside;
      const child = cliCommand("repo_delete", ["app"], scaleOut(url)).spawn();
      try {
        const deadline = Date.now() + 60_000;
        for (;;) {
          const [row] = await sql<{ n: number }[]>`
            select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted
              and database = (select oid from pg_database where datname = current_database())`;
          if (row.n > 0) break;
          if (Date.now() > deadline) throw new Error("repo-delete never waited for the lock");
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.equal(await store.repositoryExists(app), true, "nothing deleted while held");
      } finally {
        release();
        await holder;
      }
      const out = await child.output();
      const text = new TextDecoder();
      assert.equal(out.code, 0, text.decode(out.stderr));
      assert.equal(
        text.decode(out.stdout).trim(),
        "deleted app: 1 tags, 1 manifests, 0 referrer entries, 1 layer links (blob bytes stay)",
      );
      assert.equal(await store.repositoryExists(app), false);
      assert.equal(await store.repositoryExists(other), true);
      const again = await cli("repo_delete", ["app"], scaleOut(url));
      assert.equal(again.code, 1);
      assert.match(again.stderr, /Repository "app" is not known in s3:\/\/registry \(database /);
      const down = await cli("repo_delete", ["app"], scaleOut("postgres://x@127.0.0.1:9/x"));
      assert.equal(down.code, 1, down.stderr);
      assert.match(down.stderr, /^cannot use the database of s3:\/\/registry/);
    } finally {
      await sql.end();
      await lockSql.end();
    }
  },
);
