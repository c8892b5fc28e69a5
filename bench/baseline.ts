/**
 * The benchmark's regression guard (`deno task bench --check`): a quick subset of rows is
 * measured and each row's ratio ours/Distribution (medians of the runs) is compared with
 * `bench/baseline.json`, which holds per row the median ratio of several measured check runs
 * and its noise band (twice the spread, max − min, of those runs' ratios, at least 5% of the
 * ratio: one more run falls outside the spread of five in about one row of three, and a guard
 * of eleven rows must not fail on unchanged code). A row fails when its ratio is below the
 * baseline ratio minus the band.
 * `--write-baseline N` runs the check N times, each in its own process with fresh servers,
 * and writes the file.
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { stats, type WorkloadResult } from "./report.ts";

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

/** Where the baseline lives unless `--baseline FILE` says otherwise. */
export const DEFAULT_BASELINE = join(BENCH_DIR, "baseline.json");

/** The rows `--check` runs (unless `--only` names others). */
export const CHECK_ROWS: readonly string[] = [
  "push-mono",
  "push-stream",
  "pull",
  "head-blob",
  "get-manifest",
  "curl-put",
  "curl-stream",
  "curl-pull",
  "go-stream",
  "skopeo-push",
  "skopeo-pull",
];

/** The band, in spreads (max − min) of the baseline runs' ratios. */
export const BAND_SPREADS = 2;

/** The smallest band, as a fraction of the ratio, whatever the measured spread. */
export const MIN_BAND = 0.05;

/** The sizes of a check run, as its `--json` file records them. */
export interface CheckSettings {
  readonly runs: number;
  readonly blobSize: number;
  readonly imageBytes: number;
  readonly loadSeconds: number;
}

/** Why two check settings differ ("" when they do not). */
export function settingsDiffer(a: CheckSettings, b: CheckSettings): string {
  const keys = ["runs", "blobSize", "imageBytes", "loadSeconds"] as const;
  return keys.filter((k) => a[k] !== b[k]).map((k) => `${k} ${a[k]} vs ${b[k]}`).join(", ");
}

/** One row of the baseline. */
export interface BaselineRow {
  /** Median over the measured check runs of the ratio ours/Distribution. */
  readonly ratio: number;
  /** The noise band: twice max − min of the runs' ratios, at least MIN_BAND × ratio. */
  readonly band: number;
  /** Each check run's ratio. */
  readonly ratios: number[];
}

/** The file `bench/baseline.json`. */
export interface Baseline {
  /** The commit measured (`git rev-parse --short HEAD`, `+dirty` with local changes). */
  readonly commit: string;
  /** When (ISO time, UTC). */
  readonly measuredAt: string;
  /** The machine and its load (load averages before and after), and any `--note`. */
  readonly conditions: string;
  /** The command that wrote it. */
  readonly command: string;
  /** The check runs' sizes: a check with other sizes is not comparable. */
  readonly settings: CheckSettings;
  /** Rows by `"<workload> <metric>"`. */
  readonly rows: Record<string, BaselineRow>;
}

/** The ratio ours/Distribution of the medians, per row and higher-is-better metric. */
export function ratiosOf(results: readonly WorkloadResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) {
    if (r.skipped !== undefined || r.ours.length === 0 || r.distribution.length === 0) continue;
    for (const m of r.metrics) {
      if (!m.higherIsBetter) continue;
      const o = stats(r.ours.map((s) => s.metrics[m.key]!)).median;
      const d = stats(r.distribution.map((s) => s.metrics[m.key]!)).median;
      out[`${r.name} ${m.key}`] = o / d;
    }
  }
  return out;
}

/** Compares ratios with a baseline: a Markdown table and the rows that fail. */
export function compareWithBaseline(
  baseline: Baseline,
  ratios: Record<string, number>,
): { table: string; failures: string[] } {
  const rows = [
    "| row | ratio now | baseline ratio | band | floor | ok? |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  const failures: string[] = [];
  for (const [key, base] of Object.entries(baseline.rows)) {
    const now = ratios[key];
    const floor = base.ratio - base.band;
    let ok: string;
    if (now === undefined || !Number.isFinite(now)) {
      ok = "**not measured**";
      failures.push(`${key}: not measured (skipped, or left out by --only)`);
    } else if (now < floor) {
      ok = "**no**";
      failures.push(`${key}: ratio ${now.toFixed(2)} < ${floor.toFixed(2)}`);
    } else {
      ok = "yes";
    }
    rows.push(
      `| ${key} | ${now === undefined ? "—" : now.toFixed(2)} | ${base.ratio.toFixed(2)} | ±${
        base.band.toFixed(2)
      } | ${floor.toFixed(2)} | ${ok} |`,
    );
  }
  for (const [key, now] of Object.entries(ratios)) {
    if (!(key in baseline.rows)) {
      rows.push(`| ${key} | ${now.toFixed(2)} | — | — | — | no baseline |`);
    }
  }
  return { table: rows.join("\n"), failures };
}

/** Reads a baseline file. */
export async function readBaseline(path: string): Promise<Baseline> {
  return JSON.parse(await Deno.readTextFile(path)) as Baseline;
}

/** Builds a baseline from the ratios of N check runs. */
export function baselineFrom(
  runs: readonly Record<string, number>[],
  meta: Omit<Baseline, "rows">,
): Baseline {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r)))];
  const rows: Record<string, BaselineRow> = {};
  for (const key of keys) {
    const ratios = runs.map((r) => r[key]).filter((x): x is number => Number.isFinite(x));
    if (ratios.length === 0) continue;
    const s = stats(ratios);
    rows[key] = {
      ratio: round(s.median),
      band: round(Math.max(BAND_SPREADS * (s.max - s.min), MIN_BAND * s.median)),
      ratios: ratios.map(round),
    };
  }
  return { ...meta, rows };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

async function gitCommit(): Promise<string> {
  const git = (args: string[]) =>
    new Deno.Command("git", { args, cwd: BENCH_DIR, stdout: "piped", stderr: "null" }).output()
      .then((o) => new TextDecoder().decode(o.stdout).trim()).catch(() => "");
  const head = await git(["rev-parse", "--short", "HEAD"]);
  const dirty = await git(["status", "--porcelain", "--untracked-files=no"]);
  return `${head || "unknown"}${dirty ? "+dirty" : ""}`;
}

function loadAverage(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

/**
 * `--write-baseline N`: runs `bench.ts --check --no-compare --json TMP [args]` N times, one
 * process each (fresh servers every time, as a check run has), and writes the baseline.
 * Returns the exit code.
 */
export async function writeBaseline(opts: {
  readonly n: number;
  readonly path: string;
  readonly args: readonly string[];
  readonly note: string | undefined;
}): Promise<number> {
  const started = new Date().toISOString();
  const loadBefore = loadAverage();
  const commit = await gitCommit();
  const runs: Record<string, number>[] = [];
  let settings: CheckSettings | null = null;
  for (let i = 0; i < opts.n; i++) {
    const json = await Deno.makeTempFile({ prefix: "bench-check-", suffix: ".json" });
    try {
      console.log(`\n=== baseline run ${i + 1} of ${opts.n} ===\n`);
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          join(BENCH_DIR, "bench.ts"),
          "--check",
          "--no-compare",
          "--json",
          json,
          ...opts.args,
        ],
        stdin: "null",
        stdout: "inherit",
        stderr: "inherit",
      }).output();
      if (!out.success) {
        console.error(`Check run ${i + 1} failed (exit ${out.code}); no baseline written.`);
        return 1;
      }
      const written = JSON.parse(await Deno.readTextFile(json)) as CheckSettings & {
        results: WorkloadResult[];
      };
      settings ??= {
        runs: written.runs,
        blobSize: written.blobSize,
        imageBytes: written.imageBytes,
        loadSeconds: written.loadSeconds,
      };
      runs.push(ratiosOf(written.results));
    } finally {
      await Deno.remove(json).catch(() => {});
    }
  }
  const cpu = /^model name\s*:\s*(.*)$/m.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1];
  const baseline = baselineFrom(runs, {
    commit,
    measuredAt: started,
    conditions: [
      `${navigator.hardwareConcurrency} × ${cpu ?? "unknown CPU"}, Deno ${Deno.version.deno}`,
      `load average ${loadBefore} before, ${loadAverage()} after`,
      ...(opts.note ? [opts.note] : []),
    ].join("; "),
    command: `deno task bench --write-baseline ${opts.n}${
      opts.args.length ? " " + opts.args.join(" ") : ""
    }`,
    settings: settings!,
  });
  await Deno.writeTextFile(opts.path, JSON.stringify(baseline, null, 2) + "\n");
  console.log(`\nWrote ${opts.path} (${Object.keys(baseline.rows).length} rows, ${opts.n} runs):`);
  for (const [key, row] of Object.entries(baseline.rows)) {
    console.log(`  ${key}: ${row.ratio} ± ${row.band} (${row.ratios.join(", ")})`);
  }
  return 0;
}
