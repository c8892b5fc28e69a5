/**
 * `deno task migrate-to-s3`: a store pushed through the API into a data root (an index with
 * children, a referrer, a layer shared by two repositories, a nested repository, a 9 MiB
 * layer) is moved into a fresh S3 prefix (Ceph RGW) and a fresh PostgreSQL database, then read
 * back through `S3Driver` and `PostgresMetadataStore` (every blob's size recorded). Also: a re-run copies nothing, an
 * interrupted run resumes, a damaged source blob is reported and not copied, a dry run writes
 * nothing, and a running registry is refused. Outside CI the tests needing S3 or PostgreSQL
 * are ignored when those cannot be brought up.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { migrate, TEMP_AREA } from "../../src/maintenance/migrate.ts";
import { main, resolveTarget } from "../../src/maintenance/migrate_cli.ts";
import { DriverBlobStore } from "../../src/storage/blobs.ts";
import type { StorageDriver } from "../../src/storage/driver.ts";
import { FsDriver } from "../../src/storage/drivers/fs.ts";
import { S3Driver } from "../../src/storage/drivers/s3.ts";
import { Activity } from "../../src/storage/activity.ts";
import { blobKey, eventKey } from "../../src/storage/keys.ts";
import { LocalMetadataStore } from "../../src/storage/metadata/local.ts";
import { PostgresMetadataStore } from "../../src/storage/metadata/postgres.ts";
import { connect, type Sql } from "../../src/storage/postgres/client.ts";
import type { Digest, RepositoryName, Tag } from "../../src/types/oci.ts";
import { IN_CI } from "../helpers/clients.ts";
import { jsonBytes } from "../helpers/manifests.ts";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from "../helpers/media_types.ts";
import { testDatabase } from "../helpers/postgres.ts";
import { pushBlob, randomBytes, tempRegistry } from "../helpers/registry.ts";
import { s3Tests, type TestBucket } from "../helpers/s3.ts";
import { buildStore, type BuiltStore, keysUnder } from "./fixtures.ts";

const BIG = 9 * 1024 * 1024 + 123;
const APP = "app" as RepositoryName;
const OTHER = "other" as RepositoryName;
/**
 * When the journal planted in the source says the big layer was touched: later than any touch
 * of the registry that built the store (which may have flushed batches of its own).
 */
const TOUCHED_AT = Date.parse("2100-01-02T03:04:05Z");
const EVENT = '{"events":[{"action":"push"}]}';

interface Source {
  readonly root: string;
  readonly built: BuiltStore;
  readonly big: Digest;
}

/** Pushes the fixture store and a 9 MiB layer (repository `big`, tag `v1`) into a new root. */
async function buildSource(): Promise<Source> {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "registry-migrate-" }));
  await using reg = await tempRegistry({ dataDir: root });
  const built = await buildStore(reg);
  const bigBytes = randomBytes(BIG);
  const big = await pushBlob(reg, "big", bigBytes) as Digest;
  const configBytes = new TextEncoder().encode('{"architecture":"amd64","os":"linux"}');
  const config = { mediaType: OCI_CONFIG, digest: await pushBlob(reg, "big", configBytes) };
  const manifest = await jsonBytes({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { ...config, size: configBytes.length },
    layers: [{ mediaType: OCI_LAYER, digest: big, size: BIG }],
  });
  const put = await reg.fetch("/v2/big/manifests/v1", {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: manifest.bytes,
  });
  await put.body?.cancel();
  assert.equal(put.status, 201);
  // An activity journal and an undelivered event, as a registry leaves them.
  const activity = new Activity(new FsDriver(root), { now: () => TOUCHED_AT });
  activity.touch(big);
  activity.pulled("big", manifest.digest as Digest);
  await activity.flush();
  await new FsDriver(root).put(eventKey("hook", 1), EVENT);
  // An upload in progress, which is not copied.
  const started = await reg.fetch("/v2/app/blobs/uploads/", { method: "POST" });
  await started.body?.cancel();
  assert.equal(started.status, 202);
  return { root, built, big };
}

/** A copy of the source root (for tests that damage it). */
async function copyRoot(root: string): Promise<string> {
  const copy = await Deno.makeTempDir({ prefix: "registry-migrate-copy-" });
  const out = await new Deno.Command("cp", { args: ["-a", `${root}/.`, copy] }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return await Deno.realPath(copy);
}

/** A fresh target: a prefix of the run's bucket and a new database. */
interface Target extends AsyncDisposable {
  readonly prefix: string;
  readonly driver: S3Driver;
  readonly databaseUrl: string;
  readonly sql: Sql;
  readonly env: Record<string, string>;
}

function freshTarget(bucket: TestBucket, databaseUrl: string): Target {
  const prefix = `migrate-${crypto.randomUUID()}`;
  const driver = new S3Driver({ ...bucket.options, rootdirectory: prefix });
  const sql = connect(databaseUrl, { max: 4 });
  const o = bucket.options;
  return {
    prefix,
    driver,
    databaseUrl,
    sql,
    env: {
      REGISTRY_STORAGE_S3_ACCESSKEY: o.accesskey,
      REGISTRY_STORAGE_S3_SECRETKEY: o.secretkey,
      REGISTRY_STORAGE_S3_REGIONENDPOINT: o.regionendpoint!,
      REGISTRY_STORAGE_S3_BUCKET: o.bucket,
      REGISTRY_DATABASE_URL: databaseUrl,
    },
    async [Symbol.asyncDispose]() {
      await sql.end();
    },
  };
}

/** Runs the command, collecting its output. */
async function runCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, env, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

async function hashOf(driver: StorageDriver, key: string): Promise<string | null> {
  const reader = await driver.read(key);
  if (reader === null) return null;
  const hash = createHash("sha256");
  for await (const chunk of reader.stream) hash.update(chunk);
  return `sha256:${hash.digest("hex")}`;
}

async function digestsOf(driver: StorageDriver): Promise<string[]> {
  const out: string[] = [];
  for await (const digest of new DriverBlobStore(driver).list()) out.push(digest);
  return out.sort();
}

/** Asserts that the target holds exactly the source's blobs (hashed) and metadata. */
async function assertSameStore(source: FsDriver, target: Target): Promise<void> {
  const sourceBlobs = await digestsOf(source);
  assert.deepEqual(await digestsOf(target.driver), sourceBlobs);
  for (const digest of sourceBlobs) {
    assert.equal(await hashOf(target.driver, blobKey(digest as Digest)), digest, digest);
  }
  const from = new LocalMetadataStore(source);
  const to = new PostgresMetadataStore(target.sql);
  const names = await from.listRepositories();
  assert.deepEqual([...await to.listRepositories()].sort(), [...names].sort());
  for (const name of names) {
    assert.deepEqual(await to.listLayers(name), await from.listLayers(name), name);
    const revisions = await from.listRevisions(name);
    assert.deepEqual(await to.listRevisions(name), revisions, name);
    for (const digest of revisions) {
      assert.deepEqual(await to.getRevision(name, digest), await from.getRevision(name, digest));
      assert.deepEqual(
        await to.listReferrers(name, digest),
        await from.listReferrers(name, digest),
      );
    }
    const tags = await from.listTags(name);
    assert.deepEqual([...(await to.listTags(name))!].sort(), [...tags!].sort(), name);
    for (const tag of tags!) {
      assert.equal(await to.getTag(name, tag), await from.getTag(name, tag), `${name}:${tag}`);
    }
  }
}

const db = await testDatabase();
const source = await buildSource();
Deno.test.afterAll(() => Deno.remove(source.root, { recursive: true }));

await s3Tests((bucket, ignore) => {
  const needs = { ignore: ignore || (db.url === null && !IN_CI) };

  Deno.test({
    name: "migrate-to-s3: every blob, tag, manifest, link and referrer; a re-run copies nothing",
    ...needs,
    async fn() {
      await using target = freshTarget(await bucket(), await db.another());
      const fs = new FsDriver(source.root);
      const first = await runCli(
        ["--data", source.root, "--s3-root", target.prefix, "--jobs", "3"],
        target.env,
      );
      assert.equal(first.code, 0, first.err.join("\n"));
      assert.deepEqual(first.out, []);
      const text = first.err.join("\n");
      assert.match(text, /repositories 4; tags \d+ \(copied \d+, already there 0\)/);
      assert.match(text, /verified: 18 blobs re-read from the target and hashed, 5 tags resolve/);
      assert.match(text, /\n1 upload sessions in progress not copied/);
      assert.deepEqual(await target.driver.list("uploads"), []);
      assert.ok(!text.includes(target.env.REGISTRY_STORAGE_S3_SECRETKEY), "secret printed");
      assert.ok(!text.includes(target.env.REGISTRY_STORAGE_S3_ACCESSKEY), "key printed");
      await assertSameStore(fs, target);
      // Every blob's size is recorded, as the replicas answer a HEAD from it.
      const recorded = await target.sql<{ digest: string; size: string }[]>`
        select digest::text as digest, size from blobs order by digest`;
      const want = [];
      for (const digest of await digestsOf(fs)) {
        want.push({ digest, size: (await fs.stat(blobKey(digest as Digest)))!.size });
      }
      assert.equal(want.length, 18);
      assert.deepEqual(recorded.map((r) => ({ digest: r.digest, size: Number(r.size) })), want);

      // What the fixture pushed, read back from PostgreSQL and S3.
      const meta = new PostgresMetadataStore(target.sql);
      const { app, shared, other } = source.built;
      assert.deepEqual(
        (await meta.getRevision(APP, app.index.digest as Digest))?.refs,
        [app.image1.digest, app.image2.digest],
      );
      assert.equal(await meta.getTag(APP, "multi" as Tag), app.index.digest);
      const referrers = await meta.listReferrers(APP, app.image1.digest as Digest);
      assert.equal(referrers.length, 1);
      assert.equal((JSON.parse(referrers[0]) as { digest: string }).digest, app.referrer.digest);
      assert.ok(await meta.hasLayer(APP, shared.digest as Digest));
      assert.ok(await meta.hasLayer(OTHER, shared.digest as Digest));
      assert.equal(await meta.getTag(OTHER, "latest" as Tag), other.digest);
      assert.equal((await target.driver.stat(blobKey(source.big)))?.size, BIG);
      assert.deepEqual(await target.driver.list(TEMP_AREA), []);
      for (const key of [...await keysUnder(fs, "gc/activity"), ...await keysUnder(fs, "events")]) {
        assert.deepEqual(await target.driver.get(key), await fs.get(key), key);
      }
      const journal = new Activity(target.driver);
      await journal.load();
      assert.equal(journal.lastTouch(source.big), TOUCHED_AT);
      assert.equal(
        new TextDecoder().decode((await target.driver.get(eventKey("hook", 1)))!),
        EVENT,
      );

      // Again: everything is there and verified, nothing is copied.
      const again = await migrate({
        source: fs,
        target: target.driver,
        targetMeta: meta,
      });
      assert.deepEqual(again.findings, []);
      assert.equal(again.blobs.copied, 0);
      assert.equal(again.blobs.present, 18);
      assert.equal(again.verifiedBlobs, 18);
      for (const t of [again.links, again.manifests, again.referrers, again.tags, again.journal]) {
        assert.equal(t.copied, 0);
        assert.equal(t.present, t.total);
      }
      assert.equal(again.verifiedTags, 5);
    },
  });

  Deno.test({
    name: "migrate-to-s3: an interrupted run, run again, copies the rest and verifies",
    ...needs,
    async fn() {
      await using target = freshTarget(await bucket(), await db.another());
      const fs = new FsDriver(source.root);
      const meta = await PostgresMetadataStore.open(target.sql);
      const failing = failAfterBlobWrites(target.driver, 5);
      await assert.rejects(
        migrate({ source: fs, target: failing, targetMeta: meta, jobs: 1 }),
        /injected failure/,
      );
      assert.equal((await digestsOf(target.driver)).length, 5);
      assert.deepEqual(await meta.listRepositories(), []);

      const resumed = await migrate({ source: fs, target: target.driver, targetMeta: meta });
      assert.deepEqual(resumed.findings, []);
      assert.equal(resumed.blobs.present, 5);
      assert.equal(resumed.blobs.copied, 13);
      assert.equal(resumed.verifiedBlobs, 18);
      assert.equal(resumed.verifiedTags, 5);
      assert.deepEqual(await target.driver.list(TEMP_AREA), []);
      await assertSameStore(fs, target);
    },
  });

  Deno.test({
    name: "migrate-to-s3: a large blob interrupted mid-copy leaves no blob, then copies whole",
    ...needs,
    async fn() {
      await using target = freshTarget(await bucket(), await db.another());
      const fs = new FsDriver(source.root);
      const meta = await PostgresMetadataStore.open(target.sql);
      // The move of the assembled large blob fails: nothing may appear at its key.
      const failing = failAfterBlobWrites(target.driver, 0, "move");
      await assert.rejects(
        migrate({ source: fs, target: failing, targetMeta: meta, jobs: 1 }),
        /injected failure/,
      );
      assert.equal(await target.driver.stat(blobKey(source.big)), null);
      const resumed = await migrate({ source: fs, target: target.driver, targetMeta: meta });
      assert.deepEqual(resumed.findings, []);
      assert.equal(await hashOf(target.driver, blobKey(source.big)), source.big);
      assert.deepEqual(await target.driver.list(TEMP_AREA), []);
    },
  });

  Deno.test({
    name: "migrate-to-s3: damaged source blobs (small, large) and a referrer entry the database " +
      "refuses are reported, not copied",
    ...needs,
    async fn() {
      const root = await copyRoot(source.root);
      try {
        const small = source.built.app.image1.layers[0].digest as Digest;
        for (const digest of [small, source.big]) {
          const path = join(root, blobKey(digest));
          const bytes = await Deno.readFile(path);
          bytes[100] ^= 0x01;
          await Deno.writeFile(path, bytes);
        }
        // A referrer entry that is not JSON: PostgreSQL refuses it.
        const subject = source.built.app.image2.digest.replace(":", "/");
        const referrer = source.built.app.referrer.digest.replace(":", "-");
        const entry = join(root, "repositories/app/_referrers", subject, referrer);
        await Deno.mkdir(join(entry, ".."), { recursive: true });
        await Deno.writeTextFile(entry, "not json");
        await using target = freshTarget(await bucket(), await db.another());
        const ran = await runCli(["--data", root, "--s3-root", target.prefix], target.env);
        assert.equal(ran.code, 1, ran.err.join("\n"));
        assert.deepEqual(
          ran.out.map((line) => line.split("\t").slice(0, 2).join(" ")).sort(),
          [
            `corrupt-source ${small}`,
            `corrupt-source ${source.big}`,
            `rejected-by-target app referrer ${source.built.app.referrer.digest} of ${source.built.app.image2.digest}`,
            `metadata-mismatch app referrers of ${source.built.app.image2.digest}`,
          ].sort(),
        );
        assert.match(ran.err.join("\n"), /4 findings: the move is not complete/);
        assert.equal(await target.driver.stat(blobKey(small)), null);
        assert.equal(await target.driver.stat(blobKey(source.big)), null);
        assert.equal((await digestsOf(target.driver)).length, 16);
        // The other blobs and all the metadata are there.
        assert.equal(
          await new PostgresMetadataStore(target.sql).getTag(APP, "v1" as Tag),
          source.built.app.image1.digest,
        );
      } finally {
        await Deno.remove(root, { recursive: true });
      }
    },
  });

  Deno.test({
    name: "migrate-to-s3: a damaged copy in the target is copied again; extra metadata fails",
    ...needs,
    async fn() {
      await using target = freshTarget(await bucket(), await db.another());
      const fs = new FsDriver(source.root);
      const meta = await PostgresMetadataStore.open(target.sql);
      assert.deepEqual(
        (await migrate({ source: fs, target: target.driver, targetMeta: meta })).findings,
        [],
      );
      // The same size, other bytes: only a re-read and hash can tell.
      const layer = source.built.shared.digest as Digest;
      const size = (await target.driver.stat(blobKey(layer)))!.size;
      await target.driver.put(blobKey(layer), randomBytes(size));
      await meta.putTag(OTHER, "stray" as Tag, source.built.other.digest as Digest);
      const ran = await runCli(["--data", source.root, "--s3-root", target.prefix], target.env);
      assert.equal(ran.code, 1, ran.err.join("\n"));
      assert.deepEqual(ran.out, [
        "metadata-mismatch\tother tags\t: only in the target: stray",
      ]);
      assert.match(ran.err.join("\n"), /blobs 18 \(copied 1, already there 17\)/);
      assert.equal(await hashOf(target.driver, blobKey(layer)), layer);
    },
  });

  Deno.test({
    name: "migrate-to-s3: a copy that re-reads wrong is reported and deleted; a re-run copies it",
    ...needs,
    async fn() {
      await using target = freshTarget(await bucket(), await db.another());
      const fs = new FsDriver(source.root);
      const meta = await PostgresMetadataStore.open(target.sql);
      const layer = source.built.shared.digest as Digest;
      const first = await migrate({
        source: fs,
        target: misreading(target.driver, blobKey(layer)),
        targetMeta: meta,
      });
      assert.deepEqual(first.findings.map((f) => `${f.kind} ${f.subject}`), [
        `blob-mismatch ${layer}`,
      ]);
      assert.equal(first.blobs.copied, 17);
      assert.equal(await target.driver.stat(blobKey(layer)), null);
      const again = await migrate({ source: fs, target: target.driver, targetMeta: meta });
      assert.deepEqual(again.findings, []);
      assert.equal(again.blobs.copied, 1);
      assert.equal(await hashOf(target.driver, blobKey(layer)), layer);
    },
  });

  Deno.test({
    name: "migrate-to-s3: --dry-run counts what would be copied and writes nothing",
    ...needs,
    async fn() {
      await using target = freshTarget(await bucket(), await db.another());
      const ran = await runCli(
        ["--dry-run", "--data", source.root, "--s3-root", target.prefix],
        target.env,
      );
      assert.equal(ran.code, 0, ran.err.join("\n"));
      const text = ran.err.join("\n");
      assert.match(text, /blobs 18 \(to copy 18, already there 0\)/);
      assert.match(text, /tags 5 \(to copy 5, already there 0\)/);
      // The registry that built the store may have flushed activity batches of its own.
      const fs = new FsDriver(source.root);
      const journal = [
        ...await keysUnder(fs, "gc/activity"),
        ...await keysUnder(fs, "events"),
      ].length;
      assert.ok(journal >= 2);
      assert.match(text, new RegExp(`journal and event objects ${journal} \\(to copy ${journal},`));
      assert.match(text, /dry run: nothing written/);
      assert.deepEqual(await target.driver.list(""), []);
      const tables = await target.sql`select to_regclass('repositories') as t`;
      assert.equal(tables[0].t, null);
    },
  });
});

Deno.test("migrate-to-s3: refuses while a registry holds the data root", async () => {
  await using _reg = await tempRegistry({ dataDir: source.root });
  const ran = await runCli(["--data", source.root, "--bucket", "b"], {
    REGISTRY_STORAGE_S3_ACCESSKEY: "a",
    REGISTRY_STORAGE_S3_SECRETKEY: "s",
    REGISTRY_DATABASE_URL: "postgres://u:p@127.0.0.1:1/d",
  });
  assert.equal(ran.code, 2);
  assert.match(ran.err.join("\n"), /in use by another registry process.*stop the registry/);
});

Deno.test("migrate-to-s3: a source configuration naming the target is pointed elsewhere", async () => {
  const file = await Deno.makeTempFile({ suffix: ".yml" });
  try {
    await Deno.writeTextFile(file, "storage:\n  s3:\n    bucket: b\n");
    const ran = await runCli(["--config", file], {});
    assert.equal(ran.code, 2);
    assert.match(
      ran.err.join("\n"),
      /storage\.s3.*give the S3 and PostgreSQL ones with --target-config/,
    );
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("migrate-to-s3: target settings from flags, then variables, then the file", async () => {
  const file = await Deno.makeTempFile({ suffix: ".yml" });
  try {
    await Deno.writeTextFile(
      file,
      [
        "storage:",
        "  s3:",
        "    accesskey: file-key",
        "    secretkey: file-secret",
        "    bucket: file-bucket",
        "    region: eu-west-1",
        "    regionendpoint: http://file:7480",
        "database:",
        "  url: postgres://file/db",
      ].join("\n"),
    );
    const target = resolveTarget({ "target-config": file, bucket: "flag-bucket" }, {
      REGISTRY_STORAGE_S3_SECRETKEY: "env-secret",
      REGISTRY_STORAGE_S3_BUCKET: "env-bucket",
    });
    assert.equal(target.s3.accesskey, "file-key");
    assert.equal(target.s3.secretkey, "env-secret");
    assert.equal(target.s3.bucket, "flag-bucket");
    assert.equal(target.s3.region, "eu-west-1");
    assert.equal(target.s3.regionendpoint, "http://file:7480");
    assert.equal(target.databaseUrl, "postgres://file/db");
    assert.throws(
      () => resolveTarget({ bucket: "b" }, { REGISTRY_STORAGE_S3_ACCESSKEY: "a" }),
      /No storage\.s3\.secretkey for the target: set REGISTRY_STORAGE_S3_SECRETKEY/,
    );
    assert.throws(
      () =>
        resolveTarget({ bucket: "b" }, {
          REGISTRY_STORAGE_S3_ACCESSKEY: "a",
          REGISTRY_STORAGE_S3_SECRETKEY: "s",
        }),
      /No database\.url for the target: set REGISTRY_DATABASE_URL/,
    );
  } finally {
    await Deno.remove(file);
  }
});

/**
 * The driver, except that once `n` blob writes (puts or moves to a `blobs/` key; only moves
 * with `only: "move"`) succeeded, the next one fails.
 */
function failAfterBlobWrites(
  driver: StorageDriver,
  n: number,
  only?: "move",
): StorageDriver {
  let writes = 0;
  return new Proxy(driver, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      if ((property === "put" && only === undefined) || property === "move") {
        return async (...args: string[]) => {
          const key = property === "put" ? args[0] : args[1];
          if (key.startsWith("blobs/") && writes++ >= n) throw new Error("injected failure");
          return await value.apply(target, args);
        };
      }
      return value.bind(target);
    },
  });
}

/** The driver, except that reads of `key` give its bytes with the first one flipped. */
function misreading(driver: StorageDriver, key: string): StorageDriver {
  return new Proxy(driver, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      if (property !== "read") return value.bind(target);
      return async (k: string, span?: { start: number; length: number }) => {
        const reader = await target.read(k, span);
        if (reader === null || k !== key) return reader;
        let first = true;
        const flip = new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            if (first && chunk.length > 0) {
              chunk = chunk.slice();
              chunk[0] ^= 0xff;
              first = false;
            }
            controller.enqueue(chunk);
          },
        });
        return { size: reader.size, stream: reader.stream.pipeThrough(flip) };
      };
    },
  });
}
