/**
 * `deno task bench`: our registry against CNCF Distribution 2.8.2, side by side in one run
 * (issue 5). Starts both on free loopback ports with fresh data roots, fills the page cache,
 * measures the machine's ceilings, runs every workload against both (interleaved run by run,
 * alternating which goes first), and prints the ceilings, the results table with ratios and
 * targets, and the resources each server used. With the ceilings, some rows are also measured
 * against their bound, the registry's durable data path alone (bench/intake.ts): push-parallel
 * in rounds before the rows, and in each of their runs push-parallel and the single pushes of
 * curl and the Go-style sender (their target cells say what it reached).
 *
 * Usage: deno run -A bench/bench.ts [--full] [--runs 3] [--only push-mono,pull,...]
 *          [--seconds N] [--dir PARENT] [--keep] [--json FILE] [--profile DIR]
 *
 *   --full      1 GiB blobs, 8×128 MiB parallel pushes, 10 s load runs (default: quick mode,
 *               256 MiB blobs, 8×32 MiB, 5 s load runs)
 *   --runs N    runs per workload and server (at least 3 for the table; default 3)
 *   --warmup N  uncounted runs per workload and server before those (default 1: a row's
 *               first run is slower, and run 0 starts with ours)
 *   --only LIST comma-separated workload names; `metrics-scrape`, `access-log` and `auth` are
 *               operations rows of ours alone (bench/ops_rows.ts): named alone, they run
 *               without Distribution and without the ceilings; `--only gc` (alone) runs the
 *               garbage-collection scenario (bench/gc_bench.ts, `deno task bench:gc`), the other
 *               flags being that scenario's
 *   --seconds N seconds per request-rate run
 *   --dir DIR   where the temporary data roots go (default: the system temp folder); the disk
 *               ceiling is measured there
 *   --keep      keep the data roots and logs
 *   --json FILE also write all samples as JSON
 *   --max-run-seconds N  stop a push run after N s (quick 40, full 300) and report the
 *               client's sending rate as an upper bound; that server's remaining runs of that
 *               workload are skipped
 *   --skip-ceilings  no page-cache fill and no ceilings (for profiling runs; the push target
 *               then ignores the disk)
 *   --profile DIR  run our registry with `--cpu-prof --cpu-prof-dir=DIR` (written on exit)
 *   --blob-mib N  the blob size of the push and pull rows (quick 256, full 1024, check 128)
 *   --image-mib N  total size of the multi-layer image of the skopeo, podman and ctr rows
 *               (bench/client_rows.ts; quick 256, full 1024, check 128)
 *   --image-layers N  its layers (default 4)
 *   --check     the regression guard (bench/baseline.ts): the rows of CHECK_ROWS (or --only)
 *               at 128 MiB, 3 s load runs, no ceilings; compares each ratio ours/Distribution
 *               with bench/baseline.json and exits 1 when one is below its baseline minus band
 *   --write-baseline N  runs the check N times (own processes) and writes the baseline
 *   --baseline FILE  the baseline file (default bench/baseline.json)
 *   --note TEXT  with --write-baseline: a remark stored with it (e.g. "measured under load")
 *
 *   --storage s3  the S3 run instead (bench/s3_bench.ts): ours on S3 + PostgreSQL against
 *               Distribution's s3 driver on the same Ceph RGW, RGW's own ceilings in the same
 *               run; rows push-mono, push-stream, push-chunked, push-parallel, pull, head-blob,
 *               get-manifest. Its flags: --blob-mib (default 64), --parallel-mib (blob/8),
 *               --runs (5), --warmup (1), --seconds (3), --only, --chunk-mib (both drivers'
 *               chunksize, 10), --pull-modes (redirect,stream: pull and head-blob again with
 *               storage.redirect.disable on both), --max-run-seconds (60), --dir, --keep,
 *               --profile (our replica's CPU profile)
 *
 * It installs nothing: when a tool is missing it says what to install and exits 1.
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  diskWrite,
  fillPageCache,
  loopbackTcp,
  opensslSha256,
  run as runCommand,
  runLoadProcess,
  sinkFileGet,
  sinkIntake,
  skopeoLocalCopy,
  startSink,
} from "./ceilings.ts";
import { pushBesideDisk, sharedTmpfs } from "./beside_disk.ts";
import {
  type BesideDisk,
  BOUNDED_ROWS,
  type Ceilings,
  ceilingsTable,
  dataPathBoundRow,
  resourcesTable,
  resultsTable,
} from "./report.ts";
import { OPS_ROWS, runOpsOnly, runOpsRows } from "./ops_rows.ts";
import { dataPathBound } from "./parallel_parts.ts";
import { parseGcArgs, runGcBench } from "./gc_bench.ts";
import { type Server, startDistribution, startDurableIntake, startOurs, which } from "./servers.ts";
import { type Bound, runRows } from "./rows.ts";
import { runS3Bench, S3_ROWS } from "./s3_bench.ts";
import { type Blob, makeData, sha256, workloads } from "./workloads.ts";
import { type ClientRows, clientWorkloads } from "./client_rows.ts";
import {
  CHECK_ROWS,
  compareWithBaseline,
  DEFAULT_BASELINE,
  ratiosOf,
  readBaseline,
  settingsDiffer,
  writeBaseline,
} from "./baseline.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = dirname(BENCH_DIR);
const INSTALL_HINT = "apt-get install docker-registry wrk hey iperf3";

function meminfoKiB(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(Deno.readTextFileSync("/proc/meminfo"));
  return m ? Number(m[1]) : 0;
}

function loadAverage(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

async function machine(dataParent: string, distBinary: string): Promise<string[]> {
  const cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown CPU";
  const shaNi = /^flags\s*:.*\bsha_ni\b/m.test(cpuinfo);
  const df = (await runCommand("df", ["-P", "-T", dataParent]).catch(() => ({ stdout: "" }))).stdout
    .trim().split("\n").pop() ?? "";
  const dist = (await runCommand(distBinary, ["--version"]).catch(() => ({ stdout: "?" }))).stdout
    .trim();
  return [
    `CPU: ${navigator.hardwareConcurrency} × ${model}${shaNi ? " (SHA extensions)" : ""}; RAM ${
      (meminfoKiB("MemTotal") / 1024 / 1024).toFixed(1)
    } GiB`,
    `Data roots under ${dataParent}: ${df.replace(/\s+/g, " ")}`,
    `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}); ${dist}`,
  ];
}

async function measureCeilings(
  root: string,
  o: {
    full: boolean;
    ddMiB: number;
    loadSeconds: number;
    master: Uint8Array;
    /** `master`'s digest. */
    digest: string;
    frame: number;
    rx: Uint8Array;
    /** The skopeo rows' image, when they run: skopeo's own ceiling is measured with it. */
    skopeoImage: { bytes: number; layers: number } | null;
  },
  ceilings: Ceilings,
): Promise<Ceilings> {
  const { full, ddMiB, loadSeconds, master, digest, frame, rx, skopeoImage } = o;
  // Fill the page cache (issue 5: pushes run ~1.5x slower on RAM never used as page cache).
  const availGiB = meminfoKiB("MemAvailable") / 1024 / 1024;
  const fillGiB = Math.max(1, Math.min(full ? 16 : 4, Math.floor(availGiB - 3)));
  const fillSeconds = await fillPageCache(root, fillGiB * GiB);
  console.log(
    `Page cache filled: wrote and deleted a ${fillGiB} GiB file in ${fillSeconds.toFixed(1)} s.\n`,
  );

  // Ceilings.
  for (let i = 0; i < 3; i++) {
    ceilings.diskMiBs.push(await diskWrite(root, ddMiB));
    try {
      (ceilings.diskDirectMiBs as number[]).push(await diskWrite(root, ddMiB, true));
    } catch (error) {
      // An optional ceiling: a filesystem that refuses direct writes (tmpfs) gets none from
      // our uploads either.
      if (i === 0) console.log(`disk direct write not measured: ${String(error).slice(0, 300)}`);
    }
    (ceilings.sha256MiBs as number[]).push(await opensslSha256());
  }
  ceilings.loopbackMiBs.push(await loopbackTcp(full ? 10 : 3));
  const sinkFile = join(root, "sink-file.bin");
  await Deno.writeFile(sinkFile, master);
  const sink = await startSink(BENCH_DIR, sinkFile);
  let sinkHead;
  try {
    for (let i = 0; i < 3; i++) {
      ceilings.sinkLengthMiBs.push(await sinkIntake(sink.base, master, null));
      ceilings.sinkChunkedMiBs.push(await sinkIntake(sink.base, master, frame));
      ceilings.sinkFileGetMiBs.push(await sinkFileGet(sink.base, rx, master.length));
    }
    sinkHead = await runLoadProcess(BENCH_DIR, [
      "--url",
      `${sink.base}/v2/x/blobs/sha256:0`,
      "--method",
      "HEAD",
      "--conns",
      "64",
      "--seconds",
      String(Math.min(loadSeconds, 5)),
    ]);
  } finally {
    await sink.stop();
  }
  let besideDisk: BesideDisk | undefined;
  try {
    // its registry keeps the blob and its upload in RAM
    const room = meminfoKiB("MemAvailable") * 1024 >= 2 * master.length + 2 * GiB;
    const tmpfs = ceilings.diskDirectMiBs?.length && room && await installed("curl")
      ? await sharedTmpfs()
      : null;
    if (tmpfs === null) {
      console.log("push beside a busy disk not measured: no direct writes, tmpfs, curl or RAM");
    } else {
      besideDisk = await pushBesideDisk({
        repoRoot: REPO_ROOT,
        tmpfs,
        logDir: root,
        diskDir: root,
        file: sinkFile,
        digest,
        size: master.length,
        ddMiB,
        runs: 3,
      });
    }
  } catch (error) {
    // An optional ceiling: the rows run without it.
    console.log(`push beside a busy disk not measured: ${String(error).slice(0, 500)}`);
  } finally {
    await Deno.remove(sinkFile).catch(() => {});
  }
  let skopeoLocalMiBs: number[] = [];
  if (skopeoImage !== null) {
    try {
      skopeoLocalMiBs = await skopeoLocalCopy(root, skopeoImage.bytes, skopeoImage.layers, 3);
    } catch (error) {
      // An optional ceiling: the rows run without it.
      console.log(`skopeo's own copy not measured: ${String(error).slice(0, 500)}`);
    }
  }
  const allCeilings: Ceilings = { ...ceilings, sinkHead, skopeoLocalMiBs, besideDisk };
  console.log("## Machine ceilings (this run)\n");
  console.log(
    ceilingsTable(allCeilings, {
      ddMiB,
      frameKiB: frame / 1024,
      loadSeconds: Math.min(loadSeconds, 5),
      image: skopeoImage === null
        ? undefined
        : `${skopeoImage.layers} layers, ${skopeoImage.bytes / MiB} MiB`,
    }),
  );
  console.log("");

  return allCeilings;
}

/** Whether a command runs (`CMD --version`). */
async function installed(cmd: string): Promise<boolean> {
  try {
    return (await new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

/** `--only gc` (or `--only=gc`): the flags without it, for bench/gc_bench.ts; else null. */
export function gcOnlyArgs(args: readonly string[]): string[] | null {
  const i = args.findIndex((a, k) => a === "--only=gc" || (a === "--only" && args[k + 1] === "gc"));
  if (i < 0) return null;
  return [...args.slice(0, i), ...args.slice(i + (args[i] === "--only" ? 2 : 1))];
}

/** `--storage s3` (bench/s3_bench.ts): its own rows, sizes and servers. */
async function s3Main(values: Record<string, string | boolean | undefined>): Promise<number> {
  const str = (k: string) => typeof values[k] === "string" ? values[k] as string : undefined;
  const distBinary = which("docker-registry") ??
    (Deno.statSync("/usr/bin/docker-registry").isFile ? "/usr/bin/docker-registry" : null);
  if (distBinary === null) {
    console.error(`Missing: docker-registry. Install it, e.g.:\n  ${INSTALL_HINT}`);
    return 1;
  }
  const blobMiB = Number(str("blob-mib") ?? 64);
  const modes = (str("pull-modes") ?? "redirect,stream").split(",").map((m) => m.trim());
  if (modes.some((m) => m !== "redirect" && m !== "stream")) {
    console.error("--pull-modes is a list of redirect and stream");
    return 2;
  }
  const only = str("only")?.split(",").map((n) => n.trim()) ?? null;
  const unknown = only?.filter((n) => !(S3_ROWS as readonly string[]).includes(n)) ?? [];
  if (unknown.length > 0) {
    console.error(`Unknown rows for --storage s3: ${unknown.join(", ")}; known: ${S3_ROWS}`);
    return 2;
  }
  return await runS3Bench({
    repoRoot: REPO_ROOT,
    benchDir: BENCH_DIR,
    distBinary,
    blobMiB,
    parallelMiB: Number(str("parallel-mib") ?? Math.max(1, Math.floor(blobMiB / 8))),
    runs: Math.max(1, Number(str("runs") ?? 5)),
    warmup: Math.max(0, Number(str("warmup") ?? 1)),
    loadSeconds: Number(str("seconds") ?? 3),
    maxRunSeconds: Number(str("max-run-seconds") ?? 60),
    chunkSize: Number(str("chunk-mib") ?? 10) * MiB,
    only,
    pullModes: modes as ("redirect" | "stream")[],
    parent: str("dir") ?? (Deno.env.get("TMPDIR") || "/tmp"),
    keep: values.keep === true,
    profile: str("profile"),
  });
}

async function main(): Promise<number> {
  const gcArgs = gcOnlyArgs(Deno.args);
  if (gcArgs !== null) {
    await runGcBench(parseGcArgs(gcArgs));
    return 0;
  }
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      full: { type: "boolean", default: false },
      runs: { type: "string" },
      warmup: { type: "string" },
      only: { type: "string" },
      seconds: { type: "string" },
      dir: { type: "string" },
      keep: { type: "boolean", default: false },
      json: { type: "string" },
      profile: { type: "string" },
      "max-run-seconds": { type: "string" },
      "skip-ceilings": { type: "boolean", default: false },
      "blob-mib": { type: "string" },
      "image-mib": { type: "string" },
      "image-layers": { type: "string", default: "4" },
      check: { type: "boolean", default: false },
      "no-compare": { type: "boolean", default: false },
      "write-baseline": { type: "string" },
      baseline: { type: "string", default: DEFAULT_BASELINE },
      note: { type: "string" },
      storage: { type: "string", default: "filesystem" },
      "parallel-mib": { type: "string" },
      "chunk-mib": { type: "string", default: "10" },
      "pull-modes": { type: "string", default: "redirect,stream" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno task bench [--full] [--runs N] [--only a,b] [--seconds N] [--dir D] [--keep] [--json F] [--profile D] [--image-mib N] [--image-layers N] [--check] [--write-baseline N [--note T]] [--baseline F]",
    );
    return 0;
  }
  if (values.storage === "s3") return await s3Main(values);
  if (values.storage !== "filesystem") {
    console.error(`--storage is filesystem (the default) or s3, not ${values.storage}`);
    return 2;
  }
  if (values["write-baseline"] !== undefined) {
    // Every other argument goes to the check runs.
    const passed: string[] = [];
    for (let i = 0; i < Deno.args.length; i++) {
      const a = Deno.args[i]!;
      if (a === "--write-baseline" || a === "--note") i++;
      else if (!a.startsWith("--write-baseline=") && !a.startsWith("--note=")) passed.push(a);
    }
    return await writeBaseline({
      n: Math.max(1, Number(values["write-baseline"])),
      path: values.baseline,
      args: passed,
      note: values.note,
    });
  }
  const check = values.check;
  const started = performance.now();
  const full = values.full;
  const runs = Math.max(1, Number(values.runs ?? 3));
  const warmup = Math.max(0, Number(values.warmup ?? 1));
  const blobSize =
    (values["blob-mib"] ? Number(values["blob-mib"]) : check ? 128 : full ? 1024 : 256) *
    MiB;
  const imageBytes =
    (values["image-mib"] ? Number(values["image-mib"]) : check ? 128 : full ? 1024 : 256) * MiB;
  const parallelSize = Math.min(full ? 128 * MiB : 32 * MiB, Math.floor(blobSize / 8));
  const loadSeconds = values.seconds ? Number(values.seconds) : check ? 3 : full ? 10 : 5;
  const frame = 32 * 1024;
  const ddMiB = blobSize / MiB;
  // A server whose run of a workload takes longer than this is not run again on that
  // workload (the table says so), so that a pathological case cannot stall the benchmark.
  const maxRunSeconds = values["max-run-seconds"]
    ? Number(values["max-run-seconds"])
    : full
    ? 300
    : 40;

  const onlyNames = values.only
    ? values.only.split(",").map((s) => s.trim())
    : check
    ? [...CHECK_ROWS]
    : null;
  const opsChosen = OPS_ROWS.filter((name) => onlyNames === null || onlyNames.includes(name));
  if (onlyNames !== null && onlyNames.every((name) => OPS_ROWS.includes(name))) {
    return await runOpsOnly(opsChosen, {
      repoRoot: REPO_ROOT,
      benchDir: BENCH_DIR,
      loadSeconds,
      runs,
      parent: values.dir ?? (Deno.env.get("TMPDIR") || "/tmp"),
      keep: values.keep,
    });
  }

  // Tools: installs nothing, says what is missing.
  const distBinary = which("docker-registry") ??
    (Deno.statSync("/usr/bin/docker-registry").isFile ? "/usr/bin/docker-registry" : null);
  const missing = [
    ...(distBinary ? [] : ["docker-registry"]),
    ...["iperf3", "openssl", "dd", "sync", "df"].filter((t) => which(t) === null),
  ];
  if (missing.length > 0) {
    console.error(`Missing: ${missing.join(", ")}. Install them, e.g.:\n  ${INSTALL_HINT}`);
    if (missing.some((t) => ["openssl", "dd", "sync", "df"].includes(t))) {
      console.error("  apt-get install openssl coreutils");
    }
    return 1;
  }

  const parent = values.dir ?? (Deno.env.get("TMPDIR") || "/tmp");
  const root = await Deno.makeTempDir({ dir: parent, prefix: "registry-bench-" });
  console.log(
    `# Registry benchmark: ours vs CNCF Distribution (${
      check ? "check" : full ? "full" : "quick"
    } mode)\n`,
  );
  console.log(
    full
      ? `Full mode: ${blobSize / MiB} MiB blobs, push-parallel 8 × ${
        parallelSize / MiB
      } MiB, ${loadSeconds} s load runs, ${runs} runs each after ${warmup} uncounted.`
      : `Quick mode: ${blobSize / MiB} MiB blobs (not 1 GiB), push-parallel 8 × ${
        parallelSize / MiB
      } MiB (not 128 MiB), ${loadSeconds} s load runs (not 10 s), ${runs} runs each after ${warmup} uncounted. \`--full\` for the issue's sizes.`,
  );
  console.log(
    `Clients: pushes and pulls use bench/http1.ts (a raw HTTP/1.1 client over Deno.connect writing from and reading into memory buffers; push-stream sends ${
      frame / 1024
    } KiB chunks like Go's net/http); request-rate workloads use bench/load.ts in its own process.`,
  );
  console.log(
    `Client rows (bench/client_rows.ts): curl, a Go-style chunked sender (bench/go_sender.ts), and skopeo, podman and ctr on a ${
      imageBytes / MiB
    } MiB image of ${values["image-layers"]} layers, each client command timed end to end.`,
  );
  for (const line of await machine(parent, distBinary!)) console.log(line);
  console.log(
    `Load average at start: ${loadAverage()} (the machine may be shared; see the spread)`,
  );
  console.log(`Working folder: ${root}\n`);

  let ours: Server | null = null;
  let dist: Server | null = null;
  let clients: ClientRows | null = null;
  /** The rows' bound while it runs (its server replaced in place on a restart). */
  let bound: Bound | undefined;
  try {
    // Test data: generated and hashed once, outside every timed section.
    const t0 = performance.now();
    const master = makeData(blobSize);
    const blob: Blob = { bytes: master, digest: sha256(master) };
    const parallel: Blob[] = Array.from({ length: 8 }, (_, i) => {
      const bytes = master.subarray(i * parallelSize, (i + 1) * parallelSize);
      return { bytes, digest: sha256(bytes) };
    });
    const rx = new Uint8Array(blobSize);
    console.log(
      `Test data generated and hashed in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s (untimed).`,
    );

    const ceilings: Ceilings = {
      diskMiBs: [],
      diskDirectMiBs: [],
      sha256MiBs: [],
      loopbackMiBs: [],
      sinkLengthMiBs: [],
      sinkChunkedMiBs: [],
      sinkFileGetMiBs: [],
      sinkHead: null,
    };
    const allCeilings = values["skip-ceilings"] || check ? ceilings : await measureCeilings(root, {
      full,
      ddMiB,
      loadSeconds,
      master,
      digest: blob.digest,
      frame,
      rx,
      skopeoImage: (onlyNames === null || onlyNames.includes("skopeo-push")) &&
          await installed("skopeo")
        ? { bytes: imageBytes, layers: Math.max(1, Number(values["image-layers"])) }
        : null,
    }, ceilings);

    // Servers.
    const profileFlags = values.profile ? ["--cpu-prof", `--cpu-prof-dir=${values.profile}`] : [];
    // The access log off, as in Distribution's config here; the access-log row measures it.
    ours = await startOurs(join(root, "ours"), root, {
      repoRoot: REPO_ROOT,
      denoFlags: profileFlags,
      env: { REGISTRY_LOG_REQUESTS: "0" },
    });
    dist = await startDistribution(distBinary!, join(root, "distribution"), root);
    console.log(
      `ours at ${ours.base} (pid ${ours.pid}), Distribution at ${dist.base} (pid ${dist.pid})\n`,
    );

    const only = onlyNames ? new Set(onlyNames.filter((n) => !OPS_ROWS.includes(n))) : null;
    const all = workloads({
      blob,
      parallel,
      frame,
      chunkedParts: 16,
      rangeParts: 4,
      loadSeconds,
      runTimeoutSeconds: maxRunSeconds,
      benchDir: BENCH_DIR,
      rx,
    });
    clients = clientWorkloads({
      blob,
      frame,
      chunkedParts: 16,
      imageBytes,
      imageLayers: Math.max(1, Number(values["image-layers"])),
      workDir: root,
      toolTimeoutSeconds: 3 * maxRunSeconds,
    });
    all.push(...clients.workloads);
    const chosen = all.filter((w) => only === null || only.has(w.name));
    if (only !== null && chosen.length !== only.size) {
      const known = [...all.map((w) => w.name), ...OPS_ROWS].join(", ");
      console.error(`Unknown workload in --only; known: ${known}`);
      return 2;
    }

    // push-parallel's bound: its pushes into the registry's durable data path alone, beside Distribution
    let ceilingsNow = allCeilings;
    if (allCeilings.diskMiBs.length > 0 && chosen.some((w) => w.name === "push-parallel")) {
      try {
        const bound = await dataPathBound({
          repoRoot: REPO_ROOT,
          dir: join(root, "intake-durable"),
          logDir: root,
          baseline: dist,
          blobs: parallel,
          frame,
          rounds: 4,
        });
        ceilingsNow = { ...allCeilings, parallelDataPath: bound };
        console.log("## push-parallel's bound (this run, before the rows)\n");
        console.log("| ceiling | median (min–max) | how |\n| --- | --- | --- |");
        console.log(`${dataPathBoundRow(bound, parallelSize / MiB)}\n`);
      } catch (error) {
        // An optional ceiling: the rows run without it.
        console.log(`push-parallel's bound not measured: ${String(error).slice(0, 500)}\n`);
      }
    }

    // The single pushes of curl and the Go-style sender, and push-parallel: each run also into
    // the registry's durable data path alone, their bound, with the ceilings
    if (allCeilings.diskMiBs.length > 0 && chosen.some((w) => BOUNDED_ROWS.has(w.name))) {
      try {
        const server = await startDurableIntake(REPO_ROOT, join(root, "intake-bound"), root);
        bound = { server, rows: BOUNDED_ROWS };
      } catch (error) {
        console.log(`The single pushes' bound not measured: ${String(error).slice(0, 500)}\n`);
      }
    }

    const pair = { ours: ours!, dist: dist! };
    const results = await runRows(chosen, pair, {
      runs,
      maxRunSeconds,
      warmup,
      ...(bound ? { bound } : {}),
    });
    ours = pair.ours;
    dist = pair.dist;
    if (bound) {
      await bound.server.stop();
      bound = undefined;
    }
    console.log("\n## Results\n");
    console.log(resultsTable(results, ceilingsNow, runs));
    console.log("\n## Resources per workload (peak RSS: max over runs; CPU: median over runs)\n");
    console.log(resourcesTable(results));
    if (opsChosen.length > 0) {
      console.log("\n## Operations rows (ours only)\n");
      const opsOptions = {
        repoRoot: REPO_ROOT,
        benchDir: BENCH_DIR,
        workDir: root,
        loadSeconds,
        runs,
      };
      console.log(await runOpsRows(opsChosen, opsOptions));
    }
    let exitCode = 0;
    if (check && !values["no-compare"]) {
      const baseline = await readBaseline(values.baseline).catch(() => null);
      if (baseline === null) {
        console.error(`\nNo baseline at ${values.baseline}: write one with --write-baseline N`);
        exitCode = 1;
      } else {
        const { table, failures } = compareWithBaseline(baseline, ratiosOf(results));
        console.log(
          `\n## Check against ${values.baseline} (commit ${baseline.commit}, ${baseline.measuredAt}; ${baseline.conditions})\n`,
        );
        const differ = baseline.settings
          ? settingsDiffer(baseline.settings, { runs, blobSize, imageBytes, loadSeconds })
          : "";
        if (differ) {
          console.log(`Warning: this check's sizes differ from the baseline's: ${differ}\n`);
        }
        console.log(table);
        if (failures.length > 0) {
          console.log(`\nCheck FAILED:\n  ${failures.join("\n  ")}`);
          exitCode = 1;
        } else {
          console.log("\nCheck passed: every ratio is within its baseline's band or above.");
        }
      }
    }
    console.log(`\nLoad average at end: ${loadAverage()}`);
    console.log(`Total time: ${((performance.now() - started) / 1000).toFixed(0)} s`);
    if (values.json) {
      await Deno.writeTextFile(
        values.json,
        JSON.stringify(
          {
            mode: check ? "check" : full ? "full" : "quick",
            runs,
            blobSize,
            imageBytes,
            loadSeconds,
            ceilings: ceilingsNow,
            results,
          },
          null,
          2,
        ),
      );
    }
    return exitCode;
  } catch (error) {
    console.error(`\nBenchmark failed: ${error instanceof Error ? error.stack : error}`);
    for (const s of [ours, dist, bound?.server]) {
      if (s) {
        const log = await Deno.readTextFile(s.logPath).catch(() => "");
        console.error(`--- ${s.name} log (tail) ---\n${log.slice(-1500)}`);
      }
    }
    return 1;
  } finally {
    await clients?.dispose();
    await ours?.stop();
    await dist?.stop();
    await bound?.server.stop();
    if (values.keep) console.log(`Kept ${root}`);
    else await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main());
