/**
 * A request body sent the way Go's `net/http` sends a body of unknown length (Docker,
 * podman, skopeo, containerd and Distribution's own clients are Go programs): chunked
 * transfer encoding, one chunk per 32 KiB `io.Copy` read, through the Transport's 4 KiB
 * `bufio.Writer`, flushed after every chunk (`FlushAfterChunkWriter`), on a socket with
 * TCP_NODELAY set (Go's default). On the wire that is three writes per chunk: 4 KiB (the
 * chunk-size line and the first 4,090 data bytes, through the buffer), the other ~28 KiB
 * (straight from the caller's buffer, as `bufio.Writer` does for a large write into an empty
 * buffer), then the 2-byte CRLF alone. `bench/http1.ts` instead writes a chunk in two writes
 * (size line, data), so this sender is the closer copy of what those clients do.
 */

import { headEnd, parseHead, type ResponseHead } from "./http1.ts";

const encoder = new TextEncoder();

/** Go's `bufio.Writer` semantics over a connection: what is written when. */
export class GoBufWriter {
  readonly #conn: Deno.Conn;
  readonly #buf: Uint8Array;
  #n = 0;
  /** Socket writes issued (each `write` call until done counts once). */
  writes = 0;
  /** Bytes written to the socket. */
  bytes = 0;

  /** A writer with Go's default 4 KiB buffer (`Transport.WriteBufferSize`). */
  constructor(conn: Deno.Conn, size = 4096) {
    this.#conn = conn;
    this.#buf = new Uint8Array(size);
  }

  async #writeOut(bytes: Uint8Array): Promise<void> {
    this.writes++;
    for (let off = 0; off < bytes.length;) off += await this.#conn.write(bytes.subarray(off));
    this.bytes += bytes.length;
  }

  /** `bufio.Writer.Write`. */
  async write(p: Uint8Array): Promise<void> {
    while (p.length > this.#buf.length - this.#n) {
      if (this.#n === 0) {
        // Large write, empty buffer: straight from p.
        await this.#writeOut(p);
        return;
      }
      const take = this.#buf.length - this.#n;
      this.#buf.set(p.subarray(0, take), this.#n);
      this.#n += take;
      await this.flush();
      p = p.subarray(take);
    }
    this.#buf.set(p, this.#n);
    this.#n += p.length;
  }

  /** `bufio.Writer.Flush`. */
  async flush(): Promise<void> {
    if (this.#n === 0) return;
    await this.#writeOut(this.#buf.subarray(0, this.#n));
    this.#n = 0;
  }
}

/** What `goStyleRequest` returns. */
export interface GoStyleResponse extends ResponseHead {
  readonly body: Uint8Array;
  /** Socket writes of the request. */
  readonly writes: number;
  /** Bytes of the request on the wire (head, framing and data). */
  readonly bytesWritten: number;
}

/**
 * Opens a connection to `base`, sends `method target` with `data` as a chunked body in
 * `frame`-byte chunks as Go's net/http does, reads the response (a Content-Length or
 * empty body) and closes the connection.
 */
export async function goStyleRequest(
  base: string,
  method: string,
  target: string,
  data: Uint8Array,
  opts: { frame?: number; headers?: Record<string, string> } = {},
): Promise<GoStyleResponse> {
  const frame = opts.frame ?? 32 * 1024;
  const url = new URL(base);
  const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  try {
    conn.setNoDelay(true);
    const bw = new GoBufWriter(conn);
    let head = `${method} ${target} HTTP/1.1\r\nHost: ${url.host}\r\n` +
      `User-Agent: Go-http-client/1.1\r\nTransfer-Encoding: chunked\r\n`;
    for (const [k, v] of Object.entries(opts.headers ?? {})) head += `${k}: ${v}\r\n`;
    head += "Accept-Encoding: gzip\r\n\r\n";
    await bw.write(encoder.encode(head));
    for (let off = 0; off < data.length; off += frame) {
      const chunk = data.subarray(off, off + frame);
      await bw.write(encoder.encode(`${chunk.length.toString(16)}\r\n`));
      await bw.write(chunk);
      await bw.write(encoder.encode("\r\n"));
      await bw.flush();
    }
    await bw.write(encoder.encode("0\r\n\r\n"));
    await bw.flush();
    return { ...await readResponse(conn, method), writes: bw.writes, bytesWritten: bw.bytes };
  } finally {
    try {
      conn.close();
    } catch {
      // closed
    }
  }
}

/** Reads a response with a Content-Length (or no) body. */
async function readResponse(
  conn: Deno.Conn,
  method: string,
): Promise<ResponseHead & { body: Uint8Array }> {
  let buf = new Uint8Array(16 * 1024);
  let have = 0;
  let end = -1;
  while (end < 0) {
    if (have === buf.length) {
      const bigger = new Uint8Array(buf.length * 2);
      bigger.set(buf);
      buf = bigger;
    }
    const n = await conn.read(buf.subarray(have));
    if (n === null) throw new Error("Connection closed before the response head");
    have += n;
    end = headEnd(buf, have - n, have);
  }
  const head = parseHead(buf.subarray(0, end));
  const length = method === "HEAD" || head.status === 204
    ? 0
    : Number(head.headers.get("content-length") ?? "0");
  const body = new Uint8Array(length);
  const early = Math.min(have - end, length);
  body.set(buf.subarray(end, end + early));
  for (let got = early; got < length;) {
    const n = await conn.read(body.subarray(got));
    if (n === null) throw new Error("Connection closed inside the response body");
    got += n;
  }
  return { ...head, body };
}
