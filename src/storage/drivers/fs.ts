/**
 * The filesystem driver: a key is a path under one canonical data root. Small objects are
 * replaced by write-to-temporary, fsync, rename and folder fsync; data is flushed and new
 * folder entries are flushed before a call returns; a commit is one rename; no symbolic link
 * under the root is ever followed. Empty folders left by a delete are removed, so `list`
 * behaves like an object store's.
 */

import { dirname } from "node:path/posix";
import {
  AlreadyExists,
  type AppendWriter,
  byteOrder,
  checkKey,
  type DeleteOptions,
  type ListOptions,
  type ObjectInfo,
  ObjectMissing,
  type ObjectReader,
  page,
  type PutOptions,
  type Span,
  type StorageDriver,
} from "../driver.ts";
import { fileStream } from "../file_stream.ts";
import {
  atomicWrite,
  ensureDir,
  isNotFound,
  lstatOrNull,
  readDirNames,
  readFileOrNull,
  refuseLinks,
  removeIfExists,
  syncDir,
} from "./fs_files.ts";
import { fileAppender, type Writeback, writebackFor } from "./fs_append.ts";

/** A driver over a folder of the local filesystem. */
export class FsDriver implements StorageDriver {
  readonly name = "filesystem";
  /** The canonical (link-free) absolute path of the root. */
  readonly root: string;
  /** Folders (keys) a lazy delete removed a name from, not flushed since. */
  readonly #unsettled = new Set<string>();
  /** How append writers get their bytes to the disk as they go (see fs_append.ts). */
  readonly #writeback: Writeback;

  /** Makes a driver over a canonical root (see `canonicalRoot`). */
  constructor(root: string) {
    this.root = root;
    this.#writeback = writebackFor(root);
  }

  /** The OS path of a key; throws InvalidKey. */
  #path(key: string, prefix = false): string {
    checkKey(key, { prefix });
    return key === "" ? this.root : `${this.root}/${key}`;
  }

  /** @inheritdoc */
  readonly makeSecret = async (key: string): Promise<void> => {
    const path = this.#path(key);
    const info = await Deno.lstat(path);
    if (!info.isFile) return; // never through a link
    // only when group or others may do anything with it: no write otherwise
    if (((info.mode ?? 0) & 0o077) !== 0) await Deno.chmod(path, 0o600);
  };

  /** @inheritdoc */
  get(key: string): Promise<Uint8Array<ArrayBuffer> | null> {
    return readFileOrNull(this.#path(key));
  }

  /** @inheritdoc */
  async put(key: string, bytes: Uint8Array | string, options: PutOptions = {}): Promise<void> {
    const path = this.#path(key);
    options.after?.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
    // A delete pruning empty folders may remove the folder between its creation and the
    // temporary file's: create it again.
    for (let attempt = 0;; attempt++) {
      try {
        return await atomicWrite(path, bytes, options);
      } catch (error) {
        if (!isNotFound(error) || attempt >= 5) throw error;
      }
    }
  }

  /** @inheritdoc */
  async stat(key: string): Promise<ObjectInfo | null> {
    const info = await lstatOrNull(this.#path(key));
    if (info === null || !info.isFile) return null;
    return { size: info.size, modifiedAt: info.mtime?.getTime() ?? 0 };
  }

  /** @inheritdoc */
  async read(key: string, span?: Span): Promise<ObjectReader | null> {
    const path = this.#path(key);
    await refuseLinks(path);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
    try {
      const { size, isFile } = await file.stat();
      if (!isFile) {
        file.close();
        return null;
      }
      if (!span || (span.start === 0 && span.length === size)) {
        return { size, stream: fileStream(file, size) };
      }
      await file.seek(span.start, Deno.SeekMode.Start);
      return { size, stream: fileStream(file, Math.min(span.length, size - span.start)) };
    } catch (error) {
      file.close();
      throw error;
    }
  }

  /** @inheritdoc */
  async list(prefix: string, options: ListOptions = {}): Promise<string[]> {
    const names = (await readDirNames(this.#path(prefix, true))) ?? [];
    const sorted = names.filter((name) => !name.startsWith(".")).sort(byteOrder);
    return page(sorted, options);
  }

  /** @inheritdoc */
  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    const path = this.#path(key);
    const removed = await removeIfExists(path);
    if (removed) {
      if (options.lazy) this.#unsettled.add(dirname(key));
      else await syncDir(dirname(path));
      await this.#prune(dirname(key));
    }
    return removed;
  }

  /** Flushes each folder a lazy delete removed a name from (or its nearest remaining parent). */
  readonly settle = async (): Promise<void> => {
    const folders = [...this.#unsettled];
    this.#unsettled.clear();
    const synced = new Set<string>();
    for (let folder of folders) {
      // A pruned folder is gone: its removal is a name in its parent, flushed instead.
      while (!synced.has(folder)) {
        synced.add(folder);
        try {
          await syncDir(`${this.root}/${folder}`);
          break;
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound) || !folder.includes("/")) throw error;
          folder = dirname(folder);
        }
      }
    }
  };

  /** @inheritdoc */
  async deleteAll(prefix: string): Promise<boolean> {
    checkKey(prefix);
    const path = this.#path(prefix);
    const removed = await removeIfExists(path, true);
    if (removed) {
      await syncDir(dirname(path));
      await this.#prune(dirname(prefix));
    }
    return removed;
  }

  /** @inheritdoc */
  async create(key: string): Promise<void> {
    const path = this.#path(key);
    await ensureDir(dirname(path));
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { write: true, createNew: true });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) throw new AlreadyExists(key);
      throw error;
    }
    file.close();
    await syncDir(dirname(path));
  }

  /** @inheritdoc */
  async append(key: string, offset: number): Promise<AppendWriter> {
    const path = this.#path(key);
    const file = await this.#openExisting(key);
    try {
      await file.truncate(offset);
      await file.seek(offset, Deno.SeekMode.Start);
    } catch (error) {
      file.close();
      throw error;
    }
    return fileAppender(path, file, offset, this.#writeback);
  }

  /** @inheritdoc */
  async truncate(key: string, size: number): Promise<void> {
    const file = await this.#openExisting(key);
    try {
      await file.truncate(size);
      await file.syncData();
    } finally {
      file.close();
    }
  }

  /** @inheritdoc */
  async move(from: string, to: string): Promise<void> {
    const source = this.#path(from);
    const target = this.#path(to);
    await refuseLinks(source);
    await refuseLinks(target);
    for (let attempt = 0;; attempt++) {
      try {
        // A delete pruning empty folders (a sweep of another blob of the same prefix) may
        // remove the target folder while ensureDir looks at it or before the rename.
        await ensureDir(dirname(target));
        await Deno.rename(source, target);
        break;
      } catch (error) {
        if (!isNotFound(error)) throw error;
        if ((await lstatOrNull(source)) === null) throw new ObjectMissing(from);
        if (attempt >= 5) throw error;
        // the target folder was pruned meanwhile: create it again
      }
    }
    await syncDir(dirname(target));
  }

  /** @inheritdoc */
  async readAll(key: string): Promise<ReadableStream<Uint8Array>> {
    const reader = await this.read(key);
    if (reader === null) throw new ObjectMissing(key);
    return reader.stream;
  }

  /** Opens an existing object for writing; throws ObjectMissing or LinkedPathError. */
  async #openExisting(key: string): Promise<Deno.FsFile> {
    const path = this.#path(key);
    await refuseLinks(path);
    try {
      return await Deno.open(path, { write: true });
    } catch (error) {
      if (isNotFound(error)) throw new ObjectMissing(key);
      throw error;
    }
  }

  /**
   * Removes the empty folders from `key` up, keeping the top-level ones (`blobs`, `uploads`,
   * `repositories`). A folder that is not empty, or refilled meanwhile, stops it.
   */
  async #prune(key: string): Promise<void> {
    let at = key;
    while (at.includes("/")) {
      try {
        await Deno.remove(`${this.root}/${at}`);
      } catch {
        return;
      }
      at = dirname(at);
    }
  }
}
