/**
 * The benchmark's workloads (issue 5's table), each run against one server at a time:
 * pushes and pulls through the raw HTTP/1.1 client in `http1.ts`, request-rate workloads
 * through `load.ts` in its own process. Every push is checked by the server's 201 and
 * `Docker-Content-Digest`; every pulled byte is hashed and compared after the timed part.
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import process from "node:process";
import { frames, runLoadProcess, syncAll } from "./ceilings.ts";
import { Http1, type Http1Response } from "./http1.ts";
import { machineBusySeconds, type Server } from "./servers.ts";

const MiB = 1024 * 1024;

/** A blob held in the client's memory, with its digest computed once. */
export interface Blob {
  readonly bytes: Uint8Array;
  readonly digest: string;
}

/** Computes the sha256 digest of bytes. */
export function sha256(bytes: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(bytes).digest("hex");
}

/**
 * Makes `size` bytes of test data quickly: one random MiB repeated, with a block counter
 * stamped into the first 8 bytes of every MiB so that no two MiB are equal.
 */
export function makeData(size: number): Uint8Array {
  const block = new Uint8Array(MiB);
  for (let off = 0; off < MiB; off += 65536) {
    crypto.getRandomValues(block.subarray(off, off + 65536));
  }
  const data = new Uint8Array(size);
  const view = new DataView(data.buffer);
  for (let off = 0, n = 0; off < size; off += MiB, n++) {
    data.set(off + MiB <= size ? block : block.subarray(0, size - off), off);
    if (off + 8 <= size) view.setBigUint64(off, BigInt(n));
  }
  return data;
}

/** What a workload's run reports. */
export interface RunOutput {
  /** The figures, by metric key. */
  readonly metrics: Record<string, number>;
  /** Wall seconds of the timed part. */
  readonly seconds: number;
  /** CPU seconds the client spent in the timed part. */
  readonly clientCpu: number;
  /**
   * CPU seconds the whole machine was busy in the timed part; without it, the busy time over
   * the whole run (checks after the timed part included) is reported.
   */
  readonly machineCpu?: number;
  /** A remark worth printing (e.g. how many tags a list returned). */
  readonly note?: string;
  /** The run was stopped at its time limit (the server may still be busy with it). */
  readonly timedOut?: boolean;
}

/** A metric of a workload. */
export interface Metric {
  readonly key: string;
  readonly unit: string;
  readonly higherIsBetter: boolean;
}

/** One row group of the benchmark. */
export interface Workload {
  readonly name: string;
  readonly metrics: readonly Metric[];
  /** Push/pull workloads count toward the memory row. */
  readonly transfer: boolean;
  /** Untimed preparation, once per server. */
  setup?(server: Server): Promise<void>;
  /** One measured run. */
  run(server: Server, run: number): Promise<RunOutput>;
  /** Untimed cleanup after each run. */
  after?(server: Server): Promise<void>;
}

/** Sizes and knobs of a benchmark mode. */
export interface WorkloadOptions {
  /** The blob size of push-mono/stream/chunked and pull. */
  readonly blob: Blob;
  /** The 8 blobs of push-parallel. */
  readonly parallel: readonly Blob[];
  /** HTTP chunk size of streamed PATCH bodies (Go's net/http, so Docker and podman: 32 KiB). */
  readonly frame: number;
  /** Number of PATCHes of push-chunked. */
  readonly chunkedParts: number;
  /** Number of parallel Range GETs. */
  readonly rangeParts: number;
  /** A push run is stopped after this many seconds (its figure is then an upper bound). */
  readonly runTimeoutSeconds: number;
  /** Seconds of each request-rate run. */
  readonly loadSeconds: number;
  /** The bench/ folder (for load.ts). */
  readonly benchDir: string;
  /** Where the pulled bytes land (at least the blob size). */
  readonly rx: Uint8Array;
  /**
   * The pull row follows a 307 to its Location (a presigned URL of the bucket), on a new
   * connection, inside the timed part; without it a pull must answer 200.
   */
  readonly followRedirects?: boolean;
}

function fail(what: string, res: Http1Response): never {
  const body = new TextDecoder().decode(res.body.subarray(0, 500));
  throw new Error(`${what}: HTTP ${res.status} ${body}`);
}

function expectStatus(what: string, res: Http1Response, status: number): Http1Response {
  if (res.status !== status) fail(`${what} expected ${status}`, res);
  return res;
}

/** The path and query of a response's Location (absolute or relative). */
function locationOf(what: string, base: string, res: Http1Response): string {
  const loc = res.headers.get("location");
  if (!loc) fail(`${what} without Location`, res);
  const url = new URL(loc, base);
  return url.pathname + url.search;
}

function withDigest(target: string, digest: string): string {
  return `${target}${target.includes("?") ? "&" : "?"}digest=${encodeURIComponent(digest)}`;
}

function checkCreated(what: string, res: Http1Response, digest: string): void {
  expectStatus(what, res, 201);
  const got = res.headers.get("docker-content-digest");
  if (got !== digest) fail(`${what} answered Docker-Content-Digest ${got}, not ${digest}`, res);
}

async function startUpload(conn: Http1, base: string, repo: string): Promise<string> {
  const res = expectStatus(
    "POST upload",
    await conn.request("POST", `/v2/${repo}/blobs/uploads/`),
    202,
  );
  return locationOf("POST upload", base, res);
}

/** POST, then PUT `?digest=` carrying the whole blob (containerd, Docker 29). */
export async function pushMono(conn: Http1, base: string, repo: string, blob: Blob): Promise<void> {
  const loc = await startUpload(conn, base, repo);
  const res = await conn.request("PUT", withDigest(loc, blob.digest), {
    body: blob.bytes,
    headers: { "Content-Type": "application/octet-stream" },
  });
  checkCreated("PUT blob", res, blob.digest);
}

/** POST, one chunked PATCH without Content-Range, empty PUT (Docker classic, podman). */
export async function pushStream(
  conn: Http1,
  base: string,
  repo: string,
  blob: Blob,
  frame: number,
): Promise<void> {
  const loc = await startUpload(conn, base, repo);
  const patched = expectStatus(
    "PATCH stream",
    await conn.request("PATCH", loc, {
      chunks: frames(blob.bytes, frame),
      headers: { "Content-Type": "application/octet-stream" },
    }),
    202,
  );
  const range = patched.headers.get("range");
  if (range !== `0-${blob.bytes.length - 1}`) fail(`PATCH stream answered Range ${range}`, patched);
  const res = await conn.request(
    "PUT",
    withDigest(locationOf("PATCH", base, patched), blob.digest),
  );
  checkCreated("PUT after stream", res, blob.digest);
}

/** POST, `parts` PATCHes with Content-Range, empty PUT (oras, regclient, conformance). */
export async function pushChunked(
  conn: Http1,
  base: string,
  repo: string,
  blob: Blob,
  parts: number,
): Promise<void> {
  let loc = await startUpload(conn, base, repo);
  const size = blob.bytes.length;
  const part = Math.ceil(size / parts);
  for (let start = 0; start < size; start += part) {
    const end = Math.min(size, start + part) - 1;
    const res = expectStatus(
      `PATCH ${start}-${end}`,
      await conn.request("PATCH", loc, {
        body: blob.bytes.subarray(start, end + 1),
        headers: { "Content-Type": "application/octet-stream", "Content-Range": `${start}-${end}` },
      }),
      202,
    );
    loc = locationOf("PATCH", base, res);
  }
  checkCreated(
    "PUT after chunks",
    await conn.request("PUT", withDigest(loc, blob.digest)),
    blob.digest,
  );
}

/** Puts a manifest under a reference. */
async function putManifest(
  conn: Http1,
  repo: string,
  ref: string,
  bytes: Uint8Array,
  mediaType: string,
): Promise<void> {
  const res = await conn.request("PUT", `/v2/${repo}/manifests/${ref}`, {
    body: bytes,
    headers: { "Content-Type": mediaType },
  });
  expectStatus(`PUT manifest ${repo}:${ref}`, res, 201);
}

/** Removes the committed bytes of pushed blobs, so the next run pushes a new blob again. */
export async function dropBlobs(server: Server, blobs: readonly Blob[]): Promise<void> {
  if (server.dropBlob) {
    for (const blob of blobs) await server.dropBlob(blob.digest, blob.bytes.length);
    return;
  }
  for (const blob of blobs) {
    await Deno.remove(server.blobPath(blob.digest.slice("sha256:".length)), { recursive: true })
      .catch(() => {});
  }
  await syncAll();
}

/**
 * Reads the stored files of pushed blobs once, untimed, so that the pull rows read both servers'
 * blobs from the page cache. Ours drops the cached pages of an upload of 64 MiB or more once they
 * are synced (README, "The page cache"); Distribution's stay after its push. Servers on S3 have
 * no local files: nothing to do there.
 */
export async function warmBlobs(server: Server, digests: readonly string[]): Promise<void> {
  if (server.dropBlob) return;
  const buffer = new Uint8Array(MiB);
  for (const digest of digests) {
    let path = server.blobPath(digest.slice("sha256:".length));
    if ((await Deno.stat(path)).isDirectory) path = join(path, "data"); // Distribution's layout
    using file = await Deno.open(path);
    while ((await file.read(buffer)) !== null) {
      // reading is the point
    }
  }
}

function cpuNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** What `timed` measured: wall seconds, and CPU seconds of the client and of the machine. */
export interface Timing {
  readonly seconds: number;
  readonly clientCpu: number;
  readonly machineCpu: number;
}

/**
 * Times `fn`: wall seconds, the client's CPU seconds as `clientCpu` reads them (by default this
 * process's), and the machine's busy seconds meanwhile.
 */
export async function timed(
  fn: () => Promise<void>,
  clientCpu: () => number = cpuNow,
): Promise<Timing> {
  const cpu0 = clientCpu();
  const busy0 = machineBusySeconds() ?? 0;
  const t0 = performance.now();
  await fn();
  return {
    seconds: (performance.now() - t0) / 1000,
    clientCpu: clientCpu() - cpu0,
    machineCpu: (machineBusySeconds() ?? busy0) - busy0,
  };
}

const THROUGHPUT: readonly Metric[] = [{ key: "MiB/s", unit: "MiB/s", higherIsBetter: true }];
const RATE: readonly Metric[] = [
  { key: "req/s", unit: "req/s", higherIsBetter: true },
  { key: "p99 ms", unit: "ms", higherIsBetter: false },
];

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

/** Builds the workloads of issue 5 over the given data. */
export function workloads(opts: WorkloadOptions): Workload[] {
  const { blob, parallel, frame } = opts;
  const size = blob.bytes.length;

  const pushWorkload = (
    name: string,
    push: (conn: Http1, base: string, repo: string) => Promise<void>,
  ): Workload => ({
    name,
    metrics: THROUGHPUT,
    transfer: true,
    async run(server, run) {
      const repo = `bench/${name}-r${run}`;
      return await timedPushes(server, [size], async (conns) => {
        await push(conns[0]!, server.base, repo);
      });
    },
    after: (server) => dropBlobs(server, [blob]),
  });

  /**
   * Times pushes over fresh connections. After `opts.runTimeoutSeconds` the connections are
   * closed and the run reports what the client had written by then per second: an upper
   * bound of the server's rate, marked in the notes.
   */
  const timedPushes = async (
    server: Server,
    sizes: number[],
    body: (conns: Http1[]) => Promise<void>,
  ): Promise<RunOutput> => {
    const conns = await Promise.all(sizes.map(() => Http1.connect(server.base)));
    const total = sizes.reduce((a, b) => a + b, 0);
    let timedOut = false;
    const limitMs = opts.runTimeoutSeconds * 1000;
    const timer = Number.isFinite(limitMs) && limitMs < 2 ** 31
      ? setTimeout(() => {
        timedOut = true;
        for (const c of conns) c.close();
      }, limitMs)
      : undefined;
    try {
      const t = await timed(async () => {
        try {
          await body(conns);
        } catch (error) {
          if (!timedOut) throw error;
        }
      });
      if (!timedOut) return { metrics: { "MiB/s": total / MiB / t.seconds }, ...t };
      const sent = conns.reduce((a, c) => a + c.bytesWritten, 0);
      return {
        metrics: { "MiB/s": sent / MiB / t.seconds },
        ...t,
        timedOut: true,
        note: `stopped after ${opts.runTimeoutSeconds} s with ${(sent / MiB).toFixed(0)} of ${
          total / MiB
        } MiB sent (figure is an upper bound)`,
      };
    } finally {
      clearTimeout(timer);
      for (const c of conns) c.close();
    }
  };

  // The pull blob differs from the pushed one (its first byte is flipped), so that deleting
  // pushed blobs between runs never touches it. Its digest is computed once, here.
  const flip = () => {
    blob.bytes[0] = blob.bytes[0]! ^ 0xff;
  };
  flip();
  const pullBlob: Blob = { bytes: blob.bytes, digest: sha256(blob.bytes) };
  flip();
  const pullSetup = async (server: Server) => {
    flip();
    try {
      const conn = await Http1.connect(server.base);
      try {
        await pushMono(conn, server.base, "bench/pull", pullBlob);
      } finally {
        conn.close();
      }
      await warmBlobs(server, [pullBlob.digest]);
    } finally {
      flip();
    }
  };

  const pulled = new Set<string>();
  const verifyPull = (what: string) => {
    const got = sha256(opts.rx.subarray(0, size));
    if (got !== pullBlob.digest) {
      throw new Error(`${what}: pulled bytes hash to ${got}, not ${pullBlob.digest}`);
    }
  };

  // The small image for head-blob, get-manifest and tags-list.
  const layerBytes = makeData(MiB);
  crypto.getRandomValues(layerBytes.subarray(0, 65536));
  const layer: Blob = { bytes: layerBytes, digest: sha256(layerBytes) };
  const configBytes = new TextEncoder().encode(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    rootfs: { type: "layers", diff_ids: [layer.digest] },
  }));
  const config: Blob = { bytes: configBytes, digest: sha256(configBytes) };
  const manifestBytes = imageManifest(config, layer);
  const manifestDigest = sha256(manifestBytes);
  const imageReady = new Set<string>();
  const headRedirects = new Set<string>();
  const tagsReady = new Set<string>();
  const ensureImage = async (server: Server, repo: string) => {
    const conn = await Http1.connect(server.base);
    try {
      await pushMono(conn, server.base, repo, config);
      await pushMono(conn, server.base, repo, layer);
      await putManifest(conn, repo, "latest", manifestBytes, OCI_MANIFEST);
    } finally {
      conn.close();
    }
  };

  const loadWorkload = (
    name: string,
    conns: number,
    target: string,
    method: string,
    extra: string[] | ((server: Server) => string[]),
    setup: (server: Server) => Promise<void>,
    check: (server: Server) => Promise<string | undefined>,
  ): Workload => ({
    name,
    metrics: RATE,
    transfer: false,
    setup,
    async run(server) {
      const note = await check(server);
      const r = await runLoadProcess(opts.benchDir, [
        "--url",
        server.base + target,
        "--method",
        method,
        "--conns",
        String(conns),
        "--seconds",
        String(opts.loadSeconds),
        ...(typeof extra === "function" ? extra(server) : extra),
      ]);
      if (r.failed > 0) {
        throw new Error(
          `${name} on ${server.name}: ${r.failed} failed requests (${r.firstFailure})`,
        );
      }
      return {
        metrics: { "req/s": r.rps, "p99 ms": r.p99 },
        seconds: r.seconds,
        clientCpu: r.cpuSeconds,
        ...(note ? { note } : {}),
      };
    },
  });

  const imageSetup = async (server: Server) => {
    if (imageReady.has(server.name)) return;
    await ensureImage(server, "bench/image");
    imageReady.add(server.name);
  };

  return [
    pushWorkload("push-mono", (c, b, r) => pushMono(c, b, r, blob)),
    pushWorkload("push-stream", (c, b, r) => pushStream(c, b, r, blob, frame)),
    pushWorkload("push-chunked", (c, b, r) => pushChunked(c, b, r, blob, opts.chunkedParts)),
    {
      name: "push-parallel",
      metrics: THROUGHPUT,
      transfer: true,
      async run(server, run) {
        return await timedPushes(server, parallel.map((p) => p.bytes.length), async (conns) => {
          await Promise.all(
            parallel.map((part, i) =>
              pushStream(conns[i]!, server.base, `bench/push-parallel-r${run}-${i}`, part, frame)
            ),
          );
        });
      },
      after: (server) => dropBlobs(server, parallel),
    },
    {
      name: "pull",
      metrics: THROUGHPUT,
      transfer: true,
      setup: async (server) => {
        await pullSetup(server);
        pulled.add(server.name);
      },
      async run(server) {
        opts.rx.fill(0, 0, size);
        let res: Http1Response | null = null;
        let redirected = false;
        const t = await timed(async () => {
          const conn = await Http1.connect(server.base);
          try {
            res = await conn.request("GET", `/v2/bench/pull/blobs/${pullBlob.digest}`, {
              sink: opts.rx,
            });
          } finally {
            conn.close();
          }
          const loc = res.headers.get("location");
          if (opts.followRedirects && res.status === 307 && loc) {
            redirected = true;
            const target = new URL(loc, server.base);
            const next = await Http1.connect(target.origin);
            try {
              res = await next.request("GET", target.pathname + target.search, { sink: opts.rx });
            } finally {
              next.close();
            }
          }
        });
        const r = res as Http1Response | null;
        if (r === null || r.status !== 200 || r.received !== size) {
          throw new Error(
            `pull on ${server.name}: HTTP ${r?.status}, ${r?.received} of ${size} bytes`,
          );
        }
        verifyPull(`pull on ${server.name}`);
        return {
          metrics: { "MiB/s": size / MiB / t.seconds },
          ...t,
          ...(redirected ? { note: "307 to the bucket, followed" } : {}),
        };
      },
    },
    {
      name: `pull-${opts.rangeParts}-ranges`,
      metrics: THROUGHPUT,
      transfer: true,
      // Uses the blob the "pull" workload pushed; pushes it when run alone.
      setup: async (server) => {
        if (!pulled.has(server.name)) await pullSetup(server);
      },
      async run(server) {
        opts.rx.fill(0, 0, size);
        const part = Math.ceil(size / opts.rangeParts);
        const t = await timed(async () => {
          await Promise.all(Array.from({ length: opts.rangeParts }, async (_, i) => {
            const start = i * part;
            const end = Math.min(size, start + part) - 1;
            const conn = await Http1.connect(server.base);
            try {
              const res = await conn.request("GET", `/v2/bench/pull/blobs/${pullBlob.digest}`, {
                headers: { Range: `bytes=${start}-${end}` },
                sink: opts.rx.subarray(start, end + 1),
              });
              const cr = res.headers.get("content-range");
              if (
                res.status !== 206 || res.received !== end - start + 1 ||
                cr !== `bytes ${start}-${end}/${size}`
              ) {
                throw new Error(
                  `range ${start}-${end} on ${server.name}: HTTP ${res.status}, ${res.received} bytes, Content-Range ${cr}`,
                );
              }
            } finally {
              conn.close();
            }
          }));
        });
        verifyPull(`ranges on ${server.name}`);
        return { metrics: { "MiB/s": size / MiB / t.seconds }, ...t };
      },
    },
    loadWorkload(
      "head-blob",
      64,
      `/v2/bench/image/blobs/${layer.digest}`,
      "HEAD",
      (server) =>
        headRedirects.has(server.name)
          ? ["--expect-status", "307"]
          : ["--expect-length", String(layerBytes.length)],
      imageSetup,
      async (server) => {
        const conn = await Http1.connect(server.base);
        try {
          const res = await conn.request("HEAD", `/v2/bench/image/blobs/${layer.digest}`);
          // Distribution on S3 with redirects on answers a HEAD with a 307 to a presigned
          // HEAD URL of the bucket: its rate is that of the 307s (README, Scale-out).
          if (opts.followRedirects && res.status === 307 && res.headers.get("location")) {
            headRedirects.add(server.name);
            return "answers 307 to a presigned HEAD URL (no digest header)";
          }
          headRedirects.delete(server.name);
          expectStatus("HEAD blob", res, 200);
          if (res.headers.get("content-length") !== String(layerBytes.length)) {
            fail("HEAD blob Content-Length", res);
          }
          if (res.headers.get("docker-content-digest") !== layer.digest) {
            fail("HEAD blob digest", res);
          }
        } finally {
          conn.close();
        }
        return undefined;
      },
    ),
    loadWorkload(
      "get-manifest",
      64,
      "/v2/bench/image/manifests/latest",
      "GET",
      ["--header", `Accept: ${OCI_MANIFEST}`, "--expect-length", String(manifestBytes.length)],
      imageSetup,
      async (server) => {
        const conn = await Http1.connect(server.base);
        try {
          const res = await conn.request("GET", "/v2/bench/image/manifests/latest", {
            headers: { Accept: OCI_MANIFEST },
          });
          expectStatus("GET manifest", res, 200);
          if (sha256(res.body) !== manifestDigest) fail("GET manifest returned other bytes", res);
        } finally {
          conn.close();
        }
        return undefined;
      },
    ),
    loadWorkload(
      "tags-list",
      16,
      "/v2/bench/tags/tags/list?n=100",
      "GET",
      [],
      async (server) => {
        if (tagsReady.has(server.name)) return;
        await ensureImage(server, "bench/tags");
        const conn = await Http1.connect(server.base);
        try {
          for (let i = 0; i < 1000; i++) {
            await putManifest(
              conn,
              "bench/tags",
              `t${String(i).padStart(4, "0")}`,
              manifestBytes,
              OCI_MANIFEST,
            );
          }
        } finally {
          conn.close();
        }
        tagsReady.add(server.name);
      },
      async (server) => {
        const conn = await Http1.connect(server.base);
        try {
          const res = await conn.request("GET", "/v2/bench/tags/tags/list?n=100");
          expectStatus("GET tags/list", res, 200);
          const tags = JSON.parse(new TextDecoder().decode(res.body)).tags as string[];
          return `returns ${tags.length} tags`;
        } finally {
          conn.close();
        }
      },
    ),
  ];
}

/** The bytes of an OCI image manifest naming a config and one gzip layer. */
export function imageManifest(config: Blob, layer: Blob): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: config.digest,
      size: config.bytes.length,
    },
    layers: [{
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
      digest: layer.digest,
      size: layer.bytes.length,
    }],
  }));
}
