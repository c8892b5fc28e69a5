/**
 * Upload session storage (story 012): `uploads/<uuid>/{data,startedat,hashstate,repository}`
 * over a storage driver.
 *
 * `data` only grows by appends at the offset recorded in `hashstate`; `hashstate` is
 * replaced atomically after the appended bytes are flushed. So after a crash `data` holds
 * at least the bytes `hashstate` covers; the upload service reconciles the two on start.
 * This module stores bytes and small objects; it knows nothing of HTTP or of hashing.
 */

import type { Digest, RepositoryName, UploadId } from "../types/oci.ts";
import { BatchWriter } from "./batch_writer.ts";
import type { ByteSource } from "./byte_source.ts";
import type { AppendWriter, StorageDriver } from "./driver.ts";
import { AREAS, blobKey, type UploadFile, uploadFileKey, uploadKey } from "./keys.ts";

/** The small files of a session as stored, before any interpretation. */
export interface StoredSession {
  readonly id: UploadId;
  readonly repository: string;
  readonly startedAt: string;
  /** The `hashstate` text, or null when missing. */
  readonly hashState: string | null;
  /** The size of `data`. */
  readonly dataSize: number;
  /** When `data` was last written, in epoch milliseconds. */
  readonly modifiedAt: number;
}

/**
 * How the bytes of an upload's first append may be stored at their blob's key (S3: the
 * commit then neither completes nor copies anything). The blob key may hold those bytes before
 * the commit; it is no link, so no repository shows them, and the garbage collector spares
 * the digest of every live session's bytes (`UploadService.heldDigests`).
 */
export interface WholeBytes {
  /** The digest of every byte appended so far (asked once they are all written). */
  digest(): Digest;
  /**
   * Runs `sync` under the blob's lock, which a collector's delete of it holds too (bytes
   * written there meanwhile could otherwise go with an old copy being deleted), telling it
   * true; or at once without the lock, telling it false (store them as any other bytes),
   * when waiting for that lock is not worth it.
   */
  guard(digest: Digest, sync: (whole: boolean) => Promise<void>): Promise<void>;
}

/** Syncs `file`, telling it the blob key of its bytes when it holds that blob's lock. */
function syncWhole(file: AppendWriter, whole: WholeBytes): Promise<void> {
  const digest = whole.digest();
  return whole.guard(digest, (at) => file.sync(at ? { whole: blobKey(digest) } : undefined));
}

/** Writes are batched into (two) buffers of this size before they reach the driver. */
export const WRITE_BATCH = 1024 * 1024;

/** What the upload service needs from session storage. */
export interface UploadStore {
  /**
   * Whether an append at 0 may store its bytes at their blob's key (the driver's
   * `storesWhole`: see `WholeBytes`). Absent: never.
   */
  readonly storesWhole?: boolean;
  /**
   * Creates a session with an empty `data`, its repository, start time and state; `id` is
   * new (a random UUID), so nothing can be stored under it yet.
   */
  create(
    id: UploadId,
    repository: RepositoryName,
    startedAt: Date,
    hashState: string,
  ): Promise<void>;
  /** Reads a session's small files and data size; null when the session does not exist. */
  get(id: UploadId): Promise<StoredSession | null>;
  /**
   * Appends everything `source` yields at `offset` (cutting what lies past it) and returns
   * the bytes written, with `flushed`: the flush of `data`, already started (await it, or pass
   * it to `saveHashState`, before acknowledging the bytes). On error truncates back.
   * `observe` sees every written batch in order, concurrently with its write. `whole`: how
   * the bytes of an append at 0 may go straight to their blob's key, on a driver that
   * `storesWhole` (the commit then copies nothing).
   */
  append(
    id: UploadId,
    offset: number,
    source: ByteSource,
    observe?: (batch: Uint8Array) => Promise<void>,
    whole?: WholeBytes,
  ): Promise<{ written: number; flushed: Promise<void> }>;
  /** Cuts `data` to `size` bytes, durably. */
  truncate(id: UploadId, size: number): Promise<void>;
  /** Replaces `hashstate` atomically, only once `after` (a data flush) resolved. */
  saveHashState(id: UploadId, text: string, after?: Promise<void>): Promise<void>;
  /** Streams `data` from the start (for re-hashing after a crash). */
  readData(id: UploadId): Promise<ReadableStream<Uint8Array>>;
  /**
   * Removes the session; true when it existed. `committed`: a commit has just moved its
   * `data` away (the store may skip looking for it).
   */
  remove(id: UploadId, options?: { readonly committed?: boolean }): Promise<boolean>;
  /** Lists the session names in the uploads area (unvalidated). */
  list(): Promise<string[]>;
}

const decoder = new TextDecoder();

/** Upload sessions stored through a driver. */
export class DriverUploadStore implements UploadStore {
  readonly #driver: StorageDriver;

  /** Makes a store over a driver. */
  constructor(driver: StorageDriver) {
    this.#driver = driver;
  }

  /** @inheritdoc */
  get storesWhole(): boolean {
    return this.#driver.storesWhole === true;
  }

  /** @inheritdoc */
  async create(
    id: UploadId,
    repository: RepositoryName,
    startedAt: Date,
    hashState: string,
  ): Promise<void> {
    await this.#driver.create(uploadFileKey(id, "data"), { fresh: true });
    await Promise.all([
      this.#driver.put(uploadFileKey(id, "repository"), repository),
      this.#driver.put(uploadFileKey(id, "startedat"), startedAt.toISOString()),
      this.#driver.put(uploadFileKey(id, "hashstate"), hashState),
    ]);
  }

  /** @inheritdoc */
  async get(id: UploadId): Promise<StoredSession | null> {
    const repository = await this.#text(id, "repository");
    if (repository === null) return null;
    const data = await this.#driver.stat(uploadFileKey(id, "data"));
    if (data === null) return null;
    const [startedAt, hashState] = await Promise.all([
      this.#text(id, "startedat"),
      this.#text(id, "hashstate"),
    ]);
    return {
      id,
      repository,
      startedAt: startedAt ?? "",
      hashState,
      dataSize: data.size,
      modifiedAt: data.modifiedAt,
    };
  }

  /** @inheritdoc */
  async append(
    id: UploadId,
    offset: number,
    source: ByteSource,
    observe?: (batch: Uint8Array) => Promise<void>,
    whole?: WholeBytes,
  ): Promise<{ written: number; flushed: Promise<void> }> {
    const file = await this.#driver.append(uploadFileKey(id, "data"), offset);
    const writer = new BatchWriter(file, WRITE_BATCH, observe ?? null);
    try {
      await writer.writeFrom(source);
    } catch (error) {
      await writer.flush().catch(() => {});
      file.close();
      await this.#driver.truncate(uploadFileKey(id, "data"), offset).catch(() => {});
      throw error;
    }
    const flushed = (
      offset === 0 && writer.written > 0 && whole !== undefined && this.storesWhole
        ? syncWhole(file, whole)
        : file.sync()
    ).finally(() => file.close());
    flushed.catch(() => {}); // handled by whoever awaits it; never an unhandled rejection
    return { written: writer.written, flushed };
  }

  /** @inheritdoc */
  truncate(id: UploadId, size: number): Promise<void> {
    return this.#driver.truncate(uploadFileKey(id, "data"), size);
  }

  /** @inheritdoc */
  saveHashState(id: UploadId, text: string, after?: Promise<void>): Promise<void> {
    return this.#driver.put(uploadFileKey(id, "hashstate"), text, after ? { after } : {});
  }

  /** @inheritdoc */
  readData(id: UploadId): Promise<ReadableStream<Uint8Array>> {
    return this.#driver.readAll(uploadFileKey(id, "data"));
  }

  /** @inheritdoc */
  remove(id: UploadId): Promise<boolean> {
    return this.#driver.deleteAll(uploadKey(id));
  }

  /** @inheritdoc */
  list(): Promise<string[]> {
    return this.#driver.list(AREAS.uploads);
  }

  async #text(id: UploadId, file: UploadFile): Promise<string | null> {
    const bytes = await this.#driver.get(uploadFileKey(id, file));
    return bytes === null ? null : decoder.decode(bytes);
  }
}
