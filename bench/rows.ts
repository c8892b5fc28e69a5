/**
 * The measuring loop of `deno task bench` (bench/bench.ts and bench/s3_bench.ts): each
 * workload against both servers, first `warmup` uncounted runs of each, then run by run,
 * alternating which goes first, with each run's server sampled (peak RSS, CPU); a client row
 * that cannot run here is reported as skipped; a push run stopped at its time limit restarts
 * that server; a server whose run took longer than the limit skips its remaining runs of that
 * workload.
 */

import { SkipRow } from "./client_rows.ts";
import type { Sample, WorkloadResult } from "./report.ts";
import { Sampler, type Server } from "./servers.ts";
import type { Workload } from "./workloads.ts";

/** The two servers under test; replaced in place when one is restarted. */
export interface Pair {
  ours: Server;
  dist: Server;
}

/**
 * A third server some rows also run against, run by run beside the pair: the bound of those
 * rows (the registry's durable data path alone, bench/intake.ts). Replaced in place when
 * restarted.
 */
export interface Bound {
  server: Server;
  /** The rows that run against it. */
  readonly rows: ReadonlySet<string>;
}

/**
 * Starts a server afresh after one of its runs was stopped at the time limit (it may go on
 * working through what it had received), in the pair (or the bound) as well; the new server.
 */
async function restartAfterTimeout(
  pair: Pair,
  bound: Bound | undefined,
  w: Workload,
  s: Server,
): Promise<Server> {
  console.log(`  ${w.name}: ${s.name} stopped at the time limit; restarting it`);
  const fresh = await s.restart();
  if (bound?.server === s) bound.server = fresh;
  else if (fresh.name === "ours") pair.ours = fresh;
  else pair.dist = fresh;
  return fresh;
}

/**
 * Runs the workloads against both servers and returns their samples. A row named in
 * `o.bound` runs against the bound's server too, in every run (warm-up included), its samples
 * kept apart; a failure there only ends the bound's runs of that row (`boundFailed`).
 */
export async function runRows(
  chosen: readonly Workload[],
  pair: Pair,
  o: { runs: number; maxRunSeconds: number; warmup?: number; bound?: Bound },
): Promise<WorkloadResult[]> {
  const { runs, maxRunSeconds, bound } = o;
  const warmup = o.warmup ?? 0;
  const results: WorkloadResult[] = [];
  for (const w of chosen) {
    const t0 = performance.now();
    const result: WorkloadResult = {
      name: w.name,
      metrics: w.metrics,
      transfer: w.transfer,
      ours: [],
      distribution: [],
    };
    const bounded = bound?.rows.has(w.name) === true;
    if (bounded) result.bound = [];
    const capped = new Set<string>();
    // A client row that cannot run here (bench/client_rows.ts) is reported as skipped.
    const skip = (error: unknown) => {
      if (!(error instanceof SkipRow)) throw error;
      result.skipped = error.message;
      console.log(`${w.name}: skipped: ${error.message}`);
    };
    const boundFailed = (error: unknown) => {
      result.boundFailed = String(error).slice(0, 500);
      console.log(`  ${w.name}: its bound's runs ended: ${result.boundFailed}`);
    };
    /** The bound's server while its runs of this row go on. */
    const boundServer = () => bounded && result.boundFailed === undefined ? bound!.server : null;
    /** A run's error: the row's (thrown or skipped), or the bound's (kept, the row goes on). */
    const failed = (s: Server, error: unknown): "row" | "bound" => {
      if (s === bound?.server && bounded) {
        boundFailed(error);
        return "bound";
      }
      skip(error);
      return "row";
    };
    /**
     * After a run: a server stopped at the time limit is restarted, then the run is cleaned up
     * after. False when this failed for the bound (its runs of this row end); a failure for
     * ours or Distribution is thrown.
     */
    const settle = async (s: Server, out: { timedOut?: boolean }): Promise<boolean> => {
      const isBound = s === bound?.server && bounded;
      try {
        const now = out.timedOut ? await restartAfterTimeout(pair, bound, w, s) : s;
        await w.after?.(now);
        return true;
      } catch (error) {
        if (!isBound) throw error;
        boundFailed(error);
        return false;
      }
    };
    try {
      for (const s of [pair.ours, pair.dist]) await w.setup?.(s);
    } catch (error) {
      skip(error);
    }
    if (result.skipped === undefined && boundServer() !== null) {
      try {
        await w.setup?.(bound!.server);
      } catch (error) {
        boundFailed(error);
      }
    }
    // Uncounted runs first, for both servers: a row's first run is slower (the code not yet
    // optimised by V8, in the bench's client as in our server; buffers and connections
    // being made), and since run 0 starts with ours, that cost would fall on ours alone.
    // Their run numbers follow the measured ones, so their names never collide.
    for (let k = 0; k < warmup && result.skipped === undefined; k++) {
      const servers = [pair.ours, pair.dist, boundServer()].filter((s) => s !== null);
      for (const s of servers) {
        let out;
        try {
          out = await w.run(s, runs + k);
        } catch (error) {
          if (failed(s, error) === "row") break;
          continue;
        }
        if (!await settle(s, out)) continue;
      }
    }
    for (let r = 0; r < runs && result.skipped === undefined; r++) {
      // the bound's run comes last, then first: ours and Distribution stay side by side
      const third = boundServer();
      const two: Server[] = r % 2 === 0 ? [pair.ours, pair.dist] : [pair.dist, pair.ours];
      const order = third === null ? two : r % 2 === 0 ? [...two, third] : [third, ...two];
      for (const s of order) {
        if (capped.has(s.name)) continue;
        const sampler = new Sampler(s.pid);
        sampler.start();
        let out;
        let usage;
        try {
          out = await w.run(s, r);
        } catch (error) {
          if (failed(s, error) === "row") break;
          continue;
        } finally {
          usage = sampler.stop();
        }
        const sample: Sample = {
          metrics: out.metrics,
          seconds: out.seconds,
          clientCpu: out.clientCpu,
          peakRssMiB: usage.peakRssMiB,
          serverCpu: usage.cpuSeconds,
          serverSystemCpu: usage.systemSeconds,
          machineCpu: out.machineCpu ?? usage.machineBusySeconds,
          ...(out.note ? { note: out.note } : {}),
        };
        const samples = s === bound?.server && bounded
          ? result.bound!
          : s.name === "ours"
          ? result.ours
          : result.distribution;
        samples.push(sample);
        if (!await settle(s, out)) continue;
        if (out.seconds >= maxRunSeconds && r < runs - 1) {
          capped.add(s.name);
          console.log(
            `  ${w.name}: ${s.name} run took ${
              out.seconds.toFixed(0)
            } s (limit ${maxRunSeconds} s); its remaining runs are skipped (--max-run-seconds)`,
          );
        }
      }
    }
    results.push(result);
    if (result.skipped !== undefined) continue;
    const line = w.metrics.map((m) =>
      `${m.key} ours ${result.ours.map((x) => x.metrics[m.key]!.toFixed(1)).join("/")}, Dist ${
        result.distribution.map((x) => x.metrics[m.key]!.toFixed(1)).join("/")
      }${
        result.bound?.length
          ? `, data path alone ${result.bound.map((x) => x.metrics[m.key]!.toFixed(1)).join("/")}`
          : ""
      }`
    ).join("; ");
    console.log(`${w.name}: ${line} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }

  return results;
}
