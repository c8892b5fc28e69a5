/**
 * The event queues of replicas sharing one bucket (the scale-out mode). An endpoint's queue
 * numbers its objects itself and deletes what was delivered, so two processes must never
 * share one: each replica gets its own copy of the `events` area under
 * `events/_replicas/<replica id>/` (a driver view that re-roots `events/…` keys there; the
 * queues and the dispatcher run over it unchanged), with a random id per process.
 *
 * A replica holds the advisory lock `replica:<id>` of the shared database for its whole life
 * (a session lock on a connection of its own, released by PostgreSQL when the process dies,
 * even by SIGKILL). At start, before its own queues open, a replica adopts the queues of every
 * replica whose lock is free (it is gone): under that lock it moves each undelivered object
 * into its own queue of the same endpoint, in order, and delivers them with its own: delivery
 * stays at least once (an event may be sent twice, never lost). A replica that dies while the
 * others run has its events delivered by the next replica that starts.
 */

import type {
  AppendWriter,
  CreateOptions,
  ListOptions,
  ObjectInfo,
  ObjectReader,
  PutOptions,
  Span,
  StorageDriver,
} from "../storage/driver.ts";
import { EVENTS_AREA, eventSeqName, eventSeqOf } from "../storage/keys.ts";
import type { Sql } from "../storage/postgres/client.ts";

/** The folder holding each replica's `events` area. */
export const REPLICAS_FOLDER = `${EVENTS_AREA}/_replicas`;

/** A new replica id: 16 hex digits. */
export function newReplicaId(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(8)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

const lockKey = (id: string) => `replica:${id}`;

/** A driver whose `events/…` keys live under `events/_replicas/<id>/…`; other keys unchanged. */
export class ReplicaEventsDriver implements StorageDriver {
  readonly name: string;
  readonly #inner: StorageDriver;
  readonly #root: string;

  /** The view of replica `id` over `inner`. */
  constructor(inner: StorageDriver, id: string) {
    this.#inner = inner;
    this.name = inner.name;
    this.#root = `${REPLICAS_FOLDER}/${id}`;
  }

  #key(key: string): string {
    if (key === EVENTS_AREA) return this.#root;
    return key.startsWith(`${EVENTS_AREA}/`)
      ? `${this.#root}${key.slice(EVENTS_AREA.length)}`
      : key;
  }

  /** @inheritdoc */
  get(key: string): Promise<Uint8Array<ArrayBuffer> | null> {
    return this.#inner.get(this.#key(key));
  }
  /** @inheritdoc */
  put(key: string, bytes: Uint8Array | string, options?: PutOptions): Promise<void> {
    return this.#inner.put(this.#key(key), bytes, options);
  }
  /** @inheritdoc */
  stat(key: string): Promise<ObjectInfo | null> {
    return this.#inner.stat(this.#key(key));
  }
  /** @inheritdoc */
  read(key: string, span?: Span): Promise<ObjectReader | null> {
    return this.#inner.read(this.#key(key), span);
  }
  /** @inheritdoc */
  list(prefix: string, options?: ListOptions): Promise<string[]> {
    return this.#inner.list(this.#key(prefix), options);
  }
  /** @inheritdoc */
  delete(key: string): Promise<boolean> {
    return this.#inner.delete(this.#key(key));
  }
  /** @inheritdoc */
  deleteAll(prefix: string): Promise<boolean> {
    return this.#inner.deleteAll(this.#key(prefix));
  }
  /** @inheritdoc */
  create(key: string, options?: CreateOptions): Promise<void> {
    return this.#inner.create(this.#key(key), options);
  }
  /** @inheritdoc */
  append(key: string, offset: number): Promise<AppendWriter> {
    return this.#inner.append(this.#key(key), offset);
  }
  /** @inheritdoc */
  truncate(key: string, size: number): Promise<void> {
    return this.#inner.truncate(this.#key(key), size);
  }
  /** @inheritdoc */
  move(from: string, to: string): Promise<void> {
    return this.#inner.move(this.#key(from), this.#key(to));
  }
  /** @inheritdoc */
  readAll(key: string): Promise<ReadableStream<Uint8Array>> {
    return this.#inner.readAll(this.#key(key));
  }
}

/** This replica's hold on its id: released by `release`, or by the database if it dies. */
export interface ReplicaHold {
  readonly id: string;
  release(): Promise<void>;
}

/** Takes the lock of a new replica id on a connection reserved from `sql` for the process. */
export async function holdReplicaId(sql: Sql): Promise<ReplicaHold> {
  const id = newReplicaId();
  const connection = await sql.reserve();
  try {
    await connection`select pg_advisory_lock(hashtextextended(${lockKey(id)}, 0))`;
  } catch (error) {
    connection.release();
    throw error;
  }
  let released: Promise<void> | null = null;
  return {
    id,
    release() {
      released ??= (async () => {
        try {
          await connection`select pg_advisory_unlock(hashtextextended(${lockKey(id)}, 0))`;
        } finally {
          connection.release();
        }
      })();
      return released;
    },
  };
}

/**
 * Moves the undelivered events of every gone replica (its lock free) into the queues of
 * replica `self`, in each one's order after what `self` holds. Returns how many were moved.
 */
export async function adoptQueues(driver: StorageDriver, sql: Sql, self: string): Promise<number> {
  let moved = 0;
  for (const other of await driver.list(REPLICAS_FOLDER)) {
    if (other === self) continue;
    const connection = await sql.reserve();
    try {
      const [row] = await connection<{ taken: boolean }[]>`
        select pg_try_advisory_lock(hashtextextended(${lockKey(other)}, 0)) as taken`;
      if (!row.taken) continue; // alive: its queues are its own
      try {
        moved += await adopt(driver, other, self);
      } finally {
        await connection`select pg_advisory_unlock(hashtextextended(${lockKey(other)}, 0))`;
      }
    } finally {
      connection.release();
    }
  }
  return moved;
}

async function adopt(driver: StorageDriver, other: string, self: string): Promise<number> {
  let moved = 0;
  const from = `${REPLICAS_FOLDER}/${other}`;
  const to = `${REPLICAS_FOLDER}/${self}`;
  for (const folder of await driver.list(from)) {
    const mine = (await driver.list(`${to}/${folder}`)).map(eventSeqOf)
      .filter((s): s is number => s !== null);
    let next = mine.length === 0 ? 0 : Math.max(...mine) + 1;
    // byte order of 16-digit names is sequence order
    for (const name of await driver.list(`${from}/${folder}`)) {
      if (eventSeqOf(name) === null) continue;
      await driver.move(`${from}/${folder}/${name}`, `${to}/${folder}/${eventSeqName(next++)}`);
      moved++;
    }
  }
  return moved;
}
