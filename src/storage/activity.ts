/**
 * Activity: when a blob was last touched (upload commit, mount, HEAD/GET, named by a pushed
 * manifest) and when a manifest was last pulled, for garbage collection's grace window and
 * its retention rules.
 *
 * The hot path costs one map write: `touch` and `pulled` record in memory. `flush` (every few
 * seconds, and before a collection) writes what changed since the last flush as journal
 * batches `gc/activity/<ms>-<seq>` of at most `BATCH_LINES` lines each, so a restart or an
 * offline collection (`deno task gc` without a running registry) knows them too. `compact`
 * rewrites the journal with only the lines still inside the longest window, the latest of
 * each key, and deletes the batches it replaced (written first, deleted after: a crash
 * between leaves duplicates, which are harmless since the latest time wins).
 *
 * Replicas sharing one bucket (the scale-out mode, `shared`) each write their own batches: a
 * batch's sequence number starts with a random number of the process, so two replicas never
 * write the same key (no lost update), and no batch is ever rewritten. `refresh` (before a
 * collection) reads every replica's batches, so the collector knows every touch and pull;
 * `compact` reads the batches it lists before it replaces them, so it deletes nothing it has
 * not merged (two replicas compacting at once both keep everything).
 *
 * Memory is small and bounded. In memory a key (a digest, or `repository@digest`) is a 52-bit
 * hash and a time is whole seconds: about 50 bytes an entry, whatever the key's length, so
 * 250,000 touched blobs cost ~12 MiB instead of ~40. Two keys of one hash (one chance in
 * ~10^10 per key with a table full) would share the later time: a blob spared, or a manifest
 * kept by a pull rule, one collection longer than needed, never deleted early. Past
 * `MAX_ENTRIES` entries in a table, the tracker forgets that table and takes "everything was
 * touched now" as its floor, which can only delay a collection. Only the batches not yet
 * written keep whole keys, for the journal.
 * Touches made in the last flush interval before a crash are lost; then a blob the client just
 * saw with a HEAD may be collected, and its manifest PUT answers `MANIFEST_BLOB_UNKNOWN` (it
 * never stores a manifest whose bytes are gone: the sweep checks links under the blob lock).
 */

import { isDigest } from "../digest/digest.ts";
import type { Digest } from "../types/oci.ts";
import type { StorageDriver } from "./driver.ts";
import { ACTIVITY_AREA, activityKey, activityTimeOf } from "./keys.ts";

const BATCH_LINES = 10_000;
/** Entries a table remembers (about 12 MiB each at this size). */
export const MAX_ENTRIES = 250_000;
/** In memory, times are seconds after this one (September 2020): small integers in V8. */
const BASE_S = 1_600_000_000;
const decoder = new TextDecoder();

/**
 * A key's 52-bit hash (two FNV-1a passes with different offsets): a number, so a map of them
 * holds no string; two keys share one about once in 2^52 pairs.
 */
export function keyHash(key: string): number {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x01000193) ^ (b >>> 15);
  }
  return (a >>> 12) * 2 ** 32 + (b >>> 0);
}

/**
 * Milliseconds as the seconds kept in memory, rounded down: a touch counts from the start of
 * its second (a grace window of seconds may end up to a second early; the race with a sweep
 * is covered by `openWindow`, not by the clock).
 */
function toSlot(ms: number): number {
  return Math.floor(ms / 1000) - BASE_S;
}

function fromSlot(slot: number): number {
  return (slot + BASE_S) * 1000;
}

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
  /** Hash of a digest → last touch (a slot: see `toSlot`). */
  readonly #touched = new Map<number, number>();
  /** Hash of `repository@digest` → last pull (a slot). */
  readonly #pulls = new Map<number, number>();
  /** Entries changed since the last flush. */
  #dirtyTouches = new Map<string, number>();
  #dirtyPulls = new Map<string, number>();
  /** Everything counts as touched (and pulled) at least this late (after an overflow). */
  #floor = 0;
  #seq = 0;
  /** Batches written since the journal was last compacted. */
  #written = 0;
  #flushing: Promise<void> = Promise.resolve();
  /** The first sequence number of this process (a random multiple of SEQ_SPAN when shared). */
  readonly #seqBase: number;
  readonly #shared: boolean;
  /** Hashes of the digests touched since `openWindow` (null: no window open). */
  #window: Set<number> | null = null;
  /** More were touched in the window than it remembers: count every digest as touched. */
  #windowFull = false;

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
    const hash = keyHash(digest);
    this.#set(this.#touched, hash, now);
    this.#dirtyTouches.set(digest, now);
    if (this.#window !== null && !this.#windowFull) {
      if (this.#window.size >= MAX_ENTRIES) {
        this.#windowFull = true;
        this.#window.clear();
      } else this.#window.add(hash);
    }
  }

  /**
   * Starts remembering every digest touched from now on, whatever the clock says (a
   * collection's mark: a blob linked after its repository was scanned has been touched in the
   * window, under the blob lock the sweep takes).
   */
  openWindow(): void {
    this.#window = new Set();
    this.#windowFull = false;
  }

  /** Stops remembering (the collection is over). */
  closeWindow(): void {
    this.#window = null;
    this.#windowFull = false;
  }

  /** Whether a digest was touched since `openWindow` (true for all when the window overflowed). */
  touchedInWindow(digest: Digest): boolean {
    return this.#windowFull || (this.#window?.has(keyHash(digest)) ?? false);
  }

  /** Records that a manifest of a repository was pulled now. */
  pulled(repository: string, digest: Digest): void {
    const now = this.#now();
    const key = `${repository}@${digest}`;
    this.#set(this.#pulls, keyHash(key), now);
    this.#dirtyPulls.set(key, now);
  }

  /** The last time a blob was touched, as far as known (0: never). */
  lastTouch(digest: Digest): number {
    const slot = this.#touched.get(keyHash(digest));
    return Math.max(this.#floor, slot === undefined ? 0 : fromSlot(slot));
  }

  /** The last time a manifest of a repository was pulled, as far as known (0: never). */
  lastPull(repository: string, digest: Digest): number {
    const slot = this.#pulls.get(keyHash(`${repository}@${digest}`));
    return Math.max(this.#floor, slot === undefined ? 0 : fromSlot(slot));
  }

  /** Batches written since the journal was last compacted (or the process started). */
  get batchesSinceCompaction(): number {
    return this.#written;
  }

  /** Reads the journal into memory (at start, and by an offline collection). */
  async load(): Promise<void> {
    for await (const line of this.#journalLines(await this.#batches())) this.#apply(line);
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

  /** The journal's batch names. */
  async #batches(): Promise<string[]> {
    return (await this.#driver.list(ACTIVITY_AREA)).filter((n) => activityTimeOf(n) !== null);
  }

  /** Every line of the given batches, one batch in memory at a time. */
  async *#journalLines(batches: readonly string[]): AsyncGenerator<string> {
    for (const name of batches) {
      const bytes = await this.#driver.get(`${ACTIVITY_AREA}/${name}`);
      if (bytes === null) continue;
      yield* decoder.decode(bytes).split("\n");
    }
  }

  /** Writes the entries changed since the last flush (one flush at a time). */
  flush(): Promise<void> {
    const next = this.#flushing.then(() => this.#flushOnce());
    this.#flushing = next.catch(() => {});
    return next;
  }

  /**
   * Drops from memory what is older than `keepMs`, rewrites the journal with the latest line
   * of each key still inside it, and deletes the batches written before. Returns how many
   * batches were deleted.
   */
  compact(keepMs: number): Promise<number> {
    const next = this.#flushing.then(async () => {
      await this.#flushOnce();
      const old = await this.#batches();
      // Other replicas' batches are merged before they are replaced.
      if (this.#shared) {
        for await (const line of this.#journalLines(old)) this.#apply(line);
      }
      // Whole seconds before the window's start are forgotten (kept to the second, as above).
      const horizon = Math.ceil((this.#now() - keepMs) / 1000) - BASE_S;
      for (const map of [this.#touched, this.#pulls]) {
        for (const [key, at] of map) if (at < horizon) map.delete(key);
      }
      // The memory has every key's latest time (all is flushed): a line is kept when it
      // carries that time, once per hash. Lines go out in batches as they are read.
      const out = this.#batchWriter();
      const seen = { t: new Set<number>(), p: new Set<number>() };
      for await (const line of this.#journalLines(old)) {
        const entry = parseLine(line);
        if (entry === null || entry.kind === "f") continue;
        const hash = keyHash(entry.key);
        const table = entry.kind === "t" ? this.#touched : this.#pulls;
        if (table.get(hash) !== toSlot(entry.at) || seen[entry.kind].has(hash)) continue;
        seen[entry.kind].add(hash);
        await out.add(`${entry.kind} ${entry.key} ${entry.at}`);
      }
      if (this.#floor > 0) await out.add(`f ${this.#floor}`); // kept even with no other line
      await out.end();
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
    const out = this.#batchWriter();
    for (const [digest, at] of touches) await out.add(`t ${digest} ${at}`);
    for (const [key, at] of pulls) await out.add(`p ${key} ${at}`);
    await out.end();
  }

  /** Writes lines as batches of at most `BATCH_LINES`, each starting with the floor. */
  #batchWriter(): { add(line: string): Promise<void>; end(): Promise<void> } {
    let lines: string[] = [];
    const put = async () => {
      if (lines.length === 0) return;
      if (this.#floor > 0) lines.unshift(`f ${this.#floor}`);
      await this.#driver.put(
        activityKey(this.#now(), this.#seqBase + (this.#seq++ % SEQ_SPAN)),
        lines.join("\n"),
      );
      this.#written++;
      lines = [];
    };
    return {
      add: async (line) => {
        lines.push(line);
        if (lines.length >= BATCH_LINES) await put();
      },
      end: put,
    };
  }

  #apply(line: string): void {
    const entry = parseLine(line);
    if (entry === null) return;
    if (entry.kind === "f") this.#floor = Math.max(this.#floor, entry.at);
    else this.#set(entry.kind === "t" ? this.#touched : this.#pulls, keyHash(entry.key), entry.at);
  }

  #set(map: Map<number, number>, hash: number, at: number): void {
    const slot = toSlot(at);
    if ((map.get(hash) ?? -Infinity) >= slot) return;
    if (map.size >= MAX_ENTRIES && !map.has(hash)) {
      // Forget everything, but never make anything look older than it is.
      this.#floor = Math.max(this.#floor, at);
      map.clear();
      return;
    }
    map.set(hash, slot);
  }
}

/** A journal line: `f <ms>` (the floor), `t <digest> <ms>`, `p <repository@digest> <ms>`. */
function parseLine(
  line: string,
): { kind: "f"; at: number } | { kind: "t" | "p"; key: string; at: number } | null {
  const parts = line.split(" ");
  const at = Number(parts[parts.length - 1]);
  if (!Number.isSafeInteger(at)) return null;
  if (parts[0] === "f" && parts.length === 2) return { kind: "f", at };
  if (parts[0] === "t" && parts.length === 3 && isDigest(parts[1])) {
    return { kind: "t", key: parts[1], at };
  }
  if (parts[0] === "p" && parts.length === 3 && parts[1].includes("@")) {
    return { kind: "p", key: parts[1], at };
  }
  return null;
}
