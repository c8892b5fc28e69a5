/**
 * Upload session storage (story 012): `uploads/<uuid>/{data,startedat,hashstate,repository}`.
 *
 * `data` only grows by appends at the offset recorded in `hashstate`; `hashstate` is
 * replaced atomically after the appended bytes are flushed. So after a crash `data` holds
 * at least the bytes `hashstate` covers; the upload service reconciles the two on start.
 * This module stores bytes and small files; it knows nothing of HTTP or of hashing.
 */

import type { RepositoryName, UploadId } from "../types/oci.ts";
import {
  atomicWrite,
  ensureDir,
  lstatOrNull,
  readDirNames,
  readTextOrNull,
  removeIfExists,
  syncDir,
} from "./fs.ts";
import { BatchWriter } from "./batch_writer.ts";
import type { ByteSource } from "./byte_source.ts";
import type { Paths } from "./paths.ts";

/** The small files of a session as stored, before any interpretation. */
export interface StoredSession {
  readonly id: UploadId;
  readonly repository: string;
  readonly startedAt: string;
  /** The `hashstate` text, or null when missing. */
  readonly hashState: string | null;
  /** The size of `data` on disk. */
  readonly dataSize: number;
  /** When `data` was last written, in epoch milliseconds. */
  readonly modifiedAt: number;
}

/** Writes are batched into (two) buffers of this size before they reach the file. */
const WRITE_BATCH = 1024 * 1024;

/** What the upload service needs from session storage. */
export interface UploadStore {
  /** Creates a session folder with an empty `data`, its repository, start time and state. */
  create(
    id: UploadId,
    repository: RepositoryName,
    startedAt: Date,
    hashState: string,
  ): Promise<void>;
  /** Reads a session's small files and data size; null when the session does not exist. */
  get(id: UploadId): Promise<StoredSession | null>;
  /**
   * Appends everything `source` yields at `offset` and returns the bytes written, with
   * `flushed`: the flush of `data` to disk, already started (await it, or pass it to
   * `saveHashState`, before acknowledging the bytes). On error truncates back. `observe` sees
   * every written batch in order, concurrently with its write.
   */
  append(
    id: UploadId,
    offset: number,
    source: ByteSource,
    observe?: (batch: Uint8Array) => Promise<void>,
  ): Promise<{ written: number; flushed: Promise<void> }>;
  /** Cuts `data` to `size` bytes and flushes. */
  truncate(id: UploadId, size: number): Promise<void>;
  /** Replaces `hashstate` atomically, renaming it only once `after` (a data flush) resolved. */
  saveHashState(id: UploadId, text: string, after?: Promise<void>): Promise<void>;
  /** Streams `data` from the start (for re-hashing after a crash). */
  readData(id: UploadId): Promise<ReadableStream<Uint8Array>>;
  /** The path of `data`, for committing it into the blob store by rename. */
  dataPath(id: UploadId): string;
  /** Removes the session folder; true when it existed. */
  remove(id: UploadId): Promise<boolean>;
  /** Lists the names in the uploads folder (unvalidated). */
  list(): Promise<string[]>;
}

/** Upload sessions on the local filesystem. */
export class FsUploadStore implements UploadStore {
  readonly #paths: Paths;

  /** Makes a store over a path mapper. */
  constructor(paths: Paths) {
    this.#paths = paths;
  }

  /** @inheritdoc */
  async create(
    id: UploadId,
    repository: RepositoryName,
    startedAt: Date,
    hashState: string,
  ): Promise<void> {
    const dir = this.#paths.upload(id);
    await ensureDir(this.#paths.uploadsDir);
    await Deno.mkdir(dir);
    const data = await Deno.open(this.#paths.uploadFile(id, "data"), {
      write: true,
      createNew: true,
    });
    data.close();
    await atomicWrite(this.#paths.uploadFile(id, "repository"), repository);
    await atomicWrite(this.#paths.uploadFile(id, "startedat"), startedAt.toISOString());
    await atomicWrite(this.#paths.uploadFile(id, "hashstate"), hashState);
    await syncDir(this.#paths.uploadsDir);
  }

  /** @inheritdoc */
  async get(id: UploadId): Promise<StoredSession | null> {
    const repository = await readTextOrNull(this.#paths.uploadFile(id, "repository"));
    if (repository === null) return null;
    const data = await lstatOrNull(this.#paths.uploadFile(id, "data"));
    if (data === null || !data.isFile) return null;
    const startedAt = (await readTextOrNull(this.#paths.uploadFile(id, "startedat"))) ?? "";
    const hashState = await readTextOrNull(this.#paths.uploadFile(id, "hashstate"));
    return {
      id,
      repository,
      startedAt,
      hashState,
      dataSize: data.size,
      modifiedAt: data.mtime?.getTime() ?? 0,
    };
  }

  /** @inheritdoc */
  async append(
    id: UploadId,
    offset: number,
    source: ByteSource,
    observe?: (batch: Uint8Array) => Promise<void>,
  ): Promise<{ written: number; flushed: Promise<void> }> {
    const file = await Deno.open(this.#paths.uploadFile(id, "data"), { write: true });
    const writer = new BatchWriter(file, WRITE_BATCH, observe ?? null);
    try {
      await file.seek(offset, Deno.SeekMode.Start);
      await writer.writeFrom(source);
    } catch (error) {
      await writer.flush().catch(() => {});
      await file.truncate(offset).catch(() => {});
      file.close();
      throw error;
    }
    const flushed = file.syncData().finally(() => file.close());
    flushed.catch(() => {}); // handled by whoever awaits it; never an unhandled rejection
    return { written: writer.written, flushed };
  }

  /** @inheritdoc */
  async truncate(id: UploadId, size: number): Promise<void> {
    const file = await Deno.open(this.#paths.uploadFile(id, "data"), { write: true });
    try {
      await file.truncate(size);
      await file.syncData();
    } finally {
      file.close();
    }
  }

  /** @inheritdoc */
  saveHashState(id: UploadId, text: string, after?: Promise<void>): Promise<void> {
    return atomicWrite(this.#paths.uploadFile(id, "hashstate"), text, after ? { after } : {});
  }

  /** @inheritdoc */
  async readData(id: UploadId): Promise<ReadableStream<Uint8Array>> {
    const file = await Deno.open(this.#paths.uploadFile(id, "data"), { read: true });
    return file.readable;
  }

  /** @inheritdoc */
  dataPath(id: UploadId): string {
    return this.#paths.uploadFile(id, "data");
  }

  /** @inheritdoc */
  async remove(id: UploadId): Promise<boolean> {
    const removed = await removeIfExists(this.#paths.upload(id), true);
    if (removed) await syncDir(this.#paths.uploadsDir).catch(() => {});
    return removed;
  }

  /** @inheritdoc */
  async list(): Promise<string[]> {
    return (await readDirNames(this.#paths.uploadsDir)) ?? [];
  }
}
