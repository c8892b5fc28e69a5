/**
 * Statistics, targets (issues 5 and 15) and the Markdown tables the benchmark prints.
 */

import type { LoadResult } from "./load.ts";
import type { Metric } from "./workloads.ts";

/** One measured run of one workload on one server. */
export interface Sample {
  readonly metrics: Record<string, number>;
  readonly seconds: number;
  readonly clientCpu: number;
  readonly peakRssMiB: number;
  readonly serverCpu: number;
  /** The kernel's part of `serverCpu` (the server's system time; absent in older JSON). */
  readonly serverSystemCpu?: number;
  /** CPU seconds the whole machine was busy during the run (absent in older JSON). */
  readonly machineCpu?: number;
  readonly note?: string;
}

/** All runs of one workload. */
export interface WorkloadResult {
  readonly name: string;
  readonly metrics: readonly Metric[];
  readonly transfer: boolean;
  readonly ours: Sample[];
  readonly distribution: Sample[];
  /** Why the row did not run (a client missing or unable here); its samples may be empty. */
  skipped?: string;
  /**
   * The row's runs against its bound, the registry's durable data path alone
   * (`bench/intake.ts --mode durable`), made beside the pair's in the same run; absent when
   * the row has no bound.
   */
  bound?: Sample[];
  /** Why the bound's runs ended early (they are then fewer, or none). */
  boundFailed?: string;
}

/** The machine's ceilings measured in the run. */
export interface Ceilings {
  readonly diskMiBs: number[];
  /** The same with direct writes (empty when the filesystem refuses them). */
  readonly diskDirectMiBs?: number[];
  readonly sha256MiBs: number[];
  readonly loopbackMiBs: number[];
  readonly sinkLengthMiBs: number[];
  readonly sinkChunkedMiBs: number[];
  readonly sinkFileGetMiBs: number[];
  readonly sinkHead: LoadResult | null;
  /** `skopeo copy` between two local layouts (empty when skopeo or its rows are not run). */
  readonly skopeoLocalMiBs?: number[];
  /** A push with no disk in its way, alone and beside a busy disk (bench/beside_disk.ts). */
  readonly besideDisk?: BesideDisk;
  /** push-parallel's pushes into the registry's durable data path alone (bench/parallel_parts.ts). */
  readonly parallelDataPath?: DataPathBound;
}

/**
 * Eight parallel pushes, as push-parallel pushes them, into `intake-durable` (the registry's
 * data path kept through its storage layer, nothing else of the registry) and into a baseline
 * server, round by round.
 */
export interface DataPathBound {
  /** The baseline's name ("distribution"). */
  readonly baseline: string;
  /** MiB/s of each counted round. */
  readonly dataPathMiBs: number[];
  readonly baselineMiBs: number[];
  /** Each counted round's data path rate over the baseline's in that round. */
  readonly ratios: number[];
}

/** MiB/s of curl PUTs into our registry on tmpfs, and of `dd` meanwhile. */
export interface BesideDisk {
  /** Nothing else running. */
  readonly alone: number[];
  /** While `dd oflag=direct` writes into the rows' data root, in a loop. */
  readonly besideDd: number[];
  /** Those `dd` runs. */
  readonly dd: number[];
}

/** Median, min and max of a list of numbers. */
export function stats(values: number[]): { median: number; min: number; max: number } {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length === 0 ? NaN : s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN };
}

function num(x: number, unit: string): string {
  if (!Number.isFinite(x)) return "—";
  if (unit === "ms") return x < 10 ? x.toFixed(2) : x.toFixed(1);
  return x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(1);
}

/** "median (min–max)". */
export function spread(values: number[], unit: string, expectedRuns = 0): string {
  const { median, min, max } = stats(values);
  if (values.length === 1 && expectedRuns > 1) return `${num(median, unit)} (1 run only)`;
  const few = values.length < expectedRuns ? `, ${values.length} runs` : "";
  return `${num(median, unit)} (${num(min, unit)}–${num(max, unit)}${few})`;
}

/** A row's target and whether ours meets it (null: no target). */
export interface Target {
  readonly text: string;
  readonly met: boolean | null;
}

const PUSH_SINGLE = new Set(["push-mono", "push-stream", "push-chunked"]);

/**
 * The single pushes of real clients (bench/client_rows.ts) that issue 15 judges: curl and the
 * Go-style sender.
 */
export const CLIENT_SINGLE_PUSHES: ReadonlySet<string> = new Set([
  "curl-put",
  "curl-stream",
  "curl-chunked",
  "go-stream",
]);

/**
 * The rows that also run against their bound, the registry's durable data path alone
 * (`WorkloadResult.bound`), when the bench measures the ceilings: those single pushes and
 * push-parallel.
 */
export const BOUNDED_ROWS: ReadonlySet<string> = new Set([
  ...CLIENT_SINGLE_PUSHES,
  "push-parallel",
]);

/** The target of a workload's metric (issues 5 and 15), and whether ours meets it. */
export function targetFor(
  workload: string,
  metric: Metric,
  ours: number,
  dist: number,
  ceilings: Ceilings,
): Target {
  const ratioTarget = (k: number) => ({ text: `≥ ${k}× Dist`, met: ours >= k * dist });
  if (PUSH_SINGLE.has(workload)) {
    const disk = stats(ceilings.diskMiBs).median;
    const byRatio = 2.5 * dist;
    const byDisk = 0.8 * disk;
    const value = Number.isFinite(byDisk) ? Math.min(byRatio, byDisk) : byRatio;
    const which = value === byRatio ? "2.5× Dist" : "80% of disk";
    return { text: `≥ ${num(value, "MiB/s")} MiB/s (${which})`, met: ours >= value };
  }
  if (workload === "push-parallel") {
    // its bound, measured in the same run: the registry's durable data path alone
    const bound = ceilings.parallelDataPath?.ratios.length
      ? ` (durable data path alone, in rounds before the rows: ${
        stats(ceilings.parallelDataPath.ratios).median.toFixed(2)
      }×)`
      : "";
    return { text: `≥ 2× Dist${bound}`, met: ours >= 2 * dist };
  }
  if (CLIENT_SINGLE_PUSHES.has(workload)) {
    // issue 15: ≥ 2.5× Distribution and ≥ half the lower of the SHA-256 and disk ceilings
    const disk = stats(ceilings.diskMiBs).median;
    const sha = stats(ceilings.sha256MiBs).median;
    const lower = [disk, sha].filter(Number.isFinite);
    if (lower.length === 0) return ratioTarget(2.5);
    const half = Math.min(...lower) / 2;
    const which = half === disk / 2 ? "disk" : "SHA-256";
    return {
      text: `≥ 2.5× Dist and ≥ ${num(half, "MiB/s")} MiB/s (half the ${which} ceiling)`,
      met: ours >= 2.5 * dist && ours >= half,
    };
  }
  if (workload === "skopeo-push") return ratioTarget(2);
  if (workload === "pull") return ratioTarget(1.3);
  if (workload === "head-blob" || workload === "get-manifest") {
    if (metric.key === "req/s") return ratioTarget(10);
    return { text: "≤ 10 ms", met: ours <= 10 };
  }
  if (workload === "tags-list" && metric.key === "req/s") return ratioTarget(5);
  return { text: "—", met: null };
}

function metCell(met: boolean | null): string {
  return met === null ? "—" : met ? "yes" : "**no**";
}

/**
 * What a row's runs against its bound measured, for its target cell: the durable data path's
 * median and its ratio to Distribution's median (as the row's ratio is taken).
 */
export function boundText(r: WorkloadResult, m: Metric, distMedian: number): string {
  if (r.bound === undefined) return "";
  if (r.bound.length === 0) return " (its bound not measured)";
  const median = stats(r.bound.map((s) => s.metrics[m.key]!)).median;
  const n = r.bound.length;
  const cut = r.boundFailed === undefined ? "" : ` (${n} run${n === 1 ? "" : "s"}, then it failed)`;
  return `; the durable data path alone, same client${cut}: ${num(median, m.unit)} ${m.unit}, ${
    (median / distMedian).toFixed(2)
  }× Dist`;
}

/** The main table: one row per workload metric, plus the memory row. */
export function resultsTable(
  results: WorkloadResult[],
  ceilings: Ceilings,
  runs: number,
  /** Other targets than issue 5's (bench/s3_bench.ts), and another memory bound. */
  other?: {
    target: (workload: string, metric: Metric, ours: number, dist: number) => Target;
    rssLimitMiB: number;
  },
): string {
  const rows: string[] = [
    "| workload | ours median (min–max) | Distribution median (min–max) | ratio ours/Dist | target | met? |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of results) {
    if (r.skipped !== undefined) {
      rows.push(`| ${r.name} | skipped: ${r.skipped} | | | | |`);
      continue;
    }
    for (const m of r.metrics) {
      const o = r.ours.map((s) => s.metrics[m.key]!);
      const d = r.distribution.map((s) => s.metrics[m.key]!);
      const om = stats(o).median;
      const dm = stats(d).median;
      const t = other ? other.target(r.name, m, om, dm) : targetFor(r.name, m, om, dm, ceilings);
      rows.push(
        `| ${r.name} ${m.key} | ${spread(o, m.unit, runs)} | ${spread(d, m.unit, runs)} | ${
          (om / dm).toFixed(2)
        } | ${t.text}${boundText(r, m, dm)} | ${metCell(t.met)} |`,
      );
    }
  }
  const limit = other?.rssLimitMiB ?? 120;
  const transfers = results.filter((r) => r.transfer && r.skipped === undefined);
  if (transfers.length > 0) {
    const o = transfers.flatMap((r) => r.ours.map((s) => s.peakRssMiB));
    const d = transfers.flatMap((r) => r.distribution.map((s) => s.peakRssMiB));
    const om = Math.max(...o);
    const dm = Math.max(...d);
    rows.push(
      `| memory: peak RSS MiB, push/pull | ${num(om, "MiB")} (max of ${o.length} runs) | ${
        num(dm, "MiB")
      } (max of ${d.length} runs) | ${(om / dm).toFixed(2)} | ≤ ${limit} MiB | ${
        metCell(om <= limit)
      } |`,
    );
  }
  return rows.join("\n");
}

/**
 * Per-workload resources: peak RSS, the server's and the client's CPU and the machine's busy time
 * (each as cores busy), the kernel's share of the server's CPU, notes.
 */
export function resourcesTable(results: WorkloadResult[]): string {
  const rows: string[] = [
    `| workload | peak RSS MiB ours / Dist | server CPU cores ours / Dist | kernel's share of the server's CPU, ours / Dist | client CPU cores (ours run / Dist run) | machine cores busy, of ${navigator.hardwareConcurrency} (ours run / Dist run) | notes |`,
    "| --- | --- | --- | --- | --- | --- | --- |",
  ];
  // how much of a server's CPU was the kernel's work for it (system time over all)
  const kernelShare = (s: Sample[]) => {
    const v = s.flatMap((x) =>
      x.serverSystemCpu === undefined || !(x.serverCpu > 0) ? [] : [x.serverSystemCpu / x.serverCpu]
    );
    return v.length === 0 ? "—" : stats(v).median.toFixed(2);
  };
  const cores = (s: Sample[], f: (x: Sample) => number | undefined) => {
    const v = s.flatMap((x) => {
      const c = f(x);
      return c === undefined ? [] : [c / x.seconds];
    });
    return v.length === 0 ? "—" : stats(v).median.toFixed(2);
  };
  for (const r of results) {
    if (r.skipped !== undefined) continue;
    const rss = (s: Sample[]) => num(Math.max(...s.map((x) => x.peakRssMiB)), "MiB");
    const notes = [
      ...new Set([
        ...r.ours.map((s) => s.note ? `ours ${s.note}` : ""),
        ...r.distribution.map((s) => s.note ? `Dist ${s.note}` : ""),
      ].filter(Boolean)),
    ].join("; ");
    rows.push(
      `| ${r.name} | ${rss(r.ours)} / ${rss(r.distribution)} | ${
        cores(r.ours, (x) => x.serverCpu)
      } / ${cores(r.distribution, (x) => x.serverCpu)} | ${kernelShare(r.ours)} / ${
        kernelShare(r.distribution)
      } | ${cores(r.ours, (x) => x.clientCpu)} / ${cores(r.distribution, (x) => x.clientCpu)} | ${
        cores(r.ours, (x) => x.machineCpu)
      } / ${cores(r.distribution, (x) => x.machineCpu)} | ${notes} |`,
    );
  }
  return rows.join("\n");
}

/** push-parallel's bound (`Ceilings.parallelDataPath`) as a row of a ceilings table. */
export function dataPathBoundRow(p: DataPathBound, parallelMiB: number): string {
  return `| eight parallel pushes into the registry's durable data path alone | ${
    spread(p.dataPathMiBs, "MiB/s")
  } MiB/s, ${stats(p.ratios).median.toFixed(2)}× ${p.baseline} in the same rounds (${p.baseline}: ${
    spread(p.baselineMiBs, "MiB/s")
  }) | push-parallel's 8 × ${parallelMiB} MiB pushes into \`bench/intake.ts --mode durable\` (our HTTP/1.1 server, hashing, file writes, the storage layer's session files, commit and layer link; nothing else of the registry) and into ${p.baseline}, alternating, ${p.ratios.length} rounds counted: push-parallel's bound |`;
}

/** The ceilings table. */
export function ceilingsTable(
  c: Ceilings,
  sizes: { ddMiB: number; frameKiB: number; loadSeconds: number; image?: string },
): string {
  const rows = [
    "| ceiling | median (min–max) | how |",
    "| --- | --- | --- |",
    `| disk write + fdatasync | ${
      spread(c.diskMiBs, "MiB/s")
    } MiB/s | \`dd if=/dev/zero bs=1M count=${sizes.ddMiB} conv=fdatasync\` into the data root's filesystem, ${c.diskMiBs.length} runs |`,
    ...(c.diskDirectMiBs?.length
      ? [
        `| disk direct write + fdatasync | ${
          spread(c.diskDirectMiBs, "MiB/s")
        } MiB/s | the same with \`oflag=direct\` (around the page cache), ${c.diskDirectMiBs.length} runs |`,
      ]
      : []),
    `| SHA-256, 16 KiB blocks | ${
      spread(c.sha256MiBs, "MiB/s")
    } MiB/s | \`openssl speed -seconds 1 -bytes 16384 -evp sha256\`, ${c.sha256MiBs.length} runs |`,
    `| loopback TCP | ${
      spread(c.loopbackMiBs, "MiB/s")
    } MiB/s | \`iperf3 -s -1\` + \`iperf3 -c 127.0.0.1\` |`,
    `| bare Deno.serve intake, Content-Length body | ${
      spread(c.sinkLengthMiBs, "MiB/s")
    } MiB/s | bench client → bench/sink.ts draining the body |`,
    `| bare Deno.serve intake, chunked ${sizes.frameKiB} KiB frames | ${
      spread(c.sinkChunkedMiBs, "MiB/s")
    } MiB/s | same, as push-stream sends it |`,
    `| bare Deno.serve file GET | ${
      spread(c.sinkFileGetMiBs, "MiB/s")
    } MiB/s | bench client ← bench/sink.ts answering \`new Response(file.readable)\` (page-cached file), as pull reads it |`,
  ];
  if (c.sinkHead) {
    rows.push(
      `| bare Deno.serve HEAD, 64 conns | ${num(c.sinkHead.rps, "req/s")} req/s, p99 ${
        num(c.sinkHead.p99, "ms")
      } ms | bench/load.ts → bench/sink.ts, ${sizes.loadSeconds} s |`,
    );
  }
  if (c.skopeoLocalMiBs?.length) {
    rows.push(
      `| skopeo copy, layout to layout, no registry | ${
        spread(c.skopeoLocalMiBs, "MiB/s")
      } MiB/s | \`skopeo copy oci:A oci:B\` of an image as the skopeo rows push (${sizes.image}) in the data root's filesystem, timed end to end, ${c.skopeoLocalMiBs.length} runs |`,
    );
  }
  const b = c.besideDisk;
  if (b?.alone.length) {
    rows.push(
      `| push with no disk: curl PUT into our registry on tmpfs | ${
        spread(b.alone, "MiB/s")
      } MiB/s | \`curl -T\` of the blob as curl-put sends it, the data root in /dev/shm, ${b.alone.length} runs |`,
      `| the same beside a busy disk | ${
        spread(b.besideDd, "MiB/s")
      } MiB/s | while \`dd oflag=direct\` (as above) writes into the rows' data root in a loop, ${b.besideDd.length} runs |`,
      `| disk direct write + fdatasync beside that push | ${
        spread(b.dd, "MiB/s")
      } MiB/s | those \`dd\` runs (${b.dd.length}); a push to the disk needs both at once: the lower of these two bounds it |`,
    );
  }
  return rows.join("\n");
}
