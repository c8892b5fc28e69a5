/**
 * Activity: when a blob was last touched (upload commit, mount, HEAD/GET, named by a pushed
 * manifest) and when a manifest was last pulled, for garbage collection's grace window and
 * its retention rules.
 *
 * The hot path costs one map write: `touch` and `pulled` record in memory. `flush` (every few
 * seconds, and before a collection) writes what changed since the last flush as journal
 * batches `gc/activity/<ms>-<seq>` of at most `BATCH_LINES` lines each, so a restart or an
 * offline collection (`deno task gc` without a running registry) knows them too. `compact`
 * rewrites the journal with only the entries still inside the longest window and deletes
 * the batches it replaced (written first, deleted after: a crash between leaves duplicates,
 * which are harmless since the latest time wins).
 *
 * Replicas sharing one bucket (the scale-out mode, `shared`) each write their own batches: a
 * batch's sequence number starts with a random number of the process, so two replicas never
 * write the same key (no lost update), and no batch is ever rewritten. `refresh` (before a
 * collection) reads every replica's batches, so the collector knows every touch and pull;
 * `compact` reads the batches it lists before it replaces them, so it deletes nothing it has
 * not merged (two replicas compacting at once both keep everything).
 *
 * Memory is bounded: past `MAX_ENTRIES` remembered digests, the tracker forgets them all and
 * takes "everything was touched now" as its floor, which can only delay a collection.
 * Touches made in the last flush interval before a crash are lost; then a blob the client just
 * saw with a HEAD may be collected, and its manifest PUT answers `MANIFEST_BLOB_UNKNOWN` (it
 * never stores a manifest whose bytes are gone: the sweep checks links under the blob lock).
 */

import { isDigest } from "../digest/digest.ts";
import type { Digest } from "../types/oci.ts";
import type { StorageDriver } from "./driver.ts";
import { ACTIVITY_AREA, activityKey, activityTimeOf } from "./keys.ts";

const BATCH_LINES = 10_000;
const MAX_ENTRIES = 1_000_000;
const decoder = new TextDecoder();

/** Options of the tracker. */
export interface ActivityOptions {
  /** The clock, epoch milliseconds. */
  readonly now?: () => number;
  /** Whether other processes write batches to the same journal (replicas on one bucket). */
  readonly shared?: boolean;
}

/** Sequence numbers of one process within a shared journal (below this, the process's own). */
const SEQ_SPAN = 1_000_000;

/** The tracker of blob touches and manifest pulls. */
export class Activity {
  readonly #driver: StorageDriver;
  readonly #now: () => number;
  /** Digest → last touch. */
  readonly #touched = new Map<string, number>();
  /** `repository@digest` → last pull. */
  readonly #pulls = new Map<string, number>();
  /** Entries changed since the last flush. */
  #dirtyTouches = new Map<string, number>();
  #dirtyPulls = new Map<string, number>();
  /** Everything counts as touched (and pulled) at least this late (after an overflow). */
  #floor = 0;
  #seq = 0;
  /** The first sequence number of this process (a random multiple of SEQ_SPAN when shared). */
  readonly #seqBase: number;
  readonly #shared: boolean;
  /** Batches written since the journal was last compacted. */
  #written = 0;
  #flushing: Promise<void> = Promise.resolve();

  /** Makes a tracker writing its journal through `driver`. */
  constructor(driver: StorageDriver, options: ActivityOptions = {}) {
    this.#driver = driver;
    this.#now = options.now ?? Date.now;
    this.#shared = options.shared ?? false;
    // 10^8..9·10^8 times 10^6: at most 9·10^14, a safe integer; 16 digits in the key.
    this.#seqBase = this.#shared
      ? (1e8 + crypto.getRandomValues(new Uint32Array(1))[0] % 8e8) * SEQ_SPAN
      : 0;
  }

  /** Records that a blob (or manifest bytes) was touched now. */
  touch(digest: Digest): void {
    const now = this.#now();
    this.#set(this.#touched, digest, now);
    this.#dirtyTouches.set(digest, now);
  }

  /** Records that a manifest of a repository was pulled now. */
  pulled(repository: string, digest: Digest): void {
    const now = this.#now();
    const key = `${repository}@${digest}`;
    this.#set(this.#pulls, key, now);
    this.#dirtyPulls.set(key, now);
  }

  /** The last time a blob was touched, as far as known (0: never). */
  lastTouch(digest: Digest): number {
    return Math.max(this.#floor, this.#touched.get(digest) ?? 0);
  }

  /** The last time a manifest of a repository was pulled, as far as known (0: never). */
  lastPull(repository: string, digest: Digest): number {
    return Math.max(this.#floor, this.#pulls.get(`${repository}@${digest}`) ?? 0);
  }

  /** Batches written since the journal was last compacted (or the process started). */
  get batchesSinceCompaction(): number {
    return this.#written;
  }

  /** Reads the journal into memory (at start, and by an offline collection). */
  async load(): Promise<void> {
    await this.#read(await this.#batches());
  }

  /**
   * Writes what changed, and, when the journal is shared, reads every replica's batches (a
   * collection then knows every touch and pull). Alone, memory already knows everything.
   */
  refresh(): Promise<void> {
    const next = this.#flushing.then(async () => {
      await this.#flushOnce();
      if (this.#shared) await this.load();
    });
    this.#flushing = next.catch(() => {});
    return next;
  }

  async #batches(): Promise<string[]> {
    return (await this.#driver.list(ACTIVITY_AREA)).filter((n) => activityTimeOf(n) !== null);
  }

  async #read(names: readonly string[]): Promise<void> {
    for (const name of names) {
      const bytes = await this.#driver.get(`${ACTIVITY_AREA}/${name}`);
      if (bytes === null) continue;
      for (const line of decoder.decode(bytes).split("\n")) this.#apply(line);
    }
  }

  /** Writes the entries changed since the last flush (one flush at a time). */
  flush(): Promise<void> {
    const next = this.#flushing.then(() => this.#flushOnce());
    this.#flushing = next.catch(() => {});
    return next;
  }

  /**
   * Drops from memory what is older than `keepMs`, writes the rest as fresh batches and
   * deletes the batches written before. Returns how many batches were deleted.
   */
  compact(keepMs: number): Promise<number> {
    const next = this.#flushing.then(async () => {
      await this.#flushOnce();
      const old = await this.#batches();
      // Other replicas' batches are merged before they are replaced.
      if (this.#shared) await this.#read(old);
      const horizon = this.#now() - keepMs;
      for (const map of [this.#touched, this.#pulls]) {
        for (const [key, at] of map) if (at < horizon) map.delete(key);
      }
      await this.#write(this.#touched, this.#pulls);
      for (const name of old) await this.#driver.delete(`${ACTIVITY_AREA}/${name}`);
      this.#written = 0;
      return old.length;
    });
    this.#flushing = next.then(() => {}, () => {});
    return next;
  }

  async #flushOnce(): Promise<void> {
    if (this.#dirtyTouches.size === 0 && this.#dirtyPulls.size === 0) return;
    const touches = this.#dirtyTouches;
    const pulls = this.#dirtyPulls;
    this.#dirtyTouches = new Map();
    this.#dirtyPulls = new Map();
    try {
      await this.#write(touches, pulls);
    } catch (error) {
      // Not written: keep them for the next flush (newer values win).
      for (const [k, v] of touches) if (!this.#dirtyTouches.has(k)) this.#dirtyTouches.set(k, v);
      for (const [k, v] of pulls) if (!this.#dirtyPulls.has(k)) this.#dirtyPulls.set(k, v);
      throw error;
    }
  }

  async #write(touches: Map<string, number>, pulls: Map<string, number>): Promise<void> {
    let lines: string[] = [];
    const put = async () => {
      if (lines.length === 0) return;
      await this.#driver.put(
        activityKey(this.#now(), this.#seqBase + (this.#seq++ % SEQ_SPAN)),
        lines.join("\n"),
      );
      this.#written++;
      lines = [];
    };
    if (this.#floor > 0) lines.push(`f ${this.#floor}`);
    for (const [digest, at] of touches) {
      lines.push(`t ${digest} ${at}`);
      if (lines.length >= BATCH_LINES) await put();
    }
    for (const [key, at] of pulls) {
      lines.push(`p ${key} ${at}`);
      if (lines.length >= BATCH_LINES) await put();
    }
    await put();
  }

  #apply(line: string): void {
    const parts = line.split(" ");
    const at = Number(parts[parts.length - 1]);
    if (!Number.isSafeInteger(at)) return;
    if (parts[0] === "f" && parts.length === 2) this.#floor = Math.max(this.#floor, at);
    else if (parts[0] === "t" && parts.length === 3 && isDigest(parts[1])) {
      this.#set(this.#touched, parts[1], at);
    } else if (parts[0] === "p" && parts.length === 3 && parts[1].includes("@")) {
      this.#set(this.#pulls, parts[1], at);
    }
  }

  #set(map: Map<string, number>, key: string, at: number): void {
    if ((map.get(key) ?? 0) >= at) return;
    if (map.size >= MAX_ENTRIES && !map.has(key)) {
      // Forget everything, but never make anything look older than it is.
      this.#floor = Math.max(this.#floor, at);
      map.clear();
      return;
    }
    map.set(key, at);
  }
}
