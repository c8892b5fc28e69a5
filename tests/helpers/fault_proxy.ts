/**
 * A fault-injecting HTTP/1.1 proxy for S3 tests: it listens on 127.0.0.1 (port 0) and
 * forwards each request to an upstream server (RGW), or injects a fault instead, by the
 * mode current when the request has been read:
 *
 * - `pass`: forwarded (over a new upstream connection), the reply streamed back;
 * - `500`: answered 500 `InternalError` without reaching the upstream;
 * - `reset`: the connection is closed without a reply;
 * - `stall`: no reply ever (the connection is held until the proxy closes);
 * - `cut`: forwarded, but the connection is closed after `cutAfter` bytes of the reply.
 *
 * `fail(mode, count)` injects a fault into the next `count` requests only (then `mode`);
 * `failEvery(mode, period)` into every `period`-th request; `failMatching(pattern, mode, count)`
 * into the next `count` requests whose `METHOD path?query` matches; `mode = …` switches every
 * later request. Each request is served on a connection of its
 * own (`Connection: close` both ways), so a switch applies to the very next request. It
 * counts requests and bytes each way, so a test can tell what crossed the network.
 */

/** What the proxy does with a request. */
export type FaultMode = "pass" | "500" | "reset" | "stall" | "cut";

/** What crossed the proxy since the last `resetCounts`. */
export interface ProxyCounts {
  /** Requests read from clients. */
  requests: number;
  /** Requests that got a fault. */
  faults: number;
  /** Request bytes (head and body) read from clients. */
  sent: number;
  /** Reply bytes (head and body) written to clients. */
  received: number;
  /** `METHOD path?query` of every request, in order. */
  lines: string[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A running proxy; `close` stops it and drops every connection. */
export class FaultProxy {
  /** The mode of requests when no transient fault is pending. */
  mode: FaultMode = "pass";
  /** The reply bytes `cut` lets through before closing. */
  cutAfter = 1024;
  counts: ProxyCounts = { requests: 0, faults: 0, sent: 0, received: 0, lines: [] };
  readonly #listener: Deno.TcpListener;
  readonly #upstream: { hostname: string; port: number };
  readonly #conns = new Set<Deno.Conn>();
  readonly #handlers = new Set<Promise<void>>();
  #transient: { mode: FaultMode; left: number } | null = null;
  #periodic: { mode: FaultMode; period: number; seen: number } | null = null;
  #matching: { pattern: RegExp; mode: FaultMode; left: number }[] = [];
  #serving: Promise<void>;

  /** Starts a proxy to `upstream` (`http://host:port`). */
  constructor(upstream: string) {
    const url = new URL(upstream);
    this.#upstream = { hostname: url.hostname, port: Number(url.port || 80) };
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#serving = this.#accept();
  }

  /** `http://127.0.0.1:<port>` of the proxy. */
  get endpoint(): string {
    return `http://127.0.0.1:${(this.#listener.addr as Deno.NetAddr).port}`;
  }

  /** Injects `mode` into the next `count` requests, then goes back to `this.mode`. */
  fail(mode: FaultMode, count: number): void {
    this.#transient = { mode, left: count };
  }

  /** Injects `mode` into every `period`-th request from now on (null: stops). */
  failEvery(mode: FaultMode | null, period = 1): void {
    this.#periodic = mode === null ? null : { mode, period, seen: 0 };
  }

  /** Injects `mode` into the next `count` requests whose `METHOD path?query` matches. */
  failMatching(pattern: RegExp, mode: FaultMode, count = 1): void {
    this.#matching.push({ pattern, mode, left: count });
  }

  /** Transient and matching faults not yet injected. */
  get pendingFaults(): number {
    return (this.#transient?.left ?? 0) + this.#matching.reduce((sum, m) => sum + m.left, 0);
  }

  /** Zeroes the counts. */
  resetCounts(): void {
    this.counts = { requests: 0, faults: 0, sent: 0, received: 0, lines: [] };
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) close(conn);
    await this.#serving.catch(() => {});
    await Promise.allSettled([...this.#handlers]);
  }

  async #accept(): Promise<void> {
    for await (const conn of this.#listener) {
      this.#conns.add(conn);
      const handler = this.#serve(conn).catch(() => {}).finally(() => {
        this.#handlers.delete(handler);
      });
      this.#handlers.add(handler);
    }
  }

  /** The mode of a request (consuming a transient or matching fault). */
  #next(line: string): FaultMode {
    const matching = this.#matching.find((m) => m.left > 0 && m.pattern.test(line));
    if (matching) {
      matching.left--;
      return matching.mode;
    }
    const transient = this.#transient;
    if (transient !== null && transient.left > 0) {
      transient.left--;
      return transient.mode;
    }
    const periodic = this.#periodic;
    if (periodic !== null && ++periodic.seen % periodic.period === 0) return periodic.mode;
    return this.mode;
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    let hold = false;
    try {
      const request = await readRequest(conn);
      if (request === null) return;
      this.counts.requests++;
      this.counts.sent += request.bytes.length;
      this.counts.lines.push(request.line);
      const mode = this.#next(request.line);
      if (mode !== "pass" && mode !== "cut") this.counts.faults++;
      if (mode === "reset") return;
      if (mode === "stall") {
        hold = true;
        return;
      }
      if (mode === "500") {
        const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>` +
          `<Message>injected by the fault proxy</Message></Error>`;
        const reply = encoder.encode(
          `HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/xml\r\n` +
            `content-length: ${encoder.encode(body).length}\r\nconnection: close\r\n\r\n${body}`,
        );
        await writeAll(conn, reply);
        this.counts.received += reply.length;
        return;
      }
      if (mode === "cut") this.counts.faults++;
      await this.#forward(conn, request.bytes, mode === "cut" ? this.cutAfter : Infinity);
    } finally {
      if (!hold) {
        close(conn);
        this.#conns.delete(conn);
      }
    }
  }

  /** Sends the request upstream and streams the reply back (at most `limit` bytes). */
  async #forward(conn: Deno.Conn, request: Uint8Array, limit: number): Promise<void> {
    const upstream = await Deno.connect(this.#upstream);
    this.#conns.add(upstream);
    try {
      await writeAll(upstream, request);
      const buffer = new Uint8Array(64 * 1024);
      let head: Uint8Array | null = new Uint8Array(0);
      let left = limit;
      for (;;) {
        const n = await upstream.read(buffer);
        if (n === null) break;
        let out: Uint8Array = buffer.subarray(0, n);
        if (head !== null) {
          // Rewrites the reply's head to close the connection after it.
          head = join(head, out);
          const end = decoder.decode(head).indexOf("\r\n\r\n");
          if (end < 0) continue;
          const lines = decoder.decode(head.subarray(0, end)).split("\r\n")
            .filter((line) => !/^connection:/i.test(line));
          out = join(
            encoder.encode(`${lines.join("\r\n")}\r\nconnection: close\r\n\r\n`),
            head.subarray(end + 4),
          );
          head = null;
        }
        const take = out.subarray(0, Math.min(out.length, left));
        await writeAll(conn, take);
        this.counts.received += take.length;
        left -= take.length;
        if (left <= 0) break;
      }
    } finally {
      close(upstream);
      this.#conns.delete(upstream);
    }
  }
}

/** One request read from a client: its first line and its bytes, made `Connection: close`. */
async function readRequest(conn: Deno.Conn): Promise<{ line: string; bytes: Uint8Array } | null> {
  let start: Uint8Array = new Uint8Array(0);
  const buffer = new Uint8Array(64 * 1024);
  for (;;) {
    const end = decoder.decode(start).indexOf("\r\n\r\n");
    if (end >= 0) {
      const text = decoder.decode(start.subarray(0, end));
      if (/^transfer-encoding:/im.test(text)) throw new Error("chunked requests are not proxied");
      const length = Number(/^content-length:\s*(\d+)/im.exec(text)?.[1] ?? 0);
      const body = new Uint8Array(length);
      const first = start.subarray(end + 4, end + 4 + length);
      body.set(first);
      for (let at = first.length; at < length;) {
        const n = await conn.read(body.subarray(at));
        if (n === null) return null;
        at += n;
      }
      const lines = text.split("\r\n").filter((line) => !/^connection:/i.test(line));
      const [method, target] = lines[0].split(" ");
      return {
        line: `${method} ${target}`,
        bytes: join(encoder.encode(`${lines.join("\r\n")}\r\nconnection: close\r\n\r\n`), body),
      };
    }
    const n = await conn.read(buffer);
    if (n === null) return null;
    start = join(start, buffer.subarray(0, n));
  }
}

function join(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
