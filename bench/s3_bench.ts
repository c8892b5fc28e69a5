/**
 * `deno task bench --storage s3`: our registry in its scale-out mode (`storage.s3` +
 * `database.url`) against CNCF Distribution 2.8.2 on its `s3` driver, both on fresh buckets of
 * the same Ceph RGW (ours also on a fresh PostgreSQL database), in one run:
 *
 * - RGW's own ceilings first (bench client straight to presigned URLs of a scratch bucket:
 *   PutObject, CopyObject and GetObject of the push/pull sizes, 8 parallel PutObjects,
 *   HeadObject and a small GetObject under bench/load.ts; and each registry's storage path
 *   for one blob, its S3 requests sent straight to RGW), so that a missed target is set
 *   against the bound; then PostgreSQL's for the one query a blob HEAD of ours costs (pgbench,
 *   and the registry's own client and pool: bench/pg_ceiling.ts), as that HEAD never asks RGW;
 * - pass 1, both servers in their default pull mode (307 to a presigned URL of the bucket,
 *   which the client follows inside the timed part): push-mono, push-stream, push-chunked,
 *   push-parallel, pull, head-blob, get-manifest;
 * - pass 2 (unless `--pull-modes redirect`), new processes of both with
 *   `storage.redirect.disable: true` on the same buckets (and database): pull and head-blob
 *   streamed/answered by the registries themselves.
 *
 * Rows are those of bench/workloads.ts, run by bench/rows.ts (pushes checked by the 201 and
 * `Docker-Content-Digest`, then by the stored object's size in the bucket before it is deleted
 * for the next run; pulled bytes hashed). Targets (the S3 issue): pushes ≥ 1.5× Distribution,
 * pull ≥ 1×, HEAD and manifest GET ≥ 10×, each replica ≤ 150 MiB resident. At the end the
 * buckets and the database are deleted and every process this run started is stopped by PID;
 * RGW is shared and stays up.
 */

import { AwsClient } from "aws4fetch";
import { type CompletedPart, S3Client } from "../src/storage/drivers/s3_client.ts";
import { join } from "node:path";
import { runLoadProcess } from "./ceilings.ts";
import { databaseTable, measureDatabase } from "./pg_ceiling.ts";
import { Http1 } from "./http1.ts";
import type { LoadResult } from "./load.ts";
import { resourcesTable, resultsTable, spread, stats, type WorkloadResult } from "./report.ts";
import { runRows } from "./rows.ts";
import {
  createRunBucket,
  createRunDatabase,
  distributionBlobKey,
  distributionS3Config,
  oursBlobKey,
  oursS3Config,
  rgwUp,
  type RunBucket,
  type RunDatabase,
  type S3Endpoint,
  type S3Target,
} from "./s3_setup.ts";
import { type Server, startDistribution, startOurs } from "./servers.ts";
import { type Blob, makeData, type Metric, sha256, type Workload, workloads } from "./workloads.ts";

const MiB = 1024 * 1024;

/** The rows of the S3 run, in order (`--only` picks among them). */
export const S3_ROWS = [
  "push-mono",
  "push-stream",
  "push-chunked",
  "push-parallel",
  "pull",
  "head-blob",
  "get-manifest",
] as const;

/** Settings of the S3 run. */
export interface S3BenchOptions {
  readonly repoRoot: string;
  readonly benchDir: string;
  readonly distBinary: string;
  readonly blobMiB: number;
  readonly parallelMiB: number;
  readonly runs: number;
  /** Uncounted runs per row and server before the counted ones (bench/rows.ts). */
  readonly warmup: number;
  readonly loadSeconds: number;
  readonly maxRunSeconds: number;
  readonly chunkSize: number;
  readonly only: readonly string[] | null;
  /** "redirect" (pass 1, all rows), "stream" (pass 2: pull and head-blob). */
  readonly pullModes: readonly ("redirect" | "stream")[];
  readonly parent: string;
  /** Where our replica writes its CPU profile (`--cpu-prof-dir`), if anywhere. */
  readonly profile?: string;
  readonly keep: boolean;
}

/** The target of a row of the S3 run (the row name may carry a ` [mode]` suffix). */
export function s3Target(
  workload: string,
  metric: Metric,
  ours: number,
  dist: number,
): { text: string; met: boolean | null } {
  const base = workload.replace(/ \[.*\]$/, "");
  const ratio = (k: number) => ({ text: `≥ ${k}× Dist`, met: ours >= k * dist });
  if (base.startsWith("push-")) return ratio(1.5);
  if (base === "pull") return ratio(1);
  if ((base === "head-blob" || base === "get-manifest") && metric.key === "req/s") {
    return ratio(10);
  }
  return { text: "—", met: null };
}

/** RGW's own figures measured in this run. */
interface RgwCeilings {
  putMiBs: number[];
  /** Server-side CopyObject of the blob (bytes copied per second inside RGW). */
  copyMiBs: number[];
  /** Distribution's storage path for one blob, straight to RGW (storagePaths). */
  distPathMiBs: number[];
  /** Ours' storage path for one blob, straight to RGW (storagePaths). */
  oursPathMiBs: number[];
  parallelPutMiBs: number[];
  getMiBs: number[];
  head: LoadResult | null;
  smallGet: LoadResult | null;
}

/** Presigned URLs of a bucket (query-signed SigV4, UNSIGNED-PAYLOAD). */
function presigner(s3: S3Endpoint, bucket: string) {
  const aws = new AwsClient({
    accessKeyId: s3.accessKey,
    secretAccessKey: s3.secretKey,
    service: "s3",
    region: s3.region,
  });
  return async (method: string, key: string): Promise<URL> => {
    const url = new URL(`${s3.endpoint.replace(/\/+$/, "")}/${bucket}/${key}`);
    url.searchParams.set("X-Amz-Expires", "3600");
    const signed = await aws.sign(url.toString(), { method, aws: { signQuery: true } });
    return new URL(signed.url);
  };
}

/**
 * The S3 requests each registry makes to store one blob pushed in one request, sent straight
 * to RGW by our S3Client (the bytes from memory, `chunk` bytes a part, parts one after the
 * other), timed; seconds of each. Distribution 2.8.2's s3 driver: CreateMultipartUpload,
 * UploadPart per chunk, CompleteMultipartUpload, then the commit's copy to the blob's name.
 * Ours (src/storage/drivers/s3.ts): UploadPart per whole chunk, the tail (the bytes after
 * the last whole chunk) PutObject'd as the tail object at the sync and copied in as the last
 * part by UploadPartCopy at the commit, CompleteMultipartUpload, then the commit's
 * CopyObject. Neither path's small state objects are counted.
 */
async function storagePaths(
  client: S3Client,
  bytes: Uint8Array,
  chunk: number,
  prefix: string,
): Promise<{ dist: number; ours: number }> {
  const parts = Math.ceil(bytes.length / chunk);
  const part = (i: number) => bytes.subarray(i * chunk, Math.min(bytes.length, (i + 1) * chunk));
  const dist = await timedSeconds(async () => {
    const key = `${prefix}/dist/upload`;
    const id = await client.createMultipart(key);
    const done: CompletedPart[] = [];
    for (let i = 0; i < parts; i++) {
      done.push({ number: i + 1, etag: await client.uploadPart(key, id, i + 1, part(i)) });
    }
    await client.completeMultipart(key, id, done);
    if (!await client.copyObject(key, `${prefix}/dist/blob`)) throw new Error("copy failed");
  });
  const ours = await timedSeconds(async () => {
    const key = `${prefix}/ours/assembled`;
    const whole = Math.floor(bytes.length / chunk);
    const id = await client.createMultipart(key);
    const done: CompletedPart[] = [];
    for (let i = 0; i < whole; i++) {
      done.push({ number: i + 1, etag: await client.uploadPart(key, id, i + 1, part(i)) });
    }
    const rest = bytes.subarray(whole * chunk);
    if (rest.length > 0) {
      const tail = `${prefix}/ours/tail.1`;
      await (await client.putObject(tail, rest)).body?.cancel();
      done.push({ number: whole + 1, etag: await client.uploadPartCopy(key, id, whole + 1, tail) });
    }
    await client.completeMultipart(key, id, done);
    if (!await client.copyObject(key, `${prefix}/ours/blob`)) throw new Error("copy failed");
  });
  return { dist, ours };
}

async function timedSeconds(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/**
 * RGW's ceilings with the bench's own clients on a scratch bucket: one PutObject of the blob
 * (bench/http1.ts, Content-Length body, as push-mono sends it), 8 parallel PutObjects of the
 * parallel parts, one GetObject into memory (hashed after), and bench/load.ts with 64
 * connections on HeadObject of a 1 MiB object and GetObject of a 1 KiB one.
 */
async function measureRgw(
  s3: S3Endpoint,
  bucket: RunBucket,
  o: {
    blob: Blob;
    parallel: readonly Blob[];
    rx: Uint8Array;
    runs: number;
    loadSeconds: number;
    benchDir: string;
    chunkSize: number;
  },
): Promise<RgwCeilings> {
  const sign = presigner(s3, bucket.name);
  const c: RgwCeilings = {
    putMiBs: [],
    copyMiBs: [],
    distPathMiBs: [],
    oursPathMiBs: [],
    parallelPutMiBs: [],
    getMiBs: [],
    head: null,
    smallGet: null,
  };
  const put = async (key: string, bytes: Uint8Array) => {
    const url = await sign("PUT", key);
    const conn = await Http1.connect(url.origin);
    try {
      const res = await conn.request("PUT", url.pathname + url.search, { body: bytes });
      if (res.status !== 200) throw new Error(`RGW PutObject ${key}: HTTP ${res.status}`);
    } finally {
      conn.close();
    }
  };
  const size = o.blob.bytes.length;
  for (let r = 0; r < o.runs; r++) {
    const s = await timedSeconds(() => put(`ceiling/blob-${r}`, o.blob.bytes));
    c.putMiBs.push(size / MiB / s);
    const sc = await timedSeconds(async () => {
      if (!await bucket.client.copyObject(`ceiling/blob-${r}`, `ceiling/copy-${r}`)) {
        throw new Error("RGW CopyObject: source missing");
      }
    });
    c.copyMiBs.push(size / MiB / sc);
    const total = o.parallel.reduce((a, p) => a + p.bytes.length, 0);
    const sp = await timedSeconds(async () => {
      await Promise.all(o.parallel.map((p, i) => put(`ceiling/part-${r}-${i}`, p.bytes)));
    });
    c.parallelPutMiBs.push(total / MiB / sp);
  }
  for (let r = 0; r < o.runs; r++) {
    const paths = await storagePaths(bucket.client, o.blob.bytes, o.chunkSize, `paths-${r}`);
    c.distPathMiBs.push(size / MiB / paths.dist);
    c.oursPathMiBs.push(size / MiB / paths.ours);
  }
  const getUrl = await sign("GET", "ceiling/blob-0");
  for (let r = 0; r < o.runs; r++) {
    o.rx.fill(0, 0, size);
    let status = 0;
    let received = 0;
    const s = await timedSeconds(async () => {
      const conn = await Http1.connect(getUrl.origin);
      try {
        const res = await conn.request("GET", getUrl.pathname + getUrl.search, { sink: o.rx });
        status = res.status;
        received = res.received;
      } finally {
        conn.close();
      }
    });
    if (status !== 200 || received !== size || sha256(o.rx.subarray(0, size)) !== o.blob.digest) {
      throw new Error(`RGW GetObject: HTTP ${status}, ${received} bytes, or other bytes`);
    }
    c.getMiBs.push(size / MiB / s);
  }
  const oneMiB = o.blob.bytes.subarray(0, MiB);
  await put("ceiling/head-1mib", oneMiB);
  const small = o.blob.bytes.subarray(0, 1024);
  await put("ceiling/small-1kib", small);
  const load = async (method: string, key: string, length: number) =>
    await runLoadProcess(o.benchDir, [
      "--url",
      (await sign(method, key)).href,
      "--method",
      method,
      "--conns",
      "64",
      "--seconds",
      String(o.loadSeconds),
      "--expect-length",
      String(length),
    ]);
  c.head = await load("HEAD", "ceiling/head-1mib", MiB);
  c.smallGet = await load("GET", "ceiling/small-1kib", 1024);
  return c;
}

function rgwTable(
  c: RgwCeilings,
  o: { blobMiB: number; parallelMiB: number; secs: number; chunkMiB: number },
) {
  const rate = (l: LoadResult | null) =>
    l === null
      ? "—"
      : `${Math.round(l.rps).toLocaleString("en-US")} req/s, p99 ${l.p99.toFixed(1)} ms` +
        (l.failed > 0 ? ` (${l.failed} failed: ${l.firstFailure})` : "");
  return [
    "| RGW ceiling (this run) | median (min–max) | how |",
    "| --- | --- | --- |",
    `| PutObject, one ${o.blobMiB} MiB object | ${
      spread(c.putMiBs, "MiB/s")
    } MiB/s | bench/http1.ts → presigned PUT URL, Content-Length body |`,
    `| CopyObject, one ${o.blobMiB} MiB object | ${
      spread(c.copyMiBs, "MiB/s")
    } MiB/s | server-side copy in the bucket (what a commit costs RGW: S3 has no rename) |`,
    `| Distribution's storage path, one ${o.blobMiB} MiB blob | ${
      spread(c.distPathMiBs, "MiB/s")
    } MiB/s | S3Client → RGW: UploadPart per ${o.chunkMiB} MiB, Complete, CopyObject (the commit) |`,
    `| ours' storage path, one ${o.blobMiB} MiB blob | ${
      spread(c.oursPathMiBs, "MiB/s")
    } MiB/s | S3Client → RGW: UploadPart per ${o.chunkMiB} MiB, the tail's PutObject + UploadPartCopy, Complete, CopyObject |`,
    `| PutObject, 8 parallel × ${o.parallelMiB} MiB | ${
      spread(c.parallelPutMiBs, "MiB/s")
    } MiB/s | 8 connections at once |`,
    `| GetObject, one ${o.blobMiB} MiB object | ${
      spread(c.getMiBs, "MiB/s")
    } MiB/s | bench/http1.ts ← presigned GET URL, into memory, hashed after |`,
    `| HeadObject, 64 conns | ${
      rate(c.head)
    } | bench/load.ts → presigned HEAD URL of a 1 MiB object, ${o.secs} s |`,
    `| GetObject 1 KiB, 64 conns | ${
      rate(c.smallGet)
    } | bench/load.ts → presigned GET URL, ${o.secs} s |`,
  ].join("\n");
}

/** Adds an S3 dropBlob to a server (kept across restarts). */
function onBucket(server: Server, bucket: RunBucket, key: (digest: string) => string): Server {
  return {
    ...server,
    async dropBlob(digest: string, size: number) {
      const head = await bucket.client.headObject(key(digest));
      const got = head === null ? null : Number(head.get("content-length"));
      if (got !== size) {
        throw new Error(
          `${server.name} has ${got === null ? "no object" : `${got} bytes`} at ${
            key(digest)
          }, not the ${size} bytes pushed`,
        );
      }
      await bucket.client.deleteObject(key(digest));
    },
    async restart() {
      return onBucket(await server.restart(), bucket, key);
    },
  };
}

/** What bounds a row: a figure, what it is, its unit, and who alone reaches it (RGW). */
interface Bound {
  readonly v: number;
  readonly what: string;
  readonly unit: string;
  readonly alone?: string;
}

/**
 * Why a missed target cannot be passed here, from RGW's figures of this run; "" when the
 * bound does not explain it.
 */
export function boundNote(
  workload: string,
  oursValue: number,
  distValue: number,
  target: number,
  ceilings: {
    put: number;
    copy: number;
    oursPath: number;
    distPath: number;
    parallelPut: number;
    get: number;
    head: number;
    smallGet: number;
    /** The blob HEAD's one query, PostgreSQL alone (bench/pg_ceiling.ts); NaN: unmeasured. */
    headQuery?: number;
  },
): string {
  const base = workload.replace(/ \[.*\]$/, "");
  // A push ends in a commit that copies the bytes inside the bucket (S3 has no rename), after
  // the last byte is in: the fastest push RGW allows is a PutObject then a CopyObject, in
  // series, for either registry.
  const serial = (put: number) => 1 / (1 / put + 1 / ceilings.copy);
  // A blob HEAD of ours asks PostgreSQL only (the link and the recorded size, one query):
  // its bound is that query's rate; Distribution's still asks RGW.
  const headQuery = ceilings.headQuery ?? NaN;
  const bound: Bound = base === "push-parallel"
    ? {
      v: serial(ceilings.parallelPut),
      what: "8 parallel PutObjects then a CopyObject, in series",
      unit: "MiB/s",
    }
    : base.startsWith("push-")
    ? { v: ceilings.oursPath, what: "ours' storage path", unit: "MiB/s" }
    : base === "pull"
    ? { v: ceilings.get, what: "one GetObject", unit: "MiB/s" }
    : base === "head-blob" && Number.isFinite(headQuery)
    ? {
      v: headQuery,
      what: "the HEAD's one query (bench/pg_ceiling.ts)",
      unit: "req/s",
      alone: "PostgreSQL",
    }
    : base === "head-blob"
    ? { v: ceilings.head, what: "HeadObject at 64 conns", unit: "req/s" }
    : { v: ceilings.smallGet, what: "GetObject 1 KiB at 64 conns", unit: "req/s" };
  const f = (x: number) => Math.round(x).toLocaleString("en-US");
  const alone = bound.alone ?? "RGW";
  const want = target * distValue;
  const head = `${workload}: ours ${f(oursValue)}, target ${target}× Dist = ${
    f(want)
  } ${bound.unit}; bound (${alone} alone, no registry in between): ${bound.what}: ${
    f(bound.v)
  } ${bound.unit}`;
  if (workload.endsWith("[redirect]") && base === "pull") {
    return `${head}: both registries answer one 307 and the client reads the bytes from RGW, so the ratio is RGW against itself (1× within the run-to-run spread of the shared machine)`;
  }
  const paths = base.startsWith("push-") && base !== "push-parallel"
    ? ` (Distribution's path: ${f(ceilings.distPath)} MiB/s, so ours' path allows at most ${
      (ceilings.oursPath / ceilings.distPath).toFixed(2)
    }× a Distribution at its own bound)`
    : "";
  if (paths !== "" && want > bound.v && want <= ceilings.distPath) {
    return `${head}${paths}: the target is above what RGW does on ours' storage path here, so no registry on that path can reach it; Distribution's path would leave room, so this miss is ours' storage design, not RGW alone`;
  }
  if (want > bound.v) {
    return `${head}${paths}: the target is above what ${alone} itself does on this machine, so no registry in front of it can reach it here`;
  }
  return `${head}${paths}: under the bound, not explained by it`;
}

/** The whole S3 run; returns the exit code. */
export async function runS3Bench(o: S3BenchOptions): Promise<number> {
  const started = performance.now();
  const root = await Deno.makeTempDir({ dir: o.parent, prefix: "registry-bench-s3-" });
  const blobSize = o.blobMiB * MiB;
  const parallelSize = o.parallelMiB * MiB;
  console.log(`# Registry benchmark on S3: ours (S3 + PostgreSQL) vs CNCF Distribution (s3)\n`);
  console.log(
    `${o.blobMiB} MiB blobs, push-parallel 8 × ${o.parallelMiB} MiB, ${o.loadSeconds} s load runs, ${o.runs} runs each after ${o.warmup} uncounted; chunksize ${
      o.chunkSize / MiB
    } MiB on both; pull modes: ${o.pullModes.join(", ")}.`,
  );
  console.log(
    `Load average at start: ${Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3)}`,
  );

  const buckets: RunBucket[] = [];
  let db: RunDatabase | null = null;
  // The processes of the current pass (replaced in place by bench/rows.ts on a restart).
  let current: { ours: Server | null; dist: Server | null } = { ours: null, dist: null };
  const stopAll = async () => {
    const { ours, dist } = current;
    current = { ours: null, dist: null };
    await ours?.stop();
    await dist?.stop();
  };
  try {
    const s3 = await rgwUp(o.repoRoot);
    console.log(`RGW at ${s3.endpoint}; working folder ${root}`);
    const master = makeData(blobSize);
    const blob: Blob = { bytes: master, digest: sha256(master) };
    const parallel: Blob[] = Array.from({ length: 8 }, (_, i) => {
      const start = (i * parallelSize) % Math.max(1, blobSize - parallelSize + 1);
      const bytes = master.slice(start, start + parallelSize);
      bytes[8] = bytes[8]! ^ (i + 1); // eight distinct blobs even when they overlap
      return { bytes, digest: sha256(bytes) };
    });
    const rx = new Uint8Array(blobSize);

    const scratch = await createRunBucket(s3, "rgw", true);
    buckets.push(scratch);
    const rgw = await measureRgw(s3, scratch, {
      blob,
      parallel,
      rx,
      runs: o.runs,
      loadSeconds: o.loadSeconds,
      benchDir: o.benchDir,
      chunkSize: o.chunkSize,
    });
    console.log("\n## RGW ceilings (this run)\n");
    console.log(
      rgwTable(rgw, {
        blobMiB: o.blobMiB,
        parallelMiB: o.parallelMiB,
        secs: o.loadSeconds,
        chunkMiB: o.chunkSize / MiB,
      }),
    );
    console.log("");

    const oursBucket = await createRunBucket(s3, "ours");
    buckets.push(oursBucket);
    const distBucket = await createRunBucket(s3, "dist");
    buckets.push(distBucket);
    db = await createRunDatabase(o.repoRoot);
    const database = await measureDatabase(db.url, { seconds: 2, scratchDir: root });
    console.log("## PostgreSQL ceiling (this run)\n");
    console.log(databaseTable(database));
    console.log("");
    const secret = crypto.randomUUID();

    const results: WorkloadResult[] = [];
    for (const mode of o.pullModes) {
      const redirectDisabled = mode === "stream";
      const target = (bucket: string): S3Target => ({
        ...s3,
        bucket,
        chunkSize: o.chunkSize,
        redirectDisabled,
      });
      const oursConfig = join(root, `ours-${mode}.yml`);
      await Deno.writeTextFile(oursConfig, oursS3Config(target(oursBucket.name), db.url));
      const ours = onBucket(
        await startOurs(join(root, "ours"), root, {
          repoRoot: o.repoRoot,
          env: { REGISTRY_LOG_REQUESTS: "0" },
          configPath: oursConfig,
          logName: `ours-${mode}.log`,
          denoFlags: o.profile ? ["--cpu-prof", `--cpu-prof-dir=${o.profile}`] : [],
        }),
        oursBucket,
        oursBlobKey,
      );
      current.ours = ours;
      const dist = onBucket(
        await startDistribution(o.distBinary, join(root, "distribution"), root, {
          config: (port) => distributionS3Config(target(distBucket.name), port, secret),
          name: `distribution-${mode}`,
          // With AWS_CA_BUNDLE set (as on this machine), 2.8.2's s3 driver panics at start
          // ("unable to load custom CA bundle, HTTPClient's transport unsupported type"); RGW
          // is plain HTTP here, so the variable is not passed on.
          unsetEnv: ["AWS_CA_BUNDLE"],
        }),
        distBucket,
        distributionBlobKey,
      );
      current.dist = dist;
      console.log(
        `${mode} mode: ours at ${ours.base} (pid ${ours.pid}, bucket ${oursBucket.name}), Distribution at ${dist.base} (pid ${dist.pid}, bucket ${distBucket.name})`,
      );
      const all = workloads({
        blob,
        parallel,
        frame: 32 * 1024,
        chunkedParts: 16,
        rangeParts: 4,
        loadSeconds: o.loadSeconds,
        runTimeoutSeconds: o.maxRunSeconds,
        benchDir: o.benchDir,
        rx,
        followRedirects: true,
      });
      const wanted = mode === "redirect"
        ? S3_ROWS
        : S3_ROWS.filter((n) => n === "pull" || n === "head-blob");
      const chosen: Workload[] = all
        .filter((w) => (wanted as readonly string[]).includes(w.name))
        .filter((w) => o.only === null || o.only.includes(w.name))
        .map((w) =>
          w.name === "pull" || w.name === "head-blob" ? { ...w, name: `${w.name} [${mode}]` } : w
        );
      const pair = { ours, dist };
      current = pair;
      results.push(
        ...await runRows(chosen, pair, {
          runs: o.runs,
          maxRunSeconds: o.maxRunSeconds,
          warmup: o.warmup,
        }),
      );
      await stopAll();
    }

    const emptyCeilings = {
      diskMiBs: [],
      sha256MiBs: [],
      loopbackMiBs: [],
      sinkLengthMiBs: [],
      sinkChunkedMiBs: [],
      sinkFileGetMiBs: [],
      sinkHead: null,
    };
    console.log("\n## Results\n");
    console.log(
      resultsTable(results, emptyCeilings, o.runs, { target: s3Target, rssLimitMiB: 150 }),
    );
    console.log("\n## Resources per workload (peak RSS: max over runs; CPU: median over runs)\n");
    console.log(resourcesTable(results));
    const peak = Math.max(...results.flatMap((r) => r.ours.map((s) => s.peakRssMiB)));
    console.log(`\nOur replica's peak RSS over every row: ${peak.toFixed(0)} MiB (target ≤ 150)`);

    const bounds = {
      put: stats(rgw.putMiBs).median,
      copy: stats(rgw.copyMiBs).median,
      oursPath: stats(rgw.oursPathMiBs).median,
      distPath: stats(rgw.distPathMiBs).median,
      parallelPut: stats(rgw.parallelPutMiBs).median,
      get: stats(rgw.getMiBs).median,
      head: rgw.head?.rps ?? NaN,
      smallGet: rgw.smallGet?.rps ?? NaN,
      headQuery: database.pgbench?.qps ?? database.client?.qps ?? NaN,
    };
    const missed: string[] = [];
    for (const r of results) {
      if (r.skipped !== undefined) continue;
      const m = r.metrics[0]!;
      const om = stats(r.ours.map((s) => s.metrics[m.key]!)).median;
      const dm = stats(r.distribution.map((s) => s.metrics[m.key]!)).median;
      const t = s3Target(r.name, m, om, dm);
      if (t.met === false) {
        const k = Number(/≥ ([\d.]+)×/.exec(t.text)?.[1]);
        missed.push(`- ${boundNote(r.name, om, dm, k, bounds)}`);
      }
    }
    console.log("\n## Missed targets against RGW's bound\n");
    console.log(missed.length > 0 ? missed.join("\n") : "None.");
    console.log(
      `\nLoad average at end: ${
        Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ")
      }`,
    );
    console.log(`Total time: ${((performance.now() - started) / 1000).toFixed(0)} s`);
    return 0;
  } catch (error) {
    console.error(`\nBenchmark failed: ${error instanceof Error ? error.stack : error}`);
    for (const s of [current.ours, current.dist]) {
      if (s === null) continue;
      const log = await Deno.readTextFile(s.logPath).catch(() => "");
      console.error(`--- ${s.name} log (tail) ---\n${log.slice(-1500)}`);
    }
    return 1;
  } finally {
    await stopAll();
    for (const b of buckets) {
      await b.remove().catch((e) => console.error(`Could not delete bucket ${b.name}: ${e}`));
    }
    await db?.remove().catch((e) => console.error(`Could not drop the database: ${e}`));
    if (o.keep) console.log(`Kept ${root}`);
    else await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}
