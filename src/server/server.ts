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

  const serveConnection = async (conn: Deno.Conn) => {
    const c = new Connection(conn, connectionOptions);
    connections.add(c);
    try {
      await c.serve();
    } finally {
      connections.delete(c);
      if (closing && connections.size === 0) allClosed?.();
    }
  };

  const accept = async (listener: Deno.Listener) => {
    while (!closing) {
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
      if (closing) {
        try {
          conn.close();
        } catch { /* closed */ }
        continue;
      }
      void serveConnection(conn);
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
    try {
      listener.close();
    } catch { /* already closed */ }
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
