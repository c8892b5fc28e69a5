/**
 * A small S3 client for the S3 driver: path-style requests signed with SigV4 by `aws4fetch`
 * (we never sign by hand), a Content-MD5 on every body, and the few operations the driver
 * needs: object PUT/GET/HEAD/DELETE/copy, ListObjectsV2, DeleteObjects, multipart uploads
 * (with UploadPartCopy and ListMultipartUploads) and presigned GetObject URLs. PutObject and
 * UploadPart bodies of a MiB or more are written on a connection of their own straight from
 * the caller's bytes (`sendRaw`: fetch would copy them twice), other requests go by fetch.
 *
 * Failures: a request is attempted up to `attempts` times (exponential backoff with full
 * jitter between attempts) when it fails with 5xx, 429, a connection error (refused, reset,
 * closed early) or a stall: no response headers within `timeoutSeconds` (plus one second per
 * MiB of request body), or no byte of the response body for `timeoutSeconds`. Every reply
 * but a GetObject's is read whole inside the attempt, so a body cut short is retried too; a
 * GetObject's body stream resumes after a cut with a ranged GET of the rest, pinned to the
 * object's ETag (`If-Match`). When the last attempt fails that way the error is
 * `StorageUnavailable` (the HTTP layer answers 503 with `Retry-After`).
 */

import { AwsClient } from "aws4fetch";
import { createMd5, md5Base64 } from "../../digest/md5.ts";
import { StorageUnavailable } from "../driver.ts";

/** How to reach a bucket. */
export interface S3ClientOptions {
  /** `http(s)://host:port` of the server (no trailing slash). */
  readonly endpoint: string;
  readonly bucket: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
  /** Attempts of a request (1 = no retry). Default 5. */
  readonly attempts?: number;
  /** Seconds without progress after which an attempt is abandoned as stalled. Default 30. */
  readonly timeoutSeconds?: number;
  /** The first backoff's upper bound in milliseconds (doubling per attempt). Default 100. */
  readonly backoffMs?: number;
}

/** A reply the client did not expect. */
export class S3Error extends Error {
  /** The S3 error code (`NoSuchUpload`, …), or "" when the reply had none. */
  readonly code: string;
  /** Makes the error for a request and its reply. */
  constructor(readonly status: number, what: string, body: string) {
    const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? "";
    super(`S3 ${what}: ${status} ${code}`.trim());
    this.name = "S3Error";
    this.code = code;
  }
}

/** An attempt abandoned because nothing moved for the timeout. */
class Stalled extends Error {
  constructor(what: string, seconds: number) {
    super(`S3 ${what}: no progress for ${seconds} s`);
    this.name = "Stalled";
  }
}

/** One page of ListObjectsV2. */
export interface ListPage {
  readonly keys: { key: string; size: number }[];
  readonly prefixes: string[];
  readonly next: string | null;
}

/** A part of a multipart upload as CompleteMultipartUpload wants it. */
export interface CompletedPart {
  readonly number: number;
  readonly etag: string;
}

const xmlEntities: Record<string, string> = {
  "&amp;": "&",
  "&lt;": "<",
  "&gt;": ">",
  "&quot;": '"',
  "&apos;": "'",
};
const unescapeXml = (s: string) => s.replace(/&(amp|lt|gt|quot|apos);/g, (m) => xmlEntities[m]);
const escapeXml = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => `&${{ "&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos" }[c]};`,
  );

/** Every match of `<tag>…</tag>` in `xml`, unescaped. */
function tags(xml: string, tag: string): string[] {
  return [...xml.matchAll(new RegExp(`<${tag}>([^<]*)</${tag}>`, "g"))].map((m) =>
    unescapeXml(m[1])
  );
}

/**
 * A request body read from elsewhere (a writer's spill file): its length, and its bytes at a
 * position (the count read, 0 past the end). Sent by `sendRaw` in pieces, never held whole
 * but when a request must go by fetch.
 */
export interface SizedSource {
  readonly size: number;
  readAt(position: number, into: Uint8Array): Promise<number>;
}

/** The body of a PutObject or UploadPart. */
export type Body = Uint8Array | SizedSource;

/** The piece of a SizedSource read at a time. */
const SOURCE_PIECE = 256 * 1024;

/** Every piece of a source in order (one buffer, reused: each piece is used before the next). */
async function* piecesOf(source: SizedSource): AsyncGenerator<Uint8Array> {
  const buffer = new Uint8Array(Math.min(SOURCE_PIECE, Math.max(1, source.size)));
  for (let at = 0; at < source.size;) {
    const n = await source.readAt(
      at,
      buffer.subarray(0, Math.min(buffer.length, source.size - at)),
    );
    if (n === 0) throw new Error(`A request body ended at ${at} of ${source.size} bytes`);
    yield buffer.subarray(0, n);
    at += n;
  }
}

/** A source's bytes whole (for a request that must go by fetch). */
async function bytesOf(body: Body): Promise<Uint8Array> {
  if (body instanceof Uint8Array) return body;
  const bytes = new Uint8Array(body.size);
  let at = 0;
  for await (const piece of piecesOf(body)) {
    bytes.set(piece, at);
    at += piece.length;
  }
  return bytes;
}

/**
 * A request body as fetch takes it: a source is read whole, so a part sent by fetch (after a
 * failed raw send, or always behind a proxy) is held in memory once more, outside the
 * writers' budget, for that request.
 */
async function fetchable(body: Body | string | undefined): Promise<BodyInit | undefined> {
  return typeof body === "string" || body === undefined
    ? body
    : await bytesOf(body) as Uint8Array<ArrayBuffer>;
}

/** A body's length. */
const lengthOf = (body: Body | string | undefined) =>
  body === undefined
    ? 0
    : typeof body === "string" || body instanceof Uint8Array
    ? body.length
    : body.size;

/**
 * The Content-MD5 of a body that may be a source (read through once), hashed off the JS
 * thread (`md5.ts`): the payload is not signed (aws4fetch sends `UNSIGNED-PAYLOAD` for S3),
 * so this is what lets the server refuse bytes damaged on the way (400 BadDigest).
 */
async function md5Of(body: Body): Promise<string> {
  if (body instanceof Uint8Array) return await md5Base64(body);
  const hash = createMd5();
  for await (const piece of piecesOf(body)) await hash.update(piece);
  return hash.digest();
}

/** Statuses worth another attempt. */
const retryable = (status: number) => status >= 500 || status === 429;

/** A failure of the transport (not a reply): worth another attempt. */
const transient = (error: unknown) =>
  error instanceof TypeError || error instanceof Stalled ||
  (error instanceof DOMException && (error.name === "AbortError" || error.name === "TimeoutError"));

/** The `x-amz-copy-source` value of an object name of `bucket`. */
const copySource = (bucket: string, name: string) =>
  `/${encodeURIComponent(bucket)}/${name.split("/").map(encodeURIComponent).join("/")}`;

/** A client of one bucket. */
export class S3Client {
  readonly #aws: AwsClient;
  readonly #base: string;
  readonly #attempts: number;
  readonly #timeout: number;
  readonly #backoff: number;

  /** Makes a client; nothing is requested. */
  constructor(readonly options: S3ClientOptions) {
    this.#aws = new AwsClient({
      accessKeyId: options.accessKey,
      secretAccessKey: options.secretKey,
      service: "s3",
      region: options.region,
      retries: 0, // our own retries
    });
    this.#base = `${options.endpoint.replace(/\/+$/, "")}/${encodeURIComponent(options.bucket)}`;
    this.#attempts = Math.max(1, options.attempts ?? 5);
    this.#timeout = options.timeoutSeconds ?? 30;
    this.#backoff = options.backoffMs ?? 100;
  }

  /** The URL of an object name (path-style), with an optional query. */
  url(name: string, query = ""): string {
    const path = name === "" ? "" : `/${name.split("/").map(encodeURIComponent).join("/")}`;
    return `${this.#base}${path}${query ? `?${query}` : ""}`;
  }

  /**
   * A presigned GetObject URL of an object name, valid for `seconds` (1 s to 7 days): anyone
   * holding it can read the object without credentials until then; the server refuses it once
   * expired or when any part of it was changed.
   */
  async presign(name: string, seconds: number): Promise<string> {
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > 604800) {
      throw new RangeError(`A presigned URL lives 1 to 604800 seconds, not ${seconds}`);
    }
    const url = new URL(this.url(name));
    url.searchParams.set("X-Amz-Expires", String(seconds));
    const signed = await this.#aws.sign(url.toString(), {
      method: "GET",
      aws: { signQuery: true },
    });
    return signed.url;
  }

  /**
   * Sends a request, attempted up to `attempts` times (once when `idempotent` is false) on
   * 5xx, 429, connection errors and stalls, with backoff; the body must be bytes, a sized
   * source (read again at each attempt) or absent.
   * The reply's body is read whole within the attempt unless `stream` (then only the headers
   * are bounded by the timeout, and the body is watched for stalls). Returns the first reply
   * that is not worth a retry; throws StorageUnavailable when the last attempt failed.
   */
  async request(
    method: string,
    url: string,
    init: {
      headers?: Record<string, string>;
      body?: Body | string;
      /**
       * Sends a byte body of a MiB or more, or a source's, over a connection of its own (see
       * `sendRaw`).
       */
      raw?: boolean;
      /**
       * A GET whose body streams (`stream`) over a connection of its own, read straight into
       * the reader's buffers (see `getRaw`).
       */
      rawRead?: boolean;
      idempotent?: boolean;
      stream?: boolean;
      /** Bytes the server copies before it answers (CopyObject, UploadPartCopy). */
      work?: number;
    } = {},
  ): Promise<Response> {
    const attempts = init.idempotent === false ? 1 : this.#attempts;
    const what = `${method} ${url.slice(this.#base.length) || "/"}`;
    let last: unknown = null;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await this.#pause(attempt);
      const controller = new AbortController();
      const size = lengthOf(init.body);
      const limit = (this.#timeout + (size + (init.work ?? 0)) / (1024 * 1024)) * 1000;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const error = new Stalled(what, this.#timeout);
          controller.abort(error);
          reject(error);
        }, limit);
      });
      try {
        const payload = init.body;
        const viaFetch = async () =>
          this.#aws.fetch(url, {
            method,
            headers: init.headers,
            body: await fetchable(payload),
            signal: controller.signal,
          });
        // When the raw send fails (a server answering early, e.g. 404 NoSuchUpload, and
        // closing while the body is written: its reply is lost with the connection) fetch
        // sends it again, and reads such a reply; rare, so its copy of the body costs little.
        const raw = typeof payload === "object" &&
          (size >= RAW_FROM || !(payload instanceof Uint8Array));
        const sent = init.rawRead && init.stream && !PROXIED
          ? this.#aws.sign(url, { method, headers: init.headers })
            .then((signed) => getRaw(url, signed.headers, controller.signal, what, this.#timeout))
            .catch((error) => {
              if (controller.signal.aborted) throw error;
              return viaFetch();
            })
          : init.raw && raw && !PROXIED
          ? this.#aws.sign(url, { method, headers: init.headers })
            .then((signed) =>
              sendRaw(url, method, signed.headers, payload as Body, controller.signal)
            )
            .catch((error) => {
              if (controller.signal.aborted) throw error;
              return viaFetch();
            })
          : viaFetch();
        sent.catch(() => {}); // when the stall won the race
        const response = await Promise.race([sent, stalled]);
        clearTimeout(timer);
        const body = response.body === null ? null : RAW_BODIES.has(response.body)
          ? response.body // watched as it is read
          : watch(response.body, controller, what, this.#timeout);
        if (retryable(response.status)) {
          const text = body === null ? "" : await new Response(body).text().catch(() => "");
          last = new S3Error(response.status, what, text);
          continue;
        }
        if (init.stream) return rebuild(response, body);
        const bytes = body === null ? null : await new Response(body).arrayBuffer();
        return rebuild(response, bytes);
      } catch (error) {
        clearTimeout(timer);
        if (!transient(error)) throw error;
        last = error;
      }
    }
    throw new StorageUnavailable(
      `S3 ${what}: ${
        last instanceof Error ? last.message : String(last)
      } after ${attempts} attempts`,
      { cause: last },
    );
  }

  /** Waits before another attempt: full jitter over an exponential bound, at most 5 s. */
  #pause(attempt: number): Promise<void> {
    const bound = Math.min(5000, this.#backoff * 2 ** (attempt - 2));
    // Backoff between attempts of a failed request (not a synchronisation).
    return new Promise((resolve) => setTimeout(resolve, bound * Math.random()));
  }

  /** Fails with an S3Error unless the response has one of `ok` statuses (body consumed). */
  async expect(response: Response, what: string, ok: number[] = [200]): Promise<Response> {
    if (ok.includes(response.status)) return response;
    const body = await response.text().catch(() => "");
    throw new S3Error(response.status, what, body);
  }

  /** Creates the bucket (ok when it is already ours). */
  async createBucket(): Promise<void> {
    const response = await this.request("PUT", this.#base);
    if (response.status === 409) return void (await response.body?.cancel());
    await (await this.expect(response, "CreateBucket")).body?.cancel();
  }

  /** Deletes the (empty) bucket. */
  async deleteBucket(): Promise<void> {
    const response = await this.request("DELETE", this.#base);
    await (await this.expect(response, "DeleteBucket", [204, 200, 404])).body?.cancel();
  }

  /**
   * PutObject of bytes, with extra headers (e.g. `x-amz-meta-*`, `if-none-match`) and their
   * Content-MD5 when the caller has it (else hashed here).
   */
  async putObject(
    name: string,
    body: Body,
    headers: Record<string, string> = {},
    md5?: string,
  ): Promise<Response> {
    return await this.request("PUT", this.url(name), {
      body,
      raw: true,
      headers: { ...headers, "content-md5": md5 ?? await md5Of(body) },
    });
  }

  /** HeadObject; null when missing. */
  async headObject(name: string): Promise<Headers | null> {
    const response = await this.request("HEAD", this.url(name));
    await response.body?.cancel();
    if (response.status === 404) return null;
    await this.expect(response, `HeadObject ${name}`);
    return response.headers;
  }

  /**
   * GetObject, whole or `bytes=start-end` (inclusive end); the raw response (200/206/404/416).
   * Its body resumes after a cut or a stall (a ranged GET of the rest, `If-Match` its ETag).
   * `direct`: over a connection of its own, read straight into the reader's buffers (see
   * `getRaw`), for bytes streamed on (a blob to a client, upload data); not for small objects
   * read whole at a high rate (manifests), which reuse fetch's pooled connections instead of
   * making one each.
   */
  async getObject(
    name: string,
    range?: { start: number; end: number },
    { direct = false } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = {};
    if (range) headers.range = `bytes=${range.start}-${range.end}`;
    const url = this.url(name);
    const response = await this.request("GET", url, { headers, stream: true, rawRead: direct });
    if (response.status === 404 || response.status === 416) return response;
    if (response.status !== 200 && response.status !== 206) {
      return await this.expect(response, `GetObject ${name}`);
    }
    const etag = response.headers.get("etag");
    const start = response.status === 206 ? range?.start ?? 0 : 0;
    const end = response.status === 206
      ? Number(/-(\d+)\//.exec(response.headers.get("content-range") ?? "")?.[1])
      : Number(response.headers.get("content-length")) - 1;
    if (response.body === null || etag === null || !Number.isSafeInteger(end)) return response;
    const rest = async (received: number) => {
      const again = await this.request("GET", url, {
        headers: { range: `bytes=${start + received}-${end}`, "if-match": etag },
        stream: true,
        rawRead: direct,
      });
      if (again.status !== 206 || again.body === null) {
        await again.body?.cancel();
        throw new S3Error(again.status, `GetObject ${name} (resumed at ${start + received})`, "");
      }
      return again.body;
    };
    const body = resuming(response.body, end - start + 1, rest, this.#attempts, name);
    return rebuild(response, body);
  }

  /** DeleteObject (no error when missing). */
  async deleteObject(name: string): Promise<void> {
    const response = await this.request("DELETE", this.url(name));
    await (await this.expect(response, `DeleteObject ${name}`, [200, 204, 404])).body?.cancel();
  }

  /**
   * CopyObject within the bucket, keeping the source's metadata; false when it is missing.
   * `size` (of the source, when known) lengthens the wait for the reply.
   */
  async copyObject(from: string, to: string, size = 0): Promise<boolean> {
    const response = await this.request("PUT", this.url(to), {
      headers: { "x-amz-copy-source": copySource(this.options.bucket, from) },
      work: size,
    });
    if (response.status === 404) {
      await response.body?.cancel();
      return false;
    }
    const body = await (await this.expect(response, `CopyObject ${from} -> ${to}`)).text();
    // A copy can fail after the 200 status line: the error is then in the body.
    if (body.includes("<Error>")) throw new S3Error(500, `CopyObject ${from} -> ${to}`, body);
    return true;
  }

  /** One page of ListObjectsV2 under `prefix`, optionally with a delimiter and start. */
  async listPage(
    prefix: string,
    options: { delimiter?: string; startAfter?: string; token?: string | null; max?: number } = {},
  ): Promise<ListPage> {
    const query = new URLSearchParams({ "list-type": "2", prefix });
    if (options.delimiter) query.set("delimiter", options.delimiter);
    if (options.startAfter) query.set("start-after", options.startAfter);
    if (options.token) query.set("continuation-token", options.token);
    if (options.max) query.set("max-keys", String(options.max));
    const response = await this.request("GET", this.url("", query.toString()));
    const xml = await (await this.expect(response, `ListObjectsV2 ${prefix}`)).text();
    const contents = [...xml.matchAll(/<Contents>(.*?)<\/Contents>/gs)].map((m) => ({
      key: tags(m[1], "Key")[0],
      size: Number(tags(m[1], "Size")[0] ?? 0),
    }));
    const prefixes = [...xml.matchAll(/<CommonPrefixes>(.*?)<\/CommonPrefixes>/gs)].map((m) =>
      tags(m[1], "Prefix")[0]
    );
    const truncated = tags(xml, "IsTruncated")[0] === "true";
    return {
      keys: contents,
      prefixes,
      next: truncated ? (tags(xml, "NextContinuationToken")[0] ?? null) : null,
    };
  }

  /** Every object under `prefix` (no delimiter), all pages. */
  async listAll(prefix: string): Promise<{ key: string; size: number }[]> {
    const out: { key: string; size: number }[] = [];
    let token: string | null = null;
    do {
      const page: ListPage = await this.listPage(prefix, { token });
      out.push(...page.keys);
      token = page.next;
    } while (token);
    return out;
  }

  /** DeleteObjects in batches of 1000 (quiet mode); throws when any key failed. */
  async deleteObjects(names: readonly string[]): Promise<void> {
    for (let i = 0; i < names.length; i += 1000) {
      const batch = names.slice(i, i + 1000);
      const body = `<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>${
        batch.map((n) => `<Object><Key>${escapeXml(n)}</Key></Object>`).join("")
      }</Delete>`;
      const bytes = new TextEncoder().encode(body);
      const response = await this.request("POST", this.url("", "delete"), {
        body: bytes,
        headers: { "content-md5": await md5Base64(bytes), "content-type": "application/xml" },
      });
      const xml = await (await this.expect(response, "DeleteObjects")).text();
      if (xml.includes("<Error>")) throw new S3Error(500, "DeleteObjects", xml);
    }
  }

  /**
   * CreateMultipartUpload; the upload id. Retried like the others: an upload created by an
   * attempt whose reply was lost is left over, found by `listMultipart` and aborted.
   */
  async createMultipart(name: string): Promise<string> {
    const response = await this.request("POST", this.url(name, "uploads"));
    const xml = await (await this.expect(response, `CreateMultipartUpload ${name}`)).text();
    const id = tags(xml, "UploadId")[0];
    if (!id) throw new S3Error(500, `CreateMultipartUpload ${name}`, xml);
    return id;
  }

  /** UploadPart (with the body's Content-MD5 when the caller has it); the part's ETag. */
  async uploadPart(
    name: string,
    id: string,
    part: number,
    body: Body,
    md5?: string,
  ): Promise<string> {
    const query = `partNumber=${part}&uploadId=${encodeURIComponent(id)}`;
    const response = await this.request("PUT", this.url(name, query), {
      body,
      raw: true,
      headers: { "content-md5": md5 ?? await md5Of(body) },
    });
    await (await this.expect(response, `UploadPart ${name} #${part}`)).body?.cancel();
    const etag = response.headers.get("etag");
    if (!etag) throw new S3Error(500, `UploadPart ${name} #${part}: no ETag`, "");
    return etag;
  }

  /**
   * UploadPartCopy: part `part` of the upload is (a range, inclusive end, of) the object
   * `source`, copied by the server; the part's ETag. `size`, the bytes copied, lengthens the
   * wait for the reply. Throws S3Error (404 `NoSuchUpload` when the upload is gone, 404
   * `NoSuchKey` when the source is).
   */
  async uploadPartCopy(
    name: string,
    id: string,
    part: number,
    source: string,
    { range, size }: { range?: { start: number; end: number }; size?: number } = {},
  ): Promise<string> {
    const query = `partNumber=${part}&uploadId=${encodeURIComponent(id)}`;
    const headers: Record<string, string> = {
      "x-amz-copy-source": copySource(this.options.bucket, source),
    };
    if (range) headers["x-amz-copy-source-range"] = `bytes=${range.start}-${range.end}`;
    const response = await this.request("PUT", this.url(name, query), {
      headers,
      work: range ? range.end - range.start + 1 : size ?? 0,
    });
    const what = `UploadPartCopy ${source} -> ${name} #${part}`;
    const xml = await (await this.expect(response, what)).text();
    const etag = tags(xml, "ETag")[0];
    if (xml.includes("<Error>") || !etag) throw new S3Error(500, what, xml);
    return etag;
  }

  /**
   * CompleteMultipartUpload of the parts, in order; S3Error 404 `NoSuchUpload` when gone.
   * `size`, the upload's, lengthens the wait for the reply.
   */
  async completeMultipart(
    name: string,
    id: string,
    parts: readonly CompletedPart[],
    size = 0,
  ): Promise<void> {
    const body = `<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload>${
      parts.map((p) =>
        `<Part><PartNumber>${p.number}</PartNumber><ETag>${escapeXml(p.etag)}</ETag></Part>`
      ).join("")
    }</CompleteMultipartUpload>`;
    const response = await this.request(
      "POST",
      this.url(name, `uploadId=${encodeURIComponent(id)}`),
      { body, headers: { "content-type": "application/xml" }, work: size },
    );
    const xml = await (await this.expect(response, `CompleteMultipartUpload ${name}`)).text();
    if (xml.includes("<Error>")) throw new S3Error(500, `CompleteMultipartUpload ${name}`, xml);
  }

  /** AbortMultipartUpload (no error when already gone). */
  async abortMultipart(name: string, id: string): Promise<void> {
    const response = await this.request(
      "DELETE",
      this.url(name, `uploadId=${encodeURIComponent(id)}`),
    );
    await (await this.expect(response, `AbortMultipartUpload ${name}`, [200, 204, 404])).body
      ?.cancel();
  }

  /** The unfinished multipart uploads of object names under `prefix` (ListMultipartUploads). */
  async listMultipart(prefix: string): Promise<{ name: string; id: string }[]> {
    const out: { name: string; id: string }[] = [];
    let marker: { key: string; id: string } | null = null;
    do {
      const query = new URLSearchParams({ uploads: "", prefix });
      if (marker) {
        query.set("key-marker", marker.key);
        query.set("upload-id-marker", marker.id);
      }
      const response = await this.request("GET", this.url("", query.toString()));
      const xml = await (await this.expect(response, `ListMultipartUploads ${prefix}`)).text();
      for (const m of xml.matchAll(/<Upload>(.*?)<\/Upload>/gs)) {
        out.push({ name: tags(m[1], "Key")[0], id: tags(m[1], "UploadId")[0] });
      }
      const truncated = tags(xml, "IsTruncated")[0] === "true";
      const key = tags(xml, "NextKeyMarker")[0];
      const id = tags(xml, "NextUploadIdMarker")[0];
      marker = truncated && key ? { key, id: id ?? "" } : null;
    } while (marker);
    return out;
  }
}

/** The smallest body `sendRaw` sends: below it fetch's copy costs little. */
const RAW_FROM = 1024 * 1024;
/**
 * Whether requests go through an HTTP proxy (fetch honours these variables; `sendRaw`, which
 * connects directly, would bypass it, or fail where only the proxy is reachable): then every
 * request goes by fetch.
 */
const PROXIED = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
  .some((name) => {
    try {
      return (Deno.env.get(name) ?? "") !== "";
    } catch {
      return false; // no permission to read it: fetch could not read it either
    }
  });

/**
 * Bodies of `getRaw` (they watch for stalls themselves), with a function reading the next
 * bytes straight into a buffer of the caller's (null at the end), used by `resuming` instead
 * of the stream: a stream's BYOB read would take the buffer away (transfer it), and lose it
 * when the read fails, where a body cut short is to be resumed into that same buffer.
 */
const RAW_BODIES = new WeakMap<
  ReadableStream<Uint8Array>,
  (into: Uint8Array) => Promise<number | null>
>();

/** The most bytes of a reply's head (status line and headers) `getRaw` reads. */
const HEAD_LIMIT = 64 * 1024;

/**
 * Sends a signed GET over a connection of its own (HTTP/1.1, `Connection: close`, plain or
 * TLS) and returns the reply once its head is in, its body a byte stream read from the socket
 * straight into the reader's buffer: a BYOB reader's (the server's reply to a pull, 1 MiB at
 * a time) gets the bytes with no copy in between. Why: through fetch each ~60 KiB chunk was
 * copied out of the runtime and passed through two more streams, and a blob streamed from S3
 * cost the replica about twice the CPU per byte of Distribution's. A read that makes no
 * progress for `seconds` fails (`Stalled`, closing the connection); a body cut short fails
 * with a TypeError; both are transient, resumed by `getObject`. A reply this cannot take (no
 * Content-Length: chunked) fails with a TypeError before any byte is given, and the caller
 * asks again by fetch.
 */
async function getRaw(
  url: string,
  headers: Headers,
  signal: AbortSignal,
  what: string,
  seconds: number,
): Promise<Response> {
  let raw: RawConnection | null = null;
  const close = () => raw?.close();
  let handedOver = false;
  try {
    raw = await openRaw(url, "GET", headers, "", signal);
    const conn = raw.conn;
    // The head, and whatever body bytes came with it.
    let got: Uint8Array = new Uint8Array(0);
    let end = -1;
    while (end < 0) {
      if (got.length >= HEAD_LIMIT) throw new TypeError(`${what}: a reply head over 64 KiB`);
      const buffer = new Uint8Array(16 * 1024);
      const n = await conn.read(buffer);
      if (n === null) throw new TypeError(`${what}: the connection closed before a reply`);
      got = concatBytes([got, buffer.subarray(0, n)]);
      end = indexOfHeadEnd(got);
    }
    const reply = parseHead(got.subarray(0, end));
    const status = reply.status;
    if (/chunked/i.test(reply.headers.get("transfer-encoding") ?? "")) {
      throw new TypeError(`${what}: a chunked reply (asked again by fetch)`);
    }
    const declared = reply.headers.get("content-length")?.trim() ?? "";
    if (!NULL_BODY.has(status) && !/^\d+$/.test(declared)) {
      // A body that ends when the connection closes, or a bad length: fetch reads it.
      throw new TypeError(`${what}: a reply without its length (asked again by fetch)`);
    }
    const length = NULL_BODY.has(status) ? 0 : Number(declared);
    if (!Number.isSafeInteger(length)) throw new TypeError(`${what}: a reply length ${declared}`);
    let early: Uint8Array | null = got.subarray(end + 4, end + 4 + length);
    let received = 0;
    /** Reads into `into` (at most what is left), failing on a stall or an early end. */
    const read = async (into: Uint8Array): Promise<number> => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          close();
          reject(new Stalled(what, seconds));
        }, seconds * 1000);
      });
      try {
        const reading = conn.read(into.subarray(0, Math.min(into.length, length - received)));
        reading.catch(() => {}); // when the stall won the race
        const n = await Promise.race([reading, stalled]).catch((error) => {
          if (error instanceof Stalled) throw error;
          // A reset or an unclean end of the connection (Deno's own errors, not TypeErrors):
          // a cut body, which the reader resumes as it does fetch's.
          throw new TypeError(`${what}: the body broke at ${received} of ${length} bytes`, {
            cause: error,
          });
        });
        if (n === null) {
          throw new TypeError(`${what}: the body ended at ${received} of ${length} bytes`);
        }
        received += n;
        return n;
      } finally {
        clearTimeout(timer);
      }
    };
    /** The next bytes into `into` (null at the end, when the connection is closed). */
    const readInto = async (into: Uint8Array): Promise<number | null> => {
      if (received >= length || into.length === 0) {
        if (received >= length) close();
        return received >= length ? null : 0;
      }
      let n: number;
      if (early !== null && early.length > 0) {
        n = Math.min(early.length, into.length);
        into.set(early.subarray(0, n));
        early = n < early.length ? early.subarray(n) : null;
        received += n;
      } else {
        early = null;
        try {
          n = await read(into);
        } catch (error) {
          close();
          throw error;
        }
      }
      if (received >= length) close();
      return n;
    };
    const body = length === 0 ? null : new ReadableStream({
      type: "bytes",
      autoAllocateChunkSize: 64 * 1024,
      async pull(controller) {
        const request = controller.byobRequest!;
        const view = request.view!;
        let n: number | null;
        try {
          n = await readInto(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
        } catch (error) {
          controller.error(error);
          return;
        }
        if (n === null) {
          controller.close();
          request.respond(0);
          return;
        }
        request.respond(n);
        if (received >= length) controller.close();
      },
      cancel: () => close(),
    });
    if (body === null) close();
    else RAW_BODIES.set(body, readInto);
    handedOver = true;
    return new Response(body, { status, headers: reply.headers });
  } catch (error) {
    close();
    if (signal.aborted) throw signal.reason;
    if (error instanceof TypeError) throw error;
    throw new TypeError(`GET ${url}: ${error instanceof Error ? error.message : error}`, {
      cause: error,
    });
  } finally {
    raw?.release(); // the body's reader closes it from here on
    if (!handedOver) close();
  }
}

/** The status and headers of a reply's head (without its blank line). */
function parseHead(bytes: Uint8Array): { status: number; headers: Headers } {
  const [line, ...lines] = new TextDecoder("latin1").decode(bytes).split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(line)?.[1]);
  if (!(status >= 200 && status <= 599)) throw new TypeError(`Bad status line: ${line}`);
  const headers = new Headers();
  for (const text of lines) {
    const colon = text.indexOf(":");
    if (colon <= 0) throw new TypeError(`Bad header line: ${text}`);
    headers.append(text.slice(0, colon).trim(), text.slice(colon + 1).trim());
  }
  return { status, headers };
}

/** Where a reply's head ends (the index of its blank line's `\r\n\r\n`), or -1. */
function indexOfHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

/**
 * Sends a signed request with a body over a connection of its own (HTTP/1.1,
 * `Connection: close`, plain or TLS), writing the body straight from `body` (bytes, or a
 * source read a piece at a time), and reads the reply whole. Why: fetch copies a byte body whole before sending it (into the Request, then
 * into the runtime), so every part of 10 MiB in flight took 20 MiB more than the writer's
 * buffer, and 8 concurrent uploads held a quarter GiB of copies, some of them until a
 * garbage collection. A stream body is not copied but goes chunked, which S3 refuses for
 * PutObject and UploadPart (411). Failures of the connection are TypeErrors (retried, as
 * fetch's are); `signal` aborting closes the connection.
 */
async function sendRaw(
  url: string,
  method: string,
  headers: Headers,
  body: Body,
  signal: AbortSignal,
): Promise<Response> {
  let raw: RawConnection | null = null;
  try {
    const length = lengthOf(body);
    raw = await openRaw(url, method, headers, `content-length: ${length}\r\n`, signal);
    const conn = raw.conn;
    const writeAll = async (bytes: Uint8Array) => {
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
    };
    if (body instanceof Uint8Array) await writeAll(body);
    else for await (const piece of piecesOf(body)) await writeAll(piece);
    // A byte body whose buffer was detached meanwhile reads as empty: fail, never send it cut
    // short (a source's size is fixed, and `piecesOf` fails one that ends early).
    if (lengthOf(body) !== length) throw new TypeError(`${method} ${url}: the body was released`);
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(16 * 1024);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
    }
    return parseReply(concatBytes(chunks));
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    if (error instanceof TypeError) throw error;
    throw new TypeError(`${method} ${url}: ${error instanceof Error ? error.message : error}`, {
      cause: error,
    });
  } finally {
    raw?.release();
    raw?.close();
  }
}

/** A connection of `openRaw`'s. */
interface RawConnection {
  readonly conn: Deno.Conn;
  /** Closes the connection; again, nothing. */
  close(): void;
  /** From now on the signal's abort does not close it: its owner does. */
  release(): void;
}

/**
 * A connection of its own to `url`'s server (TLS for https:) with a request's head sent on
 * it: `method`, the URL's path and query, `headers` but Host, Connection and Content-Length
 * (`extra` header lines may add one), and `connection: close`. Until `release()`, `signal`
 * aborting closes it; aborted while connecting, nothing is sent and the abort is thrown.
 */
async function openRaw(
  url: string,
  method: string,
  headers: Headers,
  extra: string,
  signal: AbortSignal,
): Promise<RawConnection> {
  const target = new URL(url);
  const tls = target.protocol === "https:";
  const port = Number(target.port || (tls ? 443 : 80));
  let conn: Deno.Conn | null = null;
  const close = () => {
    try {
      conn?.close();
    } catch { /* already closed */ }
    conn = null;
  };
  signal.addEventListener("abort", close, { once: true });
  const release = () => signal.removeEventListener("abort", close);
  try {
    signal.throwIfAborted();
    const opened = tls
      ? await Deno.connectTls({ hostname: target.hostname, port })
      : await Deno.connect({ hostname: target.hostname, port });
    conn = opened;
    // Aborted while connecting (the listener found no connection to close): send nothing.
    signal.throwIfAborted();
    let head = `${method} ${target.pathname}${target.search} HTTP/1.1\r\nhost: ${target.host}\r\n`;
    headers.forEach((value, name) => {
      if (!["host", "content-length", "connection"].includes(name)) head += `${name}: ${value}\r\n`;
    });
    const bytes = new TextEncoder().encode(`${head}${extra}connection: close\r\n\r\n`);
    for (let at = 0; at < bytes.length;) at += await opened.write(bytes.subarray(at));
    return { conn: opened, close, release };
  } catch (error) {
    release();
    close();
    throw error;
  }
}

/**
 * An HTTP/1.1 reply read whole (to the end of the connection) as a Response; interim 1xx
 * replies are skipped. A reply cut short (fewer bytes than its Content-Length, or chunks
 * that do not end with the last one) or malformed is a TypeError, as fetch's are.
 */
function parseReply(bytes: Uint8Array): Response {
  const text = new TextDecoder("latin1").decode(bytes);
  let start = 0;
  for (;;) {
    const end = text.indexOf("\r\n\r\n", start);
    if (end < 0) throw new TypeError("The connection closed before a whole reply");
    const [status, ...lines] = text.slice(start, end).split("\r\n");
    const code = Number(/^HTTP\/1\.[01] (\d{3})/.exec(status)?.[1]);
    if (code >= 100 && code <= 199) {
      start = end + 4;
      continue;
    }
    if (!(code >= 200 && code <= 599)) throw new TypeError(`Bad status line: ${status}`);
    const headers = new Headers();
    for (const line of lines) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw new TypeError(`Bad header line: ${line}`);
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    let body = bytes.subarray(end + 4);
    if (/chunked/i.test(headers.get("transfer-encoding") ?? "")) {
      body = dechunk(body);
      headers.delete("transfer-encoding");
    } else if (headers.has("content-length")) {
      const length = Number(headers.get("content-length"));
      if (!(length >= 0) || body.length < length) {
        throw new TypeError(`Reply cut short: ${body.length} of ${length} body bytes`);
      }
      body = body.subarray(0, length);
    }
    return new Response(NULL_BODY.has(code) ? null : body.slice(), { status: code, headers });
  }
}

/** The bytes of a chunked body, which must end with its last (empty) chunk. */
function dechunk(body: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let at = 0;;) {
    const eol = body.indexOf(13, at);
    const size = eol < 0 ? NaN : parseInt(new TextDecoder().decode(body.subarray(at, eol)), 16);
    if (!(size >= 0) || body[eol + 1] !== 10) throw new TypeError("Bad or cut chunked reply");
    if (size === 0) return concatBytes(parts);
    const from = eol + 2;
    if (from + size + 2 > body.length) throw new TypeError("Chunked reply cut short");
    parts.push(body.subarray(from, from + size));
    at = from + size + 2;
  }
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Statuses whose responses have no body. */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/** The response again with another body (the same status and headers). */
function rebuild(response: Response, body: BodyInit | null): Response {
  return new Response(NULL_BODY.has(response.status) ? null : body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/**
 * A body that fails its reader (by aborting the request) when a read gets no byte for
 * `seconds`; time spent by the consumer between reads does not count.
 */
function watch(
  body: ReadableStream<Uint8Array>,
  controller: AbortController,
  what: string,
  seconds: number,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(out) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const error = new Stalled(what, seconds);
          controller.abort(error); // releases the connection
          reject(error); // fails the read even if the abort does not reach it
        }, seconds * 1000);
      });
      const read = reader.read();
      read.catch(() => {}); // when the stall won the race
      try {
        const { done, value } = await Promise.race([read, stalled]);
        if (done) out.close();
        else out.enqueue(value);
      } finally {
        clearTimeout(timer);
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/**
 * The `length` bytes of a body that, when it breaks (a cut, a stall), continues from `rest`
 * (the bytes from the count received so far), at most `attempts` times in a row without a
 * byte received; then it fails with StorageUnavailable. A body that ends early is a cut too.
 */
function resuming(
  first: ReadableStream<Uint8Array>,
  length: number,
  rest: (received: number) => Promise<ReadableStream<Uint8Array>>,
  attempts: number,
  name: string,
): ReadableStream<Uint8Array> {
  let body = first;
  /** `getRaw`'s reads into a given buffer, when the body is its; else the body's reader. */
  let direct = RAW_BODIES.get(body) ?? null;
  let reader = direct === null ? body.getReader() : null;
  let received = 0;
  let failures = 0;
  /**
   * Whether the reader cancelled: after that no read goes on and nothing is asked again (a
   * hand-on to a cancelled stream fails with a TypeError, which would otherwise pass for a cut
   * body and ask for the rest once per read).
   */
  let cancelled = false;
  /** What is left of the last chunk read, not yet handed on. */
  let left: Uint8Array | null = null;
  /** Cancels the body (through its reader, which holds it locked). */
  const stop = (reason?: unknown) => reader?.cancel(reason) ?? body.cancel(reason);
  // A byte stream: a reader bringing its buffer (the server's reply, 1 MiB at a time) has
  // `getRaw`'s socket read straight into it; other readers get chunks.
  return new ReadableStream({
    type: "bytes",
    async pull(controller) {
      const request = controller.byobRequest;
      for (;;) {
        let failure: unknown;
        try {
          if (left !== null) {
            const chunk: Uint8Array = left;
            left = null;
            left = handOn(controller, request, chunk);
            return;
          }
          let chunk: Uint8Array | null;
          if (direct !== null) {
            const view = request?.view;
            const into = view
              ? new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
              : new Uint8Array(64 * 1024);
            const n = await direct(into);
            if (cancelled) return;
            if (n !== null && n > 0) {
              received += n;
              failures = 0;
              if (request !== null) request.respond(n);
              else controller.enqueue(into.subarray(0, n));
              return;
            }
            chunk = n === null ? null : new Uint8Array(0);
          } else {
            const { done, value } = await reader!.read();
            if (cancelled) return;
            chunk = done ? null : value;
            if (chunk !== null && chunk.length > 0) {
              received += chunk.length;
              failures = 0;
              left = handOn(controller, request, chunk);
              return;
            }
          }
          if (chunk !== null) continue; // an empty read
          if (received >= length) {
            controller.close();
            request?.respond(0);
            return;
          }
          failure = new TypeError(`GetObject ${name}: the body ended at ${received} of ${length}`);
        } catch (error) {
          if (cancelled) return;
          if (!transient(error)) throw error;
          failure = error;
        }
        if (++failures >= attempts) {
          throw new StorageUnavailable(`S3 GetObject ${name}: the body broke ${failures} times`, {
            cause: failure,
          });
        }
        await stop().catch(() => {});
        body = await rest(received);
        if (cancelled) {
          await body.cancel().catch(() => {}); // the rest asked for before the cancel
          return;
        }
        direct = RAW_BODIES.get(body) ?? null;
        reader = direct === null ? body.getReader() : null;
      }
    },
    cancel: (reason) => {
      cancelled = true;
      return stop(reason);
    },
  });
}

/**
 * Hands `chunk` to a byte stream's reader: into the buffer it brought (what does not fit is
 * returned, for the next pull), or enqueued whole; null when nothing is left.
 */
function handOn(
  controller: ReadableByteStreamController,
  request: ReadableStreamBYOBRequest | null,
  chunk: Uint8Array,
): Uint8Array | null {
  if (request === null) {
    controller.enqueue(chunk);
    return null;
  }
  const view = request.view!;
  const into = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  const n = Math.min(chunk.length, into.length);
  into.set(chunk.subarray(0, n));
  request.respond(n);
  return n < chunk.length ? chunk.subarray(n) : null;
}
