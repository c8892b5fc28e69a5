/**
 * PostgreSQL for the tests: `scripts/postgres.sh up` brings up the private cluster (once per
 * test process), and each test file gets a fresh database `reg_<time>_<random>`, dropped when
 * the file's tests end. Outside CI, when the cluster cannot be brought up, the tests that need
 * it are ignored; in CI they run and fail, saying why (as `clientTest` does for tools).
 * `deno task test` stops the cluster at the end if the tests started it (`scripts/test.sh`).
 */

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
