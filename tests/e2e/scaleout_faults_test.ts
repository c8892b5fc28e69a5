/**
 * The scale-out mode when PostgreSQL restarts mid-traffic: two replicas (`main.ts`) over one
 * bucket (Ceph RGW) and a PostgreSQL cluster this test owns (its own folder and port, brought
 * up and stopped through `scripts/postgres.sh` with REGISTRY_PG_DIR and REGISTRY_PG_PORT, so no
 * other cluster is touched), behind a round-robin proxy, with pushes and pulls running. The
 * database is stopped twice: a fast shutdown, then a SIGKILL of the postmaster (its backends
 * die with it, the next start recovers). While it is down every request answers within a
 * bound, with 503 and Retry-After where it needs the database, never a 500 or a hang; once it is
 * back the same replica processes serve again with no restart. At the end every push the
 * registry acknowledged pulls whole (manifest and blobs, digests checked), and no tag in the
 * database names a manifest the repository does not hold.
 *
 * Outside CI the test is ignored when RGW or PostgreSQL cannot be brought up; in CI it fails.
 */

import assert from "node:assert/strict";
import { connect } from "../../src/storage/postgres/client.ts";
import { IN_CI } from "../helpers/clients.ts";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from "../helpers/media_types.ts";
import { ociManifest } from "../helpers/manifests.ts";
import { randomBytes, sha256Digest } from "../helpers/registry.ts";
import { OwnCluster, postgresPossible } from "../helpers/postgres.ts";
import { s3Tests } from "../helpers/s3.ts";
import { type Replica, roundRobin, scaleOutEnv, spawnReplica } from "../helpers/scaleout.ts";

/** The longest any one request may take, the database up or down. */
const REQUEST_BOUND_MS = 20_000;
/** The longest the service may take to come back once the database is up again. */
const RECOVERY_BOUND_MS = 60_000;

/** An image the registry acknowledged (its manifest PUT answered 201). */
interface Pushed {
  readonly name: string;
  readonly tag: string;
  readonly digest: string;
  readonly manifest: Uint8Array<ArrayBuffer>;
  readonly blobs: ReadonlyMap<string, Uint8Array<ArrayBuffer>>;
}

/** What the traffic saw: answers per status, and every answer that breaks the rules. */
class Ledger {
  readonly statuses = new Map<number, number>();
  readonly broken: string[] = [];
  /** 503 answers (each had Retry-After), counted per phase. */
  unavailable = 0;

  /** Records an answer of `what`; `ok` lists the statuses it may have besides 503. */
  async check(what: string, response: Response, ok: readonly number[]): Promise<boolean> {
    this.statuses.set(response.status, (this.statuses.get(response.status) ?? 0) + 1);
    if (ok.includes(response.status)) return true;
    const body = await response.text().catch(() => "");
    if (response.status === 503) {
      if (response.headers.get("retry-after") === null) {
        this.broken.push(`${what}: 503 without Retry-After: ${body}`);
      }
      this.unavailable++;
    } else {
      this.broken.push(`${what}: ${response.status}: ${body.slice(0, 300)}`);
    }
    return false;
  }
}

/** `fetch` through `base` with the request bound; a timeout is recorded as a hang. */
function bounded(base: string, ledger: Ledger) {
  return async (path: string, init: RequestInit = {}): Promise<Response | null> => {
    const started = Date.now();
    try {
      return await fetch(`${base}${path}`, {
        redirect: "manual",
        ...init,
        signal: AbortSignal.timeout(REQUEST_BOUND_MS),
      });
    } catch (error) {
      ledger.broken.push(
        `${init.method ?? "GET"} ${path}: no answer after ${Date.now() - started} ms: ${error}`,
      );
      return null;
    }
  };
}

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

/** Pushes one image (config, layer, manifest by tag); the image when acknowledged, else null. */
async function pushImage(
  f: ReturnType<typeof bounded>,
  ledger: Ledger,
  name: string,
  tag: string,
): Promise<Pushed | null> {
  const config = json({ architecture: "amd64", os: "linux", nonce: crypto.randomUUID() });
  const layer = randomBytes(2048 + Math.floor(Math.random() * 4096));
  const blobs = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const bytes of [config, layer]) {
    const digest = await sha256Digest(bytes);
    const r = await f(`/v2/${name}/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      body: bytes,
    });
    if (r === null || !(await ledger.check(`push blob ${name}`, r, [201]))) return null;
    await r.body?.cancel();
    blobs.set(digest, bytes);
  }
  const [configDigest, layerDigest] = [...blobs.keys()];
  const manifest = await ociManifest({
    config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
    layers: [{ mediaType: OCI_LAYER, digest: layerDigest, size: layer.length }],
  });
  const r = await f(`/v2/${name}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: manifest.bytes,
  });
  if (r === null || !(await ledger.check(`push manifest ${name}:${tag}`, r, [201]))) return null;
  await r.body?.cancel();
  return { name, tag, digest: manifest.digest, manifest: manifest.bytes, blobs };
}

/** Pulls `image` by tag through `f`: true when whole, false on a 503; else a broken entry. */
async function pullImage(
  f: ReturnType<typeof bounded>,
  ledger: Ledger,
  image: Pushed,
): Promise<boolean> {
  const what = `pull ${image.name}:${image.tag}`;
  const r = await f(`/v2/${image.name}/manifests/${image.tag}`, {
    headers: { accept: OCI_MANIFEST },
  });
  if (r === null || !(await ledger.check(what, r, [200]))) return false;
  const bytes = new Uint8Array(await r.arrayBuffer());
  if (await sha256Digest(bytes) !== image.digest) {
    ledger.broken.push(`${what}: the tag names another manifest`);
    return false;
  }
  for (const [digest, expected] of image.blobs) {
    const b = await f(`/v2/${image.name}/blobs/${digest}`);
    if (b === null || !(await ledger.check(`${what} blob`, b, [200, 307]))) return false;
    let body: Uint8Array<ArrayBuffer>;
    if (b.status === 307) {
      await b.body?.cancel();
      // The presigned URL of the bucket: no database on that path.
      const direct = await fetch(b.headers.get("location")!, {
        signal: AbortSignal.timeout(REQUEST_BOUND_MS),
      });
      if (!(await ledger.check(`${what} blob from the bucket`, direct, [200]))) return false;
      body = new Uint8Array(await direct.arrayBuffer());
    } else {
      body = new Uint8Array(await b.arrayBuffer());
    }
    if (body.length !== expected.length || await sha256Digest(body) !== digest) {
      ledger.broken.push(`${what}: blob ${digest} is not whole (${body.length} bytes)`);
      return false;
    }
  }
  return true;
}

/** Polls `condition` (async) until it holds; throws naming `what` after `ms`. */
async function until(what: string, condition: () => Promise<boolean>, ms: number) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

await s3Tests((bucket, ignoreS3) => {
  Deno.test({
    name: "scale-out faults: PostgreSQL stopped (fast) and killed (-9) mid-traffic: 503s, " +
      "then service back with no restart, every acknowledged image whole, no dangling tag",
    ignore: ignoreS3 || (!IN_CI && !postgresPossible()),
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const b = await bucket();
      const cluster = new OwnCluster();
      const replicas: Replica[] = [];
      try {
        await cluster.up();
        const env = {
          ...scaleOutEnv(b, cluster.url),
          REGISTRY_STORAGE_S3_ROOTDIRECTORY: `faults-${Date.now()}`,
        };
        replicas.push(await spawnReplica(env));
        replicas.push(await spawnReplica(env));
        await using proxy = roundRobin(() => replicas.map((r) => r.url));
        const ledger = new Ledger();
        const f = bounded(proxy.url, ledger);
        const pushed: Pushed[] = [];
        let stop = false;
        let rounds = 0;

        // Three workers, each pushing images to its repository and pulling back what was
        // acknowledged (any worker's), until told to stop.
        const worker = async (w: number) => {
          for (let n = 0; !stop; n++) {
            rounds++;
            const image = await pushImage(f, ledger, `faults/w${w}`, `t${n}`);
            if (image !== null) pushed.push(image);
            if (pushed.length > 0) {
              await pullImage(f, ledger, pushed[Math.floor(Math.random() * pushed.length)]);
            }
            // Keep going at a steady pace when everything answers 503 at once.
            if (image === null) await new Promise((resolve) => setTimeout(resolve, 20));
          }
        };
        const workers = Promise.all([0, 1, 2].map(worker));
        try {
          await until(
            "pushes before the first fault",
            () => Promise.resolve(pushed.length >= 6),
            60_000,
          );

          for (const fault of ["fast shutdown", "SIGKILL of the postmaster"] as const) {
            const before = { unavailable: ledger.unavailable, pushed: pushed.length };
            if (fault === "fast shutdown") await cluster.stopFast();
            else await cluster.killPostmaster();

            // Down: a pull of an acknowledged image answers 503 with Retry-After, in bound.
            const probe = pushed[0];
            for (const replica of replicas) {
              const g = bounded(replica.url, ledger);
              const started = Date.now();
              const r = await g(`/v2/${probe.name}/manifests/${probe.tag}`, {
                headers: { accept: OCI_MANIFEST },
              });
              assert.ok(r !== null, `${fault}: no answer from ${replica.url}`);
              const body = await r.text();
              assert.equal(r.status, 503, `${fault}: ${r.status} ${body}`);
              assert.ok(r.headers.get("retry-after"), `${fault}: no Retry-After`);
              assert.match(body, /UNKNOWN/);
              assert.ok(Date.now() - started < REQUEST_BOUND_MS);
              // A push of a manifest too (its blobs are in the bucket already).
              const put = await g(`/v2/${probe.name}/manifests/down-${rounds}`, {
                method: "PUT",
                headers: { "content-type": OCI_MANIFEST },
                body: probe.manifest,
              });
              assert.ok(put !== null, `${fault}: no answer to a PUT from ${replica.url}`);
              assert.equal(put.status, 503, `${fault}: PUT ${put.status} ${await put.text()}`);
              assert.ok(put.headers.get("retry-after"));
            }
            // The traffic met the outage too.
            await until(
              `${fault}: the traffic meets 503s`,
              () => Promise.resolve(ledger.unavailable > before.unavailable),
              30_000,
            );
            assert.deepEqual(ledger.broken, [], `${fault}: while down`);

            await cluster.up();
            // Back with no restart: both replicas serve reads and writes again, and the
            // traffic acknowledges new pushes.
            for (const replica of replicas) {
              const g = bounded(replica.url, new Ledger());
              await until(`${fault}: ${replica.url} serves again`, async () => {
                const r = await g(`/v2/${probe.name}/manifests/${probe.tag}`, {
                  headers: { accept: OCI_MANIFEST },
                });
                await r?.body?.cancel();
                return r?.status === 200;
              }, RECOVERY_BOUND_MS);
            }
            await until(
              `${fault}: new pushes acknowledged`,
              () => Promise.resolve(pushed.length >= before.pushed + 6),
              RECOVERY_BOUND_MS,
            );
            assert.deepEqual(ledger.broken, [], `${fault}: after the restart`);
          }
        } finally {
          stop = true;
          await workers;
        }
        assert.deepEqual(ledger.broken, []);
        assert.ok((ledger.statuses.get(503) ?? 0) > 0, "the traffic never met the outage");

        // Every acknowledged image pulls whole, through each replica.
        for (const replica of replicas) {
          const check = new Ledger();
          const g = bounded(replica.url, check);
          for (const image of pushed) {
            assert.ok(await pullImage(g, check, image), `${image.name}:${image.tag}`);
          }
          assert.deepEqual(check.broken, []);
        }
        // Every tag the registry lists names a manifest it serves; none dangles in the database.
        const check = new Ledger();
        const g = bounded(proxy.url, check);
        for (const w of [0, 1, 2]) {
          const r = await g(`/v2/faults/w${w}/tags/list`);
          assert.ok(r !== null && (await check.check("tags", r, [200])));
          const { tags } = await r.json() as { tags: string[] };
          for (const tag of tags) {
            const m = await g(`/v2/faults/w${w}/manifests/${tag}`, { method: "HEAD" });
            assert.ok(m !== null);
            assert.equal(m.status, 200, `faults/w${w}:${tag}`);
          }
        }
        const sql = connect(cluster.url, { max: 1 });
        try {
          const dangling = await sql`
            select t.repository, t.tag from tags t
            where not exists (select 1 from revisions r
              where r.repository = t.repository and r.digest = t.digest)`;
          assert.deepEqual([...dangling], []);
        } finally {
          await sql.end();
        }
        // The replicas that lived through both faults are the ones started at the beginning.
        for (const replica of replicas) {
          assert.ok(!replica.output.some((line) => /Uncaught|panicked/.test(line)));
        }
      } catch (error) {
        for (const replica of replicas) {
          const errors = replica.output.filter((line) =>
            !line.includes("level=info") && !line.includes("storage failure")
          );
          console.error(`--- ${replica.url} (its errors)\n${errors.slice(-20).join("\n")}`);
          console.error(`--- ${replica.url} (last lines)\n${replica.output.slice(-40).join("\n")}`);
        }
        throw error;
      } finally {
        for (const replica of replicas) await replica.kill();
        await cluster.remove();
      }
    },
  });
});
