/**
 * Filesystem helpers of the filesystem driver: atomic small-file writes, directory fsync,
 * null-on-missing reads, refusal of symbolic links. Stands in for `@std/fs`; nothing above the
 * drivers calls `Deno.*` file APIs.
 */

import { dirname, join } from "node:path/posix";

/** Whether an error means "no such file or directory". */
export function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound;
}

/**
 * Thrown when a path under the data root passes through a symbolic link. The registry never
 * makes links, so one was planted; following it could read or write outside the root.
 */
export class LinkedPathError extends Error {
  /** Like the OS errors' codes, for the error mapping. */
  readonly code = "ELINKED";

  /** Makes the error for the path and the link met on the way. */
  constructor(path: string, link: string) {
    super(`Refusing to follow the symbolic link "${link}" on the way to "${path}"`);
    this.name = "LinkedPathError";
  }
}

/**
 * Creates the data root if needed and returns its canonical path (no symbolic link in it), the
 * base that `refuseLinks` checks every path under the root against.
 */
export async function canonicalRoot(path: string): Promise<string> {
  await Deno.mkdir(path, { recursive: true });
  return await Deno.realPath(path);
}

/**
 * Throws LinkedPathError when a folder on the way to `path` is a symbolic link, or (with
 * `leaf`) when `path` itself is one. `path` must be canonical up to the data root, which
 * `canonicalRoot` ensures; folders that do not exist yet are fine.
 */
export async function refuseLinks(path: string, leaf = true): Promise<void> {
  for (let dir = dirname(path); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      if ((await Deno.realPath(dir)) !== dir) throw new LinkedPathError(path, dir);
      break;
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
  if (leaf) {
    try {
      if ((await Deno.lstat(path)).isSymlink) throw new LinkedPathError(path, path);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
}

/** `refuseLinks`, without waiting: for paths whose folders are in the kernel's cache. */
export function refuseLinksSync(path: string, leaf = true): void {
  for (let dir = dirname(path); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      if (Deno.realPathSync(dir) !== dir) throw new LinkedPathError(path, dir);
      break;
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
  if (leaf) {
    try {
      if (Deno.lstatSync(path).isSymlink) throw new LinkedPathError(path, path);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
}

/**
 * Creates a directory and its parents; no error when it exists. The parent of every folder
 * it creates is flushed, so a new folder's entry survives a power cut like its files do.
 * Throws LinkedPathError instead of creating anything through a symbolic link.
 */
export async function ensureDir(path: string): Promise<void> {
  const missing: string[] = [];
  let existing = path;
  for (; existing !== dirname(existing); existing = dirname(existing)) {
    try {
      const info = await Deno.lstat(existing);
      if (info.isSymlink) throw new LinkedPathError(path, existing);
      if (info.isDirectory) break;
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
    missing.push(existing);
  }
  const real = await Deno.realPath(existing);
  if (real !== existing) throw new LinkedPathError(path, existing);
  if (missing.length === 0) return;
  await Deno.mkdir(path, { recursive: true });
  for (const dir of missing.reverse()) await syncDir(dirname(dir));
  // A concurrent prune may have removed `existing` after it was seen, and mkdir made it again:
  // flush its parent too, so that its entry is as durable as the new folders below it.
  if (existing !== dirname(existing)) await syncDir(dirname(existing));
}

/** Flushes a directory's entries (new names, renames) to disk. */
export async function syncDir(path: string): Promise<void> {
  const dir = await Deno.open(path, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}

/** Writes every byte of `data` to an open file. */
export async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    done += await file.write(done === 0 ? data : data.subarray(done));
  }
}

/**
 * Replaces a file atomically: writes a temporary file in the same folder, flushes it,
 * renames it over the target and flushes the folder. A crash leaves the old or the new file.
 * With `after`, the rename also waits for that promise (e.g. the flush of the data a state
 * file describes), which runs meanwhile; if it rejects, nothing is replaced and it rethrows.
 * With `secret`, the file has mode 0600 from its creation on.
 */
export async function atomicWrite(
  path: string,
  data: Uint8Array | string,
  options: { after?: Promise<void>; secret?: boolean } = {},
): Promise<void> {
  const dir = dirname(path);
  await ensureDir(dir);
  const tmp = join(dir, `.tmp-${crypto.randomUUID()}`);
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const mode = options.secret ? 0o600 : undefined;
  const file = await Deno.open(tmp, { write: true, createNew: true, mode });
  try {
    if (mode !== undefined) await Deno.chmod(tmp, mode); // whatever the umask
    await writeAll(file, bytes);
    await file.syncData();
  } catch (error) {
    file.close();
    await removeIfExists(tmp);
    throw error;
  }
  file.close();
  if (options.after) {
    try {
      await options.after;
    } catch (error) {
      await removeIfExists(tmp);
      throw error;
    }
  }
  await Deno.rename(tmp, path);
  await syncDir(dir);
}

/** Reads a small text file, or null when it does not exist; throws LinkedPathError. */
export async function readTextOrNull(path: string): Promise<string | null> {
  await refuseLinks(path);
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

/** Reads a small file, or null when it does not exist; throws LinkedPathError. */
export async function readFileOrNull(path: string): Promise<Uint8Array<ArrayBuffer> | null> {
  await refuseLinks(path);
  try {
    return await Deno.readFile(path);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

/** Stats a path, or null when it does not exist (follows no link; throws LinkedPathError). */
export async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  await refuseLinks(path, false);
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

/** Removes a file or folder (recursively); true when something was removed. Throws LinkedPathError. */
export async function removeIfExists(path: string, recursive = false): Promise<boolean> {
  await refuseLinks(path, false);
  try {
    await Deno.remove(path, { recursive });
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

/**
 * Lists the entry names of a folder, or null when it does not exist; throws LinkedPathError.
 * Read without a thread hand-off: a registry's folders are small and in the kernel's cache,
 * where one call costs microseconds and the hand-offs of an asynchronous read cost five times
 * that (the catalog walk and garbage collection list thousands of folders).
 */
export function readDirNames(path: string): Promise<string[] | null> {
  try {
    refuseLinksSync(path);
    const names: string[] = [];
    try {
      for (const entry of Deno.readDirSync(path)) names.push(entry.name);
    } catch (error) {
      if (isNotFound(error)) return Promise.resolve(null);
      throw error;
    }
    return Promise.resolve(names);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Removes empty parent folders of `path` up to (not including) `stop`. */
export async function pruneEmptyDirs(path: string, stop: string): Promise<void> {
  let dir = path;
  while (dir.startsWith(`${stop}/`)) {
    try {
      await Deno.remove(dir);
    } catch {
      return;
    }
    dir = dirname(dir);
  }
}
