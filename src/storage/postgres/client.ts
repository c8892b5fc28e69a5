/**
 * Our one door to PostgreSQL: a pool of connections (the npm `postgres` client, pinned in
 * deno.json) opened with the settings every part of the registry wants. Nothing else imports
 * the client, so changing it touches this file only.
 */

import postgres from "postgres";

/** A pool of connections; tagged-template queries with bound parameters. */
export type Sql = postgres.Sql;
/** The connection of a transaction (`sql.begin`). */
export type TransactionSql = postgres.TransactionSql;

/** Options of `connect`. */
export interface ConnectOptions {
  /** The most connections the pool opens (default 10). */
  readonly max?: number;
  /** Seconds to wait for a connection (default 30). */
  readonly connectTimeout?: number;
}

/** Opens a pool on `url` (`postgres://user@host:port/database`). Connections open lazily. */
export function connect(url: string, options: ConnectOptions = {}): Sql {
  return postgres(url, {
    max: options.max ?? 10,
    connect_timeout: options.connectTimeout ?? 30,
    // Notices (`… already exists, skipping`) are not errors; keep them out of the log.
    onnotice: () => {},
    // Our tables' text columns are compared byte-wise; no client-side type guessing.
    prepare: true,
  });
}

/** The SQLSTATE of a PostgreSQL error, or null for any other error. */
export function sqlState(error: unknown): string | null {
  return error instanceof postgres.PostgresError ? error.code : null;
}
