/**
 * The bench's measuring loop (bench/rows.ts) with stand-in servers: which runs are made, in
 * which order, and which are counted. Nothing here is timed or starts a server.
 */

import assert from "node:assert/strict";
import { runRows } from "../../bench/rows.ts";
import { machineBusySeconds, type Server } from "../../bench/servers.ts";
import type { Workload } from "../../bench/workloads.ts";

/** A server that is this test process (the sampler reads its /proc entry). */
function standIn(name: string, port = 1): Server {
  const server: Server = {
    name,
    base: `http://127.0.0.1:${port}`,
    pid: Deno.pid,
    dataDir: "/nonexistent",
    logPath: "/nonexistent",
    blobPath: (hex) => `/nonexistent/${hex}`,
    stop: () => Promise.resolve(),
    restart: () => Promise.resolve(standIn(name, port + 1)),
  };
  return server;
}

/** A workload that records every run and clean-up, its metric being the run's number. */
function recording(calls: string[]): Workload {
  return {
    name: "rec",
    metrics: [{ key: "n", unit: "", higherIsBetter: true }],
    transfer: true,
    run(server, run) {
      calls.push(`${server.name} ${run}`);
      return Promise.resolve({ metrics: { n: run }, seconds: 0.001, clientCpu: 0 });
    },
    after(server) {
      calls.push(`${server.name} after`);
      return Promise.resolve();
    },
  };
}

Deno.test("warm-up runs of both servers come first, with their own run numbers, and are not counted", async () => {
  const calls: string[] = [];
  const pair = { ours: standIn("ours"), dist: standIn("distribution") };
  const [result] = await runRows([recording(calls)], pair, {
    runs: 3,
    maxRunSeconds: 60,
    warmup: 1,
  });
  const runs = calls.filter((c) => !c.endsWith("after"));
  assert.deepEqual(runs, [
    "ours 3",
    "distribution 3",
    "ours 0",
    "distribution 0",
    "distribution 1",
    "ours 1",
    "ours 2",
    "distribution 2",
  ]);
  // every run, counted or not, is cleaned up after
  assert.equal(calls.filter((c) => c.endsWith("after")).length, runs.length);
  assert.deepEqual(result.ours.map((s) => s.metrics.n), [0, 1, 2]);
  assert.deepEqual(result.distribution.map((s) => s.metrics.n), [0, 1, 2]);
});

Deno.test("without warm-up, the first counted run is the first run", async () => {
  const calls: string[] = [];
  const pair = { ours: standIn("ours"), dist: standIn("distribution") };
  const [result] = await runRows([recording(calls)], pair, { runs: 2, maxRunSeconds: 60 });
  assert.deepEqual(calls.filter((c) => !c.endsWith("after")), [
    "ours 0",
    "distribution 0",
    "distribution 1",
    "ours 1",
  ]);
  assert.equal(result.ours.length, 2);
});

Deno.test("a warm-up run stopped at the time limit restarts its server, and the counted runs use the new one", async () => {
  const used: string[] = [];
  const pair = { ours: standIn("ours"), dist: standIn("distribution") };
  const slowFirst: Workload = {
    name: "slow",
    metrics: [{ key: "n", unit: "", higherIsBetter: true }],
    transfer: true,
    run(server, run) {
      used.push(`${server.name} ${run} ${server.base}`);
      const timedOut = server.name === "ours" && run === 2;
      return Promise.resolve({ metrics: { n: run }, seconds: 0.001, clientCpu: 0, timedOut });
    },
  };
  const [result] = await runRows([slowFirst], pair, { runs: 2, maxRunSeconds: 60, warmup: 1 });
  assert.deepEqual(used, [
    "ours 2 http://127.0.0.1:1",
    "distribution 2 http://127.0.0.1:1",
    "ours 0 http://127.0.0.1:2",
    "distribution 0 http://127.0.0.1:1",
    "distribution 1 http://127.0.0.1:1",
    "ours 1 http://127.0.0.1:2",
  ]);
  assert.equal(pair.ours.base, "http://127.0.0.1:2");
  assert.deepEqual(result.ours.map((s) => s.metrics.n), [0, 1]);
});

Deno.test("the machine's busy time is the run's own figure when it reports one, else the sampler's", async () => {
  const pair = { ours: standIn("ours"), dist: standIn("distribution") };
  const reporting: Workload = {
    name: "busy",
    metrics: [{ key: "n", unit: "", higherIsBetter: true }],
    transfer: true,
    async run(server, run) {
      // a run that keeps the machine busy after its timed part (as a row's checks do): 50 ms
      // more busy time, by the kernel's count (the deadline only bounds a broken reading)
      const from = machineBusySeconds()!;
      const deadline = performance.now() + 10_000;
      while (machineBusySeconds()! - from < 0.05 && performance.now() < deadline) {
        // busy
      }
      await Promise.resolve();
      const timedPart = server.name === "ours" ? { machineCpu: 0.25 } : {};
      return { metrics: { n: run }, seconds: 0.001, clientCpu: 0, ...timedPart };
    },
  };
  const [result] = await runRows([reporting], pair, { runs: 2, maxRunSeconds: 60 });
  assert.deepEqual(result.ours.map((s) => s.machineCpu), [0.25, 0.25]);
  // the sampler's interval holds the run's: at least its 50 ms of busy time
  for (const s of result.distribution) assert.ok(s.machineCpu! >= 0.05, `${s.machineCpu}`);
});

Deno.test("a row with a bound runs against it too, each run beside the pair's, its samples kept apart", async () => {
  const calls: string[] = [];
  const pair = { ours: standIn("ours"), dist: standIn("distribution") };
  const bound = { server: standIn("intake-durable"), rows: new Set(["rec"]) };
  const other: Workload = { ...recording(calls), name: "other" };
  const [withBound, without] = await runRows([recording(calls), other], pair, {
    runs: 2,
    maxRunSeconds: 60,
    warmup: 1,
    bound,
  });
  assert.deepEqual(calls.filter((c) => !c.endsWith("after")), [
    "ours 2",
    "distribution 2",
    "intake-durable 2",
    // run 0: the bound last; run 1: first (ours and Distribution side by side as before)
    "ours 0",
    "distribution 0",
    "intake-durable 0",
    "intake-durable 1",
    "distribution 1",
    "ours 1",
    // a row without a bound: the pair only
    "ours 2",
    "distribution 2",
    "ours 0",
    "distribution 0",
    "distribution 1",
    "ours 1",
  ]);
  // every run against the bound is cleaned up after, as the pair's are
  assert.equal(calls.filter((c) => c === "intake-durable after").length, 3);
  assert.deepEqual(withBound.bound!.map((s) => s.metrics.n), [0, 1]);
  assert.deepEqual(withBound.ours.map((s) => s.metrics.n), [0, 1]);
  assert.deepEqual(withBound.distribution.map((s) => s.metrics.n), [0, 1]);
  assert.equal(withBound.boundFailed, undefined);
  assert.equal(without.bound, undefined);
});

Deno.test("a failure against the bound ends the bound's runs of that row; the row goes on", async () => {
  const cases = [
    // run 0: the bound goes last
    { failing: 0, bound: [], order: ["ours 0", "distribution 0"] },
    // run 1: the bound goes first; Distribution and ours still run that round
    { failing: 1, bound: [0], order: ["ours 0", "distribution 0", "intake-durable 0"] },
  ];
  for (const c of cases) {
    const calls: string[] = [];
    const pair = { ours: standIn("ours"), dist: standIn("distribution") };
    const bound = { server: standIn("intake-durable"), rows: new Set(["rec"]) };
    const base = recording(calls);
    const failing: Workload = {
      ...base,
      run(server, run) {
        if (server.name === "intake-durable" && run === c.failing) {
          return Promise.reject(new Error("PUT into the intake: HTTP 400"));
        }
        return base.run(server, run);
      },
    };
    const [result] = await runRows([failing], pair, { runs: 3, maxRunSeconds: 60, bound });
    assert.deepEqual(calls.filter((call) => !call.endsWith("after")), [
      ...c.order,
      "distribution 1",
      "ours 1",
      "ours 2",
      "distribution 2",
    ]);
    assert.deepEqual(result.ours.map((s) => s.metrics.n), [0, 1, 2]);
    assert.deepEqual(result.distribution.map((s) => s.metrics.n), [0, 1, 2]);
    assert.deepEqual(result.bound!.map((s) => s.metrics.n), c.bound);
    assert.match(result.boundFailed!, /HTTP 400/);
  }
});

Deno.test("the bound stopped at the time limit is restarted in its own place; a failing clean-up there ends only its runs", async () => {
  const calls: string[] = [];
  const pair = { ours: standIn("ours"), dist: standIn("distribution") };
  const bound = { server: standIn("intake-durable", 7), rows: new Set(["rec"]) };
  const base = recording(calls);
  let cleanups = 0;
  const slow: Workload = {
    ...base,
    async run(server, run) {
      const out = await base.run(server, run);
      return { ...out, timedOut: server.name === "intake-durable" && run === 0 };
    },
    after(server) {
      if (server.name === "intake-durable" && ++cleanups === 2) {
        return Promise.reject(new Error("cannot remove the blob"));
      }
      return base.after!(server);
    },
  };
  const [result] = await runRows([slow], pair, { runs: 3, maxRunSeconds: 60, bound });
  // the restarted bound (port 8) took the bound's place; the pair is untouched
  assert.equal(bound.server.base, "http://127.0.0.1:8");
  assert.equal(pair.dist.base, "http://127.0.0.1:1");
  assert.equal(pair.ours.base, "http://127.0.0.1:1");
  assert.deepEqual(calls.filter((c) => !c.endsWith("after")), [
    "ours 0",
    "distribution 0",
    "intake-durable 0",
    "intake-durable 1",
    "distribution 1",
    "ours 1",
    "ours 2",
    "distribution 2",
  ]);
  assert.deepEqual(result.bound!.map((s) => s.metrics.n), [0, 1]);
  assert.match(result.boundFailed!, /cannot remove the blob/);
  assert.deepEqual(result.ours.map((s) => s.metrics.n), [0, 1, 2]);
});
