/**
 * The comparison of two of our servers in the operations rows (bench/ops_rows.ts): slices in
 * pairs, and figures taken within each pair.
 */

import assert from "node:assert/strict";
import {
  accessLogCost,
  cpuCosts,
  pairedSlices,
  rateRatios,
  type Slice,
} from "../../bench/ops_rows.ts";

Deno.test("pairedSlices: one uncounted slice each, then pairs back to back, alternating which goes first", async () => {
  const calls: string[] = [];
  let n = 0;
  const paired = await pairedSlices(3, (mode) => {
    calls.push(mode);
    n++;
    return Promise.resolve({ rps: n, p99: 0, cpuUs: 0 });
  });
  assert.deepEqual(calls, ["on", "off", "on", "off", "off", "on", "on", "off"]);
  // slices 1 and 2 were the warm-up; pair i holds the two slices run back to back
  assert.deepEqual(paired.on.map((s) => s.rps), [3, 6, 7]);
  assert.deepEqual(paired.off.map((s) => s.rps), [4, 5, 8]);
});

Deno.test("in-pair ratios cancel a change of the machine's speed between pairs", () => {
  // The on side costs 25% more CPU per request; the machine runs half as fast in pair 2.
  const slice = (rps: number, cpuUs: number): Slice => ({ rps, p99: 1, cpuUs });
  const paired = {
    on: [slice(800, 50), slice(400, 100), slice(800, 50)],
    off: [slice(1000, 40), slice(500, 80), slice(1000, 40)],
  };
  assert.deepEqual(rateRatios(paired), [0.8, 0.8, 0.8]);
  assert.deepEqual(cpuCosts(paired).map((c) => Math.round(c * 1000) / 1000), [0.2, 0.2, 0.2]);
  assert.equal(
    accessLogCost(paired, 42),
    "| access log cost | 20.0 (20.0 to 20.0)% of the request rate by CPU per request (10.0 µs more): " +
      "medians of 3 pairs; measured rate on/off 0.800 (0.800 to 0.800) | 42 log lines |",
  );
});
