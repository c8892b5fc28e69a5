/**
 * A `LockManager` over PostgreSQL advisory locks: processes sharing a database run the holders
 * of one key one at a time, whichever process they are in. That is what gives replicas the
 * per-repository guarantee the single process has from its `KeyedMutex`.
 *
 * A holder of `key` first queues behind the holders in its own process (a `KeyedMutex`, so a
 * process waits on the database with one connection per key at most), then opens a
 * transaction and takes `pg_advisory_xact_lock` on a 64-bit hash of the key; the lock goes
 * with the transaction's end, commit or rollback, and with its connection if the process
 * dies. A holder that takes another key inside `fn` (an upload's lock, then its repository's)
 * takes it on the same connection (a session-level lock, released when the inner `fn` ends),
 * so nested locks never wait for a second connection from the pool. Two keys whose hashes
 * collide only serialize each other.
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { KeyedMutex, type LockManager } from "../lock.ts";
import {
  databaseFailure,
  guarded,
  isConnectionError,
  type Sql,
  transaction,
  type TransactionSql,
} from "./client.ts";

/**
 * Awaits the release of a session-level lock: when the connection is gone, so is the lock, and
 * that is not the holder's failure.
 */
async function release(query: Promise<unknown>): Promise<void> {
  try {
    await query;
  } catch (error) {
    if (!isConnectionError(error)) throw error;
  }
}

/** An outer holder's transaction, as its nested holders see it. */
interface Held {
  readonly tx: TransactionSql;
  /** False once the outer `fn` has ended: later holders take their own transaction. */
  open: boolean;
  /** Nested holders on `tx` that have not ended. */
  nested: number;
  /** Called when `nested` drops to 0. */
  drained: (() => void) | null;
}

/** Locks over the advisory locks of the database of a pool (keep it apart from the stores'). */
export class PostgresLockManager implements LockManager {
  readonly #sql: Sql;
  readonly #local = new KeyedMutex();
  /**
   * The transaction that holds the caller's outer lock, in the caller's async context (work
   * started inside `fn` that outlives it finds it closed and takes its locks on its own).
   */
  readonly #held = new AsyncLocalStorage<Held>();

  /** Locks through connections of `sql` (one per outer holder, for as long as it holds). */
  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /**
   * @inheritdoc
   *
   * When the database cannot be reached the lock is not taken and `fn` does not run: the call
   * throws `StorageUnavailable` (503 with Retry-After). When the lock's connection dies while
   * `fn` runs (the server restarted), the lock went with it; `fn` still ends, and its own
   * outcome is the call's: its writes went through the stores' pool, and the transaction held
   * nothing but the lock (nothing is sent on the lost connection: see `transaction`).
   */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    // Whether this is nested is decided at the call, while the outer holder is still in `fn`.
    const outer = this.#held.getStore();
    if (outer !== undefined && outer.open) {
      outer.nested++;
      return this.#local.run(key, async () => {
        const { tx } = outer;
        // Session-level on the outer transaction's connection, released as `fn` ends.
        await guarded(() => tx`select pg_advisory_lock(hashtextextended(${key}, 0))`);
        try {
          return await fn();
        } finally {
          await release(tx`select pg_advisory_unlock(hashtextextended(${key}, 0))`);
        }
      }).finally(() => {
        if (--outer.nested === 0) outer.drained?.();
      });
    }
    return this.#local.run(key, async () => {
      const ended: { outcome?: { value: T } | { error: unknown } } = {};
      try {
        await transaction(this.#sql, async (tx) => {
          await tx`select pg_advisory_xact_lock(hashtextextended(${key}, 0))`;
          const held: Held = { tx, open: true, nested: 0, drained: null };
          try {
            ended.outcome = { value: await this.#held.run(held, fn) };
          } catch (error) {
            // Kept, not thrown: the transaction holds nothing but the lock, and its end
            // (a commit here) releases it as a rollback would.
            ended.outcome = { error };
          } finally {
            held.open = false;
            // A nested holder still running (started in `fn`, not awaited) keeps the connection.
            if (held.nested > 0) await new Promise<void>((resolve) => (held.drained = resolve));
          }
        });
      } catch (error) {
        // Before `fn` ran: no lock, so no `fn`. After: the connection was lost under the lock
        // (the lock went with it), and `fn`'s own outcome stands.
        if (ended.outcome === undefined) throw databaseFailure(error);
      }
      const { outcome } = ended;
      if (outcome === undefined) throw new Error("lock transaction ended without running fn");
      if ("error" in outcome) throw outcome.error;
      return outcome.value;
    });
  }

  /** @inheritdoc */
  isBusy(key: string): boolean {
    return this.#local.isBusy(key);
  }
}

/**
 * Runs `fn` while holding the advisory lock `key` in a transaction on a connection of `sql`,
 * or returns null at once when another session (another replica) holds it. The lock goes with
 * the connection if the process dies, so a killed replica never blocks the others. When the
 * database cannot be reached the call throws `StorageUnavailable`; when the connection is lost
 * while `fn` runs, `fn` ends first and then the call throws it (`transaction`).
 */
export async function tryExclusive<T>(
  sql: Sql,
  key: string,
  fn: () => Promise<T>,
): Promise<{ value: T } | null> {
  return await transaction(sql, async (tx) => {
    const [row] = await tx<{ taken: boolean }[]>`
      select pg_try_advisory_xact_lock(hashtextextended(${key}, 0)) as taken`;
    if (!row.taken) return null;
    return { value: await fn() };
  });
}
