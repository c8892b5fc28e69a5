/**
 * Operations rows of the benchmark, ours only (Distribution is not involved):
 *
 * - `metrics-scrape`: our registry with its debug listener and metrics on; `/metrics` is
 *   scraped after a warm-up (the same requests on 10 repositories) and again after 10,000
 *   repositories' worth of traffic (per repository: a manifest GET, a blob HEAD, a tag list,
 *   and for one in ten a cross-repository mount, a durable write), reporting the scrape time,
 *   the exposition's size and its series count (which must not grow with repositories).
 * - `access-log`: the manifest GET rate (bench/load.ts, 64 connections) against two of our
 *   registries, one with the access log on and one with it off, in pairs of 1 s slices
 *   (`pairedSlices`); the server writes its log straight into a file, as under a service
 *   manager; the cost is given by CPU time per request (see `accessLogCost`) beside the
 *   measured rates.
 * - `auth`: blob HEAD and manifest GET rates (64 connections) against two of our registries,
 *   one without access control and one with htpasswd users, a policy and the built-in token
 *   server, sent a `Bearer` token as Docker sends it, in pairs of 1 s slices; and token
 *   issuance per second (`GET /token` with Basic credentials and one scope, 8 connections).
 */

import bcrypt from "bcryptjs";
import { join } from "node:path";
import { runLoadProcess } from "./ceilings.ts";
import { Http1 } from "./http1.ts";
import { stats } from "./report.ts";
import { cpuSeconds, freePort, type Server, startOurs } from "./servers.ts";
import { type Blob, imageManifest, pushMono, sha256 } from "./workloads.ts";

/** The names `--only` takes for these rows. */
export const OPS_ROWS: readonly string[] = ["metrics-scrape", "access-log", "auth"];

/** What the rows need from the benchmark. */
export interface OpsOptions {
  /** The repository root (main.ts). */
  readonly repoRoot: string;
  /** The bench/ folder (load.ts). */
  readonly benchDir: string;
  /** Where data roots and logs go. */
  readonly workDir: string;
  /** Seconds of each load run. */
  readonly loadSeconds: number;
  /** Load runs per server. */
  readonly runs: number;
  /** Repositories of the scrape row's traffic. */
  readonly repositories?: number;
}

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const encoder = new TextEncoder();

/** Pairs of slices per comparison of two of our servers (twice `--runs` when that is more). */
const PAIRS = 10;
/** Seconds of load in each slice. */
const SLICE_SECONDS = 1;

/** One slice of load against one server: its rate, p99 and CPU time per request. */
export interface Slice {
  readonly rps: number;
  readonly p99: number;
  readonly cpuUs: number;
}

/** Two servers, "on" and "off", compared slice by slice: `on[i]` and `off[i]` are a pair. */
export interface Paired {
  readonly on: readonly Slice[];
  readonly off: readonly Slice[];
}

/**
 * Compares two of our servers ("on" and "off", differing in one feature) under the same load,
 * in `pairs` pairs of short slices run back to back, alternating which goes first, after one
 * uncounted slice each. On the VM of BENCHMARKS.md the CPU's speed changes by up to half from
 * one stretch of a few seconds to the next, for the same code under the same load, so runs
 * seconds apart differed more than the two servers do; the two slices of a pair share their
 * stretch, and the figures are medians of the ratios taken within each pair.
 */
export async function pairedSlices(
  pairs: number,
  slice: (mode: "on" | "off") => Promise<Slice>,
): Promise<Paired> {
  await slice("on");
  await slice("off");
  const on: Slice[] = [];
  const off: Slice[] = [];
  for (let i = 0; i < pairs; i++) {
    for (const mode of i % 2 === 0 ? ["on", "off"] as const : ["off", "on"] as const) {
      (mode === "on" ? on : off).push(await slice(mode));
    }
  }
  return { on, off };
}

/** Per pair: the on side's rate over the off side's. */
export function rateRatios(paired: Paired): number[] {
  return paired.on.map((s, i) => s.rps / paired.off[i]!.rps);
}

/** Per pair: the share of the on side's CPU per request that the off side does not spend. */
export function cpuCosts(paired: Paired): number[] {
  return paired.on.map((s, i) => 1 - paired.off[i]!.cpuUs / s.cpuUs);
}

/** One slice of `load.ts` against `server` with `args`; throws when a request failed. */
async function loadSlice(
  opts: OpsOptions,
  server: Server,
  what: string,
  args: readonly string[],
): Promise<Slice> {
  const cpu0 = cpuSeconds(server.pid) ?? 0;
  const out = await runLoadProcess(opts.benchDir, [
    ...args,
    "--conns",
    "64",
    "--seconds",
    String(SLICE_SECONDS),
  ]);
  if (out.failed > 0) throw new Error(`${what}: ${out.firstFailure}`);
  const cpu = (cpuSeconds(server.pid) ?? cpu0) - cpu0;
  return { rps: out.rps, p99: out.p99, cpuUs: cpu / out.requests * 1e6 };
}

/** `median (min–max)` of `values` times `scale`, with `digits` decimals. */
function spread(values: readonly number[], digits: number, scale = 1): string {
  const s = stats(values.map((v) => v * scale));
  return `${s.median.toFixed(digits)} (${s.min.toFixed(digits)} to ${s.max.toFixed(digits)})`;
}

/** A small image: config, one 1 KiB layer, and a manifest naming them. */
function smallImage(): { config: Blob; layer: Blob; manifest: Uint8Array } {
  const configBytes = encoder.encode(JSON.stringify({ architecture: "amd64", os: "linux" }));
  const layerBytes = crypto.getRandomValues(new Uint8Array(1024));
  const config = { bytes: configBytes, digest: sha256(configBytes) };
  const layer = { bytes: layerBytes, digest: sha256(layerBytes) };
  const manifest = imageManifest(config, layer);
  return { config, layer, manifest };
}

async function pushImage(server: Server, repo: string, image: ReturnType<typeof smallImage>) {
  const conn = await Http1.connect(server.base);
  try {
    await pushMono(conn, server.base, repo, image.config);
    await pushMono(conn, server.base, repo, image.layer);
    const res = await conn.request("PUT", `/v2/${repo}/manifests/latest`, {
      body: image.manifest,
      headers: { "Content-Type": OCI_MANIFEST },
    });
    if (res.status !== 201) throw new Error(`PUT manifest ${repo}: HTTP ${res.status}`);
  } finally {
    conn.close();
  }
}

/** One scrape: milliseconds, bytes, series (sample lines), of which `registry_http_*`. */
async function scrape(url: string) {
  const t0 = performance.now();
  const res = await fetch(url);
  const text = await res.text();
  const ms = performance.now() - t0;
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status}`);
  const lines = text.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
  const http = lines.filter((l) => l.startsWith("registry_http_")).length;
  return { ms, bytes: text.length, series: lines.length, http };
}

async function scrapes(url: string, n: number) {
  const all = [];
  for (let i = 0; i < n; i++) all.push(await scrape(url));
  return { ...all[all.length - 1], ms: stats(all.map((s) => s.ms)) };
}

async function metricsScrape(opts: OpsOptions): Promise<string[]> {
  const repositories = opts.repositories ?? 10_000;
  const debugPort = freePort();
  const server = await startOurs(join(opts.workDir, "ours-metrics"), opts.workDir, {
    repoRoot: opts.repoRoot,
    logName: "ours-metrics.log",
    env: {
      REGISTRY_HTTP_DEBUG_ADDR: `127.0.0.1:${debugPort}`,
      REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED: "true",
    },
  });
  const url = `http://127.0.0.1:${debugPort}/metrics`;
  try {
    await scrape(url).catch(() => {
      throw new Error(`No metrics at ${url}: does main.ts start the debug listener?`);
    });
    const image = smallImage();
    await pushImage(server, "base/image", image);
    const conns = await Promise.all(Array.from({ length: 8 }, () => Http1.connect(server.base)));
    let requests = 0;
    const traffic = async (count: number, prefix: string) => {
      let next = 0;
      await Promise.all(conns.map(async (conn) => {
        for (let i = next++; i < count; i = next++) {
          const repo = `${prefix}${i % 100}/repo${i}`;
          const steps: [string, string, number][] = [
            ["GET", `/v2/${repo}/manifests/latest`, 404],
            ["HEAD", `/v2/${repo}/blobs/${image.config.digest}`, 404],
            ["GET", `/v2/${repo}/tags/list`, 404],
          ];
          if (i % 10 === 0) {
            const from = `mount=${image.layer.digest}&from=base/image`;
            steps.push(["POST", `/v2/${repo}/blobs/uploads/?${from}`, 201]);
          }
          for (const [method, path, status] of steps) {
            const res = await conn.request(method, path);
            if (res.status !== status) throw new Error(`${method} ${path}: HTTP ${res.status}`);
            requests++;
          }
        }
      }));
    };
    await traffic(10, "warm");
    await scrapes(url, 5); // warm-up, and the blob bytes' first walk
    const before = await scrapes(url, 50);
    requests = 0;
    const t0 = performance.now();
    await traffic(repositories, "org");
    const trafficSeconds = (performance.now() - t0) / 1000;
    for (const c of conns) c.close();
    await new Promise((wake) => setTimeout(wake, 1000)); // let the last writes settle
    const after = await scrapes(url, 50);
    const ms = (s: { median: number; min: number; max: number }) =>
      `${s.median.toFixed(2)} ms (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;
    return [
      `| metrics-scrape, before traffic | ${before.series} series (registry_http_*: ${before.http}), ${
        (before.bytes / 1024).toFixed(1)
      } KiB | ${ms(before.ms)} |`,
      `| metrics-scrape, after ${repositories} repositories (${requests} requests in ${
        trafficSeconds.toFixed(1)
      } s) | ${after.series} series (registry_http_*: ${after.http}), ${
        (after.bytes / 1024).toFixed(1)
      } KiB | ${ms(after.ms)} |`,
    ];
  } finally {
    await server.stop();
  }
}

async function accessLog(opts: OpsOptions): Promise<string[]> {
  const servers: Record<string, Server> = {};
  try {
    for (const mode of ["on", "off"]) {
      servers[mode] = await startOurs(join(opts.workDir, `ours-log-${mode}`), opts.workDir, {
        repoRoot: opts.repoRoot,
        logName: `ours-log-${mode}.log`,
        env: { REGISTRY_LOG_REQUESTS: mode === "on" ? "1" : "0" },
      });
    }
    const image = smallImage();
    for (const s of Object.values(servers)) await pushImage(s, "bench/image", image);
    const pairs = Math.max(PAIRS, 2 * opts.runs);
    const paired = await pairedSlices(
      pairs,
      (mode) =>
        loadSlice(opts, servers[mode], `access-log ${mode}`, [
          "--url",
          `${servers[mode].base}/v2/bench/image/manifests/latest`,
          "--method",
          "GET",
          "--header",
          `Accept: ${OCI_MANIFEST}`,
          "--expect-length",
          String(image.manifest.length),
        ]),
    );
    const logged = await Deno.readTextFile(servers.on.logPath);
    const lines = logged.split("\n").filter((l) => l.includes("request")).length;
    if (lines === 0) throw new Error("The access log wrote nothing with REGISTRY_LOG_REQUESTS=1");
    const row = (mode: "on" | "off") =>
      `| get-manifest, access log ${mode} | ${
        spread(paired[mode].map((x) => x.rps), 0)
      } req/s, p99 ${stats(paired[mode].map((x) => x.p99)).median.toFixed(2)} ms, server CPU ${
        stats(paired[mode].map((x) => x.cpuUs)).median.toFixed(1)
      } µs/request | ${pairs} slices of ${SLICE_SECONDS} s |`;
    return [row("on"), row("off"), accessLogCost(paired, lines)];
  } finally {
    for (const s of Object.values(servers)) await s.stop();
  }
}

/**
 * The access log's cost row. The server is CPU-bound under this load, so its request rate is
 * the inverse of its CPU time per request: `1 − off/on` of the CPU per request is the rate the
 * log costs, a figure that other processes on the machine disturb far less than the measured
 * rates (whose in-pair ratio is shown too). Both are medians over the pairs (`pairedSlices`).
 */
export function accessLogCost(paired: Paired, lines: number): string {
  const extraUs = paired.on.map((s, i) => s.cpuUs - paired.off[i]!.cpuUs);
  return `| access log cost | ${
    spread(cpuCosts(paired), 1, 100)
  }% of the request rate by CPU per request (${
    stats(extraUs).median.toFixed(1)
  } µs more): medians of ${paired.on.length} pairs; measured rate on/off ${
    spread(rateRatios(paired), 3)
  } | ${lines} log lines |`;
}

const BENCH_USER = "bench";
const BENCH_PASSWORD = "bench-password";
const BENCH_SERVICE = "bench-registry";

/** A registry configuration with htpasswd, one policy and the built-in token server. */
async function writeAuthConfig(dir: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const htpasswd = join(dir, "htpasswd");
  await Deno.writeTextFile(htpasswd, `${BENCH_USER}:${bcrypt.hashSync(BENCH_PASSWORD, 10)}\n`);
  const config = join(dir, "config.yml");
  await Deno.writeTextFile(
    config,
    [
      "version: 0.1",
      "auth:",
      "  htpasswd:",
      `    path: ${htpasswd}`,
      "  token:",
      `    service: ${BENCH_SERVICE}`,
      `    issuer: ${BENCH_SERVICE}`,
      "registry:",
      "  auth:",
      "    token:",
      "      builtin: true",
      "    policies:",
      '      - repositories: ["bench/**"]',
      `        users: [${BENCH_USER}]`,
      "        actions: [pull, push]",
      "",
    ].join("\n"),
  );
  return config;
}

/** A token for `scope` from the built-in token server, with the bench user's credentials. */
async function benchToken(base: string, scope: string): Promise<string> {
  const query = new URLSearchParams({ service: BENCH_SERVICE, scope });
  const res = await fetch(`${base}/token?${query}`, {
    headers: { Authorization: basicOf(BENCH_USER, BENCH_PASSWORD) },
  });
  const body = await res.json();
  if (res.status !== 200 || typeof body.token !== "string") {
    throw new Error(`GET /token: HTTP ${res.status} ${JSON.stringify(body)}`);
  }
  return body.token;
}

function basicOf(user: string, password: string): string {
  return `Basic ${btoa(`${user}:${password}`)}`;
}

/** Pushes the small image with fetch, sending `headers` (a token) on every request. */
async function pushImageFetch(
  base: string,
  repo: string,
  image: ReturnType<typeof smallImage>,
  headers: Record<string, string>,
): Promise<void> {
  for (const blob of [image.config, image.layer]) {
    const post = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: "POST", headers });
    await post.body?.cancel();
    const location = post.headers.get("location");
    if (post.status !== 202 || location === null) throw new Error(`POST: HTTP ${post.status}`);
    const url = new URL(location, base);
    url.searchParams.set("digest", blob.digest);
    const put = await fetch(url, { method: "PUT", headers, body: new Uint8Array(blob.bytes) });
    await put.body?.cancel();
    if (put.status !== 201) throw new Error(`PUT blob: HTTP ${put.status}`);
  }
  const res = await fetch(`${base}/v2/${repo}/manifests/latest`, {
    method: "PUT",
    headers: { ...headers, "Content-Type": OCI_MANIFEST },
    body: new Uint8Array(image.manifest),
  });
  await res.body?.cancel();
  if (res.status !== 201) throw new Error(`PUT manifest: HTTP ${res.status}`);
}

async function authRows(opts: OpsOptions): Promise<string[]> {
  const servers: Record<string, Server> = {};
  const repo = "bench/image";
  try {
    const config = await writeAuthConfig(join(opts.workDir, "auth"));
    servers.off = await startOurs(join(opts.workDir, "ours-auth-off"), opts.workDir, {
      repoRoot: opts.repoRoot,
      logName: "ours-auth-off.log",
    });
    servers.on = await startOurs(join(opts.workDir, "ours-auth-on"), opts.workDir, {
      repoRoot: opts.repoRoot,
      logName: "ours-auth-on.log",
      env: { REGISTRY_CONFIGURATION_PATH: config },
    });
    const image = smallImage();
    await pushImage(servers.off, repo, image);
    const pushToken = await benchToken(servers.on.base, `repository:${repo}:pull,push`);
    await pushImageFetch(servers.on.base, repo, image, { Authorization: `Bearer ${pushToken}` });
    const pullToken = await benchToken(servers.on.base, `repository:${repo}:pull`);
    const headers: Record<string, string[]> = {
      off: [],
      on: ["--header", `Authorization: Bearer ${pullToken}`],
    };
    // Without a token the protected registry must refuse, or the row measures nothing.
    const refused = await fetch(`${servers.on.base}/v2/${repo}/manifests/latest`);
    await refused.body?.cancel();
    if (refused.status !== 401) throw new Error(`auth on: no token got HTTP ${refused.status}`);

    const workloads = [
      {
        label: "head-blob",
        args: ["--url", `/v2/${repo}/blobs/${image.layer.digest}`, "--method", "HEAD"],
        length: image.layer.bytes.length,
      },
      {
        label: "get-manifest",
        args: ["--url", `/v2/${repo}/manifests/latest`, "--method", "GET"],
        length: image.manifest.length,
      },
    ];
    const rows: string[] = [];
    const pairs = Math.max(PAIRS, 2 * opts.runs);
    for (const w of workloads) {
      const paired = await pairedSlices(pairs, (mode) => {
        const args = [...w.args];
        args[1] = `${servers[mode].base}${args[1]}`;
        return loadSlice(opts, servers[mode], `auth ${w.label} ${mode}`, [
          ...args,
          "--header",
          `Accept: ${OCI_MANIFEST}`,
          ...headers[mode],
          "--expect-length",
          String(w.length),
        ]);
      });
      const median = (mode: "on" | "off", key: "rps" | "cpuUs") =>
        stats(paired[mode].map((x) => x[key])).median;
      const ratio = stats(rateRatios(paired));
      rows.push(
        `| ${w.label}, Bearer auth on / off | ${median("on", "rps").toFixed(0)} / ${
          median("off", "rps").toFixed(0)
        } req/s; on/off **${ratio.median.toFixed(3)}×** (the median of ${pairs} in-pair ratios, ${
          ratio.min.toFixed(3)
        }–${ratio.max.toFixed(3)}; target ≥ 0.8×); server CPU ${
          median("on", "cpuUs").toFixed(1)
        } / ${
          median("off", "cpuUs").toFixed(1)
        } µs/request | ${pairs} pairs of ${SLICE_SECONDS} s slices |`,
      );
    }

    const query = new URLSearchParams({ service: BENCH_SERVICE, scope: `repository:${repo}:pull` });
    const issued: number[] = [];
    for (let r = 0; r < opts.runs; r++) {
      const out = await runLoadProcess(opts.benchDir, [
        "--url",
        `${servers.on.base}/token?${query}`,
        "--method",
        "GET",
        "--conns",
        "8",
        "--seconds",
        String(opts.loadSeconds),
        "--header",
        `Authorization: ${basicOf(BENCH_USER, BENCH_PASSWORD)}`,
      ]);
      if (out.failed > 0) throw new Error(`token issuance: ${out.firstFailure}`);
      issued.push(out.rps);
    }
    const tokens = stats(issued);
    rows.push(
      `| token issuance (GET /token, Basic, one scope, ES256) | ${
        tokens.median.toFixed(0)
      } tokens/s (${tokens.min.toFixed(0)}–${tokens.max.toFixed(0)}) | ${opts.runs} runs |`,
    );
    return rows;
  } finally {
    for (const s of Object.values(servers)) await s.stop();
  }
}

/** Runs the chosen operations rows and returns their table (markdown). */
export async function runOpsRows(names: readonly string[], opts: OpsOptions): Promise<string> {
  const rows = ["| Row | Figure | Time / runs |", "|---|---|---|"];
  for (const name of names) {
    const t0 = performance.now();
    const run = name === "metrics-scrape" ? metricsScrape : name === "auth" ? authRows : accessLog;
    rows.push(...await run(opts));
    console.log(`${name}: done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  return rows.join("\n");
}

/**
 * Runs only operations rows (`--only` named nothing else): no Distribution, no ceilings.
 * Returns the exit code.
 */
export async function runOpsOnly(
  names: readonly string[],
  opts: Omit<OpsOptions, "workDir"> & { readonly parent: string; readonly keep: boolean },
): Promise<number> {
  const workDir = await Deno.makeTempDir({ dir: opts.parent, prefix: "registry-bench-ops-" });
  console.log(`# Registry benchmark: operations rows (ours only)\n`);
  console.log(`Deno ${Deno.version.deno}; ${navigator.hardwareConcurrency} CPUs; in ${workDir}\n`);
  try {
    console.log(`\n${await runOpsRows(names, { ...opts, workDir })}`);
    return 0;
  } catch (error) {
    console.error(`\nBenchmark failed: ${error instanceof Error ? error.stack : error}`);
    return 1;
  } finally {
    if (opts.keep) console.log(`Kept ${workDir}`);
    else await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
}
