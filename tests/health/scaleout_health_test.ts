/**
 * Readiness in the scale-out mode (`storage.s3`): no data root, so no free-space check (and no
 * warning about it); the database is checked, and its failure fails `/readyz` by name.
 */

import assert from "node:assert/strict";
import { type Config, DEFAULTS } from "../../src/config/mod.ts";
import { Health } from "../../src/health/health.ts";
import { createLogger } from "../../src/log.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";

const S3: Config["s3"] = {
  accessKey: "a",
  secretKey: "s",
  region: "r",
  regionEndpoint: null,
  bucket: "b",
  rootDirectory: "",
  secure: true,
  chunkSize: 10 * 1024 * 1024,
  uploadMemory: 16 * 1024 * 1024,
};

Deno.test("scale-out readiness: the database is checked, free space is not", async () => {
  const lines: string[] = [];
  const log = createLogger({ level: "info", format: "text", sink: (l) => lines.push(l) });
  let down = false;
  const config: Config = { ...DEFAULTS, dataDir: "unused", s3: S3, databaseUrl: "postgres://h/d" };
  const health = new Health(config, new MemoryDriver(), log, {
    freeSpace: () => Promise.resolve(0), // would fail the filesystem mode
    database: {
      check: () => down ? Promise.reject(new Error("connect ECONNREFUSED")) : Promise.resolve(),
    },
  });
  try {
    assert.deepEqual(await health.readiness(false), {});
    down = true;
    assert.deepEqual(await health.readiness(false), {
      database: "Cannot reach the database: connect ECONNREFUSED",
    });
    assert.ok(!lines.some((line) => line.includes("free space")), lines.join("\n"));
    // the same free space fails the filesystem mode
    const fs = new Health({ ...DEFAULTS, dataDir: "unused" }, new MemoryDriver(), log, {
      freeSpace: () => Promise.resolve(0),
    });
    assert.ok("free_space" in await fs.readiness(false));
    fs.close();
  } finally {
    health.close();
  }
});
