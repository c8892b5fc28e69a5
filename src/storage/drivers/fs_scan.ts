/**
 * Finds the `.tmp-*` files of atomic writes cut short under a filesystem data root (the
 * driver hides names starting with `.`, so only a walk of the folders sees them). Reads
 * only; symbolic links are not followed.
 */

import { join } from "node:path/posix";
import { isNotFound } from "./fs_files.ts";

/** A leftover temporary file: its path relative to the root, size and modification time. */
export interface Temporary {
  readonly key: string;
  readonly size: number;
  readonly modifiedAt: number;
}

/** Every `.tmp-*` file under `root`, in byte order of their paths. */
export async function findTemporaries(root: string): Promise<Temporary[]> {
  const out: Temporary[] = [];
  const walk = async (dir: string, prefix: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch (error) {
      if (isNotFound(error)) return; // removed meanwhile
      throw error;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const path = join(dir, entry.name);
      const key = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
      if (entry.isDirectory) await walk(path, key);
      else if (entry.isFile && entry.name.startsWith(".tmp-")) {
        const info = await Deno.lstat(path).catch(() => null);
        if (info !== null) {
          out.push({ key, size: info.size, modifiedAt: info.mtime?.getTime() ?? 0 });
        }
      }
    }
  };
  await walk(root, "");
  return out;
}
