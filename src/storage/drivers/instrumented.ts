/**
 * A driver decorator for metrics: times every call of the driver it wraps into
 * `registry_storage_action_seconds{driver,action}` (Distribution's name; the actions are our
 * driver's operations: `get`, `put`, `stat`, `read`, `list`, `delete`, `delete_all`, `create`,
 * `append`, `truncate`, `move`, `read_all`, and an append writer's `write` and `sync`), and
 * reports each change under `blobs/` to the blob-bytes gauge (`StoredBytes`).
 *
 * A `read` is timed until the object is open, not while its stream is read. Failed calls are
 * timed too. The stat calls made to size a blob change are not timed.
 */

import { decadeBuckets, type Histogram, HistogramFamily } from "../../metrics/families.ts";
import { StoredBytes } from "../../metrics/stored_bytes.ts";
import type {
  AppendWriter,
  CreateOptions,
  DeleteOptions,
  ListOptions,
  ObjectInfo,
  ObjectReader,
  PutOptions,
  Span,
  StorageDriver,
} from "../driver.ts";
import { AREAS } from "../keys.ts";

/** Bucket bounds of storage action times, in seconds: 100 µs to 10 s. */
export const STORAGE_BUCKETS: readonly number[] = decadeBuckets(0.0001, 10);

const ACTIONS = [
  "get",
  "put",
  "stat",
  "read",
  "list",
  "delete",
  "delete_all",
  "create",
  "append",
  "truncate",
  "move",
  "read_all",
  "write",
  "sync",
] as const;

type ActionName = typeof ACTIONS[number];

const encoder = new TextEncoder();

function since(series: Histogram, start: number): void {
  series.observe((performance.now() - start) / 1000);
}

/** A storage driver whose calls are timed and whose blob changes are counted. */
export class InstrumentedDriver implements StorageDriver {
  readonly name: string;
  /** The inner driver's (see `StorageDriver.storesWhole`). */
  readonly storesWhole?: boolean;
  /** `registry_storage_action_seconds`, to be added to a metrics registry. */
  readonly timings: HistogramFamily;
  /** The bytes of committed blobs. */
  readonly storedBytes: StoredBytes;
  readonly #inner: StorageDriver;
  readonly #t: Record<ActionName, Histogram>;
  /** The last change under way per blob key. */
  readonly #chains = new Map<string, Promise<void>>();
  /** The inner driver's, when it has one (presigning touches no bytes: not timed). */
  readonly signedUrl?: (key: string, expiresInSeconds: number) => Promise<string>;
  /** The inner driver's (see `StorageDriver.makeSecret`). */
  readonly makeSecret?: (key: string) => Promise<void>;

  /** Wraps a driver. */
  constructor(inner: StorageDriver) {
    this.#inner = inner;
    this.name = inner.name;
    if (inner.storesWhole) this.storesWhole = true;
    const signedUrl = inner.signedUrl;
    if (signedUrl) this.signedUrl = (key, expires) => signedUrl.call(inner, key, expires);
    const makeSecret = inner.makeSecret;
    if (makeSecret) this.makeSecret = (key) => makeSecret.call(inner, key);
    this.timings = new HistogramFamily({
      name: "registry_storage_action_seconds",
      help: "The number of seconds that the storage action takes",
      labels: ["driver", "action"],
      buckets: STORAGE_BUCKETS,
    });
    const t = {} as Record<ActionName, Histogram>;
    for (const action of ACTIONS) t[action] = this.timings.labels(inner.name, action);
    this.#t = t;
    this.storedBytes = new StoredBytes(inner, AREAS.blobs);
  }

  /** @inheritdoc */
  async get(key: string): Promise<Uint8Array<ArrayBuffer> | null> {
    const start = performance.now();
    try {
      return await this.#inner.get(key);
    } finally {
      since(this.#t.get, start);
    }
  }

  /** @inheritdoc */
  put(key: string, bytes: Uint8Array | string, options?: PutOptions): Promise<void> {
    if (!this.storedBytes.covers(key)) return this.#put(key, bytes, options);
    return this.#blobChange(key, async () => {
      const before = (await this.#inner.stat(key))?.size ?? 0;
      await this.#put(key, bytes, options);
      return (typeof bytes === "string" ? encoder.encode(bytes).length : bytes.length) - before;
    });
  }

  async #put(key: string, bytes: Uint8Array | string, options?: PutOptions): Promise<void> {
    const start = performance.now();
    try {
      await this.#inner.put(key, bytes, options);
    } finally {
      since(this.#t.put, start);
    }
  }

  /** @inheritdoc */
  async stat(key: string): Promise<ObjectInfo | null> {
    const start = performance.now();
    try {
      return await this.#inner.stat(key);
    } finally {
      since(this.#t.stat, start);
    }
  }

  /** @inheritdoc */
  async read(key: string, span?: Span): Promise<ObjectReader | null> {
    const start = performance.now();
    try {
      return await this.#inner.read(key, span);
    } finally {
      since(this.#t.read, start);
    }
  }

  /** @inheritdoc */
  async list(prefix: string, options?: ListOptions): Promise<string[]> {
    const start = performance.now();
    try {
      return await this.#inner.list(prefix, options);
    } finally {
      since(this.#t.list, start);
    }
  }

  /** @inheritdoc */
  delete(key: string, options?: DeleteOptions): Promise<boolean> {
    if (!this.storedBytes.covers(key)) return this.#delete(key, options);
    let deleted = false;
    return this.#blobChange(key, async () => {
      const before = (await this.#inner.stat(key))?.size ?? 0;
      deleted = await this.#delete(key, options);
      return deleted ? -before : 0;
    }).then(() => deleted);
  }

  async #delete(key: string, options?: DeleteOptions): Promise<boolean> {
    const start = performance.now();
    try {
      return await this.#inner.delete(key, options);
    } finally {
      since(this.#t.delete, start);
    }
  }

  /** @inheritdoc */
  readonly settle = async (): Promise<void> => {
    await this.#inner.settle?.();
  };

  /** @inheritdoc */
  async deleteAll(prefix: string): Promise<boolean> {
    const start = performance.now();
    try {
      return await this.#inner.deleteAll(prefix);
    } finally {
      since(this.#t.delete_all, start);
      if (prefix === "" || prefix === AREAS.blobs || this.storedBytes.covers(prefix)) {
        this.storedBytes.invalidate();
      }
    }
  }

  /** @inheritdoc */
  async create(key: string, options?: CreateOptions): Promise<void> {
    const start = performance.now();
    try {
      await this.#inner.create(key, options);
    } finally {
      since(this.#t.create, start);
      if (this.storedBytes.covers(key)) this.storedBytes.invalidate();
    }
  }

  /** @inheritdoc */
  async append(key: string, offset: number): Promise<AppendWriter> {
    const start = performance.now();
    let writer;
    try {
      writer = await this.#inner.append(key, offset);
    } finally {
      since(this.#t.append, start);
    }
    if (this.storedBytes.covers(key)) this.storedBytes.invalidate();
    const { write, sync } = this.#t;
    return {
      async write(bytes) {
        const at = performance.now();
        try {
          await writer.write(bytes);
        } finally {
          since(write, at);
        }
      },
      async sync(options) {
        const at = performance.now();
        try {
          await writer.sync(options);
        } finally {
          since(sync, at);
        }
      },
      close: () => writer.close(),
      ...(writer.writesBack ? { writesBack: true } : {}),
      ...(writer.idle ? { idle: () => writer.idle!() } : {}),
    };
  }

  /** @inheritdoc */
  async truncate(key: string, size: number): Promise<void> {
    const start = performance.now();
    try {
      await this.#inner.truncate(key, size);
    } finally {
      since(this.#t.truncate, start);
      if (this.storedBytes.covers(key)) this.storedBytes.invalidate();
    }
  }

  /** @inheritdoc */
  move(from: string, to: string): Promise<void> {
    if (!this.storedBytes.covers(to)) return this.#move(from, to);
    return this.#blobChange(to, async () => {
      const before = (await this.#inner.stat(to))?.size ?? 0;
      await this.#move(from, to);
      return ((await this.#inner.stat(to))?.size ?? 0) - before;
    });
  }

  async #move(from: string, to: string): Promise<void> {
    const start = performance.now();
    try {
      await this.#inner.move(from, to);
    } finally {
      since(this.#t.move, start);
      if (this.storedBytes.covers(from)) this.storedBytes.invalidate();
    }
  }

  /**
   * Runs a change of a blob key that returns the bytes it added: one at a time per key (so
   * that the sizes read before and after belong to it), bracketed for the blob-bytes walk.
   */
  #blobChange(key: string, change: () => Promise<number>): Promise<void> {
    const previous = this.#chains.get(key) ?? Promise.resolve();
    const run = previous.then(async () => {
      const token = this.storedBytes.begin(key);
      let delta = 0;
      try {
        delta = await change();
      } finally {
        this.storedBytes.end(token, delta);
      }
    });
    const tail = run.catch(() => {});
    this.#chains.set(key, tail);
    return run.finally(() => {
      if (this.#chains.get(key) === tail) this.#chains.delete(key);
    });
  }

  /** @inheritdoc */
  async readAll(key: string): Promise<ReadableStream<Uint8Array>> {
    const start = performance.now();
    try {
      return await this.#inner.readAll(key);
    } finally {
      since(this.#t.read_all, start);
    }
  }
}

/** The timings and blob bytes of a driver, when it is instrumented. */
export function instrumentationOf(
  driver: StorageDriver,
): { timings: HistogramFamily; storedBytes: StoredBytes } | null {
  return driver instanceof InstrumentedDriver ? driver : null;
}
