/**
 * A small S3 client for the S3 driver: path-style requests signed with SigV4 by `aws4fetch`
 * (we never sign by hand), retries with backoff for idempotent requests (5xx, 429, connection
 * errors), a Content-MD5 on every body, and the few operations the driver needs: object PUT/GET/HEAD/DELETE/copy,
 * ListObjectsV2, DeleteObjects and multipart uploads.
 */

import { AwsClient } from "aws4fetch";
import { createHash } from "node:crypto";

/** How to reach a bucket. */
export interface S3ClientOptions {
  /** `http(s)://host:port` of the server (no trailing slash). */
  readonly endpoint: string;
  readonly bucket: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
  /** Attempts of an idempotent request (1 = no retry). */
  readonly attempts?: number;
}

/** A reply the client did not expect. */
export class S3Error extends Error {
  /** Makes the error for a request and its reply. */
  constructor(readonly status: number, what: string, body: string) {
    const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? "";
    super(`S3 ${what}: ${status} ${code}`.trim());
    this.name = "S3Error";
  }
}

/** One page of ListObjectsV2. */
export interface ListPage {
  readonly keys: { key: string; size: number }[];
  readonly prefixes: string[];
  readonly next: string | null;
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
 * The Content-MD5 of a body: the payload is not signed (aws4fetch sends `UNSIGNED-PAYLOAD`
 * for S3), so this is what lets the server refuse bytes damaged on the way (400 BadDigest).
 */
const md5 = (body: Uint8Array) => createHash("md5").update(body).digest("base64");

/** Statuses worth another attempt of an idempotent request. */
const retryable = (status: number) => status >= 500 || status === 429;

/** A client of one bucket. */
export class S3Client {
  readonly #aws: AwsClient;
  readonly #base: string;
  readonly #attempts: number;

  /** Makes a client; nothing is requested. */
  constructor(readonly options: S3ClientOptions) {
    this.#aws = new AwsClient({
      accessKeyId: options.accessKey,
      secretAccessKey: options.secretKey,
      service: "s3",
      region: options.region,
      retries: 0, // our own retries, for idempotent requests only
    });
    this.#base = `${options.endpoint.replace(/\/+$/, "")}/${encodeURIComponent(options.bucket)}`;
    this.#attempts = options.attempts ?? 5;
  }

  /** The URL of an object name (path-style), with an optional query. */
  url(name: string, query = ""): string {
    const path = name === "" ? "" : `/${name.split("/").map(encodeURIComponent).join("/")}`;
    return `${this.#base}${path}${query ? `?${query}` : ""}`;
  }

  /**
   * Sends a request; retries an idempotent one (its body must be bytes or absent) on 5xx, 429
   * and connection errors with exponential backoff. Returns the response of the last attempt.
   */
  async request(
    method: string,
    url: string,
    init: { headers?: Record<string, string>; body?: Uint8Array | string; idempotent?: boolean } =
      {},
  ): Promise<Response> {
    const attempts = init.idempotent === false ? 1 : this.#attempts;
    for (let attempt = 1;; attempt++) {
      try {
        const response = await this.#aws.fetch(url, {
          method,
          headers: init.headers,
          body: init.body as BodyInit | undefined,
        });
        if (!retryable(response.status) || attempt >= attempts) return response;
        await response.body?.cancel();
      } catch (error) {
        if (attempt >= attempts || !(error instanceof TypeError)) throw error;
      }
      // Backoff between attempts of a failed request (not a synchronisation).
      await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt * Math.random()));
    }
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

  /** PutObject of bytes, with extra headers (e.g. `x-amz-meta-*`, `if-none-match`). */
  async putObject(
    name: string,
    body: Uint8Array,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    return await this.request("PUT", this.url(name), {
      body,
      headers: { ...headers, "content-md5": md5(body) },
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

  /** GetObject, whole or `bytes=start-end` (inclusive end); the raw response (200/206/404/416). */
  async getObject(name: string, range?: { start: number; end: number }): Promise<Response> {
    const headers: Record<string, string> = {};
    if (range) headers.range = `bytes=${range.start}-${range.end}`;
    const response = await this.request("GET", this.url(name), { headers });
    if ([200, 206, 404, 416].includes(response.status)) return response;
    return await this.expect(response, `GetObject ${name}`);
  }

  /** DeleteObject (no error when missing). */
  async deleteObject(name: string): Promise<void> {
    const response = await this.request("DELETE", this.url(name));
    await (await this.expect(response, `DeleteObject ${name}`, [200, 204, 404])).body?.cancel();
  }

  /** CopyObject within the bucket, keeping the source's metadata; false when it is missing. */
  async copyObject(from: string, to: string): Promise<boolean> {
    const source = `/${encodeURIComponent(this.options.bucket)}/${
      from.split("/").map(encodeURIComponent).join("/")
    }`;
    const response = await this.request("PUT", this.url(to), {
      headers: { "x-amz-copy-source": source },
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
        headers: { "content-md5": md5(bytes), "content-type": "application/xml" },
      });
      const xml = await (await this.expect(response, "DeleteObjects")).text();
      if (xml.includes("<Error>")) throw new S3Error(500, "DeleteObjects", xml);
    }
  }

  /** CreateMultipartUpload; the upload id. */
  async createMultipart(name: string): Promise<string> {
    const response = await this.request("POST", this.url(name, "uploads"), { idempotent: false });
    const xml = await (await this.expect(response, `CreateMultipartUpload ${name}`)).text();
    const id = tags(xml, "UploadId")[0];
    if (!id) throw new S3Error(500, `CreateMultipartUpload ${name}`, xml);
    return id;
  }

  /** UploadPart; the part's ETag. */
  async uploadPart(name: string, id: string, part: number, body: Uint8Array): Promise<string> {
    const query = `partNumber=${part}&uploadId=${encodeURIComponent(id)}`;
    const response = await this.request("PUT", this.url(name, query), {
      body,
      headers: { "content-md5": md5(body) },
    });
    await (await this.expect(response, `UploadPart ${name} #${part}`)).body?.cancel();
    const etag = response.headers.get("etag");
    if (!etag) throw new S3Error(500, `UploadPart ${name} #${part}: no ETag`, "");
    return etag;
  }

  /** CompleteMultipartUpload of the parts' ETags in order (part numbers from 1). */
  async completeMultipart(name: string, id: string, etags: readonly string[]): Promise<void> {
    const body = `<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload>${
      etags.map((etag, i) =>
        `<Part><PartNumber>${i + 1}</PartNumber><ETag>${escapeXml(etag)}</ETag></Part>`
      ).join("")
    }</CompleteMultipartUpload>`;
    const response = await this.request(
      "POST",
      this.url(name, `uploadId=${encodeURIComponent(id)}`),
      { body, headers: { "content-type": "application/xml" } },
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
}
