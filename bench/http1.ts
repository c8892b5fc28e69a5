/**
 * A minimal HTTP/1.1 client over `Deno.connect`, for the benchmark's data transfers.
 *
 * Deno's `fetch` measured 140–250 MiB/s uploading from a Uint8Array and under 100 MiB/s from a
 * ReadableStream on this kind of machine, below the servers it is meant to measure. This
 * client writes request bodies straight from the caller's buffer to the socket (one kernel
 * copy, no framing copies) and reads response bodies straight into a caller's buffer, so
 * the client costs about what curl costs. It speaks just enough HTTP/1.1 for a registry:
 * keep-alive, `Content-Length` or chunked request bodies, and `Content-Length` or chunked
 * response bodies.
 */

const CRLF = "\r\n";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A parsed response head. */
export interface ResponseHead {
  readonly status: number;
  /** Header names in lower case; repeated headers joined with ", ". */
  readonly headers: Map<string, string>;
}

/** A response with its body (small bodies only, unless read into a sink). */
export interface Http1Response extends ResponseHead {
  /** The body; empty when it went into a sink. */
  readonly body: Uint8Array;
  /** Bytes of body received. */
  readonly received: number;
}

/** What a request sends and where its response body goes. */
export interface RequestOptions {
  readonly headers?: Record<string, string>;
  /** A body sent with `Content-Length`. */
  readonly body?: Uint8Array;
  /** A body sent with chunked transfer encoding, one HTTP chunk per array element. */
  readonly chunks?: Iterable<Uint8Array>;
  /** Reads a `Content-Length` body directly into this buffer (it must be large enough). */
  readonly sink?: Uint8Array;
}

/** Finds the end of the header block (the index after CRLFCRLF) in `buf[0, len)`, or -1. */
export function headEnd(buf: Uint8Array, from: number, len: number): number {
  for (let i = Math.max(0, from - 3); i + 3 < len; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) {
      return i + 4;
    }
  }
  return -1;
}

/** Parses a response head (status line and headers). */
export function parseHead(bytes: Uint8Array): ResponseHead {
  const lines = decoder.decode(bytes).split(CRLF);
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "");
  if (!match) throw new Error(`Bad status line ${JSON.stringify(lines[0])}`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const prior = headers.get(name);
    headers.set(name, prior === undefined ? value : `${prior}, ${value}`);
  }
  return { status: Number(match[1]), headers };
}

/**
 * Scans a chunked body held in `buf[pos, len)`: returns the decoded chunks' spans and the
 * position after the last complete chunk, and whether the final zero chunk was seen.
 */
export function scanChunked(
  buf: Uint8Array,
  pos: number,
  len: number,
): { pos: number; done: boolean; spans: Array<[number, number]> } {
  const spans: Array<[number, number]> = [];
  for (;;) {
    let lineEnd = -1;
    for (let i = pos; i + 1 < len; i++) {
      if (buf[i] === 13 && buf[i + 1] === 10) {
        lineEnd = i;
        break;
      }
    }
    if (lineEnd < 0) return { pos, done: false, spans };
    const sizeText = decoder.decode(buf.subarray(pos, lineEnd)).split(";")[0]!.trim();
    const size = parseInt(sizeText, 16);
    if (Number.isNaN(size)) throw new Error(`Bad chunk size ${JSON.stringify(sizeText)}`);
    if (size === 0) {
      // No trailers expected: the terminating CRLF follows the size line.
      if (lineEnd + 4 > len) return { pos, done: false, spans };
      return { pos: lineEnd + 4, done: true, spans };
    }
    const dataStart = lineEnd + 2;
    if (dataStart + size + 2 > len) return { pos, done: false, spans };
    spans.push([dataStart, dataStart + size]);
    pos = dataStart + size + 2;
  }
}

/** One keep-alive HTTP/1.1 connection. */
export class Http1 {
  readonly #conn: Deno.TcpConn;
  readonly #host: string;
  /** Bytes written to the socket so far (request heads and bodies). */
  bytesWritten = 0;
  #buf = new Uint8Array(64 * 1024);

  private constructor(conn: Deno.TcpConn, host: string) {
    this.#conn = conn;
    this.#host = host;
  }

  /** Opens a connection to `base` (an `http://host:port` URL). */
  static async connect(base: string | URL): Promise<Http1> {
    const url = new URL(base);
    const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
    conn.setNoDelay(true);
    return new Http1(conn, url.host);
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  /** Sends one request and reads its response; throws on a protocol or socket error. */
  async request(
    method: string,
    target: string,
    options: RequestOptions = {},
  ): Promise<Http1Response> {
    let head = `${method} ${target} HTTP/1.1${CRLF}Host: ${this.#host}${CRLF}`;
    for (const [k, v] of Object.entries(options.headers ?? {})) head += `${k}: ${v}${CRLF}`;
    if (options.chunks) {
      head += `Transfer-Encoding: chunked${CRLF}${CRLF}`;
      let prefix = head;
      for (const chunk of options.chunks) {
        if (chunk.length === 0) continue;
        await this.#writeAll(encoder.encode(`${prefix}${chunk.length.toString(16)}${CRLF}`));
        await this.#writeAll(chunk);
        prefix = CRLF;
      }
      await this.#writeAll(encoder.encode(`${prefix === head ? head : CRLF}0${CRLF}${CRLF}`));
    } else {
      const body = options.body ?? new Uint8Array(0);
      head += `Content-Length: ${body.length}${CRLF}${CRLF}`;
      const headBytes = encoder.encode(head);
      if (body.length <= 64 * 1024) {
        const all = new Uint8Array(headBytes.length + body.length);
        all.set(headBytes);
        all.set(body, headBytes.length);
        await this.#writeAll(all);
      } else {
        await this.#writeAll(headBytes);
        await this.#writeAll(body);
      }
    }
    return await this.#readResponse(method, options.sink);
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) {
      const n = await this.#conn.write(bytes.subarray(off));
      off += n;
      this.bytesWritten += n;
    }
  }

  async #readResponse(method: string, sink: Uint8Array | undefined): Promise<Http1Response> {
    let have = 0;
    let end = -1;
    while (end < 0) {
      if (have === this.#buf.length) {
        const bigger = new Uint8Array(this.#buf.length * 2);
        bigger.set(this.#buf);
        this.#buf = bigger;
      }
      const n = await this.#conn.read(this.#buf.subarray(have));
      if (n === null) throw new Error("Connection closed before the response head");
      have += n;
      end = headEnd(this.#buf, have - n, have);
    }
    const head = parseHead(this.#buf.subarray(0, end));
    const noBody = method === "HEAD" || head.status === 204 || head.status === 304 ||
      (head.status >= 100 && head.status < 200);
    if (noBody) return { ...head, body: new Uint8Array(0), received: 0 };
    const te = head.headers.get("transfer-encoding");
    if (te !== undefined && te.toLowerCase().includes("chunked")) {
      return await this.#readChunked(head, end, have);
    }
    const cl = head.headers.get("content-length");
    if (cl === undefined) throw new Error("Response without Content-Length or chunked encoding");
    const length = Number(cl);
    const target = sink ?? new Uint8Array(length);
    if (target.length < length) throw new Error(`Sink of ${target.length} B < body ${length} B`);
    const early = Math.min(have - end, length);
    target.set(this.#buf.subarray(end, end + early));
    let got = early;
    while (got < length) {
      const n = await this.#conn.read(target.subarray(got, length));
      if (n === null) throw new Error(`Connection closed after ${got} of ${length} body bytes`);
      got += n;
    }
    return { ...head, body: sink ? new Uint8Array(0) : target, received: got };
  }

  async #readChunked(head: ResponseHead, start: number, have: number): Promise<Http1Response> {
    const parts: Uint8Array[] = [];
    let pos = start;
    for (;;) {
      const scan = scanChunked(this.#buf, pos, have);
      for (const [a, b] of scan.spans) parts.push(this.#buf.slice(a, b));
      pos = scan.pos;
      if (scan.done) break;
      // Keep the unparsed tail at the front of the buffer and read more.
      this.#buf.copyWithin(0, pos, have);
      have -= pos;
      pos = 0;
      if (have === this.#buf.length) {
        const bigger = new Uint8Array(this.#buf.length * 2);
        bigger.set(this.#buf);
        this.#buf = bigger;
      }
      const n = await this.#conn.read(this.#buf.subarray(have));
      if (n === null) throw new Error("Connection closed inside a chunked body");
      have += n;
    }
    const total = parts.reduce((s, p) => s + p.length, 0);
    const body = new Uint8Array(total);
    let off = 0;
    for (const p of parts) {
      body.set(p, off);
      off += p.length;
    }
    return { ...head, body, received: total };
  }
}
