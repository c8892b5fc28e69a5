/**
 * `createServices` in the scale-out mode, in one process: two "replicas" over one memory
 * driver (standing for the bucket) and one PostgreSQL database. A collection runs on one at a
 * time (the other reports it skipped, and runs once the first is done), and `close()` ends
 * every database connection.
 */

import assert from "node:assert/strict";
import { type Config, DEFAULTS } from "../../src/config/mod.ts";
import { createServices, type Services } from "../../src/services/registry.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { testDatabase } from "../helpers/postgres.ts";

const db = await testDatabase();

function scaleOut(databaseUrl: string): Config {
  return {
    ...DEFAULTS,
    dataDir: "/nonexistent-scale-out",
    s3: {
      accessKey: "a",
      secretKey: "s",
      region: "r",
      regionEndpoint: "http://127.0.0.1:9",
      bucket: "unused",
      rootDirectory: "",
      secure: false,
      chunkSize: 5 * 1024 * 1024,
      uploadMemory: 16 * 1024 * 1024,
    },
    databaseUrl,
  };
}

/** Connections to the database other than the asking one. */
async function connections(url: string): Promise<number> {
  const sql = db.pool(1);
  try {
    const name = new URL(url).pathname.slice(1);
    const [row] = await sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity
      where datname = ${name} and pid <> pg_backend_pid()`;
    return row.n;
  } finally {
    await sql.end();
  }
}

async function until(what: string, condition: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

db.test("scale-out services: one collection at a time; close() ends the pools", async () => {
  const url = await db.another();
  const driver = new MemoryDriver();
  let entered!: () => void;
  const inside = new Promise<void>((resolve) => (entered = resolve));
  let leave!: () => void;
  const held = new Promise<void>((resolve) => (leave = resolve));
  const a = await createServices(scaleOut(url), {
    driver,
    gcProbe: async (phase) => {
      if (phase === "done") {
        entered();
        await held;
      }
    },
  });
  let b: Services | null = null;
  try {
    b = await createServices(scaleOut(url), { driver });
    assert.equal(a.database !== null && b.database !== null, true);
    assert.equal(a.where, "s3://unused");
    const first = a.gc.run();
    await inside; // A holds the collection lock
    const skipped = await b.gc.run().report;
    assert.equal(skipped.skipped, "another replica is collecting");
    leave();
    const report = await first.report;
    assert.equal(report.skipped, undefined);
    assert.equal(report.error, undefined);
    const again = await b.gc.run().report;
    assert.equal(again.skipped, undefined);
  } finally {
    a.close();
    b?.close();
  }
  await until("every connection closed", async () => (await connections(url)) === 0);
});
