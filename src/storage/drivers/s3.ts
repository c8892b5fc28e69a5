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
 * The object at the key is the state, JSON: the size, the multipart upload's id and its
 * completed parts (size, ETag), the size also in `x-amz-meta-appended-size` (so `stat` stays
 * a HeadObject). The bytes are objects under `<rootdirectory>/.multipart/<key>/`, a prefix no
 * listing shows: `00001`, `00002`, … hold the parts (`chunksize` bytes each, at least 5 MiB),
 * each copied into the multipart upload (object `assembled`) by UploadPartCopy, inside the
 * server; the object of the next part number is the tail, the bytes after the last part
 * (fewer than a part), of which the state counts the first `size - parts` bytes. The part
 * objects stay until the commit, so the object can be read, cut and resumed anywhere; the
 * bucket holds the bytes twice meanwhile.
 *
 * - `create`: HeadObject + PutObject of the state (`If-None-Match: *`).
 * - `append(key, offset)`: GetObject of the state; below its size, the cut (see `truncate`);
 *   then a ranged GetObject of the tail's counted bytes (less than a part: the only bytes
 *   ever read back, so that the writer can rewrite the tail).
 * - The writer's `write` holds bytes in memory until a part is full, then PutObject of the
 *   part's object (the part's bytes are sent once) and UploadPartCopy of it (inside the
 *   server; up to two run while the next part is sent), the first part after a
 *   CreateMultipartUpload.
 * - `sync` waits for those copies, then PutObject of the tail object (the tail and the new
 *   bytes: a PATCH smaller than a part rewrites the tail) and PutObject of the state: every
 *   acknowledged byte is durable in the bucket, and any replica resumes from the state. The
 *   tail object always begins with the bytes the stored state counts (a cut is stored
 *   before anything is written again), so a crash between the two leaves the old state true.
 * - `truncate`: GetObject + PutObject of the state, no byte moved: the parts wholly before
 *   the size stay, the object of the part the size falls in becomes the tail. Cut before the
 *   first part, the multipart upload is aborted (AbortMultipartUpload).
 * - `read`/`readAll`: GetObject of the state, then ranged GetObjects of the part objects and
 *   the tail (a read, e.g. a re-hash after a crash, costs the bytes read, as for any object).
 * - `move` (the commit of an upload): GetObject of the state. With no part (less than a part
 *   in all): HeadObject + CopyObject of the tail object to the target (GetObject + PutObject
 *   of its counted bytes, less than a part, when a cut left it longer). With parts:
 *   DeleteObject of a stale `assembled`, UploadPartCopy of the tail's range as the last part,
 *   CompleteMultipartUpload into `assembled` (when the upload is gone: `assembled` is used
 *   when a completion whose reply was lost made it, else a new upload is made from the part
 *   objects by UploadPartCopy),
 *   HeadObject to check its size, CopyObject to the target (above 5 GiB UploadPartCopy
 *   ranges). In both cases then DeleteObject of the state, ListMultipartUploads +
 *   AbortMultipartUpload of any left over, ListObjectsV2 + DeleteObjects of the part
 *   objects. No byte of the blob passes through this process at the commit; the store
 *   copies it once then (the CopyObject: S3 has no rename, and the digest, hence the
 *   target, is known only at the commit). Over a whole upload the store writes each byte
 *   three times (part object, its copy into the upload, the commit's copy) and this process
 *   sends it once (plus the tail rewrites of PATCHes smaller than a part). On this machine's
 *   RGW (2 shared cores, loaded) a 64 MiB commit took 0.4 to 1.1 s (median 0.6 s), 256 MiB
 *   about 2 s, against 3.4 to 12 s (median 5.5 s) for 64 MiB when the bytes were streamed
 *   through the driver (`deno run -A tests/storage/s3_commit_bench.ts 64`); appending the
 *   64 MiB costs about the same as before (4 to 8 s here, the machine's noise dominating).
 * - `delete`: HeadObject + DeleteObject, and for an appendable object ListMultipartUploads +
 *   AbortMultipartUpload + ListObjectsV2 + DeleteObjects of its bytes; `deleteAll` two
 *   listings + DeleteObjects, then the same for the bytes of every appendable object under
 *   the prefix. Nothing is left orphaned.
 *
 * Upload data written by the earlier layout of this driver (segments under `.segments/`,
 * an empty object at the key) is not read: such an upload fails and must be started again.
 */

import {
  AlreadyExists,
  type AppendWriter,
  byteOrder,
  checkKey,
  type ListOptions,
  type ObjectInfo,
  ObjectMissing,
  type ObjectReader,
  page,
  type PutOptions,
  type Span,
  type StorageDriver,
} from "../driver.ts";
import { type CompletedPart, type ListPage, S3Client, S3Error } from "./s3_client.ts";

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
/** The name, under an appendable object's data prefix, of its multipart upload's object. */
const ASSEMBLED = "assembled";
/** The bytes of an object `#load` reads first: the whole of most states. */
const STATE_PEEK = 64 * 1024;
const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A completed part of an appendable object's multipart upload (numbered from 1 in order). */
interface Part {
  readonly size: number;
  readonly etag: string;
}

/** What the object at an appendable key holds (its body, as JSON). */
interface State {
  /** The logical size: the parts' bytes then the tail's. */
  size: number;
  /** The multipart upload holding the parts; null before the first part. */
  upload: string | null;
  parts: Part[];
}

/** One stored piece of an object: its bytes [start, end) are the object `name` from 0. */
interface Piece {
  readonly name: string;
  readonly start: number;
  readonly end: number;
}

/** The endpoint URL of the options. */
function endpointOf(options: S3DriverOptions): string {
  const endpoint = options.regionendpoint ??
    (options.region === "us-east-1" ? "s3.amazonaws.com" : `s3.${options.region}.amazonaws.com`);
  if (/^https?:\/\//.test(endpoint)) return endpoint;
  return `${options.secure === false ? "http" : "https"}://${endpoint}`;
}

/** The bytes covered by an appendable object's parts. */
const partsEnd = (state: State) => state.parts.reduce((sum, p) => sum + p.size, 0);

/** A driver over one bucket of an S3 server. */
export class S3Driver implements StorageDriver {
  readonly name = "s3";
  readonly client: S3Client;
  readonly #root: string;
  readonly #chunk: number;
  readonly #listPage: number | undefined;
  readonly #copyLimit: number;

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

  /** The object holding part `number` (from 1) of an appendable key; the tail is the next. */
  #partName(key: string, number: number): string {
    return `${this.#dataOf(key)}${String(number).padStart(5, "0")}`;
  }

  /** The object name of an appendable key's multipart upload. */
  #assembled(key: string): string {
    return `${this.#dataOf(key)}${ASSEMBLED}`;
  }

  /** @inheritdoc */
  async get(key: string): Promise<Uint8Array<ArrayBuffer> | null> {
    const reader = await this.read(key);
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
  }

  /** @inheritdoc */
  async stat(key: string): Promise<ObjectInfo | null> {
    const headers = await this.client.headObject(this.#name(key));
    if (headers === null) return null;
    return { size: sizeOf(headers), modifiedAt: modifiedOf(headers) };
  }

  /** @inheritdoc */
  async read(key: string, span?: Span): Promise<ObjectReader | null> {
    const name = this.#name(key);
    const ranged = span !== undefined && span.length > 0;
    const response = await this.client.getObject(
      name,
      ranged ? { start: span.start, end: span.start + span.length - 1 } : undefined,
    );
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
    }
    const headers = response.headers;
    if (headers.has(SIZE_META) || response.status === 416 || (span && !ranged)) {
      await response.body?.cancel();
      const found = await this.#load(key);
      if (found === null) return null;
      if ("plain" in found) return { size: found.plain, stream: emptyStream() };
      const { state } = found;
      const start = Math.min(span?.start ?? 0, state.size);
      const end = span ? Math.min(state.size, start + span.length) : state.size;
      return { size: state.size, stream: this.#streamPieces(this.#pieces(key, state), start, end) };
    }
    const size = response.status === 206
      ? Number(headers.get("content-range")?.split("/")[1])
      : Number(headers.get("content-length"));
    return { size, stream: response.body ?? emptyStream() };
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
    const headers = await this.client.headObject(name);
    if (headers === null) return false;
    await this.client.deleteObject(name);
    if (headers.has(SIZE_META)) await this.#purge(this.#dataOf(key));
    return true;
  }

  /** @inheritdoc */
  async deleteAll(prefix: string): Promise<boolean> {
    const name = this.#name(prefix);
    const objects = (await this.client.listAll(`${name}/`)).map((o) => o.key);
    if ((await this.client.headObject(name)) !== null) objects.push(name);
    // The objects first (a reader then finds nothing), then the bytes of appendable ones.
    await this.client.deleteObjects(objects);
    await this.#purge(this.#dataOf(prefix));
    return objects.length > 0;
  }

  /** @inheritdoc */
  async create(key: string): Promise<void> {
    const name = this.#name(key);
    if ((await this.client.headObject(name)) !== null) throw new AlreadyExists(key);
    const response = await this.#putState(name, { size: 0, upload: null, parts: [] }, {
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
    if (offset < state.size) await this.#cut(key, state, offset);
    const length = state.size - partsEnd(state);
    const tail = length === 0 ? EMPTY : await this.#readWhole(
      this.#partName(key, state.parts.length + 1),
      length,
    );
    return new MultipartWriter(this, key, state, tail);
  }

  /** @inheritdoc */
  async truncate(key: string, size: number): Promise<void> {
    const state = await this.#appendable(key);
    if (size > state.size) {
      throw new RangeError(`Cannot truncate "${key}" to ${size}: it has ${state.size} bytes`);
    }
    if (size < state.size) await this.#cut(key, state, size);
  }

  /** @inheritdoc */
  async move(from: string, to: string): Promise<void> {
    const source = this.#name(from);
    const target = this.#name(to);
    const found = await this.#load(from);
    if (found === null) throw new ObjectMissing(from);
    if ("plain" in found) {
      await this.#copy(source, target, found.plain);
      await this.client.deleteObject(source);
      return;
    }
    const { state } = found;
    const tail = {
      name: this.#partName(from, state.parts.length + 1),
      size: state.size - partsEnd(state),
    };
    if (state.parts.length === 0) {
      // Smaller than a part: the tail object is the blob (a copy, or its first bytes).
      const head = tail.size === 0 ? null : await this.client.headObject(tail.name);
      if (head !== null && Number(head.get("content-length")) === tail.size) {
        const copied = await this.client.copyObject(tail.name, target, tail.size);
        if (!copied) throw new ObjectMissing(from);
      } else {
        const bytes = tail.size === 0 ? EMPTY : await this.#readWhole(tail.name, tail.size);
        const response = await this.client.putObject(target, bytes);
        await (await this.client.expect(response, `PutObject ${target}`)).body?.cancel();
      }
    } else {
      const assembled = await this.#complete(from, state);
      await this.#copy(assembled, target, state.size);
    }
    await this.client.deleteObject(source);
    await this.#purge(this.#dataOf(from));
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

  /** The part size of upload data. */
  get chunkSize(): number {
    return this.#chunk;
  }

  /**
   * Stores `bytes` (a chunk) as the object of part `number` of an appendable key, replacing
   * the tail object, whose bytes it begins with (for the writer).
   */
  async putPart(key: string, number: number, bytes: Uint8Array): Promise<void> {
    if (number > MAX_PARTS) {
      throw new RangeError(`"${key}" would need more than ${MAX_PARTS} parts of ${this.#chunk}`);
    }
    const name = this.#partName(key, number);
    const response = await this.client.putObject(name, bytes);
    await (await this.client.expect(response, `PutObject ${name}`)).body?.cancel();
  }

  /** Creates an appendable key's multipart upload; its id (for the writer). */
  startUpload(key: string): Promise<string> {
    return this.client.createMultipart(this.#assembled(key));
  }

  /**
   * Copies the object of part `number` into the multipart upload (UploadPartCopy, inside the
   * server); the part's ETag, or null when the upload is gone (for the writer).
   */
  async copyPart(
    key: string,
    upload: string,
    number: number,
    size: number,
  ): Promise<string | null> {
    try {
      return await this.client.uploadPartCopy(
        this.#assembled(key),
        upload,
        number,
        this.#partName(key, number),
        { size },
      );
    } catch (error) {
      if (gone(error)) return null;
      throw error;
    }
  }

  /**
   * Stores the tail bytes (`tail`, after the parts) when given, then the state: both durable
   * when it resolves. The tail object's first bytes are the old tail's (a cut was stored
   * first), so a crash between the two leaves the old state true.
   */
  async store(key: string, state: State, tail: Uint8Array | null): Promise<void> {
    if (tail !== null && tail.length > 0) {
      const name = this.#partName(key, state.parts.length + 1);
      const response = await this.client.putObject(name, tail);
      await (await this.client.expect(response, `PutObject ${name}`)).body?.cancel();
    }
    const name = this.#name(key);
    await (await this.client.expect(await this.#putState(name, state), `PutObject ${name}`))
      .body?.cancel();
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
    let response = await this.client.getObject(name, { start: 0, end: STATE_PEEK - 1 });
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
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
    let state: State;
    try {
      state = JSON.parse(text);
    } catch {
      throw new Error(`"${key}" is not an appendable object of this driver (${text.length} B)`);
    }
    if (
      typeof state?.size !== "number" || !Array.isArray(state.parts) ||
      (state.upload !== null && typeof state.upload !== "string")
    ) {
      throw new Error(`"${key}" is not an appendable object of this driver`);
    }
    return { state };
  }

  /**
   * The state of an existing object as an appendable object; a plain object is made one first
   * (copied server-side to its first part object, and made part 1 when at least 5 MiB).
   * Throws ObjectMissing.
   */
  async #appendable(key: string): Promise<State> {
    const found = await this.#load(key);
    if (found === null) throw new ObjectMissing(key);
    if ("state" in found) return found.state;
    const size = found.plain;
    const state: State = { size, upload: null, parts: [] };
    if (size > 0) {
      const first = this.#partName(key, 1);
      if (size > MAX_COPY) throw new RangeError(`Cannot append to "${key}": larger than 5 GiB`);
      const copied = await this.client.copyObject(this.#name(key), first, size);
      if (!copied) throw new ObjectMissing(key);
      if (size >= MIN_CHUNK) {
        state.upload = await this.client.createMultipart(this.#assembled(key));
        const etag = await this.client.uploadPartCopy(
          this.#assembled(key),
          state.upload,
          1,
          first,
          {
            size,
          },
        );
        state.parts.push({ size, etag });
      }
    }
    await this.store(key, state, null);
    return state;
  }

  /**
   * Cuts an appendable object to `size` bytes, durably: the parts wholly before `size` stay,
   * the object of the next part (or the tail) keeps the rest as its first bytes. Cut to no
   * part, the multipart upload is aborted (after the state no longer names it).
   */
  async #cut(key: string, state: State, size: number): Promise<void> {
    let end = 0;
    let keep = 0;
    while (keep < state.parts.length && end + state.parts[keep].size <= size) {
      end += state.parts[keep++].size;
    }
    const upload = state.upload;
    state.parts = state.parts.slice(0, keep);
    state.size = size;
    if (keep === 0) state.upload = null;
    await this.store(key, state, null);
    if (keep === 0 && upload !== null) {
      await this.client.abortMultipart(this.#assembled(key), upload);
    }
  }

  /**
   * Replaces the multipart upload of an appendable object by a new one whose parts (of
   * `sizes`, default the state's) are copied from their part objects; updates `state`.
   */
  async reupload(key: string, state: State, sizes = state.parts.map((p) => p.size)): Promise<void> {
    const name = this.#assembled(key);
    const upload = await this.client.createMultipart(name);
    const parts: Part[] = [];
    for (const [i, size] of sizes.entries()) {
      const etag = await this.client.uploadPartCopy(
        name,
        upload,
        i + 1,
        this.#partName(key, i + 1),
        { size },
      );
      parts.push({ size, etag });
    }
    state.upload = upload;
    state.parts = parts;
  }

  /**
   * Completes an appendable object's multipart upload (its tail copied in as the last part,
   * server-side) into its assembled object; the name of that object. When the upload is gone
   * (a completion whose reply was lost, or a crash) the assembled object is used if it is
   * there, else a new upload is made from the part objects.
   */
  async #complete(key: string, state: State): Promise<string> {
    const name = this.#assembled(key);
    const tail = state.size - partsEnd(state);
    const attempt = async () => {
      const parts: CompletedPart[] = state.parts.map((p, i) => ({ number: i + 1, etag: p.etag }));
      if (tail > 0) {
        const number = parts.length + 1;
        const etag = await this.client.uploadPartCopy(
          name,
          state.upload!,
          number,
          this.#partName(key, number),
          { range: { start: 0, end: tail - 1 } },
        );
        parts.push({ number, etag });
      }
      await this.client.completeMultipart(name, state.upload!, parts, state.size);
    };
    // An assembled object left by an earlier attempt must not pass for this one's.
    await this.client.deleteObject(name);
    try {
      if (state.upload === null) await this.reupload(key, state);
      await attempt();
    } catch (error) {
      if (!gone(error)) throw error;
      const head = await this.client.headObject(name);
      if (head === null || Number(head.get("content-length")) !== state.size) {
        await this.reupload(key, state);
        await attempt();
      }
    }
    const head = await this.client.headObject(name);
    const size = Number(head?.get("content-length"));
    if (size !== state.size) {
      throw new Error(`Assembled "${key}" has ${size} bytes, not ${state.size}`);
    }
    return name;
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

  /** Deletes every object and aborts every multipart upload under a data prefix. */
  async #purge(prefix: string): Promise<void> {
    for (const { name, id } of await this.client.listMultipart(prefix)) {
      await this.client.abortMultipart(name, id);
    }
    const objects = (await this.client.listAll(prefix)).map((o) => o.key);
    if (objects.length > 0) await this.client.deleteObjects(objects);
  }

  /** The first `length` bytes of an object (at most a chunk: a tail), read whole. */
  async #readWhole(name: string, length: number): Promise<Uint8Array> {
    const response = await this.client.getObject(name, { start: 0, end: length - 1 });
    if (response.status !== 206 && response.status !== 200) {
      await response.body?.cancel();
      throw new S3Error(response.status, `GetObject ${name}`, "");
    }
    const bytes = new Uint8Array(await response.arrayBuffer()).subarray(0, length);
    if (bytes.length !== length) {
      throw new Error(`GetObject ${name}: ${bytes.length} bytes, ${length} expected`);
    }
    return bytes;
  }

  /** The pieces of an appendable object: its part objects, then its tail's first bytes. */
  #pieces(key: string, state: State): Piece[] {
    const pieces: Piece[] = [];
    let at = 0;
    for (const [i, part] of state.parts.entries()) {
      pieces.push({ name: this.#partName(key, i + 1), start: at, end: at + part.size });
      at += part.size;
    }
    if (state.size > at) {
      pieces.push({
        name: this.#partName(key, state.parts.length + 1),
        start: at,
        end: state.size,
      });
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
            const response = await client.getObject(piece.name, { start: from, end: to });
            if (response.status !== 206 && response.status !== 200) {
              await response.body?.cancel();
              throw new S3Error(response.status, `GetObject ${piece.name}`, "");
            }
            current = (response.body ?? emptyStream()).getReader();
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

/** True for S3's "the multipart upload is gone" (completed, aborted). */
function gone(error: unknown): boolean {
  return error instanceof S3Error && error.status === 404 && error.code === "NoSuchUpload";
}

/** A part stored as an object, its UploadPartCopy under way (null: the upload was gone). */
interface Promoted {
  readonly size: number;
  readonly copy: Promise<string | null>;
}

/** UploadPartCopy requests a writer lets run while it goes on storing the next parts. */
const COPIES_IN_FLIGHT = 2;

/**
 * A writer of an appendable object. It holds the tail (the bytes after the last part, read
 * back when opened: less than a chunk) and what was written after it. Every full chunk is
 * made a part at once: PutObject of its part object, then an UploadPartCopy of it into the
 * multipart upload that runs while the writer goes on (at most two at a time). `sync` waits
 * for the copies, stores the rest as the tail object, then the state. Calls run one after the
 * other (a `sync` may be called while a `write` is under way); after a failure every later
 * call fails with it.
 */
class MultipartWriter implements AppendWriter {
  #held: Uint8Array[];
  #heldBytes: number;
  #promoted: Promoted[] = [];
  /** Whether the tail object lacks some held bytes, or the state lacks some parts. */
  #dirty = false;
  #queue: Promise<void> = Promise.resolve();
  #failure: unknown = null;
  #closed = false;

  constructor(
    readonly driver: S3Driver,
    readonly key: string,
    private readonly state: State,
    tail: Uint8Array,
  ) {
    this.#held = tail.length > 0 ? [tail] : [];
    this.#heldBytes = tail.length;
  }

  write(bytes: Uint8Array): Promise<void> {
    const copy = bytes.slice();
    return this.#run(async () => {
      this.#held.push(copy);
      this.#heldBytes += copy.length;
      this.state.size += copy.length;
      if (copy.length > 0) this.#dirty = true;
      const chunk = this.driver.chunkSize;
      while (this.#heldBytes >= chunk) {
        const all = concat(this.#held, this.#heldBytes);
        await this.#promote(all.subarray(0, chunk));
        const rest = all.slice(chunk);
        this.#held = rest.length > 0 ? [rest] : [];
        this.#heldBytes = rest.length;
      }
    });
  }

  sync(): Promise<void> {
    return this.#run(async () => {
      await this.#settle(0);
      if (!this.#dirty) return;
      await this.driver.store(this.key, this.state, concat(this.#held, this.#heldBytes));
      this.#dirty = false;
    });
  }

  close(): void {
    this.#closed = true;
    this.#held = [];
    this.#heldBytes = 0;
    for (const p of this.#promoted) p.copy.catch(() => {});
  }

  /** Stores a chunk as the next part's object and starts copying it into the upload. */
  async #promote(bytes: Uint8Array): Promise<void> {
    const number = this.state.parts.length + this.#promoted.length + 1;
    await this.driver.putPart(this.key, number, bytes);
    this.state.upload ??= await this.driver.startUpload(this.key);
    const copy = this.driver.copyPart(this.key, this.state.upload, number, bytes.length);
    copy.catch(() => {}); // awaited by #settle
    this.#promoted.push({ size: bytes.length, copy });
    await this.#settle(COPIES_IN_FLIGHT);
  }

  /**
   * Waits for the oldest copies until at most `keep` run, adding their parts to the state;
   * when the upload was gone, makes a new one from the part objects.
   */
  async #settle(keep: number): Promise<void> {
    while (this.#promoted.length > keep) {
      const { size, copy } = this.#promoted[0];
      const etag = await copy;
      if (etag === null) {
        await Promise.allSettled(this.#promoted.map((p) => p.copy));
        const sizes = [...this.state.parts, ...this.#promoted].map((p) => p.size);
        this.#promoted = [];
        await this.driver.reupload(this.key, this.state, sizes);
        return;
      }
      this.#promoted.shift();
      this.state.parts.push({ size, etag });
    }
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

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
