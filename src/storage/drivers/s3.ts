/**
 * The S3 driver: a key is the object name `<rootdirectory>/<key>` in one bucket, reached
 * path-style (`storage.s3.*` of Distribution: accesskey, secretkey, region, regionendpoint,
 * bucket, rootdirectory, secure, chunksize, forcepathstyle). What each operation costs on S3
 * (requests, and bytes through this process) is said below; failures are the client's
 * (`s3_client.ts`: retries with backoff, a stall timeout, then StorageUnavailable).
 *
 * Plain objects map one to one: `put` is a PutObject (S3 replaces an object atomically and
 * acknowledges it durably), `get`/`read` a (ranged) GetObject, `stat` a HeadObject, `list` a
 * ListObjectsV2 with delimiter `/` (pages read until the `limit` wanted names are certain),
 * `delete` a HeadObject + DeleteObject, `move` a GetObject (of 64 KiB at most) + CopyObject +
 * DeleteObject (S3 has no rename: the copy is server-side, no byte through this process, but
 * the store copies the bytes; above 5 GiB, CopyObject's limit, a multipart upload of
 * UploadPartCopy ranges). The target is replaced atomically: a reader sees the old or the
 * whole new object. `signedUrl` is a presigned GetObject URL, computed here (no request).
 *
 * Appendable objects (upload data: `create`, `append`, `truncate`) are S3 multipart uploads.
 * The object at the key (or, with a state store, its row: see below) is the state, JSON: the
 * size, the multipart upload's id and generation, its parts (size, ETag), the name and length
 * of the tail object, the checkpoint before the last writer and the base (below), the size
 * also in `x-amz-meta-appended-size` (so `stat` stays a HeadObject). The bytes are under
 * `<rootdirectory>/.multipart/<key>/`, a prefix no listing shows: the multipart upload (of
 * object `assembled`, `assembled.<generation>` after a rebuild) holds the parts (`chunksize`
 * bytes each, or from 5 MiB up to that when a sync sent them), each sent once by UploadPart
 * and written once by the store; the tail object (`tail.<n>`, a new name at every sync)
 * holds the bytes after the last part (less than 5 MiB), of which the state counts
 * the first `size - parts` bytes. S3 cannot read a multipart upload's parts before it is
 * completed; the base, when there is one, is a completed upload's object whose first bytes
 * are the object's, so that they can be read (see `read`).
 *
 * - `create`: HeadObject + PutObject of the state (`If-None-Match: *`).
 * - `append(key, offset)`: GetObject of the state; below its size, the cut (see `truncate`);
 *   then a ranged GetObject of the tail's counted bytes (less than a part: the only bytes
 *   read back on the write path, since the next part begins with them).
 * - The writer's `write` copies the bytes into one buffer (a part at most; it doubles as the
 *   bytes come, so a smaller upload holds at most about twice its size) as long as the
 *   driver's memory budget (`uploadmemory`, shared by its writers) allows the buffer to grow,
 *   and past it into a temporary file of the writer's own, unlinked at once (the buffer goes
 *   there first, and is given back; with no file to be had, memory past the budget); a full
 *   part goes by UploadPart straight from the buffer or the file (the first after a
 *   CreateMultipartUpload), `write` waiting for it: one request in flight per writer, the
 *   bytes kept until the part is acknowledged (the client retries it). A closed writer gives
 *   its buffer back at once, to the budget, which keeps it for the next writers or frees it
 *   (see `MemoryBudget`). A writer that
 *   fails leaves the stored state as it was; parts it sent past that state are replaced when
 *   their numbers are sent again, and are never listed at the completion otherwise.
 * - `sync`: pending bytes of 5 MiB or more go as a part (UploadPart; see `sync`), fewer by
 *   PutObject as a new tail object (a PATCH smaller than that rewrites the tail: up to 5 MiB
 *   less one byte), then PutObject of the state, then
 *   DeleteObject of the tail objects no state refers to any more: every acknowledged byte is
 *   durable in the bucket, and any replica resumes from the state. A crash between the two
 *   PutObjects leaves the old state true (the new tail has a new name).
 *   A sync told the `whole` key of the bytes (their blob's, by the uploads layer: see
 *   `WholeBytes` in `uploads.ts`), by a writer that opened on an empty object and sent no
 *   part, PutObjects all of them there instead (a blob of up to `chunksize` pushed in one
 *   PATCH or PUT: most layers and every config), and the state names that object as its
 *   tail (`@<name>`): read like any tail, never deleted with the appendable object's bytes
 *   (it is outside the data prefix, and may be a blob some repository links). The commit of
 *   those bytes to that key then copies nothing (below). In the S3 bench (8 uploads of 8 MiB
 *   at once) that took the commit's CompleteMultipartUpload (51 to 79 ms) and CopyObject (29
 *   to 47 ms) off every push, and their work off RGW. The writer then asks for no multipart
 *   upload ahead of its first part (a part of `chunksize` waits for it). More bytes appended
 *   later read the object back like a tail; the blob it holds stays until a collection finds
 *   it unreferenced.
 * - `truncate`: GetObject of the state, then a PutObject of it; what else depends on the cut.
 *   Inside the tail: nothing more (the tail object's first bytes count). Back to the
 *   checkpoint (the state when the last writer opened, i.e. the last size the uploads layer
 *   acknowledged, which is the only cut it makes besides none: after a crash between the
 *   data's sync and the hash state's save, and for a chunk whose byte count is wrong after
 *   its sync): nothing more either, its parts are the first ones and its tail object is kept
 *   until a later writer's sync. Any other cut below the parts' end reads the bytes between
 *   the last whole part and the cut (less than a part) from the base, made first when it
 *   does not reach them (see `read`), and PutObjects them as the new tail. Cut before the
 *   first part, the multipart upload is aborted (AbortMultipartUpload). No cut fails for
 *   want of bytes. The one failure particular to this layout is an upload gone without a
 *   completed object (aborted from outside, e.g. by a lifecycle rule): the bytes in parts are
 *   lost, every operation that needs them throws UploadDataLost, and the uploads service
 *   then removes the session and answers BLOB_UPLOAD_UNKNOWN (the client starts again).
 * - `read`/`readAll`: GetObject of the state, then ranged GetObjects of the base (the bytes
 *   in parts) and of the tail object. When the bytes wanted are in parts beyond the base
 *   (a re-hash when the hash state is missing, a sha512 digest: rare), first
 *   CompleteMultipartUpload of the parts into the upload's object, which becomes the base,
 *   then CreateMultipartUpload of the next generation + one UploadPartCopy per part (ranges of
 *   the base, copied inside the store) + PutObject of the state, so that appends go on. Crash
 *   safe: an upload found gone (by a writer, a commit, a read) whose object holds its parts
 *   is rebuilt the same way from it.
 * - `move` (the commit of an upload): GetObject of the state. With no part and the tail
 *   stored whole at the target by the sync: a HeadObject (it is still there, of the size),
 *   no copy. With no part (less than 5 MiB in all, or a tail stored by an earlier version):
 *   CopyObject of the tail object to the
 *   target (GetObject + PutObject of its counted bytes, less than a part, when a cut left it
 *   longer; a HeadObject first for a state stored before states recorded the tail object's
 *   length). With parts:
 *   UploadPartCopy of the tail object's counted range as the last part (the store copies
 *   less than a part), CompleteMultipartUpload (on RGW it copies nothing: the object is made
 *   of the parts as written; each part is of the size the state has, as UploadPartCopy
 *   refuses a range past its source's end), CopyObject to the target (above 5 GiB
 *   UploadPartCopy ranges). When the upload is gone the completion was this commit's
 *   own (a lost reply, retried: recognised by the object's ETag, the MD5 of the parts' MD5s)
 *   or an earlier one (rebuilt as above, then completed). In both cases then
 *   ListMultipartUploads + AbortMultipartUpload of any left over, ListObjectsV2 + DeleteObjects
 *   of the data prefix (the two listings go beside the copy), and last DeleteObject of the
 *   state. No byte of the blob passes
 *   through this process at the commit; the store copies it once then (the CopyObject: S3 has
 *   no rename, and the digest, hence the target, is known only at the commit). RGW copies a
 *   completed multipart upload's object by sharing its parts (an 8 MiB one in 20 to 35 ms,
 *   eight commits at once, where an 8 MiB tail object's copy took 220 to 430 ms).
 *
 *   Over a whole upload this process sends each byte once (plus the tail rewrites of PATCHes
 *   smaller than a part, and the tail read back at each PATCH), and the store writes each
 *   byte twice: the UploadPart, and the commit's CopyObject (plus the last partial part's
 *   copy at the completion and the tail objects). Before, every part was first a PutObject of
 *   a part object, then copied into the upload (three writes).
 * - `delete`: HeadObject, for an appendable object ListMultipartUploads +
 *   AbortMultipartUpload + ListObjectsV2 + DeleteObjects of its bytes, then DeleteObject;
 *   `deleteAll` two listings, the same for the bytes of every appendable object under the
 *   prefix, then DeleteObjects. Bytes go before their state, so nothing is left orphaned,
 *   even by a delete cut short.
 *
 * With a state store (`states`: in the scale-out mode, rows of PostgreSQL for upload data) the
 * state of an appendable key under its area is a row instead of the object at the key, and
 * each GetObject or PutObject of a state above is a query instead. A store under load (RGW
 * writing eight uploads' bytes) made a 128-byte state PutObject wait 20 to 120 ms behind them;
 * the query takes about a millisecond. `create` is then an insert beside a HeadObject (an
 * object at the key is refused as before); an acknowledged PATCH smaller than a part costs
 * the tail's PutObject and a query; a commit with no part a query, the CopyObject of the tail
 * (no HeadObject: the state records the tail object's length), the purge and a query. The
 * rules stay: bytes are durable before the state that names them is stored, and removed
 * before it. `list` and `deleteAll` add the keys the store holds under the prefix. A state
 * object that an earlier version left at such a key is moved into the store the first time
 * it is loaded (stored there, then its object deleted); while both exist the row wins.
 *
 * Upload data stored by the previous layout of this driver (part objects `00001`, … copied
 * into the upload, the object after the last part the tail) is read as such: its state names
 * no tail, and the tail is then that object; its part objects are left until the commit.
 * Upload data written by the earlier layout of this driver (segments under `.segments/`,
 * an empty object at the key) is not read: such an upload fails and must be started again.
 */

import {
  AlreadyExists,
  type AppendWriter,
  byteOrder,
  checkKey,
  type CreateOptions,
  type ListOptions,
  type ObjectInfo,
  ObjectMissing,
  type ObjectReader,
  page,
  type PutOptions,
  type Span,
  type StorageDriver,
  type SyncOptions,
  UploadDataLost,
} from "../driver.ts";
import { createHash } from "node:crypto";
import { createMd5, type Md5 } from "../../digest/md5.ts";
import { type Body, type CompletedPart, type ListPage, S3Client, S3Error } from "./s3_client.ts";
import { bufferSize, MemoryBudget, SpillFile } from "./s3_spill.ts";

/** The driver's settings (Distribution's `storage.s3` keys, and a few for tests). */
export interface S3DriverOptions {
  readonly accesskey: string;
  readonly secretkey: string;
  readonly region: string;
  /** `host:port` or a URL of the server; AWS's regional endpoint when absent. */
  readonly regionendpoint?: string;
  readonly bucket: string;
  /** A prefix of every object name (no leading or trailing `/` needed). */
  readonly rootdirectory?: string;
  /** HTTPS (default) or HTTP, when `regionendpoint` has no scheme. */
  readonly secure?: boolean;
  /** The part size of upload data (at least 5 MiB). Default 10 MiB. */
  readonly chunksize?: number;
  /**
   * Whether a sync sends 5 MiB or more of pending bytes as a part (default) rather than as a
   * tail object; false stores them as versions before did (for tests of what they left).
   */
  readonly partsAtSync?: boolean;
  /** Path-style addressing; the only style this driver speaks (false is refused). */
  readonly forcepathstyle?: boolean;
  /** Names per ListObjectsV2 page (the server's default, 1000, when absent); for tests. */
  readonly listPageSize?: number;
  /** Attempts of a request before StorageUnavailable. Default 5. */
  readonly attempts?: number;
  /** Seconds without progress after which a request is abandoned (and retried). Default 30. */
  readonly timeoutSeconds?: number;
  /** Upper bound of the first backoff between attempts, in milliseconds. Default 100. */
  readonly backoffMs?: number;
  /** The largest object `move` copies with one CopyObject (S3: 5 GiB); lower in tests. */
  readonly copyObjectLimit?: number;
  /**
   * Bytes of memory all the writers may hold for upload bytes not yet in a part; past it each
   * keeps them in a temporary file (see `s3_spill.ts`). Default 16 MiB.
   */
  readonly uploadmemory?: number;
  /** Opens a writer's spill file (`SpillFile.open` in the system's temporary folder); for tests. */
  readonly openSpill?: () => Promise<SpillFile>;
  /**
   * Told (at most once a minute) that a spill file could not be made or written: the upload
   * then keeps its bytes in memory past the budget rather than fail.
   */
  readonly onSpillFailure?: (error: unknown) => void;
  /**
   * Where the states of the appendable objects under one area (upload data) are kept instead
   * of state objects in the bucket: a database, where saving a state is a query instead of a
   * PutObject (see `StateStore`). Absent: every state is an object.
   */
  readonly states?: StateStore;
}

/**
 * States of appendable objects kept outside the bucket, for the keys under `area` (e.g. rows
 * of PostgreSQL: `postgres/states.ts`). Each change is durable when its promise resolves. For
 * such a key the state is there and no object is at the key in the bucket, except for a
 * moment while one becomes the other (a `put` over it, a plain object made appendable, a
 * state object of an earlier version moved into the store): the state, when present, wins.
 */
export interface StateStore {
  /** The first part of the keys whose states are kept here (`uploads`); "" for every key. */
  readonly area: string;
  /**
   * The state text of an object (by its name in the bucket, the root directory included) and
   * when it was saved (epoch milliseconds); null when none.
   */
  get(name: string): Promise<{ text: string; savedAt: number } | null>;
  /** Stores the first state of an object; false when it has one. */
  insert(name: string, text: string): Promise<boolean>;
  /** Replaces (or stores) the state of an object. */
  put(name: string, text: string): Promise<void>;
  /** Deletes the state of an object; false when it had none. */
  delete(name: string): Promise<boolean>;
  /** The names with a state that start with `start` (every one when empty), sorted. */
  namesFrom(start: string): Promise<string[]>;
}

/** A key's state in a StateStore. */
interface KeptState {
  get(): Promise<{ text: string; savedAt: number } | null>;
  insert(text: string): Promise<boolean>;
  put(text: string): Promise<void>;
  delete(): Promise<boolean>;
}

/** The smallest part S3 accepts in a multipart upload (all but the last). */
const MIN_CHUNK = 5 * 1024 * 1024;
/** The largest object of a CopyObject, and the largest part of a multipart upload. */
const MAX_COPY = 5 * 1024 ** 3;
/** The most parts of a multipart upload. */
const MAX_PARTS = 10000;
const SIZE_META = "x-amz-meta-appended-size";
/** The hidden prefix of the bytes of appendable objects (never listed: it starts with `.`). */
const MULTIPART = ".multipart";
/**
 * The name, under an appendable object's data prefix, of the object of its multipart upload
 * of generation 0; generation `g` > 0 is `assembled.<g>`.
 */
const ASSEMBLED = "assembled";
/**
 * The mark of a tail name that is the whole name of an object outside the data prefix (a
 * blob's, see `sync`), which the appendable object reads but never deletes.
 */
const WHOLE = "@";
/** The bytes of an object `#load` reads first: the whole of most states. */
const STATE_PEEK = 64 * 1024;
/** A writer's buffer below this size grows as needed; above it, it at least doubles. */
const SMALL_BUFFER = 1024 * 1024;
/** The bytes a writer's buffer gathers before they are added to its MD5. */
const HASH_BATCH = 1024 * 1024;
/** The block a spilling writer gathers its bytes in before they go to its file and MD5. */
const STAGE = 256 * 1024;
/** A writer's buffer up to this size is granted past the memory budget (unless it is 0). */
const FREE_BUFFER = 256 * 1024;
const EMPTY: Uint8Array = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A completed part of an appendable object's multipart upload (numbered from 1 in order). */
interface Part {
  readonly size: number;
  readonly etag: string;
}

/** An earlier stored state an appendable object can be cut back to without reading a part. */
interface Checkpoint {
  readonly size: number;
  /** How many of the state's first parts it had. */
  readonly parts: number;
  /** Its tail object (under the data prefix), null when it had no tail byte. */
  readonly tail: string | null;
  /** The length of that tail object; absent or null when not known. */
  readonly tailSize?: number | null;
}

/** What the object at an appendable key holds (its body, as JSON). */
interface State {
  /** The logical size: the parts' bytes then the tail's. */
  size: number;
  /** The generation of the multipart upload (the name of its object, see ASSEMBLED). */
  gen: number;
  /** The multipart upload holding the parts; null before the first part. */
  upload: string | null;
  parts: Part[];
  /**
   * The tail object (a name under the data prefix): its first `size - parts` bytes are the
   * bytes after the parts. Null when there is none. A new name at every sync.
   */
  tail: string | null;
  /**
   * The length of the tail object (at least the bytes it counts for: more after a cut inside
   * it); null when there is none, or for a state stored before this field was.
   */
  tailSize: number | null;
  /** The last number used in a tail object's name (`tail.<n>`): names are never reused. */
  serial: number;
  /** The state before the writer that stored this one opened (what a cut goes back to). */
  prev: Checkpoint | null;
  /**
   * A completed object (`assembled` of generation `gen`) whose first `size` bytes are the
   * object's first bytes: the only readable copy of bytes in parts. Null when none.
   */
  base: { gen: number; size: number } | null;
}

/** One stored piece of an object: its bytes [start, end) are the object `name` from 0. */
interface Piece {
  readonly name: string;
  readonly start: number;
  readonly end: number;
}

/** What lies under an appendable object's data prefix: multipart uploads and objects. */
interface DataListing {
  readonly uploads: readonly { readonly name: string; readonly id: string }[];
  readonly objects: readonly string[];
}

/** The state of a new, empty appendable object. */
const emptyState = (): State => ({
  size: 0,
  gen: 0,
  upload: null,
  parts: [],
  tail: null,
  tailSize: null,
  serial: 0,
  prev: null,
  base: null,
});

/** A deep copy of a state. */
const cloneState = (state: State): State => ({
  ...state,
  parts: [...state.parts],
  prev: state.prev && { ...state.prev },
  base: state.base && { ...state.base },
});

/** The endpoint URL of the options. */
function endpointOf(options: S3DriverOptions): string {
  const endpoint = options.regionendpoint ??
    (options.region === "us-east-1" ? "s3.amazonaws.com" : `s3.${options.region}.amazonaws.com`);
  if (/^https?:\/\//.test(endpoint)) return endpoint;
  return `${options.secure === false ? "http" : "https"}://${endpoint}`;
}

/** The bytes covered by an appendable object's parts. */
const partsEnd = (state: { parts: readonly Part[] }) =>
  state.parts.reduce((sum, p) => sum + p.size, 0);

/** The state of an appendable object from its stored text; throws when it is not one. */
function parseState(key: string, text: string): State {
  let raw: Partial<State>;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error(`"${key}" is not an appendable object of this driver (${text.length} B)`);
  }
  if (
    typeof raw?.size !== "number" || !Array.isArray(raw.parts) ||
    (raw.upload !== null && typeof raw.upload !== "string")
  ) {
    throw new Error(`"${key}" is not an appendable object of this driver`);
  }
  const { size, parts, upload } = raw;
  const end = partsEnd({ parts });
  return {
    size,
    upload,
    parts,
    gen: raw.gen ?? 0,
    // A state of the previous layout (no tail name): the object of the part after the
    // last is the tail, the parts' objects are left over until the commit.
    tail: raw.tail !== undefined
      ? raw.tail
      : size > end
      ? String(parts.length + 1).padStart(5, "0")
      : null,
    tailSize: raw.tailSize ?? null,
    serial: raw.serial ?? 0,
    prev: raw.prev ?? null,
    base: raw.base ?? null,
  };
}

/** A driver over one bucket of an S3 server. */
export class S3Driver implements StorageDriver {
  readonly name = "s3";
  /** A sync stores the bytes of an upload at its blob's key when told it (see `sync`). */
  readonly storesWhole = true;
  readonly client: S3Client;
  readonly #root: string;
  readonly #chunk: number;
  readonly #listPage: number | undefined;
  readonly #copyLimit: number;
  readonly #partsAtSync: boolean;
  /** The memory of the writers' pending bytes (see `uploadmemory`). */
  readonly budget: MemoryBudget;
  /** Opens a writer's spill file. */
  readonly openSpill: () => Promise<SpillFile>;
  readonly #onSpillFailure: ((error: unknown) => void) | undefined;
  /** When a spill failure was last told (epoch milliseconds). */
  #spillToldAt = -Infinity;
  readonly #states: StateStore | null;

  /** Makes a driver; nothing is requested. */
  constructor(options: S3DriverOptions) {
    if (options.forcepathstyle === false) {
      throw new Error("storage.s3.forcepathstyle: only path-style addressing is supported");
    }
    this.client = new S3Client({
      endpoint: endpointOf(options),
      bucket: options.bucket,
      accessKey: options.accesskey,
      secretKey: options.secretkey,
      region: options.region,
      attempts: options.attempts,
      timeoutSeconds: options.timeoutSeconds,
      backoffMs: options.backoffMs,
    });
    const root = (options.rootdirectory ?? "").replace(/^\/+|\/+$/g, "");
    if (root !== "") checkKey(root);
    this.#root = root === "" ? "" : `${root}/`;
    this.#chunk = Math.min(MAX_COPY, Math.max(MIN_CHUNK, options.chunksize ?? 10 * 1024 * 1024));
    this.#listPage = options.listPageSize;
    this.#copyLimit = Math.min(MAX_COPY, options.copyObjectLimit ?? MAX_COPY);
    this.#partsAtSync = options.partsAtSync ?? true;
    this.budget = new MemoryBudget(Math.max(0, options.uploadmemory ?? 16 * 1024 * 1024));
    this.openSpill = options.openSpill ?? (() => SpillFile.open());
    this.#onSpillFailure = options.onSpillFailure;
    this.#states = options.states ?? null;
  }

  /** `key`'s state in the state store when it is kept there, else null. */
  #storeOf(key: string): KeptState | null {
    const states = this.#states;
    if (states === null || !(states.area === "" || key.startsWith(`${states.area}/`))) return null;
    const name = this.#name(key);
    return {
      get: () => states.get(name),
      insert: (text) => states.insert(name, text),
      put: (text) => states.put(name, text),
      delete: () => states.delete(name),
    };
  }

  /** The keys under `prefix` whose states are in the state store, relative to it, sorted. */
  async #keptUnder(prefix: string): Promise<string[]> {
    const states = this.#states;
    if (states === null) return [];
    const area = states.area;
    const overlaps = area === "" || prefix === "" || prefix === area ||
      prefix.startsWith(`${area}/`) || area.startsWith(`${prefix}/`);
    if (!overlaps) return [];
    const start = prefix === "" ? this.#root : `${this.#root}${prefix}/`;
    return (await states.namesFrom(start)).map((name) => name.slice(start.length));
  }

  /** The object name of a key; throws InvalidKey. */
  #name(key: string): string {
    checkKey(key);
    return `${this.#root}${key}`;
  }

  /** The prefix of the objects holding an appendable key's bytes (and of keys under it). */
  #dataOf(key: string): string {
    return `${this.#root}${MULTIPART}/${key}/`;
  }

  /** The object `name` under an appendable key's data prefix. */
  #child(key: string, name: string): string {
    return name.startsWith(WHOLE) ? name.slice(WHOLE.length) : `${this.#dataOf(key)}${name}`;
  }

  /** The object of an appendable key's multipart upload of generation `gen`. */
  #assembled(key: string, gen: number): string {
    return this.#child(key, gen === 0 ? ASSEMBLED : `${ASSEMBLED}.${gen}`);
  }

  /** @inheritdoc */
  async get(key: string): Promise<Uint8Array<ArrayBuffer> | null> {
    const reader = await this.#open(key, undefined, false);
    if (reader === null) return null;
    return new Uint8Array(await new Response(reader.stream).arrayBuffer());
  }

  /** @inheritdoc */
  async put(key: string, bytes: Uint8Array | string, options: PutOptions = {}): Promise<void> {
    const name = this.#name(key);
    const body = typeof bytes === "string" ? encoder.encode(bytes) : new Uint8Array(bytes);
    if (options.after) await options.after;
    const response = await this.client.putObject(name, body);
    await (await this.client.expect(response, `PutObject ${name}`)).body?.cancel();
    await this.#dropState(key); // over an appendable object whose state is kept outside
  }

  /** @inheritdoc */
  async stat(key: string): Promise<ObjectInfo | null> {
    const store = this.#storeOf(key);
    if (store !== null) {
      checkKey(key);
      const row = await store.get();
      if (row !== null) return { size: parseState(key, row.text).size, modifiedAt: row.savedAt };
    }
    const headers = await this.client.headObject(this.#name(key));
    if (headers === null) {
      // A state object moved into the store (or a plain object made appendable) between the
      // two looks: the row is there now.
      const row = await store?.get();
      if (row) return { size: parseState(key, row.text).size, modifiedAt: row.savedAt };
      return null;
    }
    return { size: sizeOf(headers), modifiedAt: modifiedOf(headers) };
  }

  /** @inheritdoc */
  read(key: string, span?: Span): Promise<ObjectReader | null> {
    return this.#open(key, span, true);
  }

  /** `read`; `direct`: see `S3Client.getObject` (false for small objects read whole). */
  async #open(key: string, span: Span | undefined, direct: boolean): Promise<ObjectReader | null> {
    const name = this.#name(key);
    const store = this.#storeOf(key);
    const row = store === null ? null : await store.get();
    if (row !== null) return await this.#readAppendable(key, parseState(key, row.text), span);
    const ranged = span !== undefined && span.length > 0;
    const response = await this.client.getObject(
      name,
      ranged ? { start: span.start, end: span.start + span.length - 1 } : undefined,
      { direct },
    );
    if (response.status === 404) {
      await response.body?.cancel();
      // The object became a row between the two looks (see `stat`).
      const again = store === null ? null : await store.get();
      return again === null
        ? null
        : await this.#readAppendable(key, parseState(key, again.text), span);
    }
    const headers = response.headers;
    if (headers.has(SIZE_META) || response.status === 416 || (span && !ranged)) {
      await response.body?.cancel();
      const found = await this.#load(key);
      if (found === null) return null;
      if ("plain" in found) return { size: found.plain, stream: emptyStream() };
      return await this.#readAppendable(key, found.state, span);
    }
    const size = response.status === 206
      ? Number(headers.get("content-range")?.split("/")[1])
      : Number(headers.get("content-length"));
    if (ranged && response.status === 200) {
      // The range was ignored: the span's bytes from the whole object.
      if (!/^\d+$/.test(headers.get("content-length") ?? "")) {
        await response.body?.cancel();
        throw new S3Error(200, `GetObject ${name}: a reply without its length`, "");
      }
      const length = Math.max(0, Math.min(span.length, size - span.start));
      return { size, stream: rangeBytes(response, span.start, length, `GetObject ${name}`) };
    }
    return { size, stream: response.body ?? emptyStream() };
  }

  /** Opens the bytes of an appendable object (of `state`), whole or a span. */
  async #readAppendable(key: string, state: State, span?: Span): Promise<ObjectReader> {
    const start = Math.min(span?.start ?? 0, state.size);
    const end = span ? Math.min(state.size, start + span.length) : state.size;
    // Bytes in parts are readable only from a completed copy (the base): make it first.
    const inParts = Math.min(end, partsEnd(state));
    if (start < inParts && (state.base?.size ?? 0) < inParts) {
      await this.#materialize(key, state);
    }
    return { size: state.size, stream: this.#streamPieces(this.#pieces(key, state), start, end) };
  }

  /** @inheritdoc */
  async list(prefix: string, options: ListOptions = {}): Promise<string[]> {
    checkKey(prefix, { prefix: true });
    const base = prefix === "" ? this.#root : `${this.#root}${prefix}/`;
    const names = new Set<string>();
    const visible = () =>
      [...names].filter((n) =>
        n !== "" && !n.startsWith(".") && !(options.after !== undefined && n <= options.after)
      )
        .sort(byteOrder);
    // Keys whose state is kept outside have no object: their names come from the store.
    for (const key of await this.#keptUnder(prefix)) names.add(key.split("/")[0]);
    let token: string | null = null;
    do {
      const found: ListPage = await this.client.listPage(base, {
        delimiter: "/",
        startAfter: options.after === undefined ? undefined : `${base}${options.after}`,
        token,
        max: this.#listPage,
      });
      for (const { key } of found.keys) names.add(key.slice(base.length));
      for (const p of found.prefixes) names.add(p.slice(base.length, -1));
      token = found.next;
      if (token !== null && options.limit !== undefined) {
        // S3 pages in key order, which puts the object `a-b` (and `a.c`) before the common
        // prefix `a/` although the name `a` comes first: stop only when the listing is past
        // the last wanted name `t` and past `p/` for the shortest `p` with `t` = `p-…`/`p.…`.
        const sorted = visible();
        if (sorted.length >= options.limit) {
          const last = [...found.keys.map((o) => o.key), ...found.prefixes]
            .reduce((a, b) => (a > b ? a : b), "").slice(base.length);
          const t = sorted[options.limit - 1];
          const cut = t.search(/[-.]/);
          if (last >= (cut < 0 ? t : `${t.slice(0, cut)}/`)) break;
        }
      }
    } while (token);
    const sorted = visible();
    return page(sorted, { limit: options.limit });
  }

  /** @inheritdoc */
  async delete(key: string): Promise<boolean> {
    const name = this.#name(key);
    const store = this.#storeOf(key);
    if (store !== null) {
      const [row, object] = await Promise.all([store.get(), this.client.headObject(name)]);
      if (row === null && object === null) return false;
      // The bytes first, then the state (see `#purge`), and an object at the key if any.
      if (row !== null || object?.has(SIZE_META)) await this.#purge(this.#dataOf(key));
      if (row !== null) await store.delete();
      if (object !== null) await this.client.deleteObject(name);
      return true;
    }
    const headers = await this.client.headObject(name);
    if (headers === null) return false;
    // The bytes first, then the state (see `#purge`).
    if (headers.has(SIZE_META)) await this.#purge(this.#dataOf(key));
    await this.client.deleteObject(name);
    return true;
  }

  /** @inheritdoc */
  async deleteAll(prefix: string): Promise<boolean> {
    const name = this.#name(prefix);
    const objects = (await this.client.listAll(`${name}/`)).map((o) => o.key);
    if ((await this.client.headObject(name)) !== null) objects.push(name);
    const kept = (await this.#keptUnder(prefix)).map((key) => this.#storeOf(`${prefix}/${key}`)!);
    const own = this.#storeOf(prefix);
    if (own !== null && (await own.get()) !== null) kept.push(own);
    // The bytes of appendable objects first, then the objects and states (see `#purge`).
    await this.#purge(this.#dataOf(prefix));
    await this.client.deleteObjects(objects);
    await Promise.all(kept.map((state) => state.delete()));
    return objects.length > 0 || kept.length > 0;
  }

  /** @inheritdoc */
  async create(key: string, options: CreateOptions = {}): Promise<void> {
    const name = this.#name(key);
    const store = this.#storeOf(key);
    if (store !== null) {
      // The insert refuses a second create; the HeadObject an object at the key (a state
      // object of an earlier version, a plain object), which a fresh key cannot have. Under
      // load that small request waits behind the other uploads' bytes on the store.
      const [inserted, object] = await Promise.all([
        store.insert(JSON.stringify(emptyState())),
        options.fresh ? null : this.client.headObject(name),
      ]);
      if (!inserted) throw new AlreadyExists(key);
      if (object !== null) {
        await store.delete();
        throw new AlreadyExists(key);
      }
      return;
    }
    if ((await this.client.headObject(name)) !== null) throw new AlreadyExists(key);
    const response = await this.#putState(name, emptyState(), {
      "if-none-match": "*",
    });
    if (response.status === 412) {
      await response.body?.cancel();
      throw new AlreadyExists(key);
    }
    await (await this.client.expect(response, `PutObject ${name}`)).body?.cancel();
  }

  /** @inheritdoc */
  async append(key: string, offset: number): Promise<AppendWriter> {
    const state = await this.#appendable(key);
    if (offset > state.size) {
      throw new RangeError(`Cannot append to "${key}" at ${offset}: it has ${state.size} bytes`);
    }
    return await this.#piecesOf(key, async () => {
      if (offset < state.size) await this.#cut(key, state, offset);
      const length = state.size - partsEnd(state);
      // The tail (less than a part, unless stored under a larger chunksize) is read back into
      // the writer's buffer, twice its size up to a part, as `#reserve` would grow it, or
      // into a spill file past the budget: the next part begins with it.
      const md5 = createMd5();
      if (length === 0) {
        return new MultipartWriter(this, key, state, { buffer: EMPTY, fill: 0, md5 });
      }
      const tail = this.#child(key, state.tail!);
      const size = Math.max(length, bufferSize(2 * length, this.#chunk));
      const budget = this.budget;
      let buffer = budget.claim(size, size, size <= Math.min(FREE_BUFFER, budget.limit));
      // Past the budget, a file; memory all the same when none can be made.
      const spill = buffer !== null ? null : await this.spillFile();
      if (spill === null) {
        buffer ??= budget.claim(size, size, true)!;
        try {
          await this.#readRange(tail, 0, length, buffer);
          await md5.update(buffer.subarray(0, length));
        } catch (error) {
          budget.give(size);
          budget.keep(buffer);
          throw error;
        }
        return new MultipartWriter(this, key, state, { buffer, fill: length, md5 });
      }
      try {
        await this.#copyRange(tail, 0, length, async (chunk) => {
          await spill.append(chunk);
          await md5.update(chunk);
        });
      } catch (error) {
        spill.close();
        throw error;
      }
      return new MultipartWriter(this, key, state, { spill, md5 });
    });
  }

  /** @inheritdoc */
  async truncate(key: string, size: number): Promise<void> {
    const state = await this.#appendable(key);
    if (size > state.size) {
      throw new RangeError(`Cannot truncate "${key}" to ${size}: it has ${state.size} bytes`);
    }
    if (size < state.size) await this.#piecesOf(key, () => this.#cut(key, state, size));
  }

  /** @inheritdoc */
  async move(from: string, to: string): Promise<void> {
    const source = this.#name(from);
    const target = this.#name(to);
    const found = await this.#load(from);
    if (found === null) throw new ObjectMissing(from);
    if ("plain" in found) {
      await this.#copy(source, target, found.plain);
      await this.#dropState(to);
      await this.client.deleteObject(source);
      return;
    }
    // What to purge under the data prefix is listed beside the copy (a round trip less). The
    // copy adds to it only the completed upload's object, named by its outcome, and takes
    // away the upload; a rebuilt upload (a new generation) made more: listed again then.
    const { state } = found;
    const prefix = this.#dataOf(from);
    const { upload, gen } = state;
    const early = this.#listData(prefix);
    early.catch(() => {}); // when the copy fails first
    const assembled = await this.#piecesOf(
      from,
      () => this.#moveAppendable(from, target, state),
    );
    await this.#dropState(to);
    const listing = state.gen === gen ? await early : await this.#listData(prefix);
    const { uploads, objects } = listing;
    // The source's bytes, then its state (see `#purge`): a crash between leaves a session
    // whose next request finds it lost.
    await this.#removeData({
      uploads: assembled === null ? uploads : uploads.filter((u) => u.id !== upload),
      objects: assembled === null || objects.includes(assembled)
        ? objects
        : [...objects, assembled],
    });
    const store = this.#storeOf(from);
    if (store !== null) await store.delete();
    else await this.client.deleteObject(source);
  }

  /**
   * After a plain object replaced `key` (a `put`, a `move`'s copy): when the key had a state
   * in the store (it was appendable), its bytes, then the state, go; the object is the key's.
   */
  async #dropState(key: string): Promise<void> {
    const store = this.#storeOf(key);
    if (store === null || (await store.get()) === null) return;
    await this.#purge(this.#dataOf(key));
    await store.delete();
  }

  /**
   * Copies an appendable object's bytes to `target` (a `move`'s copy); the completed upload's
   * object it made under the data prefix, if any.
   */
  async #moveAppendable(from: string, target: string, state: State): Promise<string | null> {
    if (state.parts.length === 0) {
      // Smaller than a part: the tail object is the blob (a copy, or its first bytes).
      const size = state.size;
      const tail = size === 0 ? null : this.#child(from, state.tail!);
      // The tail object's length as stored with the state, else asked (a state from before).
      const length = tail === null
        ? 0
        : state.tailSize ?? Number((await this.client.headObject(tail))?.get("content-length"));
      if (tail === target && length === size) {
        // Stored there by the sync (see `sync`): nothing to copy, as long as it is still there.
        const head = await this.client.headObject(target);
        if (head === null || Number(head.get("content-length")) !== size) {
          throw new UploadDataLost(from, `its bytes at ${target} are gone`);
        }
      } else if (tail !== null && length === size) {
        if (!(await this.client.copyObject(tail, target, size))) {
          throw new UploadDataLost(from, `its tail object ${state.tail} is gone`);
        }
      } else {
        const bytes = tail === null ? EMPTY : await this.#readRange(tail, 0, size);
        const response = await this.client.putObject(target, bytes);
        await (await this.client.expect(response, `PutObject ${target}`)).body?.cancel();
      }
      return null;
    }
    const assembled = await this.#complete(from, state);
    await this.#copy(assembled, target, state.size);
    return assembled;
  }

  /**
   * Runs `fn`, which reads pieces `key`'s state names; a piece not found (404) means the bytes
   * are gone while the state stays: a delete cut short after its purge, or bytes removed from
   * outside. That is `UploadDataLost`, not a failure of the store.
   */
  async #piecesOf<T>(key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      if (error instanceof S3Error && error.status === 404) {
        throw new UploadDataLost(key, `a piece its state names is gone (${error.message})`);
      }
      throw error;
    }
  }

  /** @inheritdoc */
  async readAll(key: string): Promise<ReadableStream<Uint8Array>> {
    const reader = await this.read(key);
    if (reader === null) throw new ObjectMissing(key);
    return reader.stream;
  }

  /**
   * A presigned GetObject URL of the object at `key`, valid for `expiresInSeconds` (1 s to
   * 7 days); its bytes are those of a plain object (`put`, or a committed blob), not of
   * upload data.
   */
  signedUrl(key: string, expiresInSeconds: number): Promise<string> {
    return this.client.presign(this.#name(key), expiresInSeconds);
  }

  /** See `S3DriverOptions.partsAtSync`. */
  get partsAtSync(): boolean {
    return this.#partsAtSync;
  }

  /** The part size of upload data. */
  get chunkSize(): number {
    return this.#chunk;
  }

  /**
   * A new spill file for a writer, or null when none can be made (a temporary folder missing,
   * read-only or full: told, and the writer stays in memory).
   */
  async spillFile(): Promise<SpillFile | null> {
    try {
      return await this.openSpill();
    } catch (error) {
      this.spillFailed(error);
      return null;
    }
  }

  /** Tells of a spill file that could not be made or written, at most once a minute. */
  spillFailed(error: unknown): void {
    const now = Date.now();
    if (now - this.#spillToldAt < 60_000) return;
    this.#spillToldAt = now;
    this.#onSpillFailure?.(error);
  }

  /**
   * AbortMultipartUpload of an upload of generation `gen` that no state names (a writer's,
   * asked for ahead of a part it never sent). Failures are left to the purges.
   */
  async abandonUpload(key: string, gen: number, id: string): Promise<void> {
    await this.client.abortMultipart(this.#assembled(key, gen), id).catch(() => {});
  }

  /** CreateMultipartUpload of the generation of `state`; the upload's id (for the writer). */
  startUpload(key: string, state: State): Promise<string> {
    return this.client.createMultipart(this.#assembled(key, state.gen));
  }

  /**
   * UploadPart of `bytes` (of Content-MD5 `md5`, when known) as part `number` of the upload of
   * `state`; its ETag (for the writer).
   */
  uploadPart(
    key: string,
    state: State,
    number: number,
    bytes: Body,
    md5?: string,
  ): Promise<string> {
    if (number > MAX_PARTS) {
      throw new RangeError(`"${key}" would need more than ${MAX_PARTS} parts of ${this.#chunk}`);
    }
    const name = this.#assembled(key, state.gen);
    return this.client.uploadPart(name, state.upload!, number, bytes, md5);
  }

  /** PutObject of the whole bytes of an appendable key at another key; that object's name. */
  async putWhole(key: string, bytes: Body, md5?: string): Promise<string> {
    const object = this.#name(key);
    const response = await this.client.putObject(object, bytes, {}, md5);
    await (await this.client.expect(response, `PutObject ${object}`)).body?.cancel();
    return object;
  }

  /** PutObject of a tail object (of Content-MD5 `md5`, when known) of an appendable key. */
  async putTail(key: string, name: string, bytes: Body, md5?: string): Promise<void> {
    const object = this.#child(key, name);
    const response = await this.client.putObject(object, bytes, {}, md5);
    await (await this.client.expect(response, `PutObject ${object}`)).body?.cancel();
  }

  /**
   * Stores `state`: the PutObject of the object at the key (with a state store, the write of its
   * row) is the commit point of every change of an appendable object. Then deletes the objects
   * `old`, the stored state it replaces, names and `state` does not (a tail object, a base);
   * after a crash in between they are only left over until the commit or the delete purges the
   * data prefix.
   */
  async save(key: string, state: State, old: State | null): Promise<void> {
    const name = this.#name(key);
    const store = this.#storeOf(key);
    if (store !== null) await store.put(JSON.stringify(state));
    else {
      await (await this.client.expect(await this.#putState(name, state), `PutObject ${name}`))
        .body?.cancel();
    }
    if (old === null) return;
    const keep = this.#named(key, state);
    const drop = [...this.#named(key, old)].filter((n) => !keep.has(n));
    await Promise.all(drop.map((n) => this.client.deleteObject(n).catch(() => {})));
  }

  /** The objects a state needs besides its multipart upload: tails and base. */
  #named(key: string, state: State): Set<string> {
    const names = new Set<string>();
    for (const tail of [state.tail, state.prev?.tail]) {
      if (tail && !tail.startsWith(WHOLE)) names.add(this.#child(key, tail));
    }
    if (state.base !== null) names.add(this.#assembled(key, state.base.gen));
    return names;
  }

  /**
   * Gives `state` (as stored), whose multipart upload is gone, a new one: the upload was
   * completed (by a read or a commit whose new state was not stored: a crash, a lost reply),
   * so its object holds the parts; they are copied from it (UploadPartCopy) into a new upload
   * of the next generation, and it becomes the base. Stores the state. Throws when that
   * object does not hold them (the upload was aborted: the bytes in parts are lost).
   */
  async revive(key: string, state: State): Promise<void> {
    const end = partsEnd(state);
    const name = this.#assembled(key, state.gen);
    const head = await this.client.headObject(name);
    if (head === null || Number(head.get("content-length")) < end) {
      throw new UploadDataLost(
        key,
        `its multipart upload is gone and no completed copy of its ${state.parts.length} ` +
          `parts (${end} bytes) is left`,
      );
    }
    await this.#reopen(key, state, { gen: state.gen, size: end });
  }

  /**
   * Makes `base` (a completed object holding the first bytes) the state's base, with a new
   * multipart upload of the next generation whose parts, of `sizes` (default: those of the
   * state's parts), are ranges of the base copied by UploadPartCopy, inside the store; stores
   * the state. The old upload is left as it is (completed, or gone).
   */
  async #reopen(
    key: string,
    state: State,
    base: { gen: number; size: number },
    sizes = state.parts.map((p) => p.size),
  ): Promise<void> {
    const old = cloneState(state);
    const gen = Math.max(state.gen, base.gen) + 1;
    const name = this.#assembled(key, gen);
    const source = this.#assembled(key, base.gen);
    const upload = sizes.length === 0 ? null : await this.client.createMultipart(name);
    const parts: Part[] = [];
    let at = 0;
    for (const [i, size] of sizes.entries()) {
      const range = { start: at, end: at + size - 1 };
      parts.push({
        size,
        etag: await this.client.uploadPartCopy(name, upload!, i + 1, source, { range }),
      });
      at += size;
    }
    Object.assign(state, { gen, upload, parts, base });
    await this.save(key, state, old);
  }

  /**
   * Makes every byte in parts readable: CompleteMultipartUpload of the parts into the
   * upload's object, which then is the base, and a new upload made of copies of its parts
   * (`revive`), so that appends go on. Stores the state. The store copies the parts' bytes
   * once (the new parts); no byte passes through this process.
   */
  async #materialize(key: string, state: State): Promise<void> {
    const end = partsEnd(state);
    if (end === 0 || (state.base?.size ?? 0) >= end) return;
    const parts = state.parts.map((p, i) => ({ number: i + 1, etag: p.etag }));
    try {
      await this.client.completeMultipart(
        this.#assembled(key, state.gen),
        state.upload!,
        parts,
        end,
      );
    } catch (error) {
      // Completed before (a lost reply, or a crash before the new state was stored): `revive`
      // checks that the object holds the parts.
      if (!gone(error)) throw error;
    }
    await this.revive(key, state);
  }

  /** PutObject of an appendable object's state (its size also in `x-amz-meta-appended-size`). */
  #putState(
    name: string,
    state: State,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    return this.client.putObject(name, encoder.encode(JSON.stringify(state)), {
      ...headers,
      "content-type": "application/json",
      [SIZE_META]: String(state.size),
    });
  }

  /**
   * The state of an appendable object, the size of a plain one, or null when missing: one
   * GetObject of the first 64 KiB (a second one for a larger state, of more than ~1000 parts).
   */
  async #load(key: string): Promise<{ state: State } | { plain: number } | null> {
    const name = this.#name(key);
    const kept = this.#storeOf(key);
    const row = await kept?.get();
    if (row) return { state: parseState(key, row.text) };
    let response = await this.client.getObject(name, { start: 0, end: STATE_PEEK - 1 });
    if (response.status === 404) {
      await response.body?.cancel();
      // The object became a row between the two looks (see `stat`).
      const again = await kept?.get();
      return again ? { state: parseState(key, again.text) } : null;
    }
    if (response.status === 416) {
      await response.body?.cancel();
      return { plain: 0 }; // empty: a state never is
    }
    const total = response.status === 206
      ? Number(response.headers.get("content-range")?.split("/")[1])
      : Number(response.headers.get("content-length"));
    if (!response.headers.has(SIZE_META)) {
      await response.body?.cancel();
      return { plain: total };
    }
    if (total > STATE_PEEK) {
      await response.body?.cancel();
      response = await this.client.getObject(name);
      if (response.status !== 200) {
        await response.body?.cancel();
        throw new S3Error(response.status, `GetObject ${name}`, "");
      }
    }
    const text = decoder.decode(await new Response(response.body).arrayBuffer());
    const state = parseState(key, text);
    const store = this.#storeOf(key);
    if (store !== null) {
      // A state object of an earlier version, under keys whose states are now kept outside:
      // moved there (stored, then its object deleted), once.
      if (!(await store.insert(JSON.stringify(state)))) {
        const row = await store.get();
        if (row !== null) return { state: parseState(key, row.text) };
      }
      await this.client.deleteObject(name);
    }
    return { state };
  }

  /**
   * The state of an existing object as an appendable object; a plain object is made one first
   * (copied server-side to the base, its whole parts copies of ranges of it, the rest read
   * back as the tail: less than a part). Throws ObjectMissing.
   */
  async #appendable(key: string): Promise<State> {
    const found = await this.#load(key);
    if (found === null) throw new ObjectMissing(key);
    if ("state" in found) return found.state;
    const size = found.plain;
    const state = emptyState();
    // With its state kept outside, the plain object goes once the state is stored.
    const drop = async () => {
      if (this.#storeOf(key) !== null) await this.client.deleteObject(this.#name(key));
    };
    if (size === 0) {
      await this.save(key, state, null);
      await drop();
      return state;
    }
    if (size > MAX_COPY) throw new RangeError(`Cannot append to "${key}": larger than 5 GiB`);
    const base = this.#assembled(key, 0);
    if (!(await this.client.copyObject(this.#name(key), base, size))) throw new ObjectMissing(key);
    const whole = Math.floor(size / this.#chunk);
    const rest = size - whole * this.#chunk;
    state.size = size;
    if (rest > 0) {
      state.serial = 1;
      state.tail = "tail.1";
      state.tailSize = rest;
      await this.putTail(key, state.tail, await this.#readRange(base, size - rest, rest));
    }
    await this.#reopen(key, state, { gen: 0, size }, new Array(whole).fill(this.#chunk));
    await drop();
    return state;
  }

  /**
   * Cuts an appendable object to `size` bytes, durably (the new state stored). Bytes in parts
   * cannot be read back while the upload is open, so: a cut inside the tail keeps the tail
   * object (its first bytes count); a cut back to the state before the last writer (`prev`:
   * what the uploads layer does, to the last acknowledged size) takes its parts and its tail
   * object, which are still there; any other cut keeps the parts wholly before `size` and
   * makes a new tail object of the bytes after them, read from the base (made first by
   * `#materialize` when it does not reach `size`). Cut to no part, the multipart upload is
   * aborted (after the state no longer names it).
   */
  async #cut(key: string, state: State, size: number): Promise<void> {
    let keep = 0;
    let end = 0;
    while (keep < state.parts.length && end + state.parts[keep].size <= size) {
      end += state.parts[keep++].size;
    }
    const prev = state.prev;
    const prevEnd = prev === null ? 0 : partsEnd({ parts: state.parts.slice(0, prev.parts) });
    let tail: string | null;
    let tailSize: number | null = null;
    let bytes = EMPTY;
    if (keep === state.parts.length) {
      tail = size > end ? state.tail : null;
      if (tail !== null) tailSize = state.tailSize;
    } else if (size === end) {
      tail = null; // on a part boundary: the parts before it, no tail
    } else if (
      prev !== null && prev.parts <= state.parts.length && prevEnd <= size && size <= prev.size
    ) {
      keep = prev.parts;
      end = prevEnd;
      tail = size > end ? prev.tail : null;
      if (tail !== null) tailSize = prev.tailSize ?? null;
    } else {
      if ((state.base?.size ?? 0) < size) await this.#materialize(key, state);
      bytes = await this.#readRange(this.#assembled(key, state.base!.gen), end, size - end);
      tail = null;
    }
    const old = cloneState(state);
    if (bytes.length > 0) {
      state.serial += 1;
      tail = `tail.${state.serial}`;
      tailSize = bytes.length;
      await this.putTail(key, tail, bytes);
    }
    const upload = state.upload;
    state.size = size;
    state.parts = state.parts.slice(0, keep);
    state.tail = tail;
    state.tailSize = tailSize;
    state.prev = null;
    if (state.base !== null && state.base.size > size) {
      state.base = size === 0 ? null : { gen: state.base.gen, size };
    }
    const abort = keep === 0 && upload !== null;
    if (abort) {
      state.upload = null;
      state.gen += 1; // the aborted upload's object name is never used again
    }
    await this.save(key, state, old);
    if (abort) await this.client.abortMultipart(this.#assembled(key, old.gen), upload);
  }

  /**
   * Completes an appendable object's multipart upload, its tail copied in as the last part
   * (UploadPartCopy of the tail object's range, inside the server), into the upload's object;
   * the name of that object. When the upload is gone: if this call completed it (a lost reply,
   * retried) the object's ETag is that of these parts and it is used; else (completed by an
   * earlier read or commit that did not store its outcome) it is revived and completed again.
   */
  async #complete(key: string, state: State): Promise<string> {
    const tail = state.size - partsEnd(state);
    for (let revived = false;; revived = true) {
      const name = this.#assembled(key, state.gen);
      const parts: CompletedPart[] = state.parts.map((p, i) => ({ number: i + 1, etag: p.etag }));
      try {
        if (tail > 0) {
          const number = parts.length + 1;
          const etag = await this.client.uploadPartCopy(
            name,
            state.upload!,
            number,
            this.#child(key, state.tail!),
            { range: { start: 0, end: tail - 1 } },
          );
          parts.push({ number, etag });
        }
        await this.client.completeMultipart(name, state.upload!, parts, state.size);
        // The object is these parts, named by their ETags, each of the size the state has:
        // sent whole by UploadPart, or copied (a range past an object's end is refused).
        return name;
      } catch (error) {
        if (!gone(error) || revived) throw error;
        const whole = parts.length === state.parts.length + (tail > 0 ? 1 : 0);
        const head = whole ? await this.client.headObject(name) : null;
        if (head === null || unquote(head.get("etag")) !== multipartEtag(parts)) {
          await this.revive(key, state);
          continue;
        }
      }
      const head = await this.client.headObject(name);
      const size = Number(head?.get("content-length"));
      if (size !== state.size) {
        throw new Error(`Assembled "${key}" has ${size} bytes, not ${state.size}`);
      }
      return name;
    }
  }

  /**
   * Copies an object of `size` bytes server-side, replacing the target atomically: one
   * CopyObject up to 5 GiB, else a multipart upload of UploadPartCopy ranges.
   */
  async #copy(source: string, target: string, size: number): Promise<void> {
    if (size <= this.#copyLimit) {
      if (!(await this.client.copyObject(source, target, size))) throw new ObjectMissing(source);
      return;
    }
    const part = Math.max(this.#chunk, Math.ceil(size / MAX_PARTS));
    const upload = await this.client.createMultipart(target);
    try {
      const parts: CompletedPart[] = [];
      for (let start = 0; start < size; start += part) {
        const end = Math.min(size, start + part) - 1;
        const number = parts.length + 1;
        const etag = await this.client.uploadPartCopy(target, upload, number, source, {
          range: { start, end },
        });
        parts.push({ number, etag });
      }
      await this.client.completeMultipart(target, upload, parts, size);
    } catch (error) {
      await this.client.abortMultipart(target, upload).catch(() => {});
      throw error;
    }
  }

  /**
   * Deletes every object and aborts every multipart upload under a data prefix.
   *
   * Always before the state that names them: nothing lists a data prefix (`.multipart/` is
   * hidden), so bytes whose state went first and whose purge then failed (an error, a SIGKILL)
   * would stay in the bucket for good. A state whose bytes went first is still listed: a
   * reader finds it lost (`UploadDataLost`), and its next delete finishes the job.
   */
  async #purge(prefix: string): Promise<void> {
    await this.#removeData(await this.#listData(prefix));
  }

  /** The multipart uploads and the objects under a data prefix (the two listings at once). */
  async #listData(prefix: string): Promise<DataListing> {
    const [uploads, listed] = await Promise.all([
      this.client.listMultipart(prefix),
      this.client.listAll(prefix),
    ]);
    return { uploads, objects: listed.map((o) => o.key) };
  }

  /** Aborts the uploads and deletes the objects of a listing, at once. */
  async #removeData({ uploads, objects }: DataListing): Promise<void> {
    await Promise.all([
      ...uploads.map(({ name, id }) => this.client.abortMultipart(name, id)),
      objects.length > 0 ? this.client.deleteObjects(objects) : null,
    ]);
  }

  /**
   * Bytes [start, start + length) of an object (less than a part: a tail), read whole into the
   * first `length` bytes of `into` (by default a buffer of their own) as the reply's chunks
   * come: no copy of the whole reply besides.
   */
  async #readRange(
    name: string,
    start: number,
    length: number,
    into = new Uint8Array(length),
  ): Promise<Uint8Array> {
    let fill = 0;
    await this.#copyRange(name, start, length, (chunk) => {
      into.set(chunk, fill);
      fill += chunk.length;
    });
    return into.subarray(0, length);
  }

  /** Bytes [start, start + length) of an object, handed to `sink` in order as they come. */
  async #copyRange(
    name: string,
    start: number,
    length: number,
    sink: (chunk: Uint8Array) => void | Promise<void>,
  ): Promise<void> {
    const response = await this.client.getObject(name, { start, end: start + length - 1 }, {
      direct: true,
    });
    if (response.status !== 206 && response.status !== 200) {
      await response.body?.cancel();
      throw new S3Error(response.status, `GetObject ${name}`, "");
    }
    for await (const chunk of rangeBytes(response, start, length, `GetObject ${name}`)) {
      await sink(chunk);
    }
  }

  /**
   * The pieces of an appendable object: the base for the bytes in parts (as far as it goes:
   * `read` makes it reach them first), then the tail object's first bytes.
   */
  #pieces(key: string, state: State): Piece[] {
    const pieces: Piece[] = [];
    const end = partsEnd(state);
    if (end > 0 && state.base !== null) {
      const name = this.#assembled(key, state.base.gen);
      pieces.push({ name, start: 0, end: Math.min(end, state.base.size) });
    }
    if (state.size > end) {
      pieces.push({ name: this.#child(key, state.tail!), start: end, end: state.size });
    }
    return pieces;
  }

  /** A stream of bytes [start, end) of an appendable object, one ranged GetObject a piece. */
  #streamPieces(pieces: Piece[], start: number, end: number): ReadableStream<Uint8Array> {
    const client = this.client;
    const wanted = pieces.filter((p) => p.end > start && p.start < end);
    let current: ReadableStreamDefaultReader<Uint8Array> | null = null;
    let index = 0;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        for (;;) {
          if (current === null) {
            const piece = wanted[index++];
            if (piece === undefined) return controller.close();
            const from = Math.max(start, piece.start) - piece.start;
            const to = Math.min(end, piece.end) - piece.start - 1;
            const response = await client.getObject(piece.name, { start: from, end: to }, {
              direct: true,
            });
            if (response.status !== 206 && response.status !== 200) {
              await response.body?.cancel();
              throw new S3Error(response.status, `GetObject ${piece.name}`, "");
            }
            current = rangeBytes(response, from, to - from + 1, `GetObject ${piece.name}`)
              .getReader();
          }
          const { done, value } = await current.read();
          if (done) {
            current = null;
            continue;
          }
          return controller.enqueue(value);
        }
      },
      async cancel(reason) {
        await current?.cancel(reason);
      },
    });
  }
}

/**
 * Bytes [from, from + length) of an object from the reply to a ranged GetObject: a 206
 * carries them; a server that ignored the range (200) sends the object from its first byte, so
 * the bytes before `from` are dropped and those past the range are not read. A body that ends
 * short of the range fails the stream (`what` names the request).
 */
export function rangeBytes(
  response: Response,
  from: number,
  length: number,
  what: string,
): ReadableStream<Uint8Array> {
  const reader = (response.body ?? emptyStream()).getReader();
  const whole = response.status === 200;
  let skip = whole ? from : 0;
  let left = length;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (left > 0) {
        const { done, value } = await reader.read();
        if (done) throw new Error(`${what}: the body ended ${left} bytes short of its range`);
        const dropped = Math.min(skip, value.length);
        skip -= dropped;
        const bytes = value.subarray(dropped, dropped + left);
        left -= bytes.length;
        if (bytes.length > 0) return controller.enqueue(bytes);
      }
      if (whole) {
        await reader.cancel().catch(() => {}); // the rest of the object, not read
      } else {
        // A 206 body ends here: read its end, so that the connection can serve again.
        const { done } = await reader.read();
        if (!done) throw new Error(`${what}: the body runs past its range`);
      }
      controller.close();
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/** True for S3's "the multipart upload is gone" (completed, aborted). */
function gone(error: unknown): boolean {
  return error instanceof S3Error && error.status === 404 && error.code === "NoSuchUpload";
}

/** An ETag without its quotes; "" when absent. */
const unquote = (etag: string | null) => (etag ?? "").replace(/"/g, "");

/**
 * The ETag S3 gives the object of a completed multipart upload: the MD5 of its parts' MD5s
 * (their ETags), a dash and the number of parts.
 */
function multipartEtag(parts: readonly CompletedPart[]): string {
  const hash = createHash("md5");
  for (const part of parts) {
    const hex = unquote(part.etag);
    hash.update(Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16)));
  }
  return `${hash.digest("hex")}-${parts.length}`;
}

/** Where a writer opens with its pending bytes (the tail read back): a buffer, or a spill file. */
type Pending =
  & ({ buffer: Uint8Array; fill: number } | { spill: SpillFile })
  & { md5: Md5 };

/**
 * A writer of an appendable object. Its pending bytes are the tail: the bytes after the last
 * part (read back when opened: less than a part) and those written since, copied in once,
 * into a buffer that grows as they come (a part at most; a small PATCH holds a small one)
 * while the driver's memory budget allows, else into a spill file of the writer's own (the
 * buffer written out to it and given back). A full part is sent at once by UploadPart (the
 * first one after a CreateMultipartUpload), from the buffer or the file, and the writer goes
 * on with an empty buffer: one request in flight per writer, whose bytes stay until it
 * succeeded (the client retries it, reading a file again). `sync` stores the pending bytes as
 * a new tail object, then the state. Calls run one after the other (a `sync` may be called
 * while a `write` is under way); after a failure every later call fails with it, and the
 * stored state stays that of the last `sync`.
 */
class MultipartWriter implements AppendWriter {
  /** The buffer of pending bytes (EMPTY while they are in a spill file), counted in the budget. */
  #buffer: Uint8Array;
  #fill: number;
  /** The file of the pending bytes past the budget; null while they are in the buffer. */
  #spill: SpillFile | null;
  /**
   * Bytes bound for the spill file, gathered so that it and the MD5 get them in blocks of up
   * to `STAGE` rather than in the client's frames (each write and each hash a call of its
   * own: for 32 KiB frames those calls cost more than the bytes); EMPTY until it spills.
   */
  #stage: Uint8Array = EMPTY;
  #staged = 0;
  /** The state as stored (the writer's `state` runs ahead of it). */
  #stored: State;
  /** The stored state when the writer opened: every state it stores names it as `prev`. */
  readonly #opened: Checkpoint;
  /**
   * The MD5 of the pending bytes, kept as they come (off the JS thread, beside the writes), so
   * that a part or tail goes out without its bytes being read once more to hash them.
   */
  #md5: Md5;
  /**
   * How many of the buffer's first bytes the MD5 has: it is given them a MiB at a time (each
   * call a hop to a pool thread, which cost more than the hashing for every 32 KiB frame),
   * the rest before the MD5 is read or the buffer changes hands. Bytes bound for a spill
   * file are hashed with their block (see `#stage`).
   */
  #hashed: number;
  /**
   * The multipart upload asked for ahead of the first part, once the pending bytes will make
   * one (see `write`); null when not asked yet.
   */
  #starting: Promise<string> | null = null;
  /** The generation `#starting` was asked for. */
  #startingGen = 0;
  /** Whether bytes were written since the last sync. */
  #dirty = false;
  #queue: Promise<void> = Promise.resolve();
  #failure: unknown = null;
  #closed = false;

  /** A writer holding `pending` (a buffer already counted in the driver's budget). */
  constructor(
    readonly driver: S3Driver,
    readonly key: string,
    private readonly state: State,
    pending: Pending,
  ) {
    this.#buffer = "buffer" in pending ? pending.buffer : EMPTY;
    this.#fill = "buffer" in pending ? pending.fill : 0;
    this.#hashed = this.#fill; // a tail read back is hashed as it opens
    this.#spill = "spill" in pending ? pending.spill : null;
    this.#md5 = pending.md5;
    this.#stored = cloneState(state);
    this.#opened = {
      size: state.size,
      parts: state.parts.length,
      tail: state.tail,
      tailSize: state.tailSize,
    };
  }

  /**
   * Whether a sync may store the bytes whole at another key: the writer opened on no byte
   * and sent no part.
   */
  get #wholeable(): boolean {
    return this.#opened.size === 0 && this.state.upload === null;
  }

  /** The bytes after the last part. */
  get #pending(): number {
    return this.#spill === null ? this.#fill : this.#spill.size + this.#staged;
  }

  /** Appends `bytes`, which must not change until the promise settles (they are not copied before). */
  write(bytes: Uint8Array): Promise<void> {
    return this.#run(async () => {
      const chunk = this.driver.chunkSize;
      for (let at = 0; at < bytes.length;) {
        if (this.#closed) throw new Error(`Writer of "${this.key}" is closed`);
        // Up to a whole part: none when a tail stored under a larger chunksize (another
        // replica's, or before a change) fills it as it opens; it goes out whole as the
        // next part (hence `>=`).
        const n = await this.#keep(bytes.subarray(at, at + Math.max(0, chunk - this.#pending)));
        at += n;
        this.state.size += n;
        if (n > 0) this.#dirty = true;
        if (this.#closed) throw new Error(`Writer of "${this.key}" is closed`); // while kept
        this.#startEarly();
        if (this.#pending >= chunk) await this.#sendPart();
      }
    });
  }

  sync(options?: SyncOptions): Promise<void> {
    return this.#run(async () => {
      if (!this.#dirty) return;
      const state = this.state;
      // Every byte pending and their key told: stored whole there (see the head of this file),
      // so that the commit to that key copies nothing.
      const whole = options?.whole !== undefined && this.#wholeable &&
          this.#pending === state.size
        ? options.whole
        : null;
      // Enough for a part (S3's least, though less than `chunksize`): sent as one rather than
      // as a tail. A commit of an upload in parts copies the completed object, which a store
      // like RGW does by sharing its parts, where a tail object's copy copies its bytes (on
      // RGW an 8 MiB tail's copy took 220 to 430 ms with eight uploads at once, a completed
      // upload's 20 to 35 ms). And the next PATCH then reads nothing back.
      if (whole === null && this.#pending >= MIN_CHUNK && this.driver.partsAtSync) {
        await this.#sendPart();
      }
      if (this.#pending > 0) {
        const size = this.#pending;
        const body = await this.#pendingBody();
        const md5 = this.#md5.digest();
        if (whole !== null) {
          state.tail = `${WHOLE}${await this.driver.putWhole(whole, body, md5)}`;
        } else {
          state.serial += 1;
          state.tail = `tail.${state.serial}`;
          await this.driver.putTail(this.key, state.tail, body, md5);
        }
        state.tailSize = size;
      } else {
        state.tail = null;
        state.tailSize = null;
      }
      state.prev = this.#opened;
      await this.driver.save(this.key, state, this.#stored);
      this.#stored = cloneState(state);
      this.#dirty = false;
    });
  }

  close(): void {
    this.#closed = true;
    const buffer = this.#buffer;
    const spill = this.#spill;
    this.#buffer = EMPTY;
    this.#fill = 0;
    this.#spill = null;
    // Given back once no call still sends from them (a part's request, the tail's); a file
    // that a call under way opened after this point is closed then too.
    void this.#queue.then(() => {
      this.driver.budget.give(buffer.length);
      this.driver.budget.keep(buffer);
      this.#dropStage();
      spill?.close();
      this.#spill?.close();
      this.#spill = null;
      // A multipart upload asked for ahead of a part never sent (the PATCH broke first): no
      // state names it, and a purge that listed the data prefix before it was made would
      // never see it, so it goes here, once made.
      const unused = this.#starting;
      this.#starting = null;
      const gen = this.#startingGen;
      void unused?.then((id) => this.driver.abandonUpload(this.key, gen, id), () => {});
    });
  }

  /** Keeps `bytes` as pending bytes, in the buffer or else the spill file; their count. */
  async #keep(bytes: Uint8Array): Promise<number> {
    if (bytes.length === 0) return 0;
    if (this.#spill === null && !this.#reserve(bytes.length) && !(await this.#spillOut())) {
      this.#reserve(bytes.length, true); // no file to spill to: memory past the budget
    }
    const spill = this.#spill;
    if (spill !== null) {
      if (this.#stage.length === 0) {
        // A small block, at most one per writer.
        this.#stage = this.driver.budget.claim(STAGE, STAGE, true)!;
      }
      if (this.#staged + bytes.length > STAGE) await this.#flushStage(spill);
      if (bytes.length >= STAGE) {
        await both(spill.append(bytes), this.#md5.update(bytes));
      } else {
        this.#stage.set(bytes, this.#staged);
        this.#staged += bytes.length;
      }
    } else {
      this.#buffer.set(bytes, this.#fill);
      this.#fill += bytes.length;
      if (this.#fill - this.#hashed >= HASH_BATCH) await this.#hashBuffer();
    }
    return bytes.length;
  }

  /** Writes the staged bytes to the spill file and adds them to the MD5. */
  async #flushStage(spill = this.#spill): Promise<void> {
    if (this.#staged === 0 || spill === null) return;
    const block = this.#stage.subarray(0, this.#staged);
    await both(spill.append(block), this.#md5.update(block));
    this.#staged = 0;
  }

  /** Gives the stage back (no byte staged: flushed, or dropped with the writer). */
  #dropStage(): void {
    if (this.#stage.length === 0) return;
    this.driver.budget.give(this.#stage.length);
    this.driver.budget.keep(this.#stage);
    this.#stage = EMPTY;
    this.#staged = 0;
  }

  /** Adds the buffer's bytes not hashed yet to the MD5. */
  async #hashBuffer(): Promise<void> {
    if (this.#fill === this.#hashed) return;
    await this.#md5.update(this.#buffer.subarray(this.#hashed, this.#fill));
    this.#hashed = this.#fill;
  }

  /**
   * Makes room in the buffer for `wanted` more bytes (at most a part in all), if the driver's
   * budget allows: below a MiB it grows as needed, beyond it at least doubles, up to a whole
   * part (then reused): an upload smaller than a part holds at most about twice its bytes, for
   * a few MiB of copies per writer. False when the budget refused the growth (never when
   * `force`d).
   */
  #reserve(wanted: number, force = false): boolean {
    const chunk = this.driver.chunkSize;
    const need = Math.min(chunk, this.#fill + wanted);
    if (this.#buffer.length >= need) return true;
    const budget = this.driver.budget;
    const had = this.#buffer.length;
    const grow = bufferSize(need <= SMALL_BUFFER ? 2 * need : Math.max(need, 2 * had), chunk);
    // Past a MiB, a larger buffer another writer gave back rather than a new one, if the
    // budget has room (below, a small upload would hold a part's buffer against the budget).
    const larger = need <= SMALL_BUFFER ? null : budget.keptSize(grow, chunk);
    const grown = (larger === null ? null : budget.claim(larger, larger - had)) ??
      budget.claim(grow, grow - had, force || grow <= Math.min(FREE_BUFFER, budget.limit));
    if (grown === null) return false;
    grown.set(this.#buffer.subarray(0, this.#fill));
    // Calls run one at a time, and `#keep` waits for its hashing: none reads it any more.
    budget.keep(this.#buffer);
    this.#buffer = grown;
    return true;
  }

  /**
   * Moves the pending bytes from the buffer to a new spill file, and gives the buffer back;
   * false when no file could be made or written (the bytes stay in the buffer). A writer
   * closed meanwhile keeps neither (its buffer went back at the close).
   */
  async #spillOut(): Promise<boolean> {
    await this.#hashBuffer(); // the bytes after it are hashed as they come
    let spill = await this.driver.spillFile();
    if (spill !== null && !this.#closed) {
      try {
        await spill.append(this.#buffer.subarray(0, this.#fill));
      } catch (error) {
        spill.close();
        spill = null;
        this.driver.spillFailed(error);
      }
    }
    if (this.#closed) {
      spill?.close();
      throw new Error(`Writer of "${this.key}" is closed`);
    }
    if (spill === null) return false;
    this.#spill = spill;
    this.driver.budget.give(this.#buffer.length);
    this.driver.budget.keep(this.#buffer);
    this.#buffer = EMPTY;
    this.#fill = 0;
    this.#hashed = 0;
    return true;
  }

  /**
   * Sends the pending bytes (a full part, or at a sync at least S3's least part) as the next
   * part (UploadPart); none are left.
   */
  async #sendPart(): Promise<void> {
    const body = await this.#pendingBody();
    const spill = this.#spill;
    const size = this.#pending;
    const md5 = this.#md5.digest();
    const number = this.state.parts.length + 1;
    this.state.upload ??= await (this.#starting ?? this.driver.startUpload(this.key, this.state));
    this.#starting = null;
    let etag: string;
    try {
      etag = await this.driver.uploadPart(this.key, this.state, number, body, md5);
    } catch (error) {
      // Gone since the state was stored (completed by a read or commit that did not store its
      // outcome): made again from its object, as long as this writer added no part to it.
      if (!gone(error)) throw error;
      const same = this.state.upload === this.#stored.upload &&
        this.state.parts.length === this.#stored.parts.length;
      if (!same) throw new UploadDataLost(this.key, "its multipart upload vanished while written");
      await this.driver.revive(this.key, this.#stored);
      const { gen, upload, parts, base } = this.#stored;
      Object.assign(this.state, { gen, upload, parts: [...parts], base });
      etag = await this.driver.uploadPart(this.key, this.state, number, body, md5);
    }
    this.state.parts.push({ size, etag });
    this.#md5 = createMd5(); // the next part's
    if (spill !== null) {
      // Back to memory for the next part, as far as the budget then allows.
      spill.close();
      if (this.#spill === spill) this.#spill = null;
      this.#dropStage();
    } else {
      this.#fill = 0;
      this.#hashed = 0;
    }
  }

  /** The pending bytes, staged and hashed, as the body of a request; throws when closed. */
  async #pendingBody(): Promise<Body> {
    await this.#flushStage();
    await this.#hashBuffer();
    // A close while those ran took the pending bytes away.
    if (this.#closed) throw new Error(`Writer of "${this.key}" is closed`);
    return this.#spill?.body() ?? this.#buffer.subarray(0, this.#fill);
  }

  /**
   * Asks for the multipart upload as soon as the pending bytes are sure to go as a part (at the
   * chunk size, or at the sync from 5 MiB up), while the rest of them come: under load its
   * CreateMultipartUpload took 65 to 165 ms, which the part then waited for. An upload asked
   * for and then not used (the writer failed first) is aborted at the writer's close.
   */
  #startEarly(): void {
    if (this.state.upload !== null || this.#starting !== null || this.#wholeable) return;
    const sure = this.driver.partsAtSync ? MIN_CHUNK : this.driver.chunkSize;
    if (this.#pending < sure) return;
    this.#startingGen = this.state.gen;
    this.#starting = this.driver.startUpload(this.key, this.state);
    this.#starting.catch(() => {}); // awaited by the part, which reports it
  }

  #run(step: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(async () => {
      if (this.#closed) throw new Error(`Writer of "${this.key}" is closed`);
      if (this.#failure !== null) throw this.#failure;
      try {
        await step();
      } catch (error) {
        this.#failure = error;
        throw error;
      }
    });
    this.#queue = run.catch(() => {});
    return run;
  }
}

/**
 * Waits for both, then throws the first failure: a buffer handed to both is not reused while
 * either still reads it (an MD5 on a pool thread outlives a failed write otherwise).
 */
async function both(a: Promise<unknown>, b: Promise<unknown>): Promise<void> {
  for (const outcome of await Promise.allSettled([a, b])) {
    if (outcome.status === "rejected") throw outcome.reason;
  }
}

/** The logical size of an object from its headers. */
function sizeOf(headers: Headers): number {
  return Number(headers.get(SIZE_META) ?? headers.get("content-length") ?? 0);
}

/** Last-Modified as epoch milliseconds. */
function modifiedOf(headers: Headers): number {
  const value = headers.get("last-modified");
  return value ? Date.parse(value) : 0;
}

function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream({ start: (controller) => controller.close() });
}
