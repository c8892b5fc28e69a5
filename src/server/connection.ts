/**
 * One connection's request loop: read a head, hand the request and its body to the handler,
 * drain what the handler left of the body, write the reply; again while the connection is
 * kept alive. Requests the server refuses, and bodies the client got wrong, are answered by
 * the server itself (plain text) and close the connection, after a moment of lingering so the
 * client can read the answer.
 */

import { WireBody } from "./body.ts";
import { HttpError } from "./errors.ts";
import { type Head, readHead } from "./head.ts";
import { BODY_BUFFER, WireReader } from "./reader.ts";
import { errorReply, headerOf, plainReply, writeReply } from "./reply.ts";
import { Tripwire } from "./tripwire.ts";
import type { Handler, Reply } from "./types.ts";
import { WireWriter } from "./writer.ts";

/** What a connection needs from its server. */
export interface ConnectionOptions {
  /** Answers requests. */
  readonly handler: Handler;
  /** Largest request head read; above it 431. */
  readonly maxHeadBytes: number;
  /** The authority of requests that name none (`host:port` of the listener). */
  readonly authority: string;
  /** The scheme of the requests' URLs: `https` when the listener serves TLS. */
  readonly scheme: "http" | "https";
  /** Where failures outside any request go. */
  readonly log: (line: string) => void;
  /** True once the server is stopping: no request is kept alive after its reply. */
  readonly closing: () => boolean;
}

/** What a connection is doing, as the idle sweep sees it. */
export type Phase = "idle" | "head" | "busy";

/** Largest unread request body the server reads and discards to keep a connection. */
const DRAIN_BYTES = 1024 * 1024;
/** How long a closing connection keeps reading (and discarding) before the final close. */
const LINGER_MS = 2000;

const encoder = new TextEncoder();
const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");

/** A connection served by the server. */
export class Connection {
  /** The socket. */
  readonly conn: Deno.Conn;
  /** Its read buffer. */
  readonly reader: WireReader;
  /** Its writer, whose progress the sweep watches. */
  readonly writer: WireWriter;
  /** Waiting for a request (`idle`, `head` once its first byte came) or serving one. */
  phase: Phase = "idle";
  /** Since when (epoch ms) it is in its phase. */
  since = Date.now();
  /** Requests it has served. */
  served = 0;
  readonly #options: ConnectionOptions;
  /** Trips when the client took too long to send a request head (408). */
  readonly #expiry = new Tripwire();

  /** The peer's IP address. */
  readonly #remote: string;

  /** Serves `conn` with the server's options. */
  constructor(conn: Deno.Conn, options: ConnectionOptions) {
    this.conn = conn;
    this.#remote = (conn.remoteAddr as Deno.NetAddr).hostname ?? "";
    this.#options = options;
    this.reader = new WireReader(conn, Math.max(BODY_BUFFER, options.maxHeadBytes + 1));
    this.writer = new WireWriter(conn);
  }

  /** Serves requests until the connection closes; never throws. */
  async serve(): Promise<void> {
    try {
      (this.conn as Partial<Deno.TcpConn>).setNoDelay?.(true);
      while (!this.#options.closing() && await this.#serveOne()) {
        this.served++;
        this.reader.relax();
        this.#enter("idle");
      }
    } catch (error) {
      if (!isDisconnect(error)) this.#options.log(`connection failed: ${error}`);
    } finally {
      this.close();
    }
  }

  /** The client took too long to send its request head: answered with 408, then closed. */
  expireHead(): void {
    if (this.phase !== "head") return;
    this.#enter("busy");
    this.#expiry.trip(new HttpError(408, "Request head not received in time"));
  }

  /** Closes the socket (a pending read or write fails). */
  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }

  #enter(phase: Phase): void {
    this.phase = phase;
    this.since = Date.now();
  }

  /** Serves one request; true when the connection can take another. */
  async #serveOne(): Promise<boolean> {
    const { reader, writer } = this;
    const options = this.#options;
    let head: Head | null;
    try {
      head = await readHead(reader, {
        maxHeadBytes: options.maxHeadBytes,
        defaultAuthority: options.authority,
        scheme: options.scheme,
        onFirstByte: () => this.#enter("head"),
        expiry: this.#expiry,
      });
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      this.#enter("busy");
      await writeReply(writer, errorReply(error), {
        isHead: false,
        keepAlive: false,
        http10: false,
      });
      await this.#lingerClose();
      return false;
    }
    if (head === null) return false;
    this.#enter("busy");
    const { framing } = head;
    const request = { ...head.request, remoteAddress: this.#remote };
    const sendContinue = head.expectContinue ? () => writer.write(CONTINUE) : null;
    const body = framing.kind === "none"
      ? null
      : new WireBody(reader, framing.kind === "length" ? framing.length : null, sendContinue);
    let reply: Reply;
    let failed = false;
    try {
      reply = await options.handler(request, body);
    } catch (error) {
      options.log(`handler failed on ${request.method} ${request.url}: ${error}`);
      reply = plainReply(500, "Internal Server Error");
      failed = true;
    }
    if (body?.fault) {
      // The client sent a body the server could not read: the server answers, not the app.
      if (reply.body instanceof ReadableStream) reply.body.cancel().catch(() => {});
      reply = errorReply(body.fault);
      failed = true;
    }
    let keepAlive = head.keepAlive && !failed && !options.closing() && !wantsClose(reply);
    // What the handler left of the body must be read off the connection before the next
    // request: drained when small and already coming, else the connection closes.
    if (keepAlive && body !== null && !body.done) {
      keepAlive = !body.broken && !body.unrequested && await drain(body);
    }
    const outcome = await writeReply(writer, reply, {
      isHead: request.method === "HEAD",
      keepAlive,
      http10: head.http10,
      onStreamError: (error) =>
        options.log(`reply stream failed on ${request.method} ${request.url}: ${error}`),
    });
    if (outcome === "keep") return true;
    // The client may still be sending (a body, pipelined requests): read it away for a moment
    // so that the close does not reset the connection before the reply is read (a cut reply
    // too: its framing tells the client it is cut).
    if (outcome === "broken" || (body !== null && !body.done) || reader.buffered > 0) {
      await this.#lingerClose();
    }
    return false;
  }

  /** Half-closes, reads what the client still sends for a moment, then closes. */
  async #lingerClose(): Promise<void> {
    const conn = this.conn;
    try {
      await conn.closeWrite();
    } catch {
      return;
    }
    const timer = setTimeout(() => this.close(), LINGER_MS);
    try {
      const scratch = new Uint8Array(64 * 1024);
      while ((await conn.read(scratch)) !== null) { /* discard */ }
    } catch {
      /* closed */
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Reads and discards the rest of a body if it is at most DRAIN_BYTES and arrives within
 * LINGER_MS; false otherwise (the connection must close).
 */
async function drain(body: WireBody): Promise<boolean> {
  const scratch = new Uint8Array(64 * 1024);
  let total = 0;
  const timer = setTimeout(
    () => body.abort(new HttpError(408, "Request body not sent in time")),
    LINGER_MS,
  );
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

function wantsClose(reply: Reply): boolean {
  const value = headerOf(reply, "connection");
  return value !== null && value.toLowerCase().includes("close");
}

/** The peer went away (or the connection was closed under a pending read or write). */
function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.Interrupted ||
    // a TLS handshake the peer broke off (an unknown CA) or plain HTTP on a TLS port
    error instanceof Deno.errors.InvalidData ||
    // a TLS peer gone without close_notify (Go clients such as containerd's ctr, on exit)
    error instanceof Deno.errors.UnexpectedEof ||
    (error instanceof Error && error.message.startsWith("Connection closed"));
}
