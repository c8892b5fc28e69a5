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
 * write the same key (no lost update), and no batch is ever rewritten (nor by a restarted
 * registry whose clock went back: a compaction then deleted the batch it wrote over). `refresh` (before a
 * collection) reads every replica's batches, so the collector knows every touch and pull;
 * `compact` reads the batches it lists before it replaces them, so it deletes nothing it has
 * not merged (two replicas compacting at once both keep everything).
 *
 * Memory is small and bounded. The journal is read into memory only by a collection (at its
 * start) and a compaction, and let go when they end (`release`): between them, memory holds what
 * was touched and pulled since. In memory a key (a digest, or `repository@digest`) is a 52-bit
 * hash and a time is twice its whole seconds since 2020 (`toSlot`), in a `HashTable` (typed
 * arrays at most 70% full, outside the JavaScript heap), whatever the key's length: 250,000
 * touched blobs cost 4–5 MiB. Two keys of one hash (one chance in ~10^10 per key with a table
 * full) would share the later time: a blob spared, or a manifest kept by a pull rule, one
 * collection longer than needed, never deleted early. Past `MAX_ENTRIES` entries in a table,
 * the tracker forgets that table and takes the latest time it held as the floor of every key
 * ("everything was touched then"), which can only delay a collection. Only the batches not yet
 * written keep whole keys, for the journal.
 * Touches made in the last flush interval before a crash are lost; then a blob the client just
 * saw with a HEAD may be collected, and its manifest PUT answers `MANIFEST_BLOB_UNKNOWN` (it
 * never stores a manifest whose bytes are gone: the sweep checks links under the blob lock).
 */

import { isDigest } from "../digest/digest.ts";
import type { Digest } from "../types/oci.ts";
import type { StorageDriver } from "./driver.ts";
import { HashTable } from "./hash_table.ts";
import { ACTIVITY_AREA, activityKey, activityTimeOf } from "./keys.ts";

const BATCH_LINES = 10_000;
/** Added to a slot while compaction has written its line (slots are even). */
const WRITTEN = 1;
/** Entries a table remembers (4–5 MiB each at this size). */
export const MAX_ENTRIES = 250_000;
/** In memory, times are seconds after this one (September 2020). */
const BASE_S = 1_600_000_000;
/** Keeps a byte-order mark as a character: a line is read alike whole or in a batch. */
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const encoder = new TextEncoder();

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

const NEWLINE = 0x0a;
const SPACE = 0x20;
const AT = 0x40;
const F = 0x66;
const P = 0x70;
const T = 0x74;

/** `keyHash` of the ASCII key `bytes[start, end)` (the same steps, over its bytes). */
function asciiKeyHash(bytes: Uint8Array, start: number, end: number): number {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = start; i < end; i++) {
    const c = bytes[i];
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x01000193) ^ (b >>> 15);
  }
  return (a >>> 12) * 2 ** 32 + (b >>> 0);
}

/**
 * `keyHash` of the key of a `p` line, `bytes[start, end)`, when it is printable ASCII with an
 * `@`; else -1 (`parseLine` decides).
 */
function pullKeyHash(bytes: Uint8Array, start: number, end: number): number {
  let at = false;
  for (let i = start; i < end; i++) {
    const c = bytes[i];
    if (c <= SPACE || c >= 0x7f) return -1;
    if (c === AT) at = true;
  }
  return at ? asciiKeyHash(bytes, start, end) : -1;
}

const SHA256 = new TextEncoder().encode("sha256:");
const SHA512 = new TextEncoder().encode("sha512:");

/**
 * `keyHash` of the digest of a `t` line, `bytes[start, end)`, when `isDigest` accepts it
 * (`sha256:` and 64 lowercase hex digits, or `sha512:` and 128); else -1.
 */
function digestHash(bytes: Uint8Array, start: number, end: number): number {
  const hex = end - start - SHA256.length;
  const prefix = hex === 64 ? SHA256 : hex === 128 ? SHA512 : null;
  if (prefix === null) return -1;
  for (let i = 0; i < prefix.length; i++) if (bytes[start + i] !== prefix[i]) return -1;
  for (let i = start + prefix.length; i < end; i++) {
    const c = bytes[i];
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return -1;
  }
  return asciiKeyHash(bytes, start, end);
}

/** The decimal `bytes[start, end)` (1 to 15 digits), or -1 when it is not one. */
function decimalOf(bytes: Uint8Array, start: number, end: number): number {
  if (end <= start || end - start > 15) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const d = bytes[i] - 0x30;
    if (d < 0 || d > 9) return -1;
    value = value * 10 + d;
  }
  return value;
}

/**
 * Milliseconds as the slot kept in memory: twice the whole seconds after `BASE_S`, rounded
 * down (a touch counts from the start of its second: a grace window of seconds may end up to a
 * second early; the race with a sweep is covered by `openWindow`, not by the clock). Even, so
 * compaction can mark a slot by adding `WRITTEN`; until 2088 it fits a table's 4 bytes.
 */
function toSlot(ms: number): number {
  return 2 * (Math.floor(ms / 1000) - BASE_S);
}

/** A slot without compaction's mark. */
function unmarked(slot: number): number {
  return 2 * Math.floor(slot / 2);
}

/** The time of a slot, marked or not. */
function fromSlot(slot: number): number {
  return (Math.floor(slot / 2) + BASE_S) * 1000;
}

/** Options of the tracker. */
export interface ActivityOptions {
  /** The clock, epoch milliseconds. */
  readonly now?: () => number;
  /** Whether other processes write batches to the same journal (replicas on one bucket). */
  readonly shared?: boolean;
}

/**
 * A journal line read from its bytes, when it is as the tracker writes it (`f <ms>`,
 * `t <digest> <ms>`, `p <repository@digest> <ms>`, in ASCII): its first byte, its key's place
 * and hash, and its time. One object serves every line of a read, so a line costs no object
 * and no string.
 */
class ScannedLine {
  kind = 0;
  hash = -1;
  at = -1;
  keyStart = 0;
  keyEnd = 0;

  /** Reads `bytes[start, end)`; false when the line is in another form (`parseLine` decides). */
  scan(bytes: Uint8Array, start: number, end: number): boolean {
    const kind = bytes[start];
    const space = bytes.lastIndexOf(SPACE, end - 1);
    const at = space > start ? decimalOf(bytes, space + 1, end) : -1;
    if (at < 0 || bytes[start + 1] !== SPACE) return false;
    this.kind = kind;
    this.at = at;
    this.keyStart = start + 2;
    this.keyEnd = space;
    if (kind === F) return space === start + 1;
    this.hash = kind === T
      ? digestHash(bytes, start + 2, space)
      : kind === P
      ? pullKeyHash(bytes, start + 2, space)
      : -1;
    return this.hash >= 0;
  }
}

/**
 * Room kept in front of a batch's lines for its first line, the floor (`f <ms>\n`: at most 27
 * bytes, a number's text being at most 24 characters).
 */
const HEAD_ROOM = 32;

/**
 * The lines of one journal batch, gathered as bytes in one buffer reused batch after batch;
 * `write` stores a batch (without its last newline) and is given how many lines it has. The
 * batch's first line, `head()` (the floor), goes in front of the lines when it is written: in
 * room kept for it, so a batch is never copied.
 */
class BatchLines {
  #body = new Uint8Array(64 * 1024);
  #length = HEAD_ROOM;
  #lines = 0;
  readonly #head: () => string;
  readonly #write: (body: Uint8Array, lines: number) => Promise<void>;

  constructor(head: () => string, write: (body: Uint8Array, lines: number) => Promise<void>) {
    this.#head = head;
    this.#write = write;
  }

  /** Whether the batch has its `BATCH_LINES` lines (time to `put` it). */
  get full(): boolean {
    return this.#lines >= BATCH_LINES;
  }

  /** Adds a line given as text. */
  add(line: string): void {
    this.#reserve(line.length * 3 + 1);
    this.#length += encoder.encodeInto(line, this.#body.subarray(this.#length)).written;
    this.#body[this.#length++] = NEWLINE;
    this.#lines++;
  }

  /** Adds the line `<kind> <key> <at>` (`key` in ASCII, `at` a safe integer of 0 or more). */
  addKey(kind: number, key: Uint8Array, at: number): void {
    this.#reserve(key.length + 20);
    const body = this.#body;
    body[this.#length++] = kind;
    body[this.#length++] = SPACE;
    body.set(key, this.#length);
    this.#length += key.length;
    body[this.#length++] = SPACE;
    this.#length += encoder.encodeInto(String(at), body.subarray(this.#length)).written;
    body[this.#length++] = NEWLINE;
    this.#lines++;
  }

  /** Writes the lines gathered, if any, behind the head line, and starts an empty batch. */
  async put(): Promise<void> {
    if (this.#lines === 0) return;
    const head = this.#head();
    const start = HEAD_ROOM - head.length;
    encoder.encodeInto(head, this.#body.subarray(start, HEAD_ROOM));
    await this.#write(this.#body.subarray(start, this.#length - 1), this.#lines + (head ? 1 : 0));
    this.#length = HEAD_ROOM;
    this.#lines = 0;
  }

  #reserve(bytes: number): void {
    if (this.#length + bytes <= this.#body.length) return;
    const grown = new Uint8Array(Math.max(this.#body.length * 2, this.#length + bytes));
    grown.set(this.#body.subarray(0, this.#length));
    this.#body.buffer.transfer(0);
    this.#body = grown;
  }
}

/** Sequence numbers of one process within the journal (below this, the process's own). */
const SEQ_SPAN = 1_000_000;

/** The tracker of blob touches and manifest pulls. */
export class Activity {
  readonly #driver: StorageDriver;
  readonly #now: () => number;
  /** Hash of a digest → last touch (a slot: see `toSlot`). */
  readonly #touched = new HashTable();
  /** Hash of `repository@digest` → last pull (a slot). */
  readonly #pulls = new HashTable();
  /** Entries changed since the last flush. */
  #dirtyTouches = new Map<string, number>();
  #dirtyPulls = new Map<string, number>();
  /** Everything counts as touched (and pulled) at least this late (after an overflow). */
  #floor = 0;
  #seq = 0;
  /** Batches and lines written since the journal was last compacted. */
  #written = 0;
  #writtenLines = 0;
  #flushing: Promise<void> = Promise.resolve();
  /** Whether the journal was read into memory since this tracker was made. */
  #read = false;
  /** The first sequence number of this process (a random multiple of SEQ_SPAN). */
  readonly #seqBase: number;
  readonly #shared: boolean;
  /** Hashes of the digests touched since `openWindow` (null: no window open). */
  #window: Set<number> | null = null;
  /** More were touched in the window than it remembers: count every digest as touched. */
  #windowFull = false;
  /** The line being read by `#applyBytes` (one object for them all). */
  readonly #scanned = new ScannedLine();

  /** Makes a tracker writing its journal through `driver`. */
  constructor(driver: StorageDriver, options: ActivityOptions = {}) {
    this.#driver = driver;
    this.#now = options.now ?? Date.now;
    this.#shared = options.shared ?? false;
    // 10^8..9·10^8 times 10^6: at most 9·10^14, a safe integer; 15 digits in the key.
    this.#seqBase = (1e8 + crypto.getRandomValues(new Uint32Array(1))[0] % 8e8) * SEQ_SPAN;
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

  /**
   * The last time a blob was touched, as far as known (0: never): the journal's times only after
   * `refresh` (until `release`).
   */
  lastTouch(digest: Digest): number {
    const slot = this.#touched.get(keyHash(digest));
    return Math.max(this.#floor, slot === undefined ? 0 : fromSlot(slot));
  }

  /** The last time a manifest of a repository was pulled, as far as known (as `lastTouch`). */
  lastPull(repository: string, digest: Digest): number {
    const slot = this.#pulls.get(keyHash(`${repository}@${digest}`));
    return Math.max(this.#floor, slot === undefined ? 0 : fromSlot(slot));
  }

  /** Batches written since the journal was last compacted (or the process started). */
  get batchesSinceCompaction(): number {
    return this.#written;
  }

  /** Lines written since the journal was last compacted (or the process started). */
  get linesSinceCompaction(): number {
    return this.#writtenLines;
  }

  /**
   * Reads the journal into memory. Nothing needs it before a collection: the registry starts
   * without reading it (a journal of a million lines takes about a second), and `refresh` and
   * `compact` read it first when it was not read yet. Touches and pulls recorded before merge
   * with it, the later time winning.
   */
  async load(): Promise<void> {
    await this.#applyBatches(await this.#batches());
    this.#read = true;
  }

  /**
   * Counts the journal's batches as written since the last compaction (the registry's start:
   * one listing), so restarts do not let the journal grow without a compaction.
   */
  async countJournal(): Promise<void> {
    this.#written += (await this.#batches()).length;
  }

  /** Reads the journal unless it was read already. */
  async #readOnce(): Promise<void> {
    if (!this.#read) await this.load();
  }

  /**
   * Writes what changed, and reads the journal: every replica's batches when it is shared
   * (a collection then knows every touch and pull), else once (after that, memory knows
   * everything).
   */
  refresh(): Promise<void> {
    const next = this.#flushing.then(async () => {
      await this.#flushOnce();
      if (this.#shared) await this.load();
      else await this.#readOnce();
    });
    this.#flushing = next.catch(() => {});
    return next;
  }

  /** The journal's batch names. */
  async #batches(): Promise<string[]> {
    return (await this.#driver.list(ACTIVITY_AREA)).filter((n) => activityTimeOf(n) !== null);
  }

  /**
   * The bytes of each of the given batches that still exists, in order; the next batch is read
   * while one is used (two in memory at a time). A batch's memory is freed once the consumer
   * asks for the next (the driver's buffer is ours): left to the garbage collector, the
   * buffers of a journal of 300 MB, read with little else to collect, piled up by tens of MiB.
   */
  async *#journalBatches(batches: readonly string[]): AsyncGenerator<Uint8Array> {
    const read = (i: number) => {
      if (i >= batches.length) return null;
      const bytes = this.#driver.get(`${ACTIVITY_AREA}/${batches[i]}`);
      bytes.catch(() => {}); // awaited below; not unhandled if the reader stops before
      return bytes;
    };
    let next = read(0);
    for (let i = 0; next !== null; i++) {
      const bytes = await next;
      next = read(i + 1);
      if (bytes === null) continue;
      yield bytes;
      if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) {
        bytes.buffer.transfer(0);
      }
    }
  }

  /**
   * Applies every line of the given batches (or only the floors and the lines of one `kind`),
   * read from their bytes: a line as the tracker writes it costs no string (a collection may
   * read a million lines).
   */
  async #applyBatches(batches: readonly string[], kind?: number): Promise<void> {
    // Each table's room for every line the batches may hold (up to its limit), made at once.
    const tables = kind === undefined
      ? [this.#touched, this.#pulls]
      : [kind === T ? this.#touched : this.#pulls];
    for (const table of tables) {
      table.reserve(Math.min(MAX_ENTRIES, table.size + batches.length * BATCH_LINES));
    }
    for await (const bytes of this.#journalBatches(batches)) {
      for (let start = 0; start < bytes.length;) {
        let end = bytes.indexOf(NEWLINE, start);
        if (end < 0) end = bytes.length;
        // a line's kind is its first byte, odd lines' too (`parseLine`)
        if (kind === undefined || bytes[start] === kind || bytes[start] === F) {
          this.#applyBytes(bytes, start, end);
        }
        start = end + 1;
      }
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
      // Written first, so a journal that cannot be read stops no write.
      await this.#flushOnce();
      const old = await this.#batches();
      // Whole seconds before the window's start are forgotten (kept to the second, as above).
      const horizon = toSlot(Math.ceil((this.#now() - keepMs) / 1000) * 1000);
      const out = this.#batchWriter();
      // One kind after the other: unless a collection read the journal already, only one
      // table is full at a time (half the memory; the journal is read twice as often).
      const read = this.#read;
      for (const kind of [T, P]) {
        const table = kind === T ? this.#touched : this.#pulls;
        // What is not in memory would not be kept: the journal's lines of this kind are read
        // (when shared, other replicas' batches are merged before they are replaced).
        if (this.#shared || !read) await this.#applyBatches(old, kind);
        try {
          await this.#writeLatest(old, kind, horizon, out);
        } finally {
          table.update(unmarked);
        }
        if (!read) table.clear();
      }
      if (this.#floor > 0) out.add(`f ${this.#floor}`); // kept even with no other line
      await out.put();
      for (const name of old) await this.#driver.delete(`${ACTIVITY_AREA}/${name}`);
      this.#written = 0;
      this.#writtenLines = 0;
      this.release();
      return old.length;
    });
    this.#flushing = next.then(() => {}, () => {});
    return next;
  }

  /**
   * Compaction's writing pass over the batches, for the lines of one kind. The memory has every
   * key's latest time (all is flushed): a line is kept when it carries that time, inside the
   * window (from the slot `horizon`), once per hash: a key written is marked in its table
   * (`WRITTEN` added: no line's time gives that slot), until the caller takes the marks off.
   * Lines go out in batches as they are read, from their bytes (a journal may have millions).
   */
  async #writeLatest(
    batches: readonly string[],
    kind: number,
    horizon: number,
    out: BatchLines,
  ): Promise<void> {
    const line = new ScannedLine();
    for await (const bytes of this.#journalBatches(batches)) {
      for (let start = 0; start < bytes.length;) {
        let end = bytes.indexOf(NEWLINE, start);
        if (end < 0) end = bytes.length;
        // A line of another kind is skipped (an odd line, too, starts with its kind).
        if (bytes[start] === kind) this.#writeLine(bytes, start, end, line, horizon, out);
        if (out.full) await out.put();
        start = end + 1;
      }
    }
  }

  /** Adds the line `bytes[start, end)` to `out` when `#toWrite` says it is to be kept. */
  #writeLine(
    bytes: Uint8Array,
    start: number,
    end: number,
    line: ScannedLine,
    horizon: number,
    out: BatchLines,
  ): void {
    if (line.scan(bytes, start, end)) {
      if (this.#toWrite(line.kind === T, line.hash, line.at, horizon)) {
        out.addKey(line.kind, bytes.subarray(line.keyStart, line.keyEnd), line.at);
      }
      return;
    }
    const entry = parseLine(decoder.decode(bytes.subarray(start, end)));
    if (
      entry !== null && entry.kind !== "f" &&
      this.#toWrite(entry.kind === "t", keyHash(entry.key), entry.at, horizon)
    ) {
      out.add(`${entry.kind} ${entry.key} ${entry.at}`);
    }
  }

  /**
   * Lets the tables go once everything in them is in the journal (after a compaction, or a
   * collection): until the next `refresh` or compaction reads the journal again, they hold only
   * what is touched and pulled from now on. Between collections the journal's keys take no
   * memory (two full tables: 8 MiB); a collection reads the journal at its start.
   */
  release(): void {
    this.#touched.clear();
    this.#pulls.clear();
    this.#read = false;
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
    for (const [digest, at] of touches) {
      out.add(`t ${digest} ${at}`);
      if (out.full) await out.put();
    }
    for (const [key, at] of pulls) {
      out.add(`p ${key} ${at}`);
      if (out.full) await out.put();
    }
    await out.put();
  }

  /**
   * Whether compaction writes a line of this key and time: the time is the key's latest in
   * memory, not before `horizon` (a slot), and no line of the key was written yet (then
   * marked written).
   */
  #toWrite(touch: boolean, hash: number, at: number, horizon: number): boolean {
    const table = touch ? this.#touched : this.#pulls;
    const slot = toSlot(at);
    if (slot < horizon || table.get(hash) !== slot) return false;
    table.set(hash, slot + WRITTEN);
    return true;
  }

  /**
   * Writes lines as batches of at most `BATCH_LINES`, each starting with the floor (a line more,
   * when there is one).
   */
  #batchWriter(): BatchLines {
    return new BatchLines(
      // The floor as it is when the batch is written (an overflow may have raised it).
      () => this.#floor > 0 ? `f ${this.#floor}\n` : "",
      async (bytes, lines) => {
        await this.#driver.put(
          activityKey(this.#now(), this.#seqBase + (this.#seq++ % SEQ_SPAN)),
          bytes,
        );
        this.#written++;
        this.#writtenLines += lines;
      },
    );
  }

  /**
   * Applies the line `bytes[start, end)`. A line as `#write` makes it (`f <ms>`, `t <digest>
   * <ms>`, `p <repository@digest> <ms>`, in ASCII) is read from its bytes; any other goes through
   * `parseLine`, so both read a line alike.
   */
  #applyBytes(bytes: Uint8Array, start: number, end: number): void {
    const line = this.#scanned;
    if (line.scan(bytes, start, end)) {
      if (line.kind === F) this.#floor = Math.max(this.#floor, line.at);
      else this.#set(line.kind === T ? this.#touched : this.#pulls, line.hash, line.at);
      return;
    }
    this.#apply(decoder.decode(bytes.subarray(start, end)));
  }

  #apply(line: string): void {
    const entry = parseLine(line);
    if (entry === null) return;
    if (entry.kind === "f") this.#floor = Math.max(this.#floor, entry.at);
    else this.#set(entry.kind === "t" ? this.#touched : this.#pulls, keyHash(entry.key), entry.at);
  }

  #set(map: HashTable, hash: number, at: number): void {
    const slot = toSlot(at);
    const old = map.get(hash);
    if (old !== undefined && old >= slot) return;
    if (old === undefined && map.size >= MAX_ENTRIES) {
      // Forget everything, but never make anything look older than it is: the floor becomes
      // the latest time the table held (a journal is read in no order of time).
      this.#floor = Math.max(this.#floor, at, fromSlot(map.maxValue()));
      map.empty(); // its room kept: a journal being read fills it again
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
