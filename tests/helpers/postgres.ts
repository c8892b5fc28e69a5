/**
 * PostgreSQL for the tests: `scripts/postgres.sh up` brings up the private cluster (once per
 * test process), and each test file gets a fresh database `reg_<time>_<random>`, dropped when
 * the file's tests end. Outside CI, when the cluster cannot be brought up, the tests that need
 * it are ignored; in CI they run and fail, saying why (as `clientTest` does for tools).
 * `deno task test` stops the cluster at the end if the tests started it (`scripts/test.sh`).
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { connect, type Sql } from "../../src/storage/postgres/client.ts";
import { IN_CI } from "./clients.ts";

const SCRIPT = fileURLToPath(new URL("../../scripts/postgres.sh", import.meta.url));

let cluster: Promise<{ url: string } | { error: string }> | undefined;

/** Brings the cluster up (once per process); its admin URL, or why it is not up. */
export function postgresCluster(): Promise<{ url: string } | { error: string }> {
  cluster ??= (async () => {
    try {
      const out = await new Deno.Command("bash", {
        args: [SCRIPT, "up"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
      if (!out.success || !text.startsWith("postgres://")) {
        return { error: `scripts/postgres.sh up failed: ${new TextDecoder().decode(out.stderr)}` };
      }
      return { url: text };
    } catch (error) {
      return { error: `scripts/postgres.sh up could not run: ${error}` };
    }
  })();
  return cluster;
}

/** A database of its own for one test file. */
export interface TestDatabase {
  /** Its URL, or null when PostgreSQL is not available (`error` says why). */
  readonly url: string | null;
  readonly error: string;
  /** Another fresh database (dropped with this one); its URL. */
  another(): Promise<string>;
  /** A new pool on it; close it with `end()`. */
  pool(max?: number): Sql;
  /**
   * Registers a test that needs the database: ignored outside CI when there is none, failing
   * in CI.
   */
  test(name: string, fn: (url: string) => Promise<void>): void;
}

/**
 * Creates a fresh database for the calling test file (at its top level) and registers its
 * drop after the file's tests.
 */
export async function testDatabase(): Promise<TestDatabase> {
  const up = await postgresCluster();
  const created: string[] = [];
  const create = async (admin: string): Promise<string> => {
    const database = `reg_${Date.now()}_${Math.random().toString(36).slice(2, 10)}`;
    const sql = connect(admin, { max: 1 });
    try {
      await sql.unsafe(`create database "${database}"`);
    } finally {
      await sql.end();
    }
    created.push(database);
    const target = new URL(admin);
    target.pathname = `/${database}`;
    return target.href;
  };
  let url: string | null = null;
  let error = "";
  if ("url" in up) {
    try {
      url = await create(up.url);
      Deno.test.afterAll(async () => {
        const sql = connect(up.url, { max: 1 });
        try {
          for (const database of created) {
            await sql.unsafe(`drop database if exists "${database}" with (force)`);
          }
        } finally {
          await sql.end();
        }
      });
    } catch (e) {
      error = `could not create a test database: ${e}`;
    }
  } else {
    error = up.error;
  }
  return {
    url,
    error,
    another() {
      if (!("url" in up)) throw new Error(`PostgreSQL is not available: ${error}`);
      return create(up.url);
    },
    pool(max = 4) {
      if (url === null) throw new Error(`PostgreSQL is not available: ${error}`);
      return connect(url, { max });
    },
    test(name, fn) {
      Deno.test({
        name,
        ignore: url === null && !IN_CI,
        async fn() {
          if (url === null) throw new Error(`PostgreSQL is not available in CI: ${error}`);
          await fn(url);
        },
      });
    },
  };
}

/**
 * Whether `scripts/postgres.sh` can bring a cluster up here: PostgreSQL is installed, or this
 * is root (the script installs it).
 */
export function postgresPossible(): boolean {
  if (Deno.uid() === 0) return true;
  try {
    for (const entry of Deno.readDirSync("/usr/lib/postgresql")) {
      if (Deno.statSync(`/usr/lib/postgresql/${entry.name}/bin/initdb`).isFile) return true;
    }
  } catch { /* not installed */ }
  return false;
}

/** A free loopback port (taken and given back). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** A PostgreSQL cluster of this test alone: its folder, its port, its postmaster. */
export class OwnCluster {
  readonly dir: string;
  readonly port: number;
  constructor() {
    this.dir = `${Deno.env.get("TMPDIR") ?? "/tmp"}/registry-pg-faults-${Date.now()}-${
      crypto.getRandomValues(new Uint32Array(1))[0].toString(36)
    }`;
    this.port = freePort();
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** Runs `scripts/postgres.sh <verb>` on this cluster; its exit code and output. */
  async script(verb: "up" | "stop" | "status") {
    const out = await new Deno.Command("bash", {
      args: [SCRIPT, verb],
      env: { REGISTRY_PG_DIR: this.dir, REGISTRY_PG_PORT: String(this.port) },
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(180_000),
    }).output();
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim();
    return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
  }

  /** Starts it; after a SIGKILL, again until the old backends are gone (bounded). */
  async up(): Promise<void> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const run = await this.script("up");
      if (run.code === 0 && run.stdout.endsWith(this.url)) return;
      if (Date.now() > deadline) throw new Error(`postgres.sh up failed: ${run.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** A fast shutdown (`pg_ctl -m fast`, by the cluster's own postmaster.pid). */
  async stopFast(): Promise<void> {
    const run = await this.script("stop");
    assert.equal(run.code, 0, run.stderr);
    assert.equal((await this.script("status")).code, 3);
  }

  /** SIGKILL to the postmaster named by this cluster's postmaster.pid; waits until it is gone. */
  async killPostmaster(): Promise<void> {
    const pid = Number((await Deno.readTextFile(`${this.dir}/data/postmaster.pid`)).split("\n")[0]);
    assert.ok(Number.isInteger(pid) && pid > 1, `postmaster pid ${pid}`);
    assert.match(await Deno.readTextFile(`/proc/${pid}/cmdline`), /postgres/);
    Deno.kill(pid, "SIGKILL");
    const deadline = Date.now() + 30_000;
    while ((await this.script("status")).code !== 3) {
      if (Date.now() > deadline) throw new Error(`postmaster ${pid} still alive`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Stops it if up and removes its folder. */
  async remove(): Promise<void> {
    await this.script("stop");
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    await Deno.remove(`${this.dir}.lock`).catch(() => {});
  }
}
