/**
 * An HTTP/1.1 server on `Deno.listen` (or `Deno.listenTls`, with a certificate that can be
 * replaced while serving): keep-alive and pipelined requests, `Content-Length`
 * and chunked request bodies read straight into the handler's buffers, `Expect: 100-continue`,
 * replies from bytes or any byte stream, timeouts for slow heads, idle connections and stalled
 * readers, and a graceful shutdown.
 *
 * Why not `Deno.serve`: in Deno 2.9.6 its request bodies sent with chunked transfer encoding
 * in small frames (Go's `net/http` sends 32 KiB frames) slow to a few MiB/s, and hold growing
 * memory, as soon as the reader pauses at all, e.g. to write to disk.
 */

import { Connection } from "./connection.ts";
import type { Handler } from "./types.ts";

/** Where and how to serve. */
export interface ServerOptions {
  /** The address to listen on. */
  readonly hostname: string;
  /** The port to listen on (0: any free one). */
  readonly port: number;
  /** Largest request head (request line and fields) read; above it 431 (default 64 KiB). */
  readonly maxHeadBytes?: number;
  /** Time a client gets to send a whole request head once it started one; then 408 (60 s). */
  readonly headTimeoutMs?: number;
  /** An idle keep-alive connection is closed after this long (default 120 s). */
  readonly keepAliveTimeoutMs?: number;
  /** A reply write that makes no progress this long closes the connection (default 60 s). */
  readonly writeTimeoutMs?: number;
  /** Serve HTTPS with this PEM certificate chain and key (default: plain HTTP). */
  readonly tls?: TlsPair;
  /**
   * The most connections served at once (default: no limit). At the limit a connection idle for
   * `evictIdleMs` (new and silent before one between requests, the longest idle first) is
   * closed to make room; until one is, the next connection is accepted and held, and the ones
   * after it wait in the kernel's listen queue.
   */
  readonly maxConnections?: number;
  /** How long a connection must have been idle to be closed for a new one (default 5 s). */
  readonly evictIdleMs?: number;
  /** Called once listening. */
  readonly onListen?: (addr: Deno.NetAddr) => void;
  /** Where failures outside any reply go (default: console.error). */
  readonly log?: (line: string) => void;
}

/** A PEM certificate chain and its private key. */
export interface TlsPair {
  readonly cert: string;
  readonly key: string;
}

/** A running server. */
export interface Http1Server {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** Resolves when the server has stopped and every connection is closed. */
  readonly finished: Promise<void>;
  /**
   * Stops accepting, closes idle connections, lets requests in flight finish (their
   * connections close after the reply), and resolves when every connection is closed.
   */
  shutdown(): Promise<void>;
  /**
   * Serves new connections with another certificate and key (TLS only); established
   * connections keep theirs. Throws, keeping the old pair, when the new one is unusable.
   */
  reloadTls(tls: TlsPair): Promise<void>;
}

/** Serves `handler` over HTTP/1.1 on a TCP (or TLS) listener. */
export function serveHttp1(options: ServerOptions, handler: Handler): Http1Server {
  const log = options.log ?? ((line: string) => console.error(line));
  const maxHeadBytes = options.maxHeadBytes ?? 64 * 1024;
  const headTimeoutMs = options.headTimeoutMs ?? 60_000;
  const keepAliveTimeoutMs = options.keepAliveTimeoutMs ?? 120_000;
  const writeTimeoutMs = options.writeTimeoutMs ?? 60_000;
  const maxConnections = options.maxConnections ?? Infinity;
  if (!(maxConnections >= 1)) throw new RangeError("maxConnections must be at least 1");
  const evictIdleMs = options.evictIdleMs ?? 5_000;
  const listen = (port: number, tls: TlsPair | undefined): Deno.Listener =>
    tls
      ? Deno.listenTls({ hostname: options.hostname, port, cert: tls.cert, key: tls.key })
      : Deno.listen({ hostname: options.hostname, port });
  let listener = listen(options.port, options.tls);
  const addr = listener.addr as Deno.NetAddr;
  const authority = addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
  const connections = new Set<Connection>();
  let closing = false;
  let allClosed: (() => void) | null = null;
  const scheme = options.tls ? "https" as const : "http" as const;
  const connectionOptions = {
    handler,
    maxHeadBytes,
    authority,
    scheme,
    log,
    closing: () => closing,
  };

  const sweep = setInterval(() => {
    const now = Date.now();
    for (const c of connections) {
      if (c.phase === "busy") {
        // a client that stops reading its reply
        const writing = c.writer.writingSince;
        if (writing !== null && now - writing >= writeTimeoutMs) c.close();
      } else if (c.phase === "idle") {
        if (now - c.since >= keepAliveTimeoutMs) c.close();
      } else if (now - c.since >= headTimeoutMs) {
        c.expireHead();
      }
    }
  }, Math.max(10, Math.min(1000, headTimeoutMs / 4, keepAliveTimeoutMs / 4, writeTimeoutMs / 4)));
  Deno.unrefTimer(sweep);

  /** Wakes the accept loop waiting for a connection to close (at the limit), if it waits. */
  let wakeAccept: (() => void) | null = null;
  const wake = () => {
    wakeAccept?.();
    wakeAccept = null;
  };

  const serveConnection = async (conn: Deno.Conn) => {
    const c = new Connection(conn, connectionOptions);
    connections.add(c);
    try {
      await c.serve();
    } finally {
      connections.delete(c);
      wake();
      if (closing && connections.size === 0) allClosed?.();
    }
  };

  /**
   * The connection to close for a new one: of those waiting `evictIdleMs` or more for a
   * request, one that never sent any before one between requests (whose client may be about
   * to send its next), the longest idle first. Else null, and in how many ms one is due.
   */
  const dueToClose = (): { close: Connection | null; dueInMs: number } => {
    const now = Date.now();
    let close: Connection | null = null;
    let dueInMs = Infinity;
    for (const c of connections) {
      if (c.phase !== "idle") continue;
      const due = c.since + evictIdleMs - now;
      if (due > 0) dueInMs = Math.min(dueInMs, due);
      else if (close === null || closesBefore(c, close)) close = c;
    }
    return { close, dueInMs };
  };
  const closesBefore = (c: Connection, other: Connection) =>
    (c.served === 0) !== (other.served === 0) ? c.served === 0 : c.since < other.since;

  /** When reaching the limit was last logged (at most once a minute). */
  let limitLoggedAt = -Infinity;
  /** Listeners replaced by `reloadTls`: their accept loops end. */
  const retired = new WeakSet<Deno.Listener>();
  const accept = async (listener: Deno.Listener) => {
    while (!closing && !retired.has(listener)) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        // closed: by shutdown(), or by reloadTls() replacing the listener
        if (closing || error instanceof Deno.errors.BadResource) return;
        // e.g. EMFILE: keep accepting once descriptors are free again
        log(`accept failed: ${error}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      // at the limit, this connection waits for a place (and the next ones in the listen queue)
      await placeFor(listener);
      if (closing) {
        try {
          conn.close();
        } catch { /* closed */ }
        continue;
      }
      void serveConnection(conn);
    }
  };

  /**
   * Returns once a connection can be served beside the others: at once under the limit; at
   * it, once one closes, closing one idle for `evictIdleMs` (`dueToClose`) to make room. Also
   * returns when the server closes or `listener` is replaced (the connection held then is
   * served all the same, one over the limit for a while).
   */
  const placeFor = async (listener: Deno.Listener) => {
    while (connections.size >= maxConnections && !closing && !retired.has(listener)) {
      if (performance.now() - limitLoggedAt >= 60_000) {
        limitLoggedAt = performance.now();
        log(
          `connection limit reached (${maxConnections}): connections idle for ` +
            `${evictIdleMs / 1000} s are closed to make room; new ones wait till then`,
        );
      }
      const freed = new Promise<void>((resolve) => (wakeAccept = resolve));
      const { close, dueInMs } = dueToClose();
      close?.close();
      // look again soon in any case: a connection going idle or becoming due does not wake us
      const timer = setTimeout(wake, Math.min(250, Math.max(10, dueInMs)));
      await freed;
      clearTimeout(timer);
    }
  };

  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  let accepting = accept(listener);
  options.onListen?.(addr);

  let reloading: Promise<void> = Promise.resolve();
  const reload = async (tls: TlsPair) => {
    if (!options.tls) throw new Error("The server does not serve TLS");
    if (closing) return;
    // A pair that fails here (unreadable, or key and certificate not matching) leaves the
    // running listener alone.
    Deno.listenTls({ hostname: options.hostname, port: 0, cert: tls.cert, key: tls.key })
      .close();
    // A listener's certificate is fixed: replace the listener on the same port. Established
    // connections are sockets of their own and stay; the port is free again once the old
    // listener's pending accept has ended.
    retired.add(listener);
    try {
      listener.close();
    } catch { /* already closed */ }
    wake();
    await accepting;
    if (closing) return;
    listener = listen(addr.port, tls);
    accepting = accept(listener);
  };

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
        wake();
        const done = new Promise<void>((resolve) => (allClosed = resolve));
        for (const c of connections) if (c.phase !== "busy") c.close();
        if (connections.size > 0) await done;
        await reloading;
        await accepting;
        finish();
      }
      await finished;
    },
    reloadTls(tls: TlsPair) {
      const next = reloading.then(() => reload(tls));
      reloading = next.catch(() => {});
      return next;
    },
  };
}
