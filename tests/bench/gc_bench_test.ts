/**
 * The collection benchmark's store (bench/big_store.ts with a `GarbagePlan`) and its checks
 * (bench/gc_bench.ts): our collector, with the benchmark's retention rule, deletes exactly the
 * planted garbage, and both layouts hold the same blobs.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { gcOnlyArgs } from "../../bench/bench.ts";
import { writeStore } from "../../bench/big_store.ts";
import {
  countBlobs,
  expectedGarbage,
  parseDistributionSummary,
  parseGcArgs,
} from "../../bench/gc_bench.ts";
import { DEFAULTS } from "../../src/config/mod.ts";
import { tempRegistry } from "../helpers/registry.ts";

const PLAN = { manifests: 300, repositories: 7, bigTags: 0 };
const GARBAGE = {
  uniqueLayers: true,
  untagged: 0.1,
  unlinked: 0.1,
  linkedUnreferenced: 0.1,
  mtime: new Date(Date.now() - 2 * 3600_000),
};

Deno.test("the collector deletes exactly the planted garbage; both layouts agree", async () => {
  const root = await Deno.makeTempDir({ prefix: "gc-bench-test-" });
  try {
    const ours = writeStore(join(root, "ours"), PLAN, "ours", GARBAGE);
    const dist = writeStore(join(root, "dist"), PLAN, "distribution", GARBAGE);
    assert.deepEqual(ours.counts, dist.counts);
    const c = ours.counts;
    assert.equal(c.manifests, 300);
    assert.ok(c.untaggedManifests > 10 && c.unlinkedBlobs > 10 && c.linkedUnreferencedBlobs > 10);
    // a manifest, its own layer, each repository's config, the planted blobs
    assert.equal(c.blobs, 600 + 7 + c.unlinkedBlobs + c.linkedUnreferencedBlobs);
    assert.equal(countBlobs(join(root, "ours"), "ours"), c.blobs);
    assert.equal(countBlobs(join(root, "dist"), "distribution"), c.blobs);
    const stat = await Deno.stat(join(root, "ours", "format.json"));
    assert.ok(Date.now() - stat.mtime!.getTime() > 3600_000);

    const expected = expectedGarbage(c, true);
    await using reg = await tempRegistry({
      dataDir: join(root, "ours"),
      config: {
        gc: {
          intervalMs: 0,
          graceMs: 3600_000,
          deleteOrphanReferrers: false,
          retention: [{
            repositories: ["**"],
            keepTags: null,
            keepTagPatterns: [],
            keepPulledWithinMs: null,
            untaggedAfterMs: 0,
          }],
        },
      },
    });
    for (const dryRun of [true, false]) {
      const res = await reg.fetch(`/admin/gc?wait=true${dryRun ? "&dryRun=true" : ""}`, {
        method: "POST",
      });
      assert.equal(res.status, 200);
      const report = await res.json();
      assert.equal(report.dryRun, dryRun);
      assert.deepEqual(
        {
          manifests: report.counts.manifests,
          links: report.counts.links,
          blobs: report.counts.blobs,
          bytes: report.bytesFreed,
        },
        expected,
      );
      assert.equal(report.counts.tags, 0);
    }
    assert.equal(countBlobs(join(root, "ours"), "ours"), c.blobs - expected.blobs);
    assert.equal(DEFAULTS.gc.retention.length, 0);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("the benchmark's parsers", () => {
  assert.deepEqual(
    parseDistributionSummary(
      "x\n\n1922 blobs marked, 187 blobs and 44 manifests eligible for deletion\n",
    ),
    { marked: 1922, blobs: 187, manifests: 44 },
  );
  assert.equal(parseDistributionSummary("nothing"), null);
  assert.deepEqual(gcOnlyArgs(["--only", "gc", "--manifests", "5"]), ["--manifests", "5"]);
  assert.deepEqual(gcOnlyArgs(["--manifests", "5", "--only=gc"]), ["--manifests", "5"]);
  assert.equal(gcOnlyArgs(["--only", "pull"]), null);
  const args = parseGcArgs(["--manifests", "5000"]);
  assert.equal(args.repositories, 50);
  assert.equal(args.manifests, 5000);
});
