/**
 * Measures an upload's commit on the S3 driver against the test RGW (not a test: run it with
 * `deno run -A tests/storage/s3_commit_bench.ts [MiB]`, default 64): the bytes are appended
 * the way the registry's PATCH does (1 MiB writes, one sync), then `move` to a blob key is
 * timed, and the blob's SHA-256 checked. Prints one line per phase; the bucket is removed.
 */

import { createHash } from "node:crypto";
import { S3Driver } from "../../src/storage/drivers/s3.ts";
import { createBucket, s3Server } from "../helpers/s3.ts";

const mib = Number(Deno.args[0] ?? 64);
const server = await s3Server();
if (server instanceof Error) throw server;
const bucket = await createBucket(server);
try {
  const driver = new S3Driver({ ...bucket.options, rootdirectory: "bench" });
  const batch = new Uint8Array(1024 * 1024);
  const hash = createHash("sha256");
  await driver.create("uploads/u/data");
  let t = performance.now();
  const writer = await driver.append("uploads/u/data", 0);
  for (let i = 0; i < mib; i++) {
    crypto.getRandomValues(batch.subarray(0, 65536));
    batch.copyWithin(65536, 0, batch.length - 65536);
    hash.update(batch);
    await writer.write(batch);
  }
  await writer.sync();
  writer.close();
  console.log(`append ${mib} MiB + sync: ${(performance.now() - t).toFixed(0)} ms`);
  t = performance.now();
  await driver.move("uploads/u/data", "blobs/b");
  console.log(`commit (move) ${mib} MiB: ${(performance.now() - t).toFixed(0)} ms`);
  t = performance.now();
  const check = createHash("sha256");
  for await (const chunk of (await driver.read("blobs/b"))!.stream) check.update(chunk);
  const ok = check.digest("hex") === hash.digest("hex");
  console.log(`read back: ${(performance.now() - t).toFixed(0)} ms, sha256 ${ok ? "ok" : "WRONG"}`);
  if (!ok) Deno.exitCode = 1;
} finally {
  await bucket.remove();
}
