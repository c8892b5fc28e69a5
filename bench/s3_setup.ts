/**
 * What `deno task bench --storage s3` (bench/s3_bench.ts) sets up around the two servers: the
 * shared Ceph RGW (`scripts/s3-ceph.sh up`, never stopped here), a fresh bucket per server, a
 * fresh PostgreSQL database for ours (`scripts/postgres.sh`, stopped at the end only when this
 * run started it), and both servers' configuration files. The configuration text and the
 * object names of a committed blob are pure functions (tests/bench/s3_setup_test.ts).
 */

import { S3Client } from "../src/storage/drivers/s3_client.ts";
import { connect } from "../src/storage/postgres/client.ts";

/** The S3 server, as `scripts/s3-ceph.sh up` prints it. */
export interface S3Endpoint {
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
}

/** One server's bucket and how it is configured. */
export interface S3Target extends S3Endpoint {
  readonly bucket: string;
  /** Bytes buffered before a part is written (both drivers' `chunksize`). */
  readonly chunkSize: number;
  /** Blob GETs streamed by the registry instead of answered with a 307 to the bucket. */
  readonly redirectDisabled: boolean;
}

/** A YAML double-quoted scalar (JSON strings are valid ones). */
const q = (s: string) => JSON.stringify(s);

/**
 * CNCF Distribution 2.8.2's configuration on its `s3` driver (registry/storage/driver/s3-aws):
 * with `regionendpoint` set, 2.8.2 forces path-style addressing itself and does not check the
 * region against AWS's list; `secure: false` is HTTP; `v4auth: true` is its default, written
 * out. No `rootdirectory`: objects go under `docker/registry/v2/`. As the filesystem config
 * of bench/servers.ts otherwise: in-memory blob descriptor cache, delete on, no access log, no
 * upload purging; `http.secret` set (else every start makes a random one and warns).
 */
export function distributionS3Config(t: S3Target, port: number, secret: string): string {
  return [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  cache:",
    "    blobdescriptor: inmemory",
    "  s3:",
    `    regionendpoint: ${q(t.endpoint)}`,
    `    bucket: ${q(t.bucket)}`,
    `    region: ${q(t.region)}`,
    `    accesskey: ${q(t.accessKey)}`,
    `    secretkey: ${q(t.secretKey)}`,
    `    secure: ${t.endpoint.startsWith("https:")}`,
    "    v4auth: true",
    `    chunksize: ${t.chunkSize}`,
    "  delete:",
    "    enabled: true",
    "  redirect:",
    `    disable: ${t.redirectDisabled}`,
    "  maintenance:",
    "    uploadpurging:",
    "      enabled: false",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${q(secret)}`,
    "",
  ].join("\n");
}

/** Our registry's configuration in the scale-out mode (README "Scale-out: S3 and PostgreSQL"). */
export function oursS3Config(t: S3Target, databaseUrl: string): string {
  return [
    "storage:",
    "  s3:",
    `    regionendpoint: ${q(t.endpoint)}`,
    `    bucket: ${q(t.bucket)}`,
    `    region: ${q(t.region)}`,
    `    accesskey: ${q(t.accessKey)}`,
    `    secretkey: ${q(t.secretKey)}`,
    `    chunksize: ${t.chunkSize}`,
    "  redirect:",
    `    disable: ${t.redirectDisabled}`,
    "database:",
    `  url: ${q(databaseUrl)}`,
    "",
  ].join("\n");
}

/** The object holding a committed blob in our bucket (src/storage/keys.ts). */
export function oursBlobKey(digest: string): string {
  const [alg, hex] = digest.split(":") as [string, string];
  return `blobs/${alg}/${hex.slice(0, 2)}/${hex}`;
}

/** The object holding a committed blob in Distribution's bucket (no rootdirectory). */
export function distributionBlobKey(digest: string): string {
  const [alg, hex] = digest.split(":") as [string, string];
  return `docker/registry/v2/blobs/${alg}/${hex.slice(0, 2)}/${hex}/data`;
}

/** The `REGISTRY_S3_*=…` lines of `scripts/s3-ceph.sh up`; null when a key is missing. */
export function parseS3Env(stdout: string): S3Endpoint | null {
  const env: Record<string, string> = {};
  for (const m of stdout.matchAll(/^REGISTRY_S3_(\w+)=(.*)$/gm)) env[m[1]!] = m[2]!.trim();
  if (!env.ENDPOINT || !env.ACCESS_KEY || !env.SECRET_KEY) return null;
  return {
    endpoint: env.ENDPOINT,
    accessKey: env.ACCESS_KEY,
    secretKey: env.SECRET_KEY,
    region: env.REGION || "us-east-1",
  };
}

async function sh(args: string[]): Promise<{ ok: boolean; code: number; out: string }> {
  const o = await new Deno.Command("bash", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const dec = new TextDecoder();
  return { ok: o.success, code: o.code, out: dec.decode(o.stdout) + dec.decode(o.stderr) };
}

/** Brings RGW up (idempotent: nothing happens when it runs) and returns its endpoint. */
export async function rgwUp(repoRoot: string): Promise<S3Endpoint> {
  const r = await sh([`${repoRoot}/scripts/s3-ceph.sh`, "up"]);
  const env = r.ok ? parseS3Env(r.out) : null;
  if (env === null) throw new Error(`scripts/s3-ceph.sh up failed:\n${r.out.slice(-1500)}`);
  return env;
}

/** A bucket made for this run; `remove` empties it (objects and multipart uploads), deletes it. */
export interface RunBucket {
  readonly name: string;
  readonly client: S3Client;
  remove(): Promise<void>;
}

/**
 * Creates a fresh bucket `bench-<tag>-<time>-<rand>`. With `probe`, first writes and deletes
 * one small object in it with one attempt and a short timeout, so that an RGW that takes no
 * writes (a full OSD: writes then hang rather than fail) stops the run at once, saying so.
 */
export async function createRunBucket(
  s3: S3Endpoint,
  tag: string,
  probe = false,
): Promise<RunBucket> {
  const rand = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
  const name = `bench-${tag}-${Date.now()}-${rand}`;
  const client = new S3Client({ ...s3, bucket: name });
  if (probe) {
    const quick = new S3Client({ ...s3, bucket: name, attempts: 1, timeoutSeconds: 15 });
    try {
      await quick.createBucket();
      await (await quick.putObject("probe", new Uint8Array(1024))).body?.cancel();
      await quick.deleteObject("probe");
    } catch (error) {
      await quick.deleteBucket().catch(() => {});
      throw new Error(
        `RGW at ${s3.endpoint} does not take a 1 KiB write within 15 s (${error}); ` +
          "a full OSD blocks writes (`ceph -c /var/tmp/registry-ceph/ceph.conf health`)",
      );
    }
  }
  await client.createBucket();
  return {
    name,
    client,
    async remove() {
      for (const u of await client.listMultipart("")) await client.abortMultipart(u.name, u.id);
      const keys = (await client.listAll("")).map((o) => o.key);
      for (let i = 0; i < keys.length; i += 1000) {
        await client.deleteObjects(keys.slice(i, i + 1000));
      }
      await client.deleteBucket();
    },
  };
}

/** A database made for this run on the checkout's private cluster. */
export interface RunDatabase {
  readonly url: string;
  /** Drops the database; stops the cluster when this run started it. */
  remove(): Promise<void>;
}

/** Starts the private PostgreSQL cluster when it is down, and creates a fresh database. */
export async function createRunDatabase(repoRoot: string): Promise<RunDatabase> {
  const script = `${repoRoot}/scripts/postgres.sh`;
  const status = await sh([script, "status"]);
  const startedHere = !status.ok;
  const up = startedHere ? await sh([script, "up"]) : status;
  const admin = up.out.trim().split("\n").reverse().find((l) => l.startsWith("postgres://"));
  if (!up.ok || admin === undefined) {
    throw new Error(`scripts/postgres.sh up failed:\n${up.out.slice(-1500)}`);
  }
  const database = `bench_${Date.now()}_${Math.random().toString(36).slice(2, 8)}`;
  const sql = connect(admin, { max: 1 });
  try {
    await sql.unsafe(`create database "${database}"`);
  } finally {
    await sql.end();
  }
  const url = new URL(admin);
  url.pathname = `/${database}`;
  return {
    url: url.href,
    async remove() {
      const sql = connect(admin, { max: 1 });
      try {
        await sql.unsafe(`drop database if exists "${database}" with (force)`);
      } finally {
        await sql.end();
      }
      if (startedHere) await sh([script, "stop"]);
    },
  };
}
