/**
 * `deno task bench:gc` (also `deno task bench --only gc`): garbage collection on a big store,
 * ours online against CNCF Distribution's offline `docker-registry garbage-collect`.
 *
 * The store (bench/big_store.ts, `writeStore` with a `GarbagePlan`): `--manifests` image
 * manifests over `--repositories` repositories, each manifest naming a layer of its own and its
 * repository's config, so about two blobs a manifest; then garbage, picked per manifest by a
 * fixed hash so that both layouts get the same: `--untagged` of the manifests have no tag,
 * `--unlinked` as many blobs again are linked nowhere, `--linked-unreferenced` are linked into a
 * repository but named by no manifest. Our files are backdated two hours, past the one-hour
 * grace window the registry runs with.
 *
 * Both collectors delete the same: Distribution's `--delete-untagged` deletes untagged manifests
 * (and then their blobs), which ours does with the retention rule `repositories: ["**"],
 * untaggedafter: 0s`; both then delete every blob no kept manifest names (ours also removes the
 * repositories' links to them, which Distribution leaves dangling). The blobs left are counted
 * on disk in both stores and checked against what the generator planted.
 *
 * Ours runs on two copies of the store, the schedule off (`storage.gc.interval: 0`):
 *
 * - idle: a dry run, then a real collection, each by `POST /admin/gc?wait=true` with nothing
 *   else running: time, counts and bytes from the reports; peak RSS (`Sampler`);
 * - under load: the push rate (monolithic pushes of 4 KiB blobs over `--push-conns`
 *   connections, from this process) and the manifest GET rate (bench/load.ts, `--paths` over
 *   the tagged manifests, `--conns` connections), together in windows of `--seconds`: a
 *   warm-up, two idle, then one after another from the start of a real collection until it is over; the
 *   ratios during / idle (the target is at least 0.8), how much of the load time the
 *   collection covered (the last window may outlast it), its time under load and the peak RSS.
 *
 * Usage: deno run -A bench/gc_bench.ts [--manifests 100000] [--repositories N/100]
 *          [--untagged 0.05] [--unlinked 0.05] [--linked-unreferenced 0.05] [--seconds 5]
 *          [--conns 16] [--push-conns 4] [--dir PARENT] [--keep] [--skip-distribution]
 */

import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { type GarbagePlan, type StoreCounts, type StorePlan, writeStore } from "./big_store.ts";
import { runLoadProcess } from "./ceilings.ts";
import { Http1 } from "./http1.ts";
import { distributionConfig, freePort, Sampler, type Server, startOurs } from "./servers.ts";
import { type Blob, pushMono, sha256 } from "./workloads.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const DISTRIBUTION = "/usr/bin/docker-registry";

/** The parts of our collector's report the benchmark reads. */
interface GcReport {
  readonly dryRun: boolean;
  readonly durationMs: number;
  readonly counts: {
    tags: number;
    manifests: number;
    links: number;
    blobs: number;
    uploads: number;
  };
  readonly bytesFreed: number;
  readonly spared: number;
  readonly error?: string;
}

/** Our settings for the benchmark: no schedule, a one-hour grace, untagged manifests go. */
export const OURS_GC_ENV: Record<string, string> = {
  REGISTRY_STORAGE_GC_INTERVAL: "0",
  REGISTRY_STORAGE_GC_GRACE: "1h",
  REGISTRY_STORAGE_GC_RETENTION: '[{repositories: ["**"], untaggedafter: 0s}]',
};

/** Blob files in a store: `blobs/sha256/XX/HEX` (ours) or `…/XX/HEX/data` (Distribution). */
export function countBlobs(root: string, layout: "ours" | "distribution"): number {
  const dir = layout === "ours"
    ? join(root, "blobs", "sha256")
    : join(root, "docker", "registry", "v2", "blobs", "sha256");
  let n = 0;
  for (const prefix of Deno.readDirSync(dir)) {
    if (!prefix.isDirectory) continue;
    for (const entry of Deno.readDirSync(join(dir, prefix.name))) {
      if (layout === "ours") {
        if (entry.isFile && /^[0-9a-f]{64}$/.test(entry.name)) n++;
      } else if (entry.isDirectory) {
        try {
          if (Deno.statSync(join(dir, prefix.name, entry.name, "data")).isFile) n++;
        } catch {
          // a folder without data: deleted
        }
      }
    }
  }
  return n;
}

/** What the generator planted as garbage, as our collector would count it. */
export function expectedGarbage(c: StoreCounts, uniqueLayers: boolean): {
  manifests: number;
  links: number;
  blobs: number;
  bytes: number;
} {
  return {
    manifests: c.untaggedManifests,
    // an untagged manifest's own layer link, when layers are unique; the planted links
    links: (uniqueLayers ? c.untaggedManifests : 0) + c.linkedUnreferencedBlobs,
    blobs: c.untaggedBlobs + c.unlinkedBlobs + c.linkedUnreferencedBlobs,
    bytes: c.garbageBytes,
  };
}

async function collect(server: Server, dryRun: boolean): Promise<GcReport> {
  const res = await fetch(`${server.base}/admin/gc?wait=true${dryRun ? "&dryRun=true" : ""}`, {
    method: "POST",
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST /admin/gc: HTTP ${res.status}: ${text}`);
  const report = JSON.parse(text) as GcReport;
  if (report.error) throw new Error(`collection stopped: ${report.error}`);
  if (report.dryRun !== dryRun) throw new Error("joined a collection of the other kind");
  return report;
}

/** Monolithic pushes of distinct 4 KiB blobs over `conns` connections for `seconds`. */
async function pushFor(
  base: string,
  conns: number,
  seconds: number,
  tag: string,
): Promise<{ pushes: number; rps: number }> {
  const deadline = performance.now() + seconds * 1000;
  let pushes = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conns }, async (_, c) => {
    const conn = await Http1.connect(base);
    try {
      for (let i = 0; performance.now() < deadline; i++) {
        const bytes = new Uint8Array(4096);
        new TextEncoder().encodeInto(`${tag} ${c} ${i} `.padEnd(64, "."), bytes);
        const blob: Blob = { bytes, digest: sha256(bytes) };
        await pushMono(conn, base, "gc-bench/pushed", blob);
        pushes++;
      }
    } finally {
      conn.close();
    }
  }));
  return { pushes, rps: pushes / ((performance.now() - t0) / 1000) };
}

interface Rates {
  readonly pushRps: number;
  readonly pushes: number;
  readonly getRps: number;
  /** The window's length, in seconds. */
  readonly seconds: number;
}

/** Windows of load as one: pushes and seconds summed, rates weighted by time. */
function mean(windows: Rates[]): Rates {
  const seconds = windows.reduce((a, w) => a + w.seconds, 0);
  return {
    pushes: windows.reduce((a, w) => a + w.pushes, 0),
    pushRps: windows.reduce((a, w) => a + w.pushRps * w.seconds, 0) / seconds,
    getRps: windows.reduce((a, w) => a + w.getRps * w.seconds, 0) / seconds,
    seconds,
  };
}

async function loadFor(
  server: Server,
  opts: { benchDir: string; pathsFile: string; seconds: number; conns: number; pushConns: number },
  tag: string,
): Promise<Rates> {
  const [get, push] = await Promise.all([
    runLoadProcess(opts.benchDir, [
      "--url",
      server.base,
      "--paths",
      opts.pathsFile,
      "--method",
      "GET",
      "--conns",
      String(opts.conns),
      "--seconds",
      String(opts.seconds),
      "--header",
      `Accept: ${OCI_MANIFEST}`,
    ]),
    pushFor(server.base, opts.pushConns, opts.seconds, tag),
  ]);
  if (get.failed > 0) throw new Error(`manifest GET: ${get.failed} failed: ${get.firstFailure}`);
  return { pushRps: push.rps, pushes: push.pushes, getRps: get.rps, seconds: get.seconds };
}

/** What Distribution's offline collector did. */
export interface DistributionGc {
  readonly seconds: number;
  readonly marked: number;
  readonly blobsEligible: number;
  readonly manifestsEligible: number;
  readonly blobsBefore: number;
  readonly blobsAfter: number;
}

/** Parses the summary line of `garbage-collect`. */
export function parseDistributionSummary(
  output: string,
): { marked: number; blobs: number; manifests: number } | null {
  const m = /(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion/.exec(
    output,
  );
  return m ? { marked: Number(m[1]), blobs: Number(m[2]), manifests: Number(m[3]) } : null;
}

async function distributionGc(dataDir: string, workDir: string): Promise<DistributionGc> {
  const config = join(workDir, "distribution-gc.yml");
  await Deno.writeTextFile(config, distributionConfig(dataDir, freePort()));
  const outPath = join(workDir, "distribution-gc.out");
  const blobsBefore = countBlobs(dataDir, "distribution");
  const t0 = performance.now();
  const out = await new Deno.Command("bash", {
    args: [
      "-c",
      'exec "$0" garbage-collect --delete-untagged "$1" >"$2" 2>&1',
      DISTRIBUTION,
      config,
      outPath,
    ],
    stdin: "null",
  }).output();
  const seconds = (performance.now() - t0) / 1000;
  const text = await Deno.readTextFile(outPath);
  if (!out.success) throw new Error(`garbage-collect failed:\n${text.slice(-2000)}`);
  const summary = parseDistributionSummary(text);
  if (summary === null) {
    throw new Error(`garbage-collect printed no summary:\n${text.slice(-2000)}`);
  }
  return {
    seconds,
    marked: summary.marked,
    blobsEligible: summary.blobs,
    manifestsEligible: summary.manifests,
    blobsBefore,
    blobsAfter: countBlobs(dataDir, "distribution"),
  };
}

function fmtN(n: number): string {
  return n.toLocaleString("en-US");
}

function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}

/** Runs the scenario; returns the markdown table (also printed). */
export async function runGcBench(values: {
  manifests: number;
  repositories: number;
  untagged: number;
  unlinked: number;
  linkedUnreferenced: number;
  seconds: number;
  conns: number;
  pushConns: number;
  dir?: string;
  keep: boolean;
  skipDistribution: boolean;
}): Promise<string> {
  const benchDir = dirname(new URL(import.meta.url).pathname);
  const repoRoot = dirname(benchDir);
  const workDir = await Deno.makeTempDir({ dir: values.dir, prefix: "registry-gc-bench-" });
  const plan: StorePlan = {
    manifests: values.manifests,
    repositories: values.repositories,
    bigTags: 0,
  };
  const garbage: GarbagePlan = {
    uniqueLayers: true,
    untagged: values.untagged,
    unlinked: values.unlinked,
    linkedUnreferenced: values.linkedUnreferenced,
    mtime: new Date(Date.now() - 2 * 3600_000),
  };
  console.log(
    `# Garbage collection; Deno ${Deno.version.deno}; ${navigator.hardwareConcurrency} CPUs; load ${
      Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
    }; in ${workDir}\n`,
  );
  const servers: Server[] = [];
  try {
    const write = (name: string, layout: "ours" | "distribution") => {
      const t0 = performance.now();
      const dir = join(workDir, name);
      const out = writeStore(dir, plan, layout, garbage);
      console.log(
        `${name}: wrote ${fmtN(out.files)} files (${fmtN(out.counts.blobs)} blobs) in ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s`,
      );
      return { dir, ...out };
    };
    const idleStore = write("ours-idle", "ours");
    const loadStore = write("ours-load", "ours");
    const distStore = values.skipDistribution ? null : write("distribution", "distribution");
    const counts = idleStore.counts;
    const expected = expectedGarbage(counts, true);
    const pathsFile = join(workDir, "targets.txt");
    await Deno.writeTextFile(pathsFile, idleStore.targets.join("\n"));
    await new Deno.Command("sync").output();

    // Ours, idle: a dry run, then a collection.
    const idle = await startOurs(idleStore.dir, workDir, {
      repoRoot,
      logName: "ours-idle.log",
      env: OURS_GC_ENV,
    });
    servers.push(idle);
    const dry = await collect(idle, true);
    console.log(`ours idle: dry run ${(dry.durationMs / 1000).toFixed(2)} s`, dry.counts);
    const idleSampler = new Sampler(idle.pid);
    idleSampler.start();
    const real = await collect(idle, false);
    const idleUsage = idleSampler.stop();
    console.log(`ours idle: collection ${(real.durationMs / 1000).toFixed(2)} s`, real.counts);
    await idle.stop();
    servers.pop();
    const oursLeft = countBlobs(idleStore.dir, "ours");

    // Ours, under load: the rates idle, then during a collection.
    const loaded = await startOurs(loadStore.dir, workDir, {
      repoRoot,
      logName: "ours-load.log",
      env: OURS_GC_ENV,
    });
    servers.push(loaded);
    const loadOpts = { benchDir, pathsFile, ...values };
    // a short warm-up, so that neither window pays for first requests
    // a warm-up window (the manifests' files into the page cache, the server's code compiled),
    // then the idle rates: the mean of two windows
    const warm = await loadFor(loaded, loadOpts, "warm-up");
    const before = mean([
      await loadFor(loaded, loadOpts, "idle 0"),
      await loadFor(loaded, loadOpts, "idle 1"),
    ]);
    const sampler = new Sampler(loaded.pid);
    sampler.start();
    const t0 = performance.now();
    const gcRun = collect(loaded, false).then((r) => ({ r, s: (performance.now() - t0) / 1000 }));
    // windows of load, one after another, until the collection is over
    let finished = false;
    gcRun.then(() => finished = true, () => finished = true);
    const windows: Rates[] = [];
    while (!finished) windows.push(await loadFor(loaded, loadOpts, `during ${windows.length}`));
    const { r: underLoad, s: underLoadS } = await gcRun;
    const loadUsage = sampler.stop();
    const during = mean(windows);
    const loadS = during.seconds;
    const coverage = Math.min(1, underLoadS / loadS);
    console.log(
      `ours under load: collection ${underLoadS.toFixed(2)} s (${
        (coverage * 100).toFixed(0)
      }% of ${windows.length} windows of load, ${loadS.toFixed(0)} s)`,
      underLoad.counts,
    );
    await loaded.stop();
    servers.pop();
    const pushedBlobs = warm.pushes + before.pushes + during.pushes;
    const loadLeft = countBlobs(loadStore.dir, "ours");

    // Checks: both of ours deleted what was planted, and kept the rest.
    const problems: string[] = [];
    for (
      const [name, r] of [["dry run", dry], ["idle", real], ["under load", underLoad]] as const
    ) {
      if (
        r.counts.manifests !== expected.manifests || r.counts.links !== expected.links ||
        r.counts.blobs !== expected.blobs || r.bytesFreed !== expected.bytes
      ) {
        problems.push(
          `ours ${name}: ${JSON.stringify(r.counts)}, ${r.bytesFreed} bytes; planted ${
            JSON.stringify(expected)
          }`,
        );
      }
    }
    const keptExpected = counts.blobs - expected.blobs;
    if (oursLeft !== keptExpected) {
      problems.push(`ours idle: ${oursLeft} blobs left, not ${keptExpected}`);
    }
    if (loadLeft < keptExpected || loadLeft > keptExpected + pushedBlobs) {
      problems.push(`ours under load: ${loadLeft} blobs left, not ${keptExpected} + pushed`);
    }

    let dist: DistributionGc | null = null;
    if (distStore !== null) {
      dist = await distributionGc(distStore.dir, workDir);
      console.log(`distribution: garbage-collect ${dist.seconds.toFixed(2)} s`, dist);
      if (dist.blobsAfter !== keptExpected) {
        problems.push(`distribution: ${dist.blobsAfter} blobs left, not ${keptExpected}`);
      }
      if (dist.manifestsEligible !== expected.manifests) {
        problems.push(
          `distribution: ${dist.manifestsEligible} manifests deleted, not ${expected.manifests}`,
        );
      }
    }

    const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN).toFixed(2);
    const lines = [
      "",
      `Store: ${fmtN(counts.manifests)} manifests (${fmtN(counts.untaggedManifests)} untagged) in ${
        fmtN(plan.repositories)
      } repositories, ${fmtN(counts.blobs)} blobs (${
        mib(counts.blobBytes)
      } MiB); planted garbage: ${fmtN(expected.manifests)} manifests, ${
        fmtN(expected.links)
      } links, ${fmtN(expected.blobs)} blobs (${
        fmtN(expected.bytes)
      } bytes). Ours: retention \`untaggedafter: 0s\` on every repository, as Distribution's \`--delete-untagged\`. Load: ${values.conns} connections of manifest GET and ${values.pushConns} of 4 KiB monolithic pushes, windows of ${values.seconds} s (a warm-up, two idle; during: one after another until the collection ends).`,
      "",
      "| collector | manifests / blobs | dry run s | collection s (idle) | collection s (under load) | freed manifests / links / blobs / MiB | blobs left | push/s idle → during (×) | manifest GET/s idle → during (×) | load time covered by the collection | peak RSS MiB idle / under load |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
      `| ours | ${fmtN(counts.manifests)} / ${fmtN(counts.blobs)} | ${
        (dry.durationMs / 1000).toFixed(2)
      } | ${(real.durationMs / 1000).toFixed(2)} | ${(underLoad.durationMs / 1000).toFixed(2)} | ${
        fmtN(real.counts.manifests)
      } / ${fmtN(real.counts.links)} / ${fmtN(real.counts.blobs)} / ${mib(real.bytesFreed)} | ${
        fmtN(oursLeft)
      } | ${before.pushRps.toFixed(0)} → ${during.pushRps.toFixed(0)} (${
        ratio(during.pushRps, before.pushRps)
      }) | ${before.getRps.toFixed(0)} → ${during.getRps.toFixed(0)} (${
        ratio(during.getRps, before.getRps)
      }) | ${(coverage * 100).toFixed(0)}% | ${idleUsage.peakRssMiB.toFixed(1)} / ${
        loadUsage.peakRssMiB.toFixed(1)
      } |`,
    ];
    if (dist !== null) {
      lines.push(
        `| Distribution 2.8.2 \`garbage-collect --delete-untagged\` (offline) | ${
          fmtN(counts.manifests)
        } / ${fmtN(dist.blobsBefore)} | — | ${dist.seconds.toFixed(2)} | (offline) | ${
          fmtN(dist.manifestsEligible)
        } / (links left) / ${fmtN(dist.blobsBefore - dist.blobsAfter)} (${
          fmtN(dist.blobsEligible)
        } eligible) / — | ${fmtN(dist.blobsAfter)} | — | — | — | — |`,
        "",
        `Time, ours idle / Distribution: ${ratio(real.durationMs / 1000, dist.seconds)}×.`,
      );
    }
    if (problems.length > 0) lines.push("", "**Mismatches:**", ...problems.map((p) => `- ${p}`));
    const table = lines.join("\n");
    console.log(table);
    if (problems.length > 0) throw new Error(`gc bench: ${problems.length} mismatches`);
    return table;
  } finally {
    for (const s of servers) await s.stop(true).catch(() => {});
    if (!values.keep) await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
}

/** Parses the scenario's flags (shared with `deno task bench --only gc`). */
export function parseGcArgs(args: string[]): Parameters<typeof runGcBench>[0] {
  const { values } = parseArgs({
    args,
    options: {
      manifests: { type: "string", default: "100000" },
      repositories: { type: "string" },
      untagged: { type: "string", default: "0.05" },
      unlinked: { type: "string", default: "0.05" },
      "linked-unreferenced": { type: "string", default: "0.05" },
      seconds: { type: "string", default: "5" },
      conns: { type: "string", default: "16" },
      "push-conns": { type: "string", default: "4" },
      dir: { type: "string" },
      keep: { type: "boolean", default: false },
      "skip-distribution": { type: "boolean", default: false },
    },
    strict: false,
  });
  const manifests = Number(values.manifests);
  return {
    manifests,
    repositories: values.repositories
      ? Number(values.repositories)
      : Math.max(1, Math.round(manifests / 100)),
    untagged: Number(values.untagged),
    unlinked: Number(values.unlinked),
    linkedUnreferenced: Number(values["linked-unreferenced"]),
    seconds: Number(values.seconds),
    conns: Number(values.conns),
    pushConns: Number(values["push-conns"]),
    ...(typeof values.dir === "string" ? { dir: values.dir } : {}),
    keep: values.keep === true,
    skipDistribution: values["skip-distribution"] === true,
  };
}

if (import.meta.main) {
  await runGcBench(parseGcArgs(Deno.args));
}
