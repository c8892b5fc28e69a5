/**
 * Our one door to PostgreSQL: a pool of connections (the npm `postgres` client, pinned in
 * deno.json) opened with the settings every part of the registry wants. Nothing else imports
 * the client, so changing it touches this file only.
 */

import postgres from "postgres";
import { StorageUnavailable } from "../driver.ts";

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

/**
 * Opens a pool on `url` (`postgres://user@host:port/database`). Connections open lazily.
 *
 * The pool renews itself after a connection closes (the server restarted, or a connection
 * reached its lifetime; at most once a second): later queries go to a fresh client pool, and
 * the one before ends once its work has ended. The client (postgres@3.4.9) can leave a
 * connection that closed with a write pending unable to send anything again (its write timer
 * is cleared but not forgotten), and reuses its connections forever: each query sent there
 * would wait for the connect timeout, then fail, again and again. A fresh pool has none.
 */
export function connect(url: string, options: ConnectOptions = {}): Sql {
  let renewedAt = -Infinity;
  let ending = false;
  const open = (): Sql => {
    const pool: Sql = postgres(url, {
      max: options.max ?? 10,
      connect_timeout: options.connectTimeout ?? 30,
      // A query waiting for a connection is sent on the next attempt to connect, and an
      // attempt that fails fails that query alone. The client's default pause between
      // attempts grows after each failure (up to 20 s), so while the server was down a query
      // queued behind the first failures waited 10 to 45 s instead of failing, and the
      // registry answered late instead of 503 at once. No pause: each queued query meets the
      // refusal at once (a failing attempt costs a refused connect, one per query).
      backoff: () => 0,
      // Notices (`… already exists, skipping`) are not errors; keep them out of the log.
      onnotice: () => {},
      // Our tables' text columns are compared byte-wise; no client-side type guessing.
      prepare: true,
      onclose: () => {
        if (pool !== current || ending || performance.now() - renewedAt < 1000) return;
        renewedAt = performance.now();
        current = open();
        // Transactions and reserved connections of the old pool go on to their end.
        pool.end().catch(() => {});
      },
    });
    return pool;
  };
  let current = open();
  // Bounded by default: a query the client sent between a socket's error and its close is
  // never settled, and an unbounded end would wait for it forever.
  const end = (how: { timeout?: number } = {}) => {
    ending = true;
    return current.end({ timeout: how.timeout ?? 10 });
  };
  return new Proxy(function () {} as unknown as Sql, {
    apply: (_target, _self, args) => Reflect.apply(current, undefined, args),
    get(_target, property) {
      if (property === "end") return end;
      const value = Reflect.get(current, property);
      return typeof value === "function" ? value.bind(current) : value;
    },
  });
}

/**
 * Whether an unhandled rejection is a socket error that the client's connection reported
 * after it had let go of its socket. The client talks over `node:net`; when the server dies
 * (SIGKILL: the kernel resets the connections) a socket can report its read error after
 * the client removed its listeners on `close`, and an error event with no listener ends the
 * process as an unhandled rejection, although every query on that connection was already
 * failed and retried on a fresh pool. Only `node:net`'s errors (a `code` and a `syscall`)
 * match: nothing else in the registry makes them.
 */
export function isOrphanSocketError(reason: unknown): boolean {
  if (!(reason instanceof Error)) return false;
  const { code, syscall } = reason as { code?: unknown; syscall?: unknown };
  return typeof code === "string" && typeof syscall === "string" &&
    CONNECTION_CODES.has(code) && (syscall === "read" || syscall === "write");
}

/** The SQLSTATE of a PostgreSQL error, or null for any other error. */
export function sqlState(error: unknown): string | null {
  return error instanceof postgres.PostgresError ? error.code : null;
}

/**
 * Codes of the client's own errors (no SQLSTATE) that say the connection could not be made
 * or was lost: the server is down, restarting or unreachable, not the query wrong.
 */
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * SQLSTATEs that say the server cannot serve now: class 08 (connection exception),
 * admin_shutdown, crash_shutdown, cannot_connect_now (starting up, in recovery),
 * too_many_connections, and the server's out-of-resources class 53.
 */
function unavailableState(state: string): boolean {
  return state.startsWith("08") || state.startsWith("53") ||
    state === "57P01" || state === "57P02" || state === "57P03";
}

/**
 * Whether `error` says the database cannot be reached or lost the connection (as opposed to
 * a query it refused): a client connection error, a socket error, or one of the SQLSTATEs of
 * a server shutting down, starting up or out of connections.
 */
export function isConnectionError(error: unknown): boolean {
  if (error instanceof StorageUnavailable) return true;
  const state = sqlState(error);
  if (state !== null) return unavailableState(state);
  if (
    error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.TimedOut
  ) {
    return true;
  }
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && CONNECTION_CODES.has(code);
}

/**
 * `error` as the registry's `StorageUnavailable` (answered 503 with Retry-After) when it is a
 * connection error of the database; any other error as it is.
 */
export function databaseFailure(error: unknown): unknown {
  if (error instanceof StorageUnavailable || !isConnectionError(error)) return error;
  const what = error instanceof Error ? error.message : String(error);
  return new StorageUnavailable(`The database is unavailable: ${what}`, { cause: error });
}

/** Runs `fn`, rethrowing the database's connection errors as `StorageUnavailable`. */
export async function guarded<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw databaseFailure(error);
  }
}

/**
 * Runs `fn` in a transaction on a connection of `sql` (`sql.begin`), safe against the loss of
 * that connection (the server stopped or restarted):
 *
 * - `fn` always runs to its end before the call settles (a caller holding a lock keeps it);
 * - once the connection is lost, every further query of `fn` on the transaction fails at once
 *   with `StorageUnavailable` without touching the connection, and no commit or rollback is
 *   sent on it: the client (postgres@3.4.9) would write it to a closed socket from a
 *   `setImmediate`, an uncaught TypeError that ends the process. The client's own promise of
 *   that transaction is left unsettled; the pool has moved the connection to its closed ones
 *   already and opens it again when needed;
 * - the call then throws `StorageUnavailable` (whether anything was committed is unknown: the
 *   commit was never sent, so nothing was), as it does when the transaction cannot begin or
 *   its commit meets the loss.
 *
 * Any other error of `fn` is thrown as it is, after the rollback.
 */
export function transaction<T>(sql: Sql, fn: (tx: TransactionSql) => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    /** The error that told of the connection's loss, once it is lost. */
    let lost: { error: unknown } | null = null;
    let state: "waiting" | "running" | "ended" = "waiting";
    const failed = () =>
      new StorageUnavailable("The database connection was lost", {
        cause: lost?.error,
      });
    // Rejects when the connection is lost: a query sent between the socket's error and its
    // close is neither answered nor failed by the client, so each query races this.
    let loss!: () => void;
    const lostSignal = new Promise<never>((_, fail) => (loss = () => fail(failed())));
    lostSignal.catch(() => {});
    const markLost = (error: unknown) => {
      if (lost !== null) return;
      lost = { error };
      loss();
    };
    sql.begin(async (raw) => {
      state = "running";
      const tx = new Proxy(raw, {
        apply(target, self, args) {
          if (lost !== null) return Promise.reject(failed());
          const query = Reflect.apply(target, self, args) as Promise<unknown>;
          return Promise.race([query, lostSignal]);
        },
      });
      let outcome: { value: T } | { error: unknown };
      try {
        outcome = { value: await fn(tx) };
      } catch (error) {
        outcome = { error };
      }
      state = "ended";
      if ("error" in outcome && isConnectionError(outcome.error)) markLost(outcome.error);
      if (lost !== null) {
        reject(databaseFailure(lost.error));
        // Never settles: the client must not write a commit or a rollback on the lost connection.
        return await new Promise<never>(() => {});
      }
      if ("error" in outcome) throw outcome.error;
      return { value: outcome.value };
    }).then(
      ({ value }) => resolve(value),
      (error) => {
        // The connection closed while `fn` runs: `fn` ends first, then the call settles.
        if (state === "running") markLost(error);
        else reject(databaseFailure(error));
      },
    );
  });
}
