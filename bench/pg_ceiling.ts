/**
 * PostgreSQL's own rate for the query a blob HEAD costs in the scale-out mode (the link joined
 * with the blob's size, `BlobSizes.linked` of src/storage/postgres/blobs.ts), measured on the
 * S3 run's database before the registry starts: the bound the head-blob row is set against,
 * as RGW's HeadObject was while a HEAD asked the bucket.
 *
 * Two figures, about 2 s each:
 * - `pgbench` (from /usr/lib/postgresql/<newest>/bin), the query as a prepared statement from
 *   16 clients over 2 threads: what the database alone answers on this machine;
 * - the registry's own client and pool (`connect` of src/storage/postgres/client.ts, 10
 *   connections, prepared statements) driven by 64 callers in this process: the database plus
 *   the client's cost, the most a replica's HEAD path could do if nothing else cost anything.
 *
 * A probe repository `ceiling/probe` linking one blob with a row of its size is inserted for
 * the measure and removed after, so the registry starts on an empty database.
 */

import { migrate } from "../src/storage/metadata/migrations.ts";
import { BlobSizes } from "../src/storage/postgres/blobs.ts";
import { connect } from "../src/storage/postgres/client.ts";
import type { Digest, RepositoryName } from "../src/types/oci.ts";

/** One figure: queries per second and, when known, the 99th percentile latency (ms). */
export interface QueryRate {
  readonly qps: number;
  readonly p99: number | null;
  readonly seconds: number;
}

/** The database's figures of this run (null: not measured, a note says why). */
export interface DbCeilings {
  readonly pgbench: QueryRate | null;
  readonly client: QueryRate | null;
  readonly notes: string[];
}

const PROBE_REPOSITORY = "ceiling/probe" as RepositoryName;
/** sha256 of nothing the bench pushes (64 × "c"): the probe's blob. */
const PROBE_DIGEST = `sha256:${"c".repeat(64)}` as Digest;

/** The newest pgbench installed, or null. */
async function pgbenchBinary(): Promise<string | null> {
  const versions: string[] = [];
  try {
    for await (const entry of Deno.readDir("/usr/lib/postgresql")) versions.push(entry.name);
  } catch {
    return null;
  }
  versions.sort((a, b) => Number(a) - Number(b));
  for (const version of versions.reverse()) {
    const path = `/usr/lib/postgresql/${version}/bin/pgbench`;
    try {
      await Deno.stat(path);
      return path;
    } catch { /* next */ }
  }
  return null;
}

/** Measures both figures on the database at `url` (migrated here; the probe removed after). */
export async function measureDatabase(
  url: string,
  o: { seconds: number; scratchDir: string },
): Promise<DbCeilings> {
  const notes: string[] = [];
  const sql = connect(url, { max: 10 });
  try {
    await migrate(sql);
    await sql.begin(async (tx) => {
      await tx`insert into repositories (name) values (${PROBE_REPOSITORY})`;
      await tx`insert into layer_links (repository, digest) values (${PROBE_REPOSITORY}, ${PROBE_DIGEST})`;
      await tx`insert into blobs (digest, size) values (${PROBE_DIGEST}, ${1024 * 1024})`;
    });
    try {
      const pgbench = await runPgbench(url, o, notes);
      const client = await runClient(new BlobSizes(sql), o.seconds);
      return { pgbench, client, notes };
    } finally {
      await sql.begin(async (tx) => {
        await tx`delete from layer_links where repository = ${PROBE_REPOSITORY}`;
        await tx`delete from repositories where name = ${PROBE_REPOSITORY}`;
        await tx`delete from blobs where digest = ${PROBE_DIGEST}`;
      });
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** pgbench on the HEAD's query: 16 clients, 2 threads, prepared, `seconds` long. */
async function runPgbench(
  url: string,
  o: { seconds: number; scratchDir: string },
  notes: string[],
): Promise<QueryRate | null> {
  const binary = await pgbenchBinary();
  if (binary === null) {
    notes.push("pgbench not found under /usr/lib/postgresql/*/bin");
    return null;
  }
  const script = `${o.scratchDir}/head_query.sql`;
  // BlobSizes.linked's query for one key (the registry sends many keys in one query when HEADs
  // come at once). The probe's values are pgbench variables, sent as bind parameters as the
  // registry sends them (a literal digest's ':' would read as a variable).
  await Deno.writeTextFile(
    script,
    "select b.size from layer_links l left join blobs b on b.digest = l.digest " +
      "where l.repository = :repo and l.digest = :digest;\n",
  );
  const flags = ["-n", "-M", "prepared", "-c", "16", "-j", "2", "-T", String(o.seconds)];
  const values = ["-D", `repo=${PROBE_REPOSITORY}`, "-D", `digest=${PROBE_DIGEST}`];
  const out = await new Deno.Command(binary, {
    args: [...flags, ...values, "-f", script, url],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(text);
  if (!out.success || tps === null) {
    notes.push(`pgbench failed: ${new TextDecoder().decode(out.stderr).trim().slice(-300)}`);
    return null;
  }
  // pgbench prints no percentile without a per-transaction log: the rate only.
  return { qps: Number(tps[1]), p99: null, seconds: o.seconds };
}

/** The registry's client and pool (10 connections) under 64 callers, `seconds` long. */
async function runClient(sizes: BlobSizes, seconds: number): Promise<QueryRate> {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  const caller = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const found = await sizes.linked(PROBE_REPOSITORY, PROBE_DIGEST);
      latencies.push(performance.now() - t0);
      if (found?.size !== 1024 * 1024) throw new Error(`the probe answered ${found?.size}`);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 64 }, caller));
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const p99 = latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))];
  return { qps: latencies.length / elapsed, p99: p99 ?? null, seconds: elapsed };
}

/** The figures as a table of the run's report. */
export function databaseTable(c: DbCeilings): string {
  const rate = (r: QueryRate | null, unit: string) =>
    r === null ? "—" : `${Math.round(r.qps).toLocaleString("en-US")} ${unit}` +
      (r.p99 === null ? "" : `, p99 ${r.p99.toFixed(1)} ms`);
  const rows = [
    "| PostgreSQL ceiling (this run) | rate | how |",
    "| --- | --- | --- |",
    `| the blob HEAD's one query (link ⋈ size), the database alone | ${
      rate(c.pgbench, "tx/s")
    } | pgbench -n -M prepared -c 16 -j 2 -T ${
      c.pgbench?.seconds ?? "—"
    }, one query a transaction |`,
    `| the HEAD's look-ups (BlobSizes.linked, shared queries) through the registry's client, pool of 10 | ${
      rate(c.client, "look-ups/s")
    } | 64 callers in the bench process, before the registries start, ${
      c.client?.seconds.toFixed(1) ?? "—"
    } s |`,
  ];
  return [...rows, ...c.notes.map((n) => `\n${n}`)].join("\n");
}
