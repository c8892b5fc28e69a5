/**
 * The bench's resources table (bench/report.ts) and the machine's busy time the sampler reads
 * (bench/servers.ts).
 */

import assert from "node:assert/strict";
import {
  type Ceilings,
  dataPathBoundRow,
  resourcesTable,
  resultsTable,
  type Sample,
  targetFor,
  type WorkloadResult,
} from "../../bench/report.ts";
import type { Metric } from "../../bench/workloads.ts";
import { busySecondsOf, machineBusySeconds, Sampler } from "../../bench/servers.ts";

function sample(seconds: number, serverCpu: number, machineCpu?: number): Sample {
  return {
    metrics: { "MiB/s": 1 },
    seconds,
    clientCpu: seconds / 4,
    peakRssMiB: 50,
    serverCpu,
    ...(machineCpu === undefined ? {} : { machineCpu }),
  };
}

/** Ceilings of a run: SHA-256 at 1,500 MiB/s, loopback at 2,000, the rest as given. */
function ceilingsWith(given: Partial<Ceilings>): Ceilings {
  return {
    diskMiBs: [],
    sha256MiBs: [1500],
    loopbackMiBs: [2000],
    sinkLengthMiBs: [],
    sinkChunkedMiBs: [],
    sinkFileGetMiBs: [],
    sinkHead: null,
    ...given,
  };
}

function row(ours: Sample[], distribution: Sample[]): WorkloadResult {
  return {
    name: "push-x",
    metrics: [{ key: "MiB/s", unit: "MiB/s", higherIsBetter: true }],
    transfer: true,
    ours,
    distribution,
  };
}

Deno.test("resources table: the machine's busy cores are the median over runs, per server", () => {
  const table = resourcesTable([
    row(
      [sample(2, 2, 3.6), sample(1, 1, 1.9), sample(4, 4, 6.8)],
      [sample(2, 1, 2), sample(2, 1, 2.2), sample(2, 1, 1.8)],
    ),
  ]);
  const [head, , line] = table.split("\n");
  assert.match(head!, new RegExp(`machine cores busy, of ${navigator.hardwareConcurrency}`));
  // ours: 1.8, 1.9, 1.7 cores busy; Distribution: 1.0, 1.1, 0.9
  assert.equal(
    line,
    "| push-x | 50.0 / 50.0 | 1.00 / 0.50 | — / — | 0.25 / 0.25 | 1.80 / 1.00 |  |",
  );
});

Deno.test("resources table: samples without the machine's time (older JSON) show a dash", () => {
  const table = resourcesTable([row([sample(2, 2)], [sample(2, 1, 3)])]);
  assert.equal(
    table.split("\n")[2],
    "| push-x | 50.0 / 50.0 | 1.00 / 0.50 | — / — | 0.25 / 0.25 | — / 1.50 |  |",
  );
});

Deno.test("resources table: the kernel's share of each server's CPU, the median over runs", () => {
  const withSystem = (seconds: number, cpu: number, system: number): Sample => ({
    ...sample(seconds, cpu, seconds),
    serverSystemCpu: system,
  });
  const table = resourcesTable([
    row(
      [withSystem(1, 1, 0.9), withSystem(1, 1, 0.8), withSystem(1, 0.5, 0.4)],
      [withSystem(1, 1, 0.7), withSystem(1, 0, 0), sample(1, 1, 1)],
    ),
  ]);
  // ours: 0.9, 0.8, 0.8; Distribution: 0.7 (a run without CPU and one without the figure left out)
  assert.match(
    table.split("\n")[2]!,
    /^\| push-x \| 50\.0 \/ 50\.0 \| 1\.00 \/ 1\.00 \| 0\.80 \/ 0\.70 \| /,
  );
});

Deno.test("machine busy time: user, nice, system, irq, softirq and steal; not idle or I/O wait", () => {
  const stat = [
    "cpu  1000 20 300 90000 4000 5 60 7 0 0",
    "cpu0 500 10 150 45000 2000 3 30 4 0 0",
    "intr 12345",
  ].join("\n");
  assert.equal(busySecondsOf(stat), (1000 + 20 + 300 + 5 + 60 + 7) / 100);
  assert.throws(() => busySecondsOf("MemTotal: 1 kB\n"), /not \/proc\/stat/);
});

Deno.test("machine busy time: this machine's grows while this process spins", () => {
  const before = machineBusySeconds();
  assert.notEqual(before, null, "/proc/stat is readable on Linux");
  const sampler = new Sampler(Deno.pid);
  sampler.start();
  // spin until the machine has been busy 50 ms more (the kernel counts in ticks of 10 ms);
  // the deadline only bounds a broken reading
  let now = before!;
  const deadline = performance.now() + 10_000;
  while (now - before! < 0.05 && performance.now() < deadline) now = machineBusySeconds()!;
  const usage = sampler.stop();
  assert.ok(now - before! >= 0.05, `busy ${now - before!} s in 10 s of spinning`);
  // the sampler started after the first reading: at most a tick per core later
  const slack = navigator.hardwareConcurrency * 0.01;
  assert.ok(usage.machineBusySeconds >= 0.05 - slack, `sampled ${usage.machineBusySeconds} s`);
});

Deno.test("push-parallel's bound: the target names the data path's ratio; its row has the rates", () => {
  const ceilings = ceilingsWith({
    diskMiBs: [1000],
    parallelDataPath: {
      baseline: "distribution",
      dataPathMiBs: [700, 760, 720],
      baselineMiBs: [380, 370, 400],
      ratios: [1.84, 2.05, 1.8],
    },
  });
  const metric: Metric = { key: "MiB/s", unit: "MiB/s", higherIsBetter: true };
  assert.deepEqual(targetFor("push-parallel", metric, 700, 380, ceilings), {
    text: "≥ 2× Dist (durable data path alone, in rounds before the rows: 1.84×)",
    met: false,
  });
  assert.equal(targetFor("push-parallel", metric, 800, 380, ceilings).met, true);
  const { parallelDataPath: _, ...without } = ceilings;
  assert.equal(targetFor("push-parallel", metric, 700, 380, without).text, "≥ 2× Dist");

  const row = dataPathBoundRow(ceilings.parallelDataPath!, 128);
  assert.match(row, /\| 720 \(700–760\) MiB\/s, 1\.84× distribution in the same rounds/);
  assert.match(row, /distribution: 380 \(370–400\)/);
  assert.match(row, /8 × 128 MiB pushes into `bench\/intake\.ts --mode durable`/);
  assert.match(row, /3 rounds counted/);
});

Deno.test("single pushes of curl and the Go-style sender: issue 15's targets, and their bound in the cell", () => {
  const ceilings = ceilingsWith({ diskMiBs: [1100, 1126, 1200] });
  const metric: Metric = { key: "MiB/s", unit: "MiB/s", higherIsBetter: true };
  // 2.5× Distribution, but under half the disk
  assert.deepEqual(targetFor("curl-chunked", metric, 541, 205, ceilings), {
    text: "≥ 2.5× Dist and ≥ 563 MiB/s (half the disk ceiling)",
    met: false,
  });
  assert.equal(targetFor("curl-chunked", metric, 600, 205, ceilings).met, true);
  // half of SHA-256 when it is the lower ceiling; under 2.5× Distribution
  const slowHash = { ...ceilings, sha256MiBs: [900] };
  assert.deepEqual(targetFor("go-stream", metric, 600, 250, slowHash), {
    text: "≥ 2.5× Dist and ≥ 450 MiB/s (half the SHA-256 ceiling)",
    met: false,
  });
  assert.equal(targetFor("skopeo-push", metric, 271, 175, ceilings).text, "≥ 2× Dist");
  assert.equal(targetFor("pull", metric, 2894, 2252, ceilings).met, false);

  const mib = (v: number): Sample => ({ ...sample(1, 0.5), metrics: { "MiB/s": v } });
  const result: WorkloadResult = {
    name: "curl-chunked",
    metrics: [metric],
    transfer: true,
    ours: [mib(541), mib(471), mib(562)],
    distribution: [mib(201), mib(205), mib(206)],
    bound: [mib(530), mib(560), mib(545)],
  };
  const table = resultsTable([result], ceilings, 3);
  assert.match(
    table,
    /\| curl-chunked MiB\/s \| 541 \(471–562\) \| 205 \(201–206\) \| 2\.64 \| ≥ 2\.5× Dist and ≥ 563 MiB\/s \(half the disk ceiling\); the durable data path alone, same client: 545 MiB\/s, 2\.66× Dist \| \*\*no\*\* \|/,
  );
  const none = resultsTable([{ ...result, bound: [], boundFailed: "HTTP 400" }], ceilings, 3);
  assert.match(none, /\(half the disk ceiling\) \(its bound not measured\) \|/);
  const cut = resultsTable(
    [{ ...result, bound: [mib(530)], boundFailed: "HTTP 400" }],
    ceilings,
    3,
  );
  assert.match(
    cut,
    /the durable data path alone, same client \(1 run, then it failed\): 530 MiB\/s/,
  );
  const unbounded = resultsTable([{ ...result, bound: undefined }], ceilings, 3);
  assert.doesNotMatch(unbounded, /data path|bound/);
});
