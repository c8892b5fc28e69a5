/**
 * The scale-out mode end to end: two registry processes (`main.ts`) over one S3 bucket (Ceph
 * RGW) and one PostgreSQL database, behind a proxy that sends each request to the other
 * replica: pushes (monolithic and chunked) and pulls whose requests alternate replicas, the
 * bytes streamed with Range (`storage.redirect.disable`) or, by default, redirected to a
 * presigned URL of the bucket; blob HEADs answered from PostgreSQL with no request to the
 * bucket (counted by a proxy in front of RGW), a blob deleted on A 404 on B at once and its
 * size's row gone with its bytes; an upload started on A that B finishes after A was killed
 * with SIGKILL; a tag moved on A read on B at once; one collection at a time across replicas;
 * events of each replica delivered, a killed replica's by the next one to start; the curl
 * flow through the proxy; start-up failures as one line. Each test has its own database and
 * its own root directory in the run's bucket. Outside CI the tests are ignored when RGW or
 * PostgreSQL cannot come up; in CI they fail.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { COLLECTION_LOCK } from "../../src/services/registry.ts";
import { connect } from "../../src/storage/postgres/client.ts";
import { tryExclusive } from "../../src/storage/postgres/locks.ts";
import { IN_CI } from "../helpers/clients.ts";
import { FaultProxy } from "../helpers/fault_proxy.ts";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from "../helpers/media_types.ts";
import { ociManifest } from "../helpers/manifests.ts";
import { testDatabase } from "../helpers/postgres.ts";
import { PROJECT_ROOT, randomBytes, sha256Digest } from "../helpers/registry.ts";
import { htpasswdFile } from "../auth/helpers.ts";
import { s3Tests, type TestBucket } from "../helpers/s3.ts";
import { type Replica, scaleOutEnv, spawnReplica } from "../helpers/scaleout.ts";
import { type TwoReplicas, twoReplicas } from "../helpers/replicas.ts";

const CURL_FLOW = fileURLToPath(new URL("./curl_flow.sh", import.meta.url));
const db = await testDatabase();
let roots = 0;

interface Cluster {
  readonly env: Record<string, string>;
  readonly databaseUrl: string;
}

/** Registers a test with its own database and root directory in the run's bucket. */
function register(
  bucket: () => Promise<TestBucket>,
  ignoreS3: boolean,
  name: string,
  fn: (cluster: Cluster) => Promise<void>,
): void {
  Deno.test({
    name,
    ignore: ignoreS3 || (db.url === null && !IN_CI),
    async fn() {
      if (db.url === null) throw new Error(`PostgreSQL is not available in CI: ${db.error}`);
      const b = await bucket();
      const databaseUrl = await db.another();
      const env = {
        ...scaleOutEnv(b, databaseUrl),
        REGISTRY_STORAGE_S3_ROOTDIRECTORY: `scaleout-${Date.now()}-${roots++}`,
      };
      await fn({ env, databaseUrl });
    },
  });
}

/** Two replicas over the test's bucket root and database, `extra` settings added. */
function pair(cluster: Cluster, extra: Record<string, string> = {}): Promise<TwoReplicas> {
  return twoReplicas({ backend: cluster, env: extra });
}

/** `deno task gc` (src/gc/cli.ts) with the replicas' settings. */
async function gcCommand(env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${PROJECT_ROOT}src/gc/cli.ts`],
    env: { NO_COLOR: "1", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** Polls `condition` every 50 ms until it holds; throws after `timeoutMs` naming `what`. */
async function poll(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const text = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

async function expectStatus(response: Response, status: number, what: string): Promise<void> {
  if (response.status !== status) {
    throw new Error(`${what}: ${response.status}, expected ${status}: ${await response.text()}`);
  }
}

type Fetch = (path: string, init?: RequestInit) => Promise<Response>;

const at = (base: string): Fetch => (path, init) =>
  fetch(`${base}${path}`, { redirect: "manual", ...init });

/** A monolithic push (POST ?digest= with the bytes). */
async function pushWhole(f: Fetch, name: string, bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await sha256Digest(bytes);
  const r = await f(`/v2/${name}/blobs/uploads/?digest=${digest}`, { method: "POST", body: bytes });
  await expectStatus(r, 201, "monolithic push");
  await r.body?.cancel();
  assert.equal(r.headers.get("docker-content-digest"), digest);
  return digest;
}

/** PATCHes one chunk at `offset` to a session's Location; returns the next Location. */
async function patch(
  f: Fetch,
  location: string,
  chunk: Uint8Array<ArrayBuffer>,
  offset: number,
): Promise<string> {
  const r = await f(location, {
    method: "PATCH",
    headers: {
      "content-type": "application/octet-stream",
      "content-range": `${offset}-${offset + chunk.length - 1}`,
    },
    body: chunk,
  });
  await expectStatus(r, 202, `PATCH at ${offset}`);
  await r.body?.cancel();
  assert.equal(r.headers.get("range"), `0-${offset + chunk.length - 1}`);
  return r.headers.get("location")!;
}

async function startSession(f: Fetch, name: string): Promise<string> {
  const r = await f(`/v2/${name}/blobs/uploads/`, { method: "POST" });
  await expectStatus(r, 202, "POST upload");
  await r.body?.cancel();
  return r.headers.get("location")!;
}

async function finish(f: Fetch, location: string, digest: string): Promise<void> {
  const r = await f(`${location}${location.includes("?") ? "&" : "?"}digest=${digest}`, {
    method: "PUT",
  });
  await expectStatus(r, 201, "PUT upload");
  await r.body?.cancel();
  assert.equal(r.headers.get("docker-content-digest"), digest);
}

async function putManifest(
  f: Fetch,
  name: string,
  reference: string,
  bytes: Uint8Array<ArrayBuffer>,
): Promise<void> {
  const r = await f(`/v2/${name}/manifests/${reference}`, {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: bytes,
  });
  await expectStatus(r, 201, `PUT manifest ${reference}`);
  await r.body?.cancel();
}

async function bytesOf(r: Response): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await r.arrayBuffer());
}

/** Pushes a config and a layer through `f` and a manifest naming them; its bytes and digest. */
async function pushImage(f: Fetch, name: string, tag: string) {
  const config = text({ architecture: "amd64", os: "linux", nonce: crypto.randomUUID() });
  const layer = randomBytes(4096);
  const parts = {
    config: {
      mediaType: OCI_CONFIG,
      digest: await pushWhole(f, name, config),
      size: config.length,
    },
    layers: [{ mediaType: OCI_LAYER, digest: await pushWhole(f, name, layer), size: layer.length }],
  };
  const manifest = await ociManifest(parts);
  await putManifest(f, name, tag, manifest.bytes);
  return manifest;
}

/** Runs main.ts with `env` until it exits (a start-up failure); its code and output. */
async function failedStart(env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${PROJECT_ROOT}main.ts`, "--port", "0"],
    env: { NO_COLOR: "1", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim();
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

Deno.test("scale-out: an unreachable database is one start-up line, exit 2, no secret", async () => {
  const run = await failedStart({
    REGISTRY_STORAGE_S3_ACCESSKEY: "access",
    REGISTRY_STORAGE_S3_SECRETKEY: "s3-secret-value",
    REGISTRY_STORAGE_S3_REGION: "us-east-1",
    REGISTRY_STORAGE_S3_REGIONENDPOINT: "http://127.0.0.1:9",
    REGISTRY_STORAGE_S3_BUCKET: "registry",
    REGISTRY_DATABASE_URL: "postgres://registry:db-pw-value@127.0.0.1:9/registry",
  });
  assert.equal(run.code, 2, run.stderr);
  assert.match(
    run.stderr,
    /^cannot use the database postgres:\/\/registry:\*{8}@127\.0\.0\.1:9\/registry \(database\.url\): /,
  );
  assert.equal(run.stderr.split("\n").length, 1, run.stderr);
  for (const secret of ["s3-secret-value", "db-pw-value"]) {
    assert.ok(!`${run.stdout}${run.stderr}`.includes(secret), secret);
  }
});

await s3Tests((bucket, ignore) => {
  register(
    bucket,
    ignore,
    "scale-out: a missing bucket or a wrong secret key is one start-up line, exit 2",
    async ({ env }) => {
      const missing = await failedStart({
        ...env,
        REGISTRY_STORAGE_S3_BUCKET: "no-such-bucket-here",
      });
      assert.equal(missing.code, 2, missing.stderr);
      assert.match(
        missing.stderr,
        /^cannot use the bucket s3:\/\/no-such-bucket-here \(storage\.s3\): .*NoSuchBucket/,
      );
      const wrong = await failedStart({
        ...env,
        REGISTRY_STORAGE_S3_SECRETKEY: "wrong-secret-key",
      });
      assert.equal(wrong.code, 2, wrong.stderr);
      assert.match(
        wrong.stderr,
        /^cannot use the bucket s3:\/\/\S+ \(storage\.s3\): .*SignatureDoesNotMatch/,
      );
      assert.ok(!wrong.stderr.includes("wrong-secret-key"));
      for (const run of [missing, wrong]) {
        assert.equal(run.stderr.split("\n").length, 1, run.stderr);
      }
    },
  );

  register(
    bucket,
    ignore,
    "scale-out: pushes (monolithic, chunked) and a pull through a proxy alternating two replicas",
    async (cluster) => {
      await using proxy = await pair(cluster, { REGISTRY_STORAGE_REDIRECT_DISABLE: "true" });
      const { a, b } = proxy;
      const sent = () => proxy.forwarded.map((r) => r.backend);
      const f = proxy.fetch;
      const name = "team/app";
      const config = text({ architecture: "amd64", os: "linux" });
      const configDigest = await pushWhole(f, name, config);
      // chunked: POST on one replica, each PATCH and the PUT on the other in turn
      const layer = randomBytes(6 * 1024 * 1024 + 123);
      const layerDigest = await sha256Digest(layer);
      let location = await startSession(f, name);
      const cut = [0, 2_000_000, 4_100_000, layer.length];
      for (let i = 0; i + 1 < cut.length; i++) {
        location = await patch(f, location, layer.slice(cut[i], cut[i + 1]), cut[i]);
      }
      await finish(f, location, layerDigest);
      const manifest = await ociManifest({
        config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
        layers: [{ mediaType: OCI_LAYER, digest: layerDigest, size: layer.length }],
      });
      await putManifest(f, name, "v1", manifest.bytes);
      assert.deepEqual(new Set(sent()), new Set([a.url, b.url]));
      for (let i = 1; i < sent().length; i++) assert.notEqual(sent()[i], sent()[i - 1]);

      // pull, every request to the other replica than the last
      for (let round = 0; round < 2; round++) {
        const m = await f(`/v2/${name}/manifests/v1`, { headers: { accept: OCI_MANIFEST } });
        await expectStatus(m, 200, "GET manifest");
        assert.equal(m.headers.get("docker-content-digest"), manifest.digest);
        assert.equal(await sha256Digest(await bytesOf(m)), manifest.digest);
        for (const [digest, size] of [[configDigest, config.length], [layerDigest, layer.length]]) {
          const head = await f(`/v2/${name}/blobs/${digest}`, { method: "HEAD" });
          await expectStatus(head, 200, "HEAD blob");
          assert.equal(head.headers.get("content-length"), String(size));
          assert.equal(head.headers.get("docker-content-digest"), digest);
          const blob = await f(`/v2/${name}/blobs/${digest}`);
          await expectStatus(blob, 200, "GET blob");
          assert.equal(await sha256Digest(await bytesOf(blob)), digest);
        }
      }
      const range = await f(`/v2/${name}/blobs/${layerDigest}`, {
        headers: { range: "bytes=5000000-5100000" },
      });
      await expectStatus(range, 206, "Range GET");
      assert.equal(range.headers.get("content-range"), `bytes 5000000-5100000/${layer.length}`);
      assert.deepEqual(await bytesOf(range), layer.slice(5_000_000, 5_100_001));
      const tags = await f(`/v2/${name}/tags/list`);
      assert.deepEqual(await tags.json(), { name, tags: ["v1"] });
      for (const replica of [a, b]) {
        const ready = await at(replica.url)("/readyz");
        await expectStatus(ready, 200, "/readyz (the bucket and the database)");
        await ready.body?.cancel();
      }
    },
  );

  register(
    bucket,
    ignore,
    "scale-out: a blob HEAD asks PostgreSQL, not the bucket; a blob deleted on A is 404 on B " +
      "at once, and collected with its row",
    async (cluster) => {
      // Both replicas reach RGW through a proxy that counts their S3 requests.
      const s3 = new FaultProxy(cluster.env.REGISTRY_STORAGE_S3_REGIONENDPOINT!);
      const sql = connect(cluster.databaseUrl, { max: 1 });
      try {
        await using replicas = await pair(cluster, {
          REGISTRY_STORAGE_S3_REGIONENDPOINT: s3.endpoint,
          REGISTRY_STORAGE_GC_GRACE: "0s",
        });
        const { a, b } = replicas;
        const name = "team/head";
        const bytes = randomBytes(100_000);
        const digest = await pushWhole(at(a.url), name, bytes);
        const objectKey = `blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}`;
        const objectRequests = () => s3.counts.lines.filter((line) => line.includes(objectKey));
        const rows = async () =>
          (await sql<{ size: string }[]>`select size from blobs where digest = ${digest}`)
            .map((row) => Number(row.size));
        assert.deepEqual(await rows(), [bytes.length], "the commit recorded the size");
        const head = async (replica: Replica) => {
          const r = await at(replica.url)(`/v2/${name}/blobs/${digest}`, { method: "HEAD" });
          await r.body?.cancel();
          return r;
        };
        s3.resetCounts();
        for (const replica of [a, b, a, b]) {
          const r = await head(replica);
          await expectStatus(r, 200, "HEAD blob");
          assert.equal(r.headers.get("content-length"), String(bytes.length));
          assert.equal(r.headers.get("docker-content-digest"), digest);
        }
        assert.deepEqual(objectRequests(), [], "a HEAD sent S3 requests for the blob");

        // A blob stored before the table (no row): the bucket answers, and no row is made.
        await sql`delete from blobs where digest = ${digest}`;
        await expectStatus(await head(b), 200, "HEAD of a blob without a row");
        assert.equal(objectRequests().length, 1, objectRequests().join("\n"));
        assert.deepEqual(await rows(), [], "a HEAD inserted a row");
        // The next push of the same bytes records it again.
        await pushWhole(at(b.url), name, bytes);
        assert.deepEqual(await rows(), [bytes.length]);

        const deleted = await at(a.url)(`/v2/${name}/blobs/${digest}`, { method: "DELETE" });
        await expectStatus(deleted, 202, "DELETE blob on A");
        await deleted.body?.cancel();
        await expectStatus(await head(b), 404, "HEAD on B just after the DELETE on A");
        // The collector deletes the row, then the bytes.
        const gc = await at(b.url)("/admin/gc?wait=true", { method: "POST" });
        await expectStatus(gc, 200, "POST /admin/gc");
        const report = await gc.json() as { counts: { blobs: number }; error?: string };
        assert.equal(report.error, undefined);
        assert.equal(report.counts.blobs, 1);
        assert.deepEqual(await rows(), []);
        s3.resetCounts();
        await expectStatus(await head(a), 404, "HEAD on A after the collection");
        assert.deepEqual(objectRequests(), [], "a HEAD of an unlinked blob asked the bucket");
        assert.deepEqual(replicas.errors(), []);
      } finally {
        await sql.end();
        await s3.close();
      }
    },
  );

  register(
    bucket,
    ignore,
    "scale-out: an upload started on A continues on B after A is killed with SIGKILL",
    async (cluster) => {
      await using replicas = await pair(cluster);
      const { a, b } = replicas;
      const name = "team/resume";
      const bytes = randomBytes(3 * 1024 * 1024 + 77);
      const digest = await sha256Digest(bytes);
      const first = 1024 * 1024 + 5;
      let location = await startSession(at(a.url), name);
      location = await patch(at(a.url), location, bytes.slice(0, first), 0);
      const killed = await a.kill("SIGKILL");
      assert.equal(killed.signal, "SIGKILL");
      // B knows where the session stands, takes the rest and commits the right digest
      const status = await at(b.url)(location);
      await expectStatus(status, 204, "GET upload status on B");
      assert.equal(status.headers.get("range"), `0-${first - 1}`);
      location = await patch(at(b.url), location, bytes.slice(first), first);
      await finish(at(b.url), location, digest);
      // redirected to the bucket (the default)
      const blob = await at(b.url)(`/v2/${name}/blobs/${digest}`);
      await expectStatus(blob, 307, "GET blob on B");
      await blob.body?.cancel();
      const bytesBack = await fetch(blob.headers.get("location")!);
      await expectStatus(bytesBack, 200, "GET of the presigned URL");
      assert.equal(await sha256Digest(await bytesOf(bytesBack)), digest);
    },
  );

  register(
    bucket,
    ignore,
    "scale-out: a tag moved on A is read on B at once",
    async (cluster) => {
      await using replicas = await pair(cluster);
      const { a, b } = replicas;
      const name = "team/tags";
      const one = await pushImage(at(a.url), name, "one");
      const two = await pushImage(at(b.url), name, "two");
      for (const target of [one, two, one, two]) {
        await putManifest(at(a.url), name, "latest", target.bytes);
        const head = await at(b.url)(`/v2/${name}/manifests/latest`, {
          method: "HEAD",
          headers: { accept: OCI_MANIFEST },
        });
        await expectStatus(head, 200, "HEAD tag on B");
        assert.equal(head.headers.get("docker-content-digest"), target.digest);
        const get = await at(b.url)(`/v2/${name}/manifests/latest`, {
          headers: { accept: OCI_MANIFEST },
        });
        assert.equal(await sha256Digest(await bytesOf(get)), target.digest);
      }
      const gone = await at(a.url)(`/v2/${name}/manifests/latest`, { method: "DELETE" });
      await expectStatus(gone, 202, "DELETE tag on A");
      await gone.body?.cancel();
      const missing = await at(b.url)(`/v2/${name}/manifests/latest`, { method: "HEAD" });
      assert.equal(missing.status, 404);
    },
  );

  register(
    bucket,
    ignore,
    "scale-out: one collection at a time; a replica finding another collecting says so",
    async (cluster) => {
      const { env, databaseUrl } = cluster;
      await using replicas = await pair(cluster);
      const { a, b } = replicas;
      const gc = async (replica: Replica) => {
        const r = await at(replica.url)("/admin/gc?wait=true", { method: "POST" });
        await expectStatus(r, 200, "POST /admin/gc");
        return await r.json() as { skipped?: string; error?: string };
      };
      // Another replica's collection, as the database sees it: the lock held by a session.
      const sql = connect(databaseUrl, { max: 2 });
      try {
        let release!: () => void;
        const held = new Promise<void>((resolve) => (release = resolve));
        let taken!: () => void;
        const holding = new Promise<void>((resolve) => (taken = resolve));
        const holder = tryExclusive(sql, COLLECTION_LOCK, async () => {
          taken();
          await held;
        });
        await holding;
        for (const replica of [a, b]) {
          assert.equal((await gc(replica)).skipped, "another replica is collecting");
        }
        const cli = await gcCommand(env);
        assert.equal(cli.code, 1, cli.stderr);
        assert.match(cli.stderr, /nothing collected: another replica is collecting/);
        release();
        assert.ok(await holder);
        const report = await gc(b);
        assert.equal(report.skipped, undefined);
        assert.equal(report.error, undefined);
        const alone = await gcCommand(env);
        assert.equal(alone.code, 0, alone.stderr);
        assert.equal(JSON.parse(alone.stdout).skipped, undefined);
      } finally {
        await sql.end();
      }
      assert.ok(a.output.some((line) => line.includes("another replica is collecting")));
    },
  );

  register(
    bucket,
    ignore,
    "scale-out: each replica delivers its events; a replica killed with events queued has " +
      "them delivered by the next replica that starts",
    async ({ env, databaseUrl }) => {
      // The receiver refuses (503) until told to accept; it records the pushed digests.
      let accepting = false;
      const received: { action: string; digest: string; repository: string }[] = [];
      const receiver = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (r) => {
        const body = await r.json() as {
          events: { action: string; target: { digest: string; repository: string } }[];
        };
        if (!accepting) return new Response("not yet", { status: 503 });
        for (const e of body.events) {
          received.push({
            action: e.action,
            digest: e.target.digest,
            repository: e.target.repository,
          });
        }
        return new Response(null, { status: 200 });
      });
      try {
        const hook = `[{name: hook, url: "http://127.0.0.1:${receiver.addr.port}/events", ` +
          "timeout: 2s, threshold: 1, backoff: 100ms}]";
        const withHook = { ...env, REGISTRY_NOTIFICATIONS_ENDPOINTS: hook };
        await using replicas = await twoReplicas({ backend: { env: withHook, databaseUrl } });
        const { a, b } = replicas;
        const onA = await pushWhole(at(a.url), "team/events", randomBytes(1000));
        const onB = await pushWhole(at(b.url), "team/events", randomBytes(1001));
        const killed = await a.kill("SIGKILL");
        assert.equal(killed.signal, "SIGKILL");
        accepting = true;
        const pushed = (digest: string) =>
          received.some((e) => e.action === "push" && e.digest === digest);
        await poll("B's push event", () => pushed(onB));
        assert.ok(!pushed(onA), "A was killed before it could deliver");
        await using c = await spawnReplica(withHook);
        await poll("A's push event, delivered by C", () => pushed(onA));
        assert.ok(c.output.some((line) => line.includes("undelivered events found")));
        // and new events of C go too
        const onC = await pushWhole(at(c.url), "team/events", randomBytes(1002));
        await poll("C's push event", () => pushed(onC));
      } finally {
        await receiver.shutdown();
      }
    },
  );

  register(
    bucket,
    ignore,
    "scale-out: two replicas starting at once on a new root share one token signing key",
    async ({ env }) => {
      await using htpasswd = await htpasswdFile({ alice: "alice-secret" });
      const auth = {
        ...env,
        REGISTRY_AUTH_HTPASSWD_PATH: htpasswd.path,
        REGISTRY_REGISTRY_AUTH_TOKEN_BUILTIN: "true",
        REGISTRY_AUTH_TOKEN_SERVICE: "scaleout",
        REGISTRY_REGISTRY_AUTH_ADMINS: "alice",
      };
      const started = await Promise.allSettled([spawnReplica(auth), spawnReplica(auth)]);
      const running = started.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
      try {
        for (const s of started) if (s.status === "rejected") throw s.reason;
        const [a, b] = running;
        const scope = "repository:team/auth:pull,push";
        const issued = await at(a.url)(`/token?service=scaleout&scope=${scope}`, {
          headers: { authorization: `Basic ${btoa("alice:alice-secret")}` },
        });
        await expectStatus(issued, 200, "GET /token on A");
        const { token } = await issued.json() as { token: string };
        const bearer = (f: Fetch): Fetch => (path, init = {}) => {
          const headers = new Headers(init.headers);
          headers.set("authorization", `Bearer ${token}`);
          return f(path, { ...init, headers });
        };
        const digest = await pushWhole(bearer(at(b.url)), "team/auth", randomBytes(500));
        const head = await bearer(at(a.url))(`/v2/team/auth/blobs/${digest}`, { method: "HEAD" });
        await expectStatus(head, 200, "HEAD on A with the token");
        const anonymous = await at(b.url)(`/v2/team/auth/blobs/${digest}`, { method: "HEAD" });
        assert.equal(anonymous.status, 401);
      } finally {
        for (const replica of running) await replica.kill();
      }
    },
  );

  register(
    bucket,
    ignore,
    "scale-out: tests/e2e/curl_flow.sh through the proxy alternating two replicas",
    async (cluster) => {
      await using proxy = await pair(cluster, { REGISTRY_STORAGE_REDIRECT_DISABLE: "true" });
      const { a, b } = proxy;
      const { code, stdout, stderr } = await new Deno.Command("bash", {
        args: [CURL_FLOW, proxy.url],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const out = new TextDecoder().decode(stdout);
      assert.equal(code, 0, `curl_flow.sh failed:\n${out}\n${new TextDecoder().decode(stderr)}`);
      const steps = out.split("\n").filter((line) => line.startsWith("ok "));
      assert.equal(steps.length, 13, out);
      const sent = proxy.forwarded.map((r) => r.backend);
      assert.ok(sent.filter((url) => url === a.url).length > 5);
      assert.ok(sent.filter((url) => url === b.url).length > 5);
    },
  );

  register(
    bucket,
    ignore,
    "scale-out: a blob GET answers 307 to a presigned URL of the bucket; HEAD answers itself",
    async (cluster) => {
      await using proxy = await pair(cluster);
      const name = "team/redirect";
      const bytes = randomBytes(100_000);
      const digest = await pushWhole(proxy.fetch, name, bytes);
      const head = await proxy.fetch(`/v2/${name}/blobs/${digest}`, { method: "HEAD" });
      await expectStatus(head, 200, "HEAD");
      assert.equal(head.headers.get("content-length"), String(bytes.length));
      const get = await proxy.fetch(`/v2/${name}/blobs/${digest}`);
      await expectStatus(get, 307, "GET");
      await get.body?.cancel();
      const location = get.headers.get("location")!;
      assert.match(location, /X-Amz-Signature=/);
      const direct = await fetch(location);
      assert.equal(await sha256Digest(await bytesOf(direct)), digest);
      const ranged = await fetch(location, { headers: { range: "bytes=10-19" } });
      assert.equal(ranged.status, 206);
      assert.deepEqual(await bytesOf(ranged), bytes.slice(10, 20));
    },
  );
});
