/**
 * Filesystem helpers: atomic small-file writes, directory fsync, null-on-missing reads.
 * Stands in for `@std/fs`; nothing else in the project calls `Deno.*` file APIs directly
 * except the storage modules.
 */

import { dirname, join } from "node:path/posix";

/** Whether an error means "no such file or directory". */
export function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound;
}

/** Creates a directory and its parents; no error when it exists. */
export async function ensureDir(path: string): Promise<void> {
  await Deno.mkdir(path, { recursive: true });
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
 */
export async function atomicWrite(path: string, data: Uint8Array | string): Promise<void> {
  const dir = dirname(path);
  await ensureDir(dir);
  const tmp = join(dir, `.tmp-${crypto.randomUUID()}`);
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const file = await Deno.open(tmp, { write: true, createNew: true });
  try {
    await writeAll(file, bytes);
    await file.syncData();
  } catch (error) {
    file.close();
    await removeIfExists(tmp);
    throw error;
  }
  file.close();
  await Deno.rename(tmp, path);
  await syncDir(dir);
}

/** Reads a small text file, or null when it does not exist. */
export async function readTextOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

/** Reads a small file, or null when it does not exist. */
export async function readFileOrNull(path: string): Promise<Uint8Array<ArrayBuffer> | null> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

/** Stats a path, or null when it does not exist (follows no symlink). */
export async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

/** Removes a file or folder (recursively); true when something was removed. */
export async function removeIfExists(path: string, recursive = false): Promise<boolean> {
  try {
    await Deno.remove(path, { recursive });
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

/** Lists the entry names of a folder, or null when it does not exist. */
export async function readDirNames(path: string): Promise<string[] | null> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(path)) names.push(entry.name);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
  return names;
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
