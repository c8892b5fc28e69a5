/**
 * The S3 driver: a key is the object name `<rootdirectory>/<key>` in one bucket, reached
 * path-style (`storage.s3.*` of Distribution: accesskey, secretkey, region, regionendpoint,
 * bucket, rootdirectory, secure, chunksize, forcepathstyle).
 *
 * Plain objects map one to one: `put` is a PutObject (S3 replaces an object atomically and
 * acknowledges it durably), `get`/`read` a (ranged) GetObject, `stat` a HeadObject, `list` a
 * ListObjectsV2 with delimiter `/` (pages read until the `limit` wanted names are certain),
 * `delete` a HeadObject + DeleteObject, `deleteAll` two listings (objects, segments) +
 * DeleteObjects, `move` a CopyObject + DeleteObject (S3 has no rename: the copy is
 * server-side but costs a rewrite of the bytes inside the object store; the target is
 * replaced atomically, so a reader sees the old or the whole new object).
 *
 * S3 objects cannot be appended to, so appendable objects (upload data: `create`, `append`,
 * `truncate`) are "segmented": the object at the key is empty and carries the logical size in
 * `x-amz-meta-appended-size`; the bytes are segment objects
 * `<rootdirectory>/.segments/<key>/<offset, 16 digits>`, outside every listing. A writer
 * buffers at most `chunksize` bytes; a flush (when the buffer is full, and at `sync`) is one
 * PutObject of a segment then one PutObject of the key's new size, so everything written is
 * durable in the bucket when `sync` resolves. The size is the truth: a segment contributes
 * its bytes up to the next segment's offset and the size; segments at or past an `append`
 * offset or a `truncate` size are deleted. Reading a segmented object lists its segments and
 * reads them in turn; `move` of one streams its bytes through this process into the target
 * (PutObject up to `chunksize`, else a multipart upload of `chunksize` parts), then deletes
 * the source and its segments: a commit costs one read and one write of the blob.
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
import { type ListPage, S3Client, S3Error } from "./s3_client.ts";

/** The driver's settings (Distribution's `storage.s3` keys). */
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
  /** Bytes a writer buffers before it flushes a segment; multipart part size. Default 10 MiB. */
  readonly chunksize?: number;
  /** Path-style addressing; the only style this driver speaks (false is refused). */
  readonly forcepathstyle?: boolean;
  /** Names per ListObjectsV2 page (the server's default, 1000, when absent); for tests. */
  readonly listPageSize?: number;
}

/** The smallest part S3 accepts in a multipart upload (all but the last). */
const MIN_CHUNK = 5 * 1024 * 1024;
const SIZE_META = "x-amz-meta-appended-size";
const SEGMENTS = ".segments";
/** The name of a segment under its key's segment prefix. */
const SEGMENT = /^\d{16}$/;
const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

/** One segment of a segmented object: its bytes cover [start, end) of the object. */
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

/** A driver over one bucket of an S3 server. */
export class S3Driver implements StorageDriver {
  readonly name = "s3";
  readonly client: S3Client;
  readonly #root: string;
  readonly #chunk: number;
  readonly #listPage: number | undefined;

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
    });
    const root = (options.rootdirectory ?? "").replace(/^\/+|\/+$/g, "");
    if (root !== "") checkKey(root);
    this.#root = root === "" ? "" : `${root}/`;
    this.#chunk = Math.max(MIN_CHUNK, options.chunksize ?? 10 * 1024 * 1024);
    this.#listPage = options.listPageSize;
  }

  /** The object name of a key; throws InvalidKey. */
  #name(key: string): string {
    checkKey(key);
    return `${this.#root}${key}`;
  }

  /** The prefix of a key's segment objects. */
  #segmentsOf(key: string): string {
    return `${this.#root}${SEGMENTS}/${key}/`;
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
    let headers = response.headers;
    if (response.status === 416 || (span && !ranged)) {
      // Nothing to read in this range (or an empty one): the size from a HeadObject.
      await response.body?.cancel();
      const head = await this.client.headObject(name);
      if (head === null) return null;
      headers = head;
    } else if (!headers.has(SIZE_META)) {
      const size = response.status === 206
        ? Number(headers.get("content-range")?.split("/")[1])
        : Number(headers.get("content-length"));
      return { size, stream: response.body ?? emptyStream() };
    } else {
      await response.body?.cancel();
    }
    const size = sizeOf(headers);
    if (!headers.has(SIZE_META)) return { size, stream: emptyStream() };
    const start = Math.min(span?.start ?? 0, size);
    const end = span ? Math.min(size, start + span.length) : size;
    const pieces = await this.#pieces(key, size);
    return { size, stream: this.#streamPieces(pieces, start, end) };
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
    if (headers.has(SIZE_META)) await this.#deleteSegments(key, 0);
    return true;
  }

  /** @inheritdoc */
  async deleteAll(prefix: string): Promise<boolean> {
    const name = this.#name(prefix);
    const objects = (await this.client.listAll(`${name}/`)).map((o) => o.key);
    if ((await this.client.headObject(name)) !== null) objects.push(name);
    const segments = (await this.client.listAll(this.#segmentsOf(prefix))).map((o) => o.key);
    await this.client.deleteObjects([...objects, ...segments]);
    return objects.length > 0;
  }

  /** @inheritdoc */
  async create(key: string): Promise<void> {
    const name = this.#name(key);
    if ((await this.client.headObject(name)) !== null) throw new AlreadyExists(key);
    await this.#deleteSegments(key, 0); // left by a crash of an earlier object of this key
    const response = await this.client.putObject(name, EMPTY, {
      "if-none-match": "*",
      [SIZE_META]: "0",
    });
    if (response.status === 412) {
      await response.body?.cancel();
      throw new AlreadyExists(key);
    }
    await (await this.client.expect(response, `PutObject ${name}`)).body?.cancel();
  }

  /** @inheritdoc */
  async append(key: string, offset: number): Promise<AppendWriter> {
    const size = await this.#segmented(key);
    if (offset > size) {
      throw new RangeError(`Cannot append to "${key}" at ${offset}: it has ${size} bytes`);
    }
    await this.#cut(key, offset, size);
    return new SegmentWriter(this, key, offset);
  }

  /** @inheritdoc */
  async truncate(key: string, size: number): Promise<void> {
    const current = await this.#segmented(key);
    if (size > current) {
      throw new RangeError(`Cannot truncate "${key}" to ${size}: it has ${current} bytes`);
    }
    await this.#cut(key, size, current);
  }

  /** @inheritdoc */
  async move(from: string, to: string): Promise<void> {
    const source = this.#name(from);
    const target = this.#name(to);
    const headers = await this.client.headObject(source);
    if (headers === null) throw new ObjectMissing(from);
    if (!headers.has(SIZE_META) && sizeOf(headers) <= 5 * 1024 ** 3) {
      if (!(await this.client.copyObject(source, target))) throw new ObjectMissing(from);
    } else {
      const reader = await this.read(from);
      if (reader === null) throw new ObjectMissing(from);
      await this.#upload(target, reader.stream);
    }
    await this.client.deleteObject(source);
    if (headers.has(SIZE_META)) await this.#deleteSegments(from, 0);
  }

  /** @inheritdoc */
  async readAll(key: string): Promise<ReadableStream<Uint8Array>> {
    const reader = await this.read(key);
    if (reader === null) throw new ObjectMissing(key);
    return reader.stream;
  }

  /** Writes a segment at `offset` and then the key's new size: both durable when it resolves. */
  async flush(key: string, offset: number, bytes: Uint8Array): Promise<void> {
    const segment = `${this.#segmentsOf(key)}${String(offset).padStart(16, "0")}`;
    const response = await this.client.putObject(segment, bytes);
    await (await this.client.expect(response, `PutObject ${segment}`)).body?.cancel();
    await this.#setSize(key, offset + bytes.length);
  }

  /** The chunk size of writers. */
  get chunkSize(): number {
    return this.#chunk;
  }

  /**
   * The logical size of an existing object as a segmented object; a plain object is made
   * one first (its bytes copied server-side to the segment at 0). Throws ObjectMissing.
   */
  async #segmented(key: string): Promise<number> {
    const name = this.#name(key);
    const headers = await this.client.headObject(name);
    if (headers === null) throw new ObjectMissing(key);
    const size = sizeOf(headers);
    if (headers.has(SIZE_META)) return size;
    await this.#deleteSegments(key, 0);
    if (size > 0) {
      const segment = `${this.#segmentsOf(key)}${"0".repeat(16)}`;
      if (!(await this.client.copyObject(name, segment))) throw new ObjectMissing(key);
    }
    await this.#setSize(key, size);
    return size;
  }

  /** Cuts a segmented object of `size` bytes to `to` bytes: its size first, then segments. */
  async #cut(key: string, to: number, size: number): Promise<void> {
    if (to !== size) await this.#setSize(key, to);
    await this.#deleteSegments(key, to);
  }

  /** Replaces the key's (empty) object with one declaring `size`. */
  async #setSize(key: string, size: number): Promise<void> {
    const name = this.#name(key);
    const response = await this.client.putObject(name, EMPTY, { [SIZE_META]: String(size) });
    await (await this.client.expect(response, `PutObject ${name}`)).body?.cancel();
  }

  /** Deletes a key's segments starting at or after `from`. */
  async #deleteSegments(key: string, from: number): Promise<void> {
    const base = this.#segmentsOf(key);
    const stale = (await this.client.listAll(base))
      .filter((o) =>
        SEGMENT.test(o.key.slice(base.length)) && Number(o.key.slice(base.length)) >= from
      )
      .map((o) => o.key);
    if (stale.length > 0) await this.client.deleteObjects(stale);
  }

  /** The segments of a segmented object of `size` bytes, each clipped to what it covers. */
  async #pieces(key: string, size: number): Promise<Piece[]> {
    const base = this.#segmentsOf(key);
    const found = (await this.client.listAll(base))
      .map((o) => ({ name: o.key, start: Number(o.key.slice(base.length)), size: o.size }))
      .filter((s) => SEGMENT.test(s.name.slice(base.length)) && s.start < size)
      .sort((a, b) => a.start - b.start);
    const pieces: Piece[] = [];
    let at = 0;
    for (const [i, s] of found.entries()) {
      const end = Math.min(s.start + s.size, found[i + 1]?.start ?? size, size);
      if (s.start !== at || end <= s.start) {
        throw new Error(`Segments of "${key}" do not cover it: a gap at ${at} (${s.start})`);
      }
      pieces.push({ name: s.name, start: s.start, end });
      at = end;
    }
    if (at !== size) throw new Error(`Segments of "${key}" end at ${at}, its size is ${size}`);
    return pieces;
  }

  /** A stream of bytes [start, end) of a segmented object, one ranged GetObject a piece. */
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

  /** Uploads a stream to an object: PutObject up to a chunk, else a multipart upload. */
  async #upload(name: string, stream: ReadableStream<Uint8Array>): Promise<void> {
    const chunks = chunked(stream, this.#chunk);
    const first = await chunks.next();
    const second = first.done ? first : await chunks.next();
    if (second.done) {
      const response = await this.client.putObject(name, first.done ? EMPTY : first.value);
      await (await this.client.expect(response, `PutObject ${name}`)).body?.cancel();
      return;
    }
    const id = await this.client.createMultipart(name);
    try {
      const etags = [
        await this.client.uploadPart(name, id, 1, first.value as Uint8Array),
        await this.client.uploadPart(name, id, 2, second.value),
      ];
      for await (const chunk of chunks) {
        etags.push(await this.client.uploadPart(name, id, etags.length + 1, chunk));
      }
      await this.client.completeMultipart(name, id, etags);
    } catch (error) {
      await this.client.abortMultipart(name, id).catch(() => {});
      throw error;
    }
  }
}

/** A writer of a segmented object: buffers up to a chunk, flushes a segment when full. */
class SegmentWriter implements AppendWriter {
  #buffer: Uint8Array[] = [];
  #buffered = 0;
  #closed = false;

  constructor(readonly driver: S3Driver, readonly key: string, private end: number) {}

  async write(bytes: Uint8Array): Promise<void> {
    this.#open();
    this.#buffer.push(bytes.slice());
    this.#buffered += bytes.length;
    if (this.#buffered >= this.driver.chunkSize) await this.#flush();
  }

  async sync(): Promise<void> {
    this.#open();
    if (this.#buffered > 0) await this.#flush();
  }

  close(): void {
    this.#closed = true;
    this.#buffer = [];
    this.#buffered = 0;
  }

  #open(): void {
    if (this.#closed) throw new Error(`Writer of "${this.key}" is closed`);
  }

  async #flush(): Promise<void> {
    const bytes = concat(this.#buffer, this.#buffered);
    this.#buffer = [];
    this.#buffered = 0;
    await this.driver.flush(this.key, this.end, bytes);
    this.end += bytes.length;
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

/** The bytes of a stream in chunks of exactly `size` bytes (the last one shorter). */
async function* chunked(
  stream: ReadableStream<Uint8Array>,
  size: number,
): AsyncGenerator<Uint8Array> {
  let parts: Uint8Array[] = [];
  let held = 0;
  for await (const bytes of stream) {
    let rest = bytes;
    while (held + rest.length >= size) {
      const take = size - held;
      parts.push(rest.subarray(0, take));
      yield concat(parts, size).slice();
      parts = [];
      held = 0;
      rest = rest.subarray(take);
    }
    if (rest.length > 0) {
      parts.push(rest.slice());
      held += rest.length;
    }
  }
  if (held > 0) yield concat(parts, held);
}
