/**
 * The registry's HTTP/1.1 server on `Deno.listen`: keep-alive and pipelined requests,
 * `Content-Length` and chunked request bodies read straight into the upload buffers,
 * `Expect: 100-continue`, and responses written from bytes or, for blobs, from the open file
 * in large reads.
 *
 * Why not `Deno.serve`: in Deno 2.9.6 its request bodies sent with chunked transfer encoding
 * in small frames (Go's `net/http` sends 32 KiB frames: Docker, podman, skopeo, buildah)
 * slow to a few MiB/s, and hold growing memory, as soon as the reader pauses at all, e.g. to
 * write to disk (BENCHMARKS.md). The handler is the same either way: `--server deno` serves the
 * app with `Deno.serve`.
 */

import { errorBody, RegistryError } from "../errors.ts";
import type { RequestBody } from "./body.ts";
import { DECIMAL, type IncomingRequest } from "./request.ts";
import { content, headerOf, type Reply } from "./responses.ts";
import { takeFile } from "../storage/file_stream.ts";
import { BadRequest, type Head, readHead, Wire, WireBody } from "./wire.ts";

/** Answers one request; `body` is null when the request has none. */
export type Handler = (request: IncomingRequest, body: RequestBody | null) => Promise<Reply>;

/** Where and how to serve. */
export interface ServerOptions {
  readonly hostname: string;
  readonly port: number;
  /** Largest request head (request line and fields) read; above it 431 (default 64 KiB). */
  readonly maxHeadBytes?: number;
  /** Time a client gets to send a whole request head once it started one (default 60 s). */
  readonly headTimeoutMs?: number;
  /** An idle keep-alive connection is closed after this long (default 120 s). */
  readonly keepAliveTimeoutMs?: number;
  /** A response write that makes no progress this long closes the connection (default 60 s). */
  readonly writeTimeoutMs?: number;
  /** Called once listening. */
  readonly onListen?: (addr: Deno.NetAddr) => void;
  /** Where failures outside any request go (default: console.error). */
  readonly log?: (line: string) => void;
}

/** A running server. */
export interface Http1Server {
  readonly addr: Deno.NetAddr;
  /** Resolves when the server has stopped and every connection is closed. */
  readonly finished: Promise<void>;
  /**
   * Stops accepting, closes idle connections, lets requests in flight finish (their
   * connections close after the response), and resolves when every connection is closed.
   */
  shutdown(): Promise<void>;
}

/** Largest unread request body the server reads and discards to keep a connection. */
const DRAIN_BYTES = 1024 * 1024;
/** Bytes read from a blob file per read when sending it. */
const FILE_READ_BYTES = 1024 * 1024;
/** A response body up to this size is sent with its head in one write. */
const COALESCE_BYTES = 64 * 1024;
/** How long a closing connection keeps reading (and discarding) before the final close. */
const LINGER_MS = 2000;

/** A connection's state, as the idle sweep sees it. */
interface Connection {
  readonly wire: Wire;
  /** What it is doing: waiting for a request (`idle`, `head` once bytes came) or serving one. */
  phase: "idle" | "head" | "busy";
  /** Since when it is in its phase (epoch ms). */
  since: number;
}

/** Serves `handler` over HTTP/1.1 on a TCP listener. */
export function serveHttp1(options: ServerOptions, handler: Handler): Http1Server {
  const log = options.log ?? ((line: string) => console.error(line));
  const maxHeadBytes = options.maxHeadBytes ?? 64 * 1024;
  const headTimeoutMs = options.headTimeoutMs ?? 60_000;
  const keepAliveTimeoutMs = options.keepAliveTimeoutMs ?? 120_000;
  const writeTimeoutMs = options.writeTimeoutMs ?? 60_000;
  const listener = Deno.listen({ hostname: options.hostname, port: options.port });
  const addr = listener.addr as Deno.NetAddr;
  const authority = addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
  const connections = new Set<Connection>();
  let closing = false;
  let allClosed: (() => void) | null = null;

  const sweep = setInterval(() => {
    const now = Date.now();
    for (const c of connections) {
      const writing = c.wire.writingSince;
      if (c.phase === "busy") {
        // a client that stops reading its response
        if (writing !== null && now - writing >= writeTimeoutMs) closeQuietly(c.wire.conn);
        continue;
      }
      const limit = c.phase === "idle" ? keepAliveTimeoutMs : headTimeoutMs;
      if (now - c.since >= limit) closeQuietly(c.wire.conn);
    }
  }, Math.max(10, Math.min(1000, headTimeoutMs / 4, keepAliveTimeoutMs / 4, writeTimeoutMs / 4)));
  Deno.unrefTimer(sweep);

  const serveConnection = async (conn: Deno.TcpConn) => {
    const c: Connection = { wire: new Wire(conn), phase: "idle", since: Date.now() };
    connections.add(c);
    try {
      conn.setNoDelay(true);
      while (!closing && await serveOne(c)) {
        c.wire.relax();
        c.phase = "idle";
        c.since = Date.now();
      }
    } catch (error) {
      if (!isDisconnect(error)) log(`connection failed: ${error}`);
    } finally {
      closeQuietly(conn);
      connections.delete(c);
      if (closing && connections.size === 0) allClosed?.();
    }
  };

  /** Serves one request; true when the connection can take another. */
  const serveOne = async (c: Connection): Promise<boolean> => {
    const wire = c.wire;
    let head: Head | null;
    try {
      head = await readHead(wire, maxHeadBytes, authority, () => {
        c.phase = "head";
        c.since = Date.now();
      });
    } catch (error) {
      if (!(error instanceof BadRequest)) throw error;
      await writeResponse(wire, plainError(error.status, error.message), false, false, false);
      await lingerClose(wire);
      return false;
    }
    if (head === null) return false;
    c.phase = "busy";
    c.since = Date.now();
    const { framing } = head;
    const sendContinue = head.expectContinue ? () => wire.write(CONTINUE) : null;
    const body = framing.kind === "none"
      ? null
      : new WireBody(wire, framing.kind === "length" ? framing.length : null, sendContinue);
    const response = await handler(head.request, body);
    let keepAlive = head.keepAlive && !closing && !wantsClose(response);
    // What the handler left of the body must be read off the connection before the next
    // request: drained when small and already coming, else the connection closes.
    if (keepAlive && body !== null && !body.done) {
      keepAlive = !body.broken && !body.unrequested && await drain(body);
    }
    const complete = await writeResponse(
      wire,
      response,
      head.request.method === "HEAD",
      keepAlive,
      head.http10,
    );
    if (!complete) return false;
    if (!keepAlive) {
      // The client may still be sending (a body, pipelined requests): read it away for a
      // moment so that the close does not reset the connection before the response is read.
      if ((body !== null && !body.done) || wire.buffered > 0) await lingerClose(wire);
      return false;
    }
    return true;
  };

  const accept = async () => {
    while (!closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (closing || error instanceof Deno.errors.BadResource) return;
        // e.g. EMFILE: keep accepting once descriptors are free again
        log(`accept failed: ${error}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (closing) {
        closeQuietly(conn);
        continue;
      }
      void serveConnection(conn);
    }
  };

  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const accepting = accept();
  options.onListen?.(addr);

  return {
    addr,
    finished,
    async shutdown() {
      if (!closing) {
        closing = true;
        clearInterval(sweep);
        try {
          listener.close();
        } catch { /* already closed */ }
        const done = new Promise<void>((resolve) => (allClosed = resolve));
        for (const c of connections) if (c.phase !== "busy") closeQuietly(c.wire.conn);
        if (connections.size > 0) await done;
        await accepting;
        finish();
      }
      await finished;
    },
  };
}

const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");

/**
 * Reads and discards the rest of a body if it is at most DRAIN_BYTES and arrives within
 * LINGER_MS; false otherwise (the connection must close).
 */
async function drain(body: WireBody): Promise<boolean> {
  const scratch = new Uint8Array(64 * 1024);
  let total = 0;
  const timer = setTimeout(() => body.abort(DRAIN_TIMEOUT), LINGER_MS);
  try {
    while (!body.done) {
      const view = await body.read(scratch);
      total += view.length;
      if (view.length === 0) break;
      if (total > DRAIN_BYTES) return false;
    }
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

const DRAIN_TIMEOUT = new RegistryError("UNKNOWN", "Request body not sent in time", {
  status: 408,
});

/** Half-closes, reads what the client still sends for a moment, then closes. */
async function lingerClose(wire: Wire): Promise<void> {
  const conn = wire.conn;
  try {
    await conn.closeWrite();
  } catch {
    return;
  }
  const timer = setTimeout(() => closeQuietly(conn), LINGER_MS);
  try {
    const scratch = new Uint8Array(64 * 1024);
    while ((await conn.read(scratch)) !== null) { /* discard */ }
  } catch {
    /* closed */
  } finally {
    clearTimeout(timer);
  }
}

function wantsClose(response: Reply): boolean {
  const value = headerOf(response, "connection");
  return value !== null && value.toLowerCase().includes("close");
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.Interrupted ||
    (error instanceof Error && error.message.startsWith("Connection closed"));
}

/** An OCI error for a request the server refuses before the app sees it. */
function plainError(status: number, message: string): Reply {
  return content(status, encoder.encode(errorBody("UNKNOWN", message, null)), {
    "Content-Type": "application/json",
  });
}

const REASONS: Record<number, string> = {
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  307: "Temporary Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  411: "Length Required",
  413: "Content Too Large",
  414: "URI Too Long",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

const encoder = new TextEncoder();
let dateSecond = 0;
let dateText = "";

function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}

// deno-lint-ignore no-control-regex
const UNSAFE_FIELD = /[\x00-\x08\x0a-\x1f\x7f]/;

/** Header fields the server writes itself. */
const FRAMING = new Set([
  "content-length",
  "connection",
  "transfer-encoding",
  "keep-alive",
  "date",
]);

/** The response head; `length` null means no `Content-Length` (204, 1xx, HEAD without one). */
function headText(
  response: Reply,
  length: number | null,
  keepAlive: boolean,
  http10: boolean,
): string {
  const status = response.status;
  let text = `HTTP/1.1 ${status} ${REASONS[status] ?? ""}\r\n`;
  for (const [name, value] of response.headers) {
    if (FRAMING.has(name.toLowerCase())) continue;
    // a field that could split the response is dropped (handlers only send checked values)
    if (UNSAFE_FIELD.test(name) || UNSAFE_FIELD.test(value)) continue;
    text += `${name}: ${value}\r\n`;
  }
  if (length !== null) text += `Content-Length: ${length}\r\n`;
  if (!keepAlive) text += "Connection: close\r\n";
  else if (http10) text += "Connection: keep-alive\r\n";
  return `${text}Date: ${httpDate()}\r\n\r\n`;
}

/**
 * Writes a response. HEAD responses keep the handler's `Content-Length` and send no body.
 * Returns false when the body could not be sent whole (the connection must close).
 */
async function writeResponse(
  wire: Wire,
  response: Reply,
  isHead: boolean,
  keepAlive: boolean,
  http10: boolean,
): Promise<boolean> {
  const status = response.status;
  const noBody = isHead || status === 204 || status === 304 || (status >= 100 && status < 200);
  const body = response.body;
  if (noBody) {
    if (body instanceof ReadableStream) await discard(body);
    const declared = headerOf(response, "content-length");
    const length = status === 204 || status < 200 || declared === null || !DECIMAL.test(declared)
      ? null
      : Number(declared);
    await wire.write(encoder.encode(headText(response, length, keepAlive, http10)));
    return true;
  }
  if (body === null || body instanceof Uint8Array) {
    const bytes = body ?? new Uint8Array(0);
    const head = encoder.encode(headText(response, bytes.length, keepAlive, http10));
    if (bytes.length <= COALESCE_BYTES) {
      const both = new Uint8Array(head.length + bytes.length);
      both.set(head);
      both.set(bytes, head.length);
      await wire.write(both);
    } else {
      await wire.write(head);
      await wire.write(bytes);
    }
    return true;
  }
  const file = takeFile(body);
  if (file !== undefined) {
    try {
      await wire.write(encoder.encode(headText(response, file.length, keepAlive, http10)));
    } catch (error) {
      closeFile(file.file);
      throw error;
    }
    return await sendFile(wire, file.file, file.length);
  }
  // Handlers stream nothing but blob files (storage/file_stream.ts).
  await discard(body);
  throw new Error("A response stream that is not a blob file");
}

/** Copies `length` bytes of a file from its position to the socket, then closes the file. */
async function sendFile(wire: Wire, file: Deno.FsFile, length: number): Promise<boolean> {
  try {
    // Small blobs (configs, manifests) get buffers of their size; a second one only when the
    // reads overlap the sends.
    const size = Math.max(1, Math.min(FILE_READ_BYTES, length));
    const buffers = [new Uint8Array(size), new Uint8Array(length > size ? size : 0)];
    let remaining = length;
    let current = 0;
    let reading: Promise<number | null> | null = remaining > 0
      ? file.read(buffers[0].subarray(0, Math.min(size, remaining)))
      : null;
    while (reading !== null) {
      const n = await reading;
      if (n === null || n === 0) return false; // the file is shorter than promised
      remaining -= n;
      const chunk = buffers[current].subarray(0, n);
      current = 1 - current;
      // Read the next piece while this one is being sent.
      reading = remaining > 0
        ? file.read(buffers[current].subarray(0, Math.min(size, remaining)))
        : null;
      try {
        await wire.write(chunk);
      } catch (error) {
        await reading?.catch(() => null);
        throw error;
      }
    }
    return true;
  } finally {
    closeFile(file);
  }
}

function closeFile(file: Deno.FsFile): void {
  try {
    file.close();
  } catch { /* closed */ }
}

async function discard(stream: ReadableStream<Uint8Array>): Promise<void> {
  const file = takeFile(stream);
  if (file !== undefined) {
    closeFile(file.file);
    return;
  }
  await stream.cancel().catch(() => {});
}
