/**
 * One owner per data root: the registry holds an exclusive advisory lock on `<root>/.lock`
 * while it runs, with its PID written inside. A second process on the same root finds the
 * lock taken and is told the holder's PID; a crash releases the lock with the process.
 */

import { StartupError } from "../../errors.ts";

/** A held data-root lock. */
export interface RootLock {
  /** Releases the lock (idempotent). */
  release(): void;
}

/** Roots locked by this process: a second lock in the same process fails at once too. */
const heldHere = new Set<string>();

/**
 * Takes the data root's lock without waiting. Throws StartupError naming the root and the
 * holder's PID when another process (or this one) holds it.
 */
export async function lockRoot(root: string): Promise<RootLock> {
  const path = `${root}/.lock`;
  const planted = await Deno.lstat(path).then((info) => !info.isFile, () => false);
  if (planted) {
    throw new StartupError(`data root ${root} has a .lock that is not a plain file; remove it`);
  }
  const file = await Deno.open(path, { read: true, write: true, create: true });
  let locked = false;
  try {
    locked = !heldHere.has(root) && await file.tryLock(true);
    if (!locked) {
      const holder = (await Deno.readTextFile(path).catch(() => "")).trim();
      throw new StartupError(
        `data root ${root} is in use by another registry process${
          /^[0-9]+$/.test(holder) ? ` (PID ${holder})` : ""
        }`,
      );
    }
    // Between the check and the open a link could have been planted: write only into the file
    // that was checked (same inode as the path, which is no link).
    const [opened, named] = [await file.stat(), await Deno.lstat(path)];
    if (!named.isFile || opened.ino !== named.ino || opened.dev !== named.dev) {
      throw new StartupError(`data root ${root} has a .lock that is not a plain file; remove it`);
    }
    await file.truncate(0);
    await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
    await file.syncData();
  } catch (error) {
    file.close();
    throw error;
  }
  heldHere.add(root);
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      heldHere.delete(root);
      file.close(); // closing the descriptor releases the lock
    },
  };
}
