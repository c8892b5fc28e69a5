/**
 * The in-memory driver: objects in a map, for unit tests of the stores and services. It keeps
 * every promise of the driver interface (atomic replacement, implicit folders, ranged reads)
 * except durability, which a process's memory cannot give.
 */

import {
  AlreadyExists,
  type AppendWriter,
  byteOrder,
  checkKey,
  type ListOptions,
  type ObjectInfo,
  ObjectMissing,
  type ObjectReader,
  page,
  type PutOptions,
  type Span,
  type StorageDriver,
} from "../driver.ts";

interface Entry {
  bytes: Uint8Array<ArrayBuffer>;
  modifiedAt: number;
}

const encoder = new TextEncoder();

/** A driver keeping objects in memory. */
export class MemoryDriver implements StorageDriver {
  readonly name = "memory";
  readonly #objects = new Map<string, Entry>();
  readonly #now: () => number;

  /** Makes an empty driver; `now` is the clock of modification times. */
  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** @inheritdoc */
  get(key: string): Promise<Uint8Array<ArrayBuffer> | null> {
    checkKey(key);
    const entry = this.#objects.get(key);
    return Promise.resolve(entry ? entry.bytes.slice() : null);
  }

  /** @inheritdoc */
  async put(key: string, bytes: Uint8Array | string, options: PutOptions = {}): Promise<void> {
    checkKey(key);
    const copy = typeof bytes === "string" ? encoder.encode(bytes) : new Uint8Array(bytes);
    if (options.after) await options.after;
    this.#set(key, copy);
  }

  /** @inheritdoc */
  stat(key: string): Promise<ObjectInfo | null> {
    checkKey(key);
    const entry = this.#objects.get(key);
    return Promise.resolve(
      entry ? { size: entry.bytes.length, modifiedAt: entry.modifiedAt } : null,
    );
  }

  /** @inheritdoc */
  read(key: string, span?: Span): Promise<ObjectReader | null> {
    checkKey(key);
    const entry = this.#objects.get(key);
    if (!entry) return Promise.resolve(null);
    const size = entry.bytes.length;
    const start = span?.start ?? 0;
    const end = span ? Math.min(size, start + span.length) : size;
    const bytes = entry.bytes.slice(start, end);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        if (bytes.length > 0) controller.enqueue(bytes);
        controller.close();
      },
    });
    return Promise.resolve({ size, stream });
  }

  /** @inheritdoc */
  list(prefix: string, options: ListOptions = {}): Promise<string[]> {
    checkKey(prefix, { prefix: true });
    const start = prefix === "" ? "" : `${prefix}/`;
    const names = new Set<string>();
    for (const key of this.#objects.keys()) {
      if (!key.startsWith(start)) continue;
      const rest = key.slice(start.length);
      const slash = rest.indexOf("/");
      names.add(slash < 0 ? rest : rest.slice(0, slash));
    }
    return Promise.resolve(page([...names].sort(byteOrder), options));
  }

  /** @inheritdoc */
  delete(key: string): Promise<boolean> {
    checkKey(key);
    return Promise.resolve(this.#objects.delete(key));
  }

  /** @inheritdoc */
  deleteAll(prefix: string): Promise<boolean> {
    checkKey(prefix);
    let removed = false;
    for (const key of [...this.#objects.keys()]) {
      if (key === prefix || key.startsWith(`${prefix}/`)) {
        this.#objects.delete(key);
        removed = true;
      }
    }
    return Promise.resolve(removed);
  }

  /** @inheritdoc */
  create(key: string): Promise<void> {
    checkKey(key);
    if (this.#objects.has(key)) return Promise.reject(new AlreadyExists(key));
    this.#set(key, new Uint8Array(0));
    return Promise.resolve();
  }

  /** @inheritdoc */
  append(key: string, offset: number): Promise<AppendWriter> {
    checkKey(key);
    const entry = this.#objects.get(key);
    if (!entry) return Promise.reject(new ObjectMissing(key));
    const cut = new Uint8Array(offset);
    cut.set(entry.bytes.subarray(0, Math.min(offset, entry.bytes.length)));
    this.#set(key, cut);
    let closed = false;
    const objects = this.#objects;
    const set = (bytes: Uint8Array<ArrayBuffer>) => this.#set(key, bytes);
    return Promise.resolve({
      write(bytes: Uint8Array): Promise<void> {
        if (closed) return Promise.reject(new Error(`Writer of "${key}" is closed`));
        const current = objects.get(key);
        if (!current) return Promise.reject(new ObjectMissing(key));
        const grown = new Uint8Array(current.bytes.length + bytes.length);
        grown.set(current.bytes);
        grown.set(bytes, current.bytes.length);
        set(grown);
        return Promise.resolve();
      },
      sync: () => Promise.resolve(),
      close() {
        closed = true;
      },
    });
  }

  /** @inheritdoc */
  truncate(key: string, size: number): Promise<void> {
    checkKey(key);
    const entry = this.#objects.get(key);
    if (!entry) return Promise.reject(new ObjectMissing(key));
    const cut = new Uint8Array(size);
    cut.set(entry.bytes.subarray(0, Math.min(size, entry.bytes.length)));
    this.#set(key, cut);
    return Promise.resolve();
  }

  /** @inheritdoc */
  move(from: string, to: string): Promise<void> {
    checkKey(from);
    checkKey(to);
    const entry = this.#objects.get(from);
    if (!entry) return Promise.reject(new ObjectMissing(from));
    this.#objects.delete(from);
    this.#objects.set(to, entry);
    return Promise.resolve();
  }

  /** @inheritdoc */
  async readAll(key: string): Promise<ReadableStream<Uint8Array>> {
    const reader = await this.read(key);
    if (reader === null) throw new ObjectMissing(key);
    return reader.stream;
  }

  #set(key: string, bytes: Uint8Array<ArrayBuffer>): void {
    this.#objects.set(key, { bytes, modifiedAt: this.#now() });
  }
}
