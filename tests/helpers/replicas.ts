/**
 * Two registry replicas (`main.ts` processes of the scale-out mode) over one S3 bucket (Ceph
 * RGW) and one PostgreSQL database, behind a round-robin proxy that sends every request to the
 * other replica than the last: `twoReplicas()`. The suites of the single-process registry run
 * against the proxy's URL (`tests/e2e/scaleout_*_test.ts`).
 *
 * The proxy keeps an access log in the registry's own text format (`msg=request method=…
 * path="…" status=…`), written when the replica's answer reaches it, so it is complete by the
 * time the client has its answer; it also copies the replicas' other log lines (their errors)
 * into the same list as they arrive.
 *
 * Outside CI, `replicaTest` ignores a test when RGW or PostgreSQL cannot come up; in CI it fails.
 */

import { connect } from "../../src/storage/postgres/client.ts";
import { IN_CI, logFields } from "./clients.ts";
import { postgresCluster } from "./postgres.ts";
import { createBucket, s3Server, type TestBucket } from "./s3.ts";
import { type Replica, scaleOutEnv, spawnReplica } from "./scaleout.ts";

/** Where replicas keep their state: a bucket (or a root in one) and a database. */
export interface ScaleOutBackend {
  /** The variables that put a registry in the scale-out mode over them. */
  readonly env: Record<string, string>;
  readonly databaseUrl: string;
}

/** A fresh bucket and a fresh database; disposing deletes both. */
export interface OwnedBackend extends ScaleOutBackend, AsyncDisposable {
  readonly bucket: TestBucket;
}

/**
 * Why the scale-out mode cannot run here (RGW or PostgreSQL down), or null when it can. The
 * reason is also printed (with the time), since outside CI the tests it gates are only ignored.
 */
export async function scaleOutUnavailable(): Promise<string | null> {
  const [s3, pg] = await Promise.all([s3Server(), postgresCluster()]);
  let reason: string | null = null;
  if (s3 instanceof Error) {
    reason = `Ceph RGW cannot come up (scripts/s3-ceph.sh up): ${s3.message}`;
  } else if ("error" in pg) reason = `PostgreSQL cannot come up: ${pg.error}`;
  if (reason !== null) console.warn(`${new Date().toISOString()} scale-out unavailable: ${reason}`);
  return reason;
}

/** Creates a fresh bucket `reg-…` and a fresh database `reg_…`. */
export async function scaleOutBackend(): Promise<OwnedBackend> {
  const s3 = await s3Server();
  if (s3 instanceof Error) throw s3;
  const pg = await postgresCluster();
  if ("error" in pg) throw new Error(pg.error);
  const database = `reg_${Date.now()}_${Math.random().toString(36).slice(2, 10)}`;
  const admin = connect(pg.url, { max: 1 });
  try {
    await admin.unsafe(`create database "${database}"`);
  } finally {
    await admin.end();
  }
  const target = new URL(pg.url);
  target.pathname = `/${database}`;
  const databaseUrl = target.href;
  let bucket: TestBucket;
  try {
    bucket = await createBucket(s3);
  } catch (error) {
    await dropDatabase(pg.url, database);
    throw error;
  }
  return {
    bucket,
    databaseUrl,
    env: scaleOutEnv(bucket, databaseUrl),
    async [Symbol.asyncDispose]() {
      try {
        await bucket.remove();
      } finally {
        await dropDatabase(pg.url, database);
      }
    },
  };
}

async function dropDatabase(adminUrl: string, database: string): Promise<void> {
  const sql = connect(adminUrl, { max: 1 });
  try {
    await sql.unsafe(`drop database if exists "${database}" with (force)`);
  } finally {
    await sql.end();
  }
}

/** One request the proxy forwarded. */
export interface Forwarded {
  readonly backend: string;
  readonly method: string;
  readonly path: string;
  readonly status: number;
}

/** Two replicas behind a round-robin proxy. */
export interface TwoReplicas extends AsyncDisposable {
  /** The proxy's base URL: what clients use. */
  readonly url: string;
  readonly a: Replica;
  readonly b: Replica;
  /** The replicas' settings (bucket, database and the extra ones given). */
  readonly env: Record<string, string>;
  readonly databaseUrl: string;
  /** Every request forwarded, in the order the answers came back. */
  readonly forwarded: Forwarded[];
  /**
   * The proxy's access log lines (the registry's format) and the replicas' other lines, as a
   * single registry's log would hold them.
   */
  readonly logs: string[];
  /** `fetch` relative to the proxy; redirects are not followed unless `init` says so. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** The lines either replica logged at level error or as an unexpected error. */
  errors(): string[];
}

/** Options of `twoReplicas`. */
export interface TwoReplicasOptions {
  /** Settings added to both replicas' environment (`REGISTRY_…`). */
  readonly env?: Record<string, string>;
  /** Run over this bucket and database (the caller's, kept); default: fresh ones, deleted. */
  readonly backend?: ScaleOutBackend;
}

/**
 * Starts replica A, then B (in turn: both migrate the same database, under a lock), and the
 * proxy. Disposing stops the proxy, kills both replicas (by their PID, SIGKILL, and waits for
 * them) and deletes the bucket and the database when it made them.
 */
export async function twoReplicas(options: TwoReplicasOptions = {}): Promise<TwoReplicas> {
  const owned = options.backend ? null : await scaleOutBackend();
  const backend = options.backend ?? owned!;
  const env = { ...backend.env, ...options.env };
  const started: Replica[] = [];
  try {
    started.push(await spawnReplica(env));
    started.push(await spawnReplica(env));
  } catch (error) {
    for (const replica of started) await replica[Symbol.asyncDispose]();
    await owned?.[Symbol.asyncDispose]();
    throw error;
  }
  const [a, b] = started;
  const logs: string[] = [];
  const forwarded: Forwarded[] = [];
  // The replicas' lines copied so far, per replica.
  const copied = [0, 0];
  const copyReplicaLines = () => {
    for (const [i, replica] of [a, b].entries()) {
      for (; copied[i] < replica.output.length; copied[i]++) {
        const line = replica.output[copied[i]];
        if (logFields(line).msg !== "request") logs.push(line);
      }
    }
  };
  let next = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const backendUrl = next++ % 2 === 0 ? a.url : b.url;
    const incoming = new URL(request.url);
    const path = `${incoming.pathname}${incoming.search}`;
    const headers = new Headers(request.headers);
    headers.delete("host");
    let response: Response;
    try {
      const answer = await fetch(`${backendUrl}${path}`, {
        method: request.method,
        headers,
        body: request.body,
        redirect: "manual",
      });
      response = new Response(answer.body, { status: answer.status, headers: answer.headers });
    } catch (error) {
      response = new Response(`proxy: ${backendUrl} failed: ${error}`, { status: 502 });
    }
    forwarded.push({ backend: backendUrl, method: request.method, path, status: response.status });
    copyReplicaLines();
    logs.push(
      `level=info msg=request method=${request.method} path=${JSON.stringify(path)} ` +
        `status=${response.status} replica=${backendUrl === a.url ? "a" : "b"}`,
    );
    return response;
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  return {
    url,
    a,
    b,
    env,
    databaseUrl: backend.databaseUrl,
    forwarded,
    logs,
    fetch: (path, init) => fetch(`${url}${path}`, { redirect: "manual", ...init }),
    errors: () =>
      [...a.output, ...b.output].filter((line) =>
        line.includes('msg="unexpected error"') || logFields(line).level === "error"
      ),
    async [Symbol.asyncDispose]() {
      try {
        await server.shutdown();
      } finally {
        try {
          await a[Symbol.asyncDispose]();
          await b[Symbol.asyncDispose]();
        } finally {
          await owned?.[Symbol.asyncDispose]();
        }
      }
    },
  };
}

/**
 * Registers a test that needs the scale-out mode (RGW and PostgreSQL): ignored outside CI when
 * either cannot come up, failing in CI with the reason. `extraIgnore` ignores it too (a tool
 * that is missing, already decided by the caller).
 */
export async function replicaTest(
  name: string,
  fn: (t: Deno.TestContext) => Promise<void>,
  options: { readonly ignore?: boolean; readonly sanitize?: boolean } = {},
): Promise<void> {
  const unavailable = await scaleOutUnavailable();
  Deno.test({
    name,
    ignore: options.ignore || (unavailable !== null && !IN_CI),
    sanitizeOps: options.sanitize ?? true,
    sanitizeResources: options.sanitize ?? true,
    async fn(t) {
      if (unavailable !== null) throw new Error(unavailable);
      await fn(t);
    },
  });
}
