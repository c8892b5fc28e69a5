/**
 * The pure parts of `deno task bench --storage s3` (bench/s3_setup.ts, bench/s3_bench.ts):
 * both servers' configuration files, the object names of a committed blob, the parsing of
 * `scripts/s3-ceph.sh up`, the targets and the bound notes. Nothing here is timed or starts a
 * server.
 */

import assert from "node:assert/strict";
import { parse } from "yaml";
import { boundNote, s3Target } from "../../bench/s3_bench.ts";
import {
  distributionBlobKey,
  distributionS3Config,
  oursBlobKey,
  oursS3Config,
  parseS3Env,
  type S3Target,
} from "../../bench/s3_setup.ts";
import { blobKey } from "../../src/storage/keys.ts";
import type { Digest } from "../../src/types/oci.ts";

const TARGET: S3Target = {
  endpoint: "http://127.0.0.1:7480",
  accessKey: "access",
  secretKey: 'se"cret: #1',
  region: "us-east-1",
  bucket: "bench-dist-1-abc",
  chunkSize: 10 * 1024 * 1024,
  redirectDisabled: false,
};
const DIGEST = "sha256:" + "ab".repeat(32);

Deno.test("Distribution's s3 config names the bucket, endpoint, keys and its own settings", () => {
  const c = parse(distributionS3Config(TARGET, 5000, "s3kr1t"));
  assert.deepEqual(c.storage.s3, {
    regionendpoint: "http://127.0.0.1:7480",
    bucket: "bench-dist-1-abc",
    region: "us-east-1",
    accesskey: "access",
    secretkey: 'se"cret: #1',
    secure: false,
    v4auth: true,
    chunksize: 10485760,
  });
  assert.equal(c.storage.filesystem, undefined);
  assert.deepEqual(c.storage.redirect, { disable: false });
  assert.deepEqual(c.storage.cache, { blobdescriptor: "inmemory" });
  assert.equal(c.storage.delete.enabled, true);
  assert.deepEqual(c.http, { addr: "127.0.0.1:5000", secret: "s3kr1t" });
  assert.equal(c.log.accesslog.disabled, true);
  const streamed = parse(distributionS3Config({ ...TARGET, redirectDisabled: true }, 1, "x"));
  assert.deepEqual(streamed.storage.redirect, { disable: true });
  const tls = parse(distributionS3Config({ ...TARGET, endpoint: "https://s3.example" }, 1, "x"));
  assert.equal(tls.storage.s3.secure, true);
});

Deno.test("our s3 config is the scale-out mode: storage.s3, redirect, database.url", () => {
  const c = parse(oursS3Config({ ...TARGET, redirectDisabled: true }, "postgres://p@h:5/db"));
  assert.deepEqual(c, {
    storage: {
      s3: {
        regionendpoint: "http://127.0.0.1:7480",
        bucket: "bench-dist-1-abc",
        region: "us-east-1",
        accesskey: "access",
        secretkey: 'se"cret: #1',
        chunksize: 10485760,
      },
      redirect: { disable: true },
    },
    database: { url: "postgres://p@h:5/db" },
  });
});

Deno.test("blob object names: ours as src/storage/keys.ts, Distribution's under docker/registry/v2", () => {
  assert.equal(oursBlobKey(DIGEST), blobKey(DIGEST as Digest));
  assert.equal(oursBlobKey(DIGEST), `blobs/sha256/ab/${"ab".repeat(32)}`);
  assert.equal(
    distributionBlobKey(DIGEST),
    `docker/registry/v2/blobs/sha256/ab/${"ab".repeat(32)}/data`,
  );
});

Deno.test("parseS3Env reads the script's REGISTRY_S3_* lines", () => {
  const out = "Ceph RGW is up: …\nREGISTRY_S3_ENDPOINT=http://127.0.0.1:7480\n" +
    "REGISTRY_S3_ACCESS_KEY=a\nREGISTRY_S3_SECRET_KEY=s\n";
  assert.deepEqual(parseS3Env(out), {
    endpoint: "http://127.0.0.1:7480",
    accessKey: "a",
    secretKey: "s",
    region: "us-east-1",
  });
  assert.equal(parseS3Env("REGISTRY_S3_ENDPOINT=x\n"), null);
});

Deno.test("targets of the S3 run by row, with or without a pull mode", () => {
  const mibs = { key: "MiB/s", unit: "MiB/s", higherIsBetter: true };
  const rps = { key: "req/s", unit: "req/s", higherIsBetter: true };
  const p99 = { key: "p99 ms", unit: "ms", higherIsBetter: false };
  assert.deepEqual(s3Target("push-mono", mibs, 150, 100), { text: "≥ 1.5× Dist", met: true });
  assert.equal(s3Target("push-parallel", mibs, 149, 100).met, false);
  assert.deepEqual(s3Target("pull [stream]", mibs, 100, 100), { text: "≥ 1× Dist", met: true });
  assert.equal(s3Target("head-blob [redirect]", rps, 999, 100).met, false);
  assert.equal(s3Target("get-manifest", rps, 1000, 100).met, true);
  assert.equal(s3Target("get-manifest", p99, 1, 100).met, null);
});

Deno.test("bound notes say whether RGW's own figure rules the target out", () => {
  const c = {
    put: 100,
    copy: 100,
    oursPath: 40,
    distPath: 50,
    parallelPut: 150,
    get: 200,
    head: 900,
    smallGet: 1000,
  };
  const over = boundNote("head-blob [stream]", 500, 400, 10, c);
  assertIncludes(over, "target 10× Dist = 4,000 req/s");
  assertIncludes(over, "HeadObject at 64 conns: 900 req/s");
  assertIncludes(over, "no registry in front of it can reach it here");
  const under = boundNote("push-mono", 20, 20, 1.5, c);
  assertIncludes(under, "bound (RGW alone, no registry in between): ours' storage path: 40 MiB/s");
  assertIncludes(under, "Distribution's path: 50 MiB/s, so ours' path allows at most 0.80×");
  assertIncludes(under, "not explained by it");
  const design = boundNote("push-stream", 20, 30, 1.5, c);
  assertIncludes(design, "this miss is ours' storage design, not RGW alone");
  const over2 = boundNote("push-stream", 20, 40, 1.5, c);
  assertIncludes(over2, "no registry in front of it can reach it here");
  assertIncludes(boundNote("push-parallel", 1, 10, 1.5, c), "in series: 60 MiB/s");
  assertIncludes(boundNote("pull [redirect]", 90, 100, 1, c), "RGW against itself");
  assertIncludes(boundNote("get-manifest", 90, 100, 10, c), "GetObject 1 KiB");
  // Ours' HEAD asks PostgreSQL only: its query's rate is the bound once measured.
  const db = boundNote("head-blob [redirect]", 3000, 700, 10, { ...c, headQuery: 5000 });
  assertIncludes(db, "bound (PostgreSQL alone, no registry in between)");
  assertIncludes(db, "the HEAD's one query (bench/pg_ceiling.ts): 5,000 req/s");
  assertIncludes(db, "above what PostgreSQL itself does");
  const dbUnder = boundNote("head-blob [stream]", 3000, 700, 10, { ...c, headQuery: 9000 });
  assertIncludes(dbUnder, "under the bound, not explained by it");
});

function assertIncludes(text: string, part: string): void {
  assert.ok(text.includes(part), `${JSON.stringify(part)} not in ${JSON.stringify(text)}`);
}
