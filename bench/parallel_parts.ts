/**
 * Eight parallel pushes taken apart (the bench's push-parallel row). The same client pushes the
 * same eight blobs (each a POST, one PATCH streamed in chunked frames of 32 KiB, and a PUT, as
 * the row does) into CNCF Distribution, our registry, and bench/intake.ts's receivers, which
 * keep one more part of our registry's upload path each: `drop` (our HTTP/1.1 server and the
 * batch buffers), `hash` (and SHA-256), `write` (the file appender, no hash), `both` (hash
 * and file: the registry's data path without the rest of the registry) and `durable` (and the
 * session files, commit and layer link of the registry's storage layer).
 *
 * Rounds: every receiver once a round, in an order shuffled anew each round; the first round is
 * not counted. Each push of the eight is timed with the CPU time the receiver's
 * process used and the time the whole machine was busy. Rates are compared with Distribution's
 * in the same round (the machine's speed changes from second to second), and per GiB CPU times
 * show what each part costs: `hash` − `drop` the hashing, `write` − `drop` the disk, `durable` −
 * `both` what keeping an upload durably adds, the registry − `durable` the rest of the registry.
 *
 * Usage: deno task bench:parallel [--mib 128] [--rounds 4] [--frame 32768] [--dir DIR]
 *        [--no-distribution] [--json FILE]
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { syncAll } from "./ceilings.ts";
import { Http1 } from "./http1.ts";
import { INTAKE_MODES } from "./intake.ts";
import { type DataPathBound, stats } from "./report.ts";
import {
  cpuSeconds,
  type Receiver,
  type Server,
  startDistribution,
  startIntake,
  startOurs,
  which,
} from "./servers.ts";
import { type Blob, dropBlobs, makeData, pushStream, sha256, timed } from "./workloads.ts";

const MiB = 1024 * 1024;
const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = dirname(BENCH_DIR);

/** One receiver's push of the eight blobs in one round. */
export interface Sample {
  readonly receiver: string;
  readonly round: number;
  readonly mib: number;
  readonly seconds: number;
  /** CPU seconds of the receiver's process. */
  readonly receiverCpu: number;
  /** CPU seconds the whole machine was busy. */
  readonly machineCpu: number;
}

/** A receiver's counted samples, summarized. */
export interface PartRow {
  readonly receiver: string;
  readonly rate: { median: number; min: number; max: number };
  /** Medians of the in-round ratios to `baseline`'s rate, or null without it. */
  readonly ratio: number | null;
  readonly receiverCpuPerGiB: number;
  readonly machineCores: number;
  readonly machineCpuPerGiB: number;
}

function median(values: number[]): number {
  return stats(values).median;
}

/**
 * Summarizes samples per receiver (in first-seen order), rounds below `fromRound` left out;
 * ratios are each round's rate over `baseline`'s rate in that round.
 */
export function summarize(samples: readonly Sample[], fromRound = 1, baseline?: string): PartRow[] {
  const counted = samples.filter((s) => s.round >= fromRound);
  const names = [...new Set(counted.map((s) => s.receiver))];
  const rateOf = (s: Sample) => s.mib / s.seconds;
  return names.map((receiver) => {
    const mine = counted.filter((s) => s.receiver === receiver);
    const ratios = baseline === undefined ? [] : mine.flatMap((s) => {
      const base = counted.find((b) => b.receiver === baseline && b.round === s.round);
      return base ? [rateOf(s) / rateOf(base)] : [];
    });
    return {
      receiver,
      rate: stats(mine.map(rateOf)),
      ratio: ratios.length > 0 ? median(ratios) : null,
      receiverCpuPerGiB: median(mine.map((s) => s.receiverCpu / (s.mib / 1024))),
      machineCores: median(mine.map((s) => s.machineCpu / s.seconds)),
      machineCpuPerGiB: median(mine.map((s) => s.machineCpu / (s.mib / 1024))),
    };
  });
}

function fixed(n: number, digits: number): string {
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** The rows as a Markdown table. */
export function partsTable(rows: readonly PartRow[]): string {
  const lines = [
    "| receiver | MiB/s median (min–max) | × Distribution, in-round median | receiver CPU s/GiB | machine cores busy | machine CPU s/GiB |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.receiver} | ${fixed(r.rate.median, 0)} (${fixed(r.rate.min, 0)}–${
        fixed(r.rate.max, 0)
      }) | ${r.ratio === null ? "—" : fixed(r.ratio, 2)} | ${fixed(r.receiverCpuPerGiB, 2)} | ${
        fixed(r.machineCores, 2)
      } | ${fixed(r.machineCpuPerGiB, 2)} |`,
    );
  }
  return lines.join("\n");
}

/** Pushes the blobs in parallel into `receiver`, one connection each; the timed sample. */
export async function pushAll(
  receiver: Receiver,
  blobs: readonly Blob[],
  round: number,
  frame: number,
): Promise<Sample> {
  const conns = await Promise.all(blobs.map(() => Http1.connect(receiver.base)));
  try {
    const cpu0 = cpuSeconds(receiver.pid) ?? 0;
    const t = await timed(async () => {
      await Promise.all(
        blobs.map((blob, i) =>
          pushStream(conns[i]!, receiver.base, `parts/r${round}-${i}`, blob, frame)
        ),
      );
    });
    return {
      receiver: receiver.name,
      round,
      mib: blobs.reduce((sum, b) => sum + b.bytes.length, 0) / MiB,
      seconds: t.seconds,
      receiverCpu: (cpuSeconds(receiver.pid) ?? cpu0) - cpu0,
      machineCpu: t.machineCpu,
    };
  } finally {
    for (const conn of conns) conn.close();
  }
}

/**
 * The order of `n` receivers in round `round`: a shuffle of its own for every round (the same
 * in every run), so that no receiver always runs after the same one.
 */
export function roundOrder(n: number, round: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let seed = Math.imul(round + 1, 0x9e3779b1) >>> 0;
  for (let i = n - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/**
 * Empties a receiver's folder. A folder in it (`durable`'s `blobs`, `uploads`, `repositories`)
 * stays, emptied, as a registry keeps its tree when its blobs are deleted.
 */
async function emptyFolder(dir: string): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (!entry.isDirectory) {
      await Deno.remove(path);
      continue;
    }
    for await (const inner of Deno.readDir(path)) {
      await Deno.remove(join(path, inner.name), { recursive: true });
    }
  }
  await syncAll();
}

/**
 * Rounds of parallel pushes: every receiver once a round, in `roundOrder`, each push of the
 * round's blobs followed by `cleanup` (untimed). All samples, the first round's included.
 */
export async function pushRounds(o: {
  receivers: readonly Receiver[];
  rounds: number;
  frame: number;
  blobsOf: (round: number) => readonly Blob[];
  /** Removes what `receiver` stored of `blobs`. */
  cleanup: (receiver: Receiver, blobs: readonly Blob[]) => Promise<void>;
  log?: (line: string) => void;
}): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let round = 0; round < o.rounds; round++) {
    const blobs = o.blobsOf(round);
    for (const index of roundOrder(o.receivers.length, round)) {
      const receiver = o.receivers[index]!;
      const sample = await pushAll(receiver, blobs, round, o.frame);
      samples.push(sample);
      o.log?.(
        `round ${round} ${receiver.name}: ${fixed(sample.mib / sample.seconds, 0)} MiB/s, ` +
          `machine ${fixed(sample.machineCpu / sample.seconds, 2)} cores`,
      );
      await o.cleanup(receiver, blobs);
    }
  }
  return samples;
}

/**
 * The bound of the bench's push-parallel row (bench/bench.ts): its eight pushes into
 * `intake-durable`, the registry's data path kept through its storage layer and nothing else of
 * the registry, alternating with `baseline` (Distribution in the bench) round by round;
 * `rounds` rounds, the first not counted. The intake's files go in `dir`, removed at the end;
 * its log in `logDir`.
 */
export async function dataPathBound(o: {
  repoRoot: string;
  dir: string;
  logDir: string;
  baseline: Server;
  blobs: readonly Blob[];
  frame: number;
  rounds: number;
}): Promise<DataPathBound> {
  const intake = await startIntake(o.repoRoot, "durable", o.dir, o.logDir);
  try {
    const samples = await pushRounds({
      receivers: [o.baseline, intake],
      rounds: o.rounds,
      frame: o.frame,
      blobsOf: () => o.blobs,
      cleanup: (receiver, blobs) =>
        receiver === intake ? emptyFolder(o.dir) : dropBlobs(o.baseline, blobs),
    });
    const counted = samples.filter((s) => s.round >= 1);
    const rate = (s: Sample) => s.mib / s.seconds;
    const of = (name: string) => counted.filter((s) => s.receiver === name);
    return {
      baseline: o.baseline.name,
      dataPathMiBs: of(intake.name).map(rate),
      baselineMiBs: of(o.baseline.name).map(rate),
      ratios: of(intake.name).map((s) =>
        rate(s) / rate(of(o.baseline.name).find((b) => b.round === s.round)!)
      ),
    };
  } finally {
    await intake.stop();
    await Deno.remove(o.dir, { recursive: true }).catch(() => {});
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      mib: { type: "string", default: "128" },
      rounds: { type: "string", default: "4" },
      frame: { type: "string", default: String(32 * 1024) },
      dir: { type: "string" },
      json: { type: "string" },
      "no-distribution": { type: "boolean", default: false },
    },
  });
  const partMiB = Number(values.mib);
  const rounds = Number(values.rounds);
  const frame = Number(values.frame);
  if (!(partMiB > 0) || !(rounds >= 2) || !(frame > 0)) {
    throw new Error("--mib and --frame must be positive, --rounds at least 2 (one uncounted)");
  }
  const distBinary = values["no-distribution"] ? null : which("docker-registry");
  if (!values["no-distribution"] && distBinary === null) {
    throw new Error(
      "docker-registry not found (apt-get install docker-registry), or pass --no-distribution",
    );
  }
  const root = await Deno.makeTempDir({ dir: values.dir, prefix: "registry-parts-" });
  const master = makeData(8 * partMiB * MiB);
  const receivers: Receiver[] = [];
  const registries: Server[] = [];
  try {
    if (distBinary !== null) {
      const dist = await startDistribution(distBinary, join(root, "distribution"), root);
      receivers.push(dist);
      registries.push(dist);
    }
    const ours = await startOurs(join(root, "ours"), root, {
      repoRoot: REPO_ROOT,
      env: { REGISTRY_LOG_REQUESTS: "0" },
    });
    receivers.push(ours);
    registries.push(ours);
    const intakeDirs = new Map<Receiver, string>();
    for (const mode of INTAKE_MODES) {
      const dir = join(root, `intake-${mode}`);
      const intake = await startIntake(REPO_ROOT, mode, dir, root);
      receivers.push(intake);
      intakeDirs.set(intake, dir);
    }
    console.log(
      `8 × ${partMiB} MiB pushed in parallel (chunked frames of ${frame} bytes), ${rounds} rounds ` +
        `(the first not counted), into ${receivers.map((r) => r.name).join(", ")}; logs in ${root}`,
    );
    const samples = await pushRounds({
      receivers,
      rounds,
      frame,
      // distinct bytes every round: no receiver finds a blob it already has
      blobsOf: (round) =>
        Array.from({ length: 8 }, (_, i) => {
          const bytes = master.subarray(i * partMiB * MiB, (i + 1) * partMiB * MiB);
          new DataView(bytes.buffer, bytes.byteOffset).setUint32(8, round + 1);
          return { bytes, digest: sha256(bytes) };
        }),
      cleanup: async (receiver, blobs) => {
        const registry = registries.find((r) => r === receiver);
        if (registry) await dropBlobs(registry, blobs);
        const dir = intakeDirs.get(receiver);
        if (dir) await emptyFolder(dir);
      },
      log: console.log,
    });
    const names = receivers.map((r) => r.name);
    const rows = summarize(samples, 1, distBinary === null ? undefined : "distribution")
      .sort((a, b) => names.indexOf(a.receiver) - names.indexOf(b.receiver));
    console.log(`\n${partsTable(rows)}`);
    if (values.json) {
      await Deno.writeTextFile(values.json, JSON.stringify({ partMiB, frame, samples, rows }));
    }
  } finally {
    for (const receiver of receivers) await receiver.stop().catch(() => {});
    // the data goes, the logs stay
    for (const entry of await Array.fromAsync(Deno.readDir(root))) {
      if (entry.isDirectory) await Deno.remove(join(root, entry.name), { recursive: true });
    }
  }
}

if (import.meta.main) await main();
