/**
 * The bytes of committed blobs (`registry_storage_bytes`), kept up to date without walking
 * the store on every scrape: the store is walked once, on the first scrape (blob folder by
 * blob folder: list, then stat each blob), and every later change is added as it happens (the
 * instrumented driver reports each write, move and delete under `blobs/`).
 *
 * Changes that race the walk are counted exactly once: a change brackets its driver call
 * (`begin`/`end`); a folder's walk counts only when no change to that folder was under way
 * while it was listed and stat'ed (else the folder is walked again). A change that ends
 * before its folder is walked is then seen by the walk (its delta dropped), and one that
 * starts after its folder was walked adds its delta.
 */

import type { StorageDriver } from "../storage/driver.ts";

/** A change under way, from `begin` to `end`. */
export interface ChangeToken {
  readonly folder: string;
}

/** How often a folder is walked again while it keeps changing, before the walk gives up. */
const MAX_FOLDER_TRIES = 20;

/** The blob bytes of one store. */
export class StoredBytes {
  readonly #driver: StorageDriver;
  readonly #blobArea: string;
  /** The total, or null before the first walk finished (or after an unknown change). */
  #total: number | null = null;
  /** Deltas of changes that started after their folder was walked, during a walk. */
  #pending = 0;
  /**
   * Deltas of changes that ended during a walk in folders it had not walked yet: dropped
   * when the walk then walks the folder, added when the folder was not there to list.
   */
  #early = new Map<string, number>();
  /** The walk under way, or null. */
  #walk: Promise<void> | null = null;
  /** Folders walked (cleanly) by the walk under way. */
  #walked: Set<string> | null = null;
  /** Per folder: changes under way, and a sequence number bumped by each begin and end. */
  readonly #inFlight = new Map<string, number>();
  readonly #changed = new Map<string, number>();
  #sequence = 0;

  /** Tracks the blobs under `blobArea` (`blobs`) of a driver (used unobserved for walks). */
  constructor(driver: StorageDriver, blobArea = "blobs") {
    this.#driver = driver;
    this.#blobArea = blobArea;
  }

  /** Whether a key is a blob this tracker counts. */
  covers(key: string): boolean {
    return key.startsWith(`${this.#blobArea}/`);
  }

  /** Marks the start of a change to a blob key. */
  begin(key: string): ChangeToken {
    const folder = key.slice(0, key.lastIndexOf("/"));
    this.#inFlight.set(folder, (this.#inFlight.get(folder) ?? 0) + 1);
    this.#changed.set(folder, ++this.#sequence);
    return { folder };
  }

  /** Marks the end of a change, with the bytes it added (negative: removed). */
  end(token: ChangeToken, delta: number): void {
    const { folder } = token;
    const left = (this.#inFlight.get(folder) ?? 1) - 1;
    if (left === 0) this.#inFlight.delete(folder);
    else this.#inFlight.set(folder, left);
    this.#changed.set(folder, ++this.#sequence);
    if (delta === 0) return;
    if (this.#walk !== null) {
      // Walked before this change began (a clean walk saw no change under way): add it.
      // Not walked yet: the walk will see the result, if it walks the folder at all.
      if (this.#walked!.has(folder)) this.#pending += delta;
      else this.#early.set(folder, (this.#early.get(folder) ?? 0) + delta);
    } else if (this.#total !== null) {
      this.#total += delta;
    }
  }

  /** Forgets the total after a change whose size is unknown; the next scrape walks again. */
  invalidate(): void {
    if (this.#walk === null) this.#total = null;
    else this.#walked = new Set(); // the walk's result is void; `#walkOnce` sees it
  }

  /**
   * The total, walking the store first when it is unknown (waiting at most `waitMs` for the
   * walk; null when it takes longer, or failed).
   */
  async value(waitMs = 1000): Promise<number | null> {
    if (this.#total !== null) return this.#total;
    const walk = this.#walk ?? this.#startWalk();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      walk,
      new Promise<void>((wake) => (timer = setTimeout(wake, waitMs))),
    ]);
    clearTimeout(timer);
    return this.#total;
  }

  #startWalk(): Promise<void> {
    const walked = new Set<string>();
    this.#walked = walked;
    this.#pending = 0;
    this.#early.clear();
    const walk = this.#walkOnce().then((total) => {
      if (total === null || this.#walked !== walked) return; // invalidated meanwhile
      let unseen = 0;
      for (const [folder, delta] of this.#early) if (!walked.has(folder)) unseen += delta;
      this.#total = total + this.#pending + unseen;
    }).catch(() => {
      // unreadable now: unknown, walked again at the next scrape
    }).finally(() => {
      this.#walk = null;
      this.#walked = null;
      this.#pending = 0;
      this.#early.clear();
    });
    this.#walk = walk;
    return walk;
  }

  /** Walks every blob folder; null when a change made the result unknown. */
  async #walkOnce(): Promise<number | null> {
    const walked = this.#walked!;
    let total = 0;
    for (const algorithm of await this.#driver.list(this.#blobArea)) {
      const area = `${this.#blobArea}/${algorithm}`;
      for (const prefix of await this.#driver.list(area)) {
        const folder = `${area}/${prefix}`;
        total += await this.#walkFolder(folder);
        if (this.#walked !== walked) return null; // invalidated meanwhile
        walked.add(folder);
      }
    }
    return total;
  }

  /** The bytes in one folder, listed and stat'ed while no change to it was under way. */
  async #walkFolder(folder: string): Promise<number> {
    for (let attempt = 0; attempt < MAX_FOLDER_TRIES; attempt++) {
      while (this.#inFlight.has(folder)) await new Promise((wake) => setTimeout(wake, 5));
      const before = this.#changed.get(folder);
      let bytes = 0;
      for (const name of await this.#driver.list(folder)) {
        bytes += (await this.#driver.stat(`${folder}/${name}`))?.size ?? 0;
      }
      if (this.#changed.get(folder) === before) return bytes;
    }
    throw new Error(`Blob folder ${folder} kept changing during the walk`);
  }
}
