/**
 * The storage driver interface: everything the stores need from a place that keeps bytes,
 * addressed by keys (relative, `/`-separated, made only by `keys.ts`), never by OS paths.
 *
 * A driver keeps small objects (replaced atomically and durably), large objects read in
 * ranges, appendable upload data with a durable flush, and a commit that moves an object to
 * its final key. "Folders" are implicit, as in an object store: `list` names the children of
 * a prefix that hold at least one object, and deleting the last object under a prefix makes
 * the prefix disappear from its parent's list.
 *
 * Every driver passes the same conformance suite (`tests/storage/driver_suite.ts`).
 */

/** What `stat` reports about an object. */
export interface ObjectInfo {
  /** Size in bytes. */
  readonly size: number;
  /** Last modification, epoch milliseconds. */
  readonly modifiedAt: number;
}

/** An object opened for reading: its whole size and a stream of the requested bytes. */
export interface ObjectReader {
  /** Size of the whole object. */
  readonly size: number;
  /** The requested bytes; cancelling it releases what the driver holds. */
  readonly stream: ReadableStream<Uint8Array>;
}

/** A byte range of an object: `length` bytes from `start`. */
export interface Span {
  readonly start: number;
  readonly length: number;
}

/** What a sync may be told (see `AppendWriter.sync`). */
export interface SyncOptions {
  /**
   * A key whose object would hold exactly the bytes written so far (a blob's key, named by
   * their digest), where a driver whose `storesWhole` is true may store them outright.
   */
  readonly whole?: string;
}

/**
 * A writer appending to an object from a given offset. Writes are sequential (a write is
 * called once the one before it settled); `sync` makes every byte written so far durable;
 * `close` releases the writer (without a sync), once no write is running and `idle` settled.
 */
export interface AppendWriter {
  /** Appends all of `bytes` after what was written; throws what the medium failed with. */
  write(bytes: Uint8Array): Promise<void>;
  /**
   * Makes every byte written so far durable. Told a `whole` key, a driver that `storesWhole`
   * may write them as the object at that key (when the writer opened on an empty object and
   * sent nothing yet); the appendable object then refers to it, reads it, and never deletes
   * it. Whoever passes the key vouches that its object may only ever hold these bytes.
   */
  sync(options?: SyncOptions): Promise<void>;
  /** Releases the writer; later calls fail. Idempotent. */
  close(): void;
  /**
   * True on writers that start writing their bytes to the medium as they go (the filesystem's),
   * so that the final sync is short without a caller syncing early.
   */
  readonly writesBack?: boolean;
  /**
   * Present on writers that start work of their own beside the writes (the filesystem's
   * write-back): settles, never rejecting, once none of it runs. `sync` waits for it too.
   */
  idle?(): Promise<void>;
}

/** Options of `put`. */
export interface PutOptions {
  /**
   * The new object becomes visible only once this promise (e.g. the flush of data the
   * object describes) resolved; when it rejects nothing is replaced and `put` rethrows.
   */
  readonly after?: Promise<void>;
  /**
   * A secret (the token signing key): readable by the registry's own user only. The filesystem
   * writes the file with mode 0600, whatever the umask; on S3 who may read an object is the
   * bucket's policy's to say.
   */
  readonly secret?: boolean;
}

/** Pagination of `list`: names strictly after `after`, at most `limit` of them. */
export interface ListOptions {
  readonly after?: string;
  readonly limit?: number;
}

/** Options of `delete`. */
export interface DeleteOptions {
  /**
   * The delete need only be durable once `settle()` resolves (after a crash before that, the
   * object may be back). Only for objects whose return is harmless, such as blob bytes no
   * repository references (the next collection deletes them again): a sweep of many deletes
   * then flushes each folder once instead of once per delete.
   */
  readonly lazy?: boolean;
}

/** Options of `create`. */
export interface CreateOptions {
  /**
   * The caller made the key up just now from a random id no one else holds (an upload
   * session's), so no object can be there yet: a driver may skip looking for one. Another
   * `create` of the same key is still refused.
   */
  readonly fresh?: boolean;
}

/** The storage driver interface. Keys never start or end with `/` and have no empty part. */
export interface StorageDriver {
  /** A short name for logs and metrics (`filesystem`, `memory`, …). */
  readonly name: string;
  /**
   * Whether an append writer's `sync` may store the bytes at the `whole` key it is told (see
   * `AppendWriter.sync`): the S3 driver's, where a commit then copies nothing. Absent: never.
   */
  readonly storesWhole?: boolean;
  /**
   * Reads a small object whole; null when it does not exist. The bytes are in a buffer of their
   * own, the caller's to keep, change or free (detach).
   */
  get(key: string): Promise<Uint8Array<ArrayBuffer> | null>;
  /**
   * Replaces a small object atomically: a reader sees the old bytes or the new, durably. The
   * driver is done with `bytes` once the promise settles: the caller may change them.
   */
  put(key: string, bytes: Uint8Array | string, options?: PutOptions): Promise<void>;
  /** Size and modification time of an object; null when it does not exist. */
  stat(key: string): Promise<ObjectInfo | null>;
  /** Opens an object for reading, whole or a span within it; null when it does not exist. */
  read(key: string, span?: Span): Promise<ObjectReader | null>;
  /**
   * The names (last key part) of the children of `prefix` (objects, and prefixes holding
   * objects), in byte order, after `options.after`, at most `options.limit`. An empty list
   * when nothing is under `prefix`.
   */
  list(prefix: string, options?: ListOptions): Promise<string[]>;
  /** Deletes an object, durably (unless `lazy`); false when it did not exist. */
  delete(key: string, options?: DeleteOptions): Promise<boolean>;
  /**
   * Makes every lazy delete so far durable. Absent on drivers whose deletes are always
   * durable when they resolve.
   */
  readonly settle?: () => Promise<void>;
  /** Deletes every object under `prefix`, durably; false when there was none. */
  deleteAll(prefix: string): Promise<boolean>;
  /** Creates an empty object, durably; throws AlreadyExists when the key is taken. */
  create(key: string, options?: CreateOptions): Promise<void>;
  /** Opens an existing object for appending at `offset`, cutting anything after it. */
  append(key: string, offset: number): Promise<AppendWriter>;
  /** Cuts an object to `size` bytes, durably. */
  truncate(key: string, size: number): Promise<void>;
  /**
   * Moves an object to another key in one step, replacing what is there, durably: a reader
   * of `to` sees the old object or the moved one, never a part.
   */
  move(from: string, to: string): Promise<void>;
  /** Streams of an object's whole bytes, for re-reading upload data. */
  readAll(key: string): Promise<ReadableStream<Uint8Array>>;
  /**
   * A URL from which a client can GET the object's bytes directly, without this process,
   * for `expiresInSeconds` (S3: a presigned GetObject). Absent on drivers that cannot give
   * one (the filesystem, memory): the registry then streams the bytes itself.
   */
  readonly signedUrl?: (key: string, expiresInSeconds: number) => Promise<string>;
  /**
   * Makes an object written before without `secret` a secret (see `PutOptions.secret`), where
   * that is a property of the object: the filesystem's file mode. Absent elsewhere.
   */
  readonly makeSecret?: (key: string) => Promise<void>;
}

/**
 * Thrown when the storage service behind a driver is unreachable, failing or too slow (S3
 * answering 5xx or resetting after every retry, a database down): the client gets 503 with
 * `Retry-After`, and nothing is stored half.
 */
export class StorageUnavailable extends Error {
  /** Makes the error; `cause` is kept for the log only. */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "StorageUnavailable";
  }
}

/**
 * Thrown when upload data can no longer be appended to, cut, read or committed because bytes
 * of it are gone for good (S3: a multipart upload aborted from outside, e.g. by a lifecycle
 * rule). The upload cannot go on: the uploads service removes the session and answers
 * BLOB_UPLOAD_UNKNOWN, so that the client starts it again.
 */
export class UploadDataLost extends Error {
  /** Makes the error for a key. */
  constructor(key: string, why: string) {
    super(`The upload data of "${key}" is lost: ${why}`);
    this.name = "UploadDataLost";
  }
}

/** Thrown by `create` when the key exists. */
export class AlreadyExists extends Error {
  /** Makes the error for a key. */
  constructor(key: string) {
    super(`Object "${key}" already exists`);
    this.name = "AlreadyExists";
  }
}

/** Thrown when an operation needs an object that does not exist. */
export class ObjectMissing extends Error {
  /** Makes the error for a key. */
  constructor(key: string) {
    super(`Object "${key}" does not exist`);
    this.name = "ObjectMissing";
  }
}

/** Thrown for a key a store could never have made (empty part, `.`/`..`, bad characters). */
export class InvalidKey extends Error {
  /** Makes the error for a key. */
  constructor(key: string) {
    super(`Invalid storage key ${JSON.stringify(key.slice(0, 200))}`);
    this.name = "InvalidKey";
  }
}

const PART = /^[A-Za-z0-9_][A-Za-z0-9._:-]*$/;

/**
 * Checks a key's shape: `/`-separated parts of `[A-Za-z0-9._:-]`, none empty, none starting
 * with `.` or `-` (so never `.`, `..` or a temporary name). Throws InvalidKey. Drivers call it
 * on every key, so even a bug above them cannot reach outside their root.
 */
export function checkKey(key: string, { prefix = false } = {}): void {
  if (prefix && key === "") return;
  for (const part of key.split("/")) if (!PART.test(part)) throw new InvalidKey(key);
}

/** Byte-wise (code unit) order, the "lexical" order of the spec. */
export function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Applies `after` and `limit` to a sorted list of names. */
export function page(sorted: string[], { after, limit }: ListOptions): string[] {
  let from = 0;
  if (after !== undefined) {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sorted[mid] <= after) lo = mid + 1;
      else hi = mid;
    }
    from = lo;
  }
  return sorted.slice(from, limit === undefined ? undefined : from + limit);
}
