/**
 * Helpers of the server tests: raw exchanges over a socket, a parser for the replies that
 * came back (any framing), and an in-memory byte source that hands out given pieces, so the
 * wire parsers can be run without a socket.
 */

import { WireBody } from "../../src/server/body.ts";
import { readHead } from "../../src/server/head.ts";
import { type ByteReader, WireReader } from "../../src/server/reader.ts";
import { concat } from "../helpers/uploads.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One parsed reply of a raw exchange. */
export interface Answer {
  readonly status: number;
  readonly headers: Map<string, string>;
  readonly body: Uint8Array;
  /** The body was framed completely (its length, last chunk, or the close was reached). */
  readonly complete: boolean;
}

/**
 * Writes `pieces` to a new connection (each in its own write), half-closes when `end`, and
 * reads until the server closes (or `timeoutMs`). Returns the raw bytes received.
 */
export async function exchange(
  port: number,
  pieces: (string | Uint8Array)[],
  { end = false, timeoutMs = 10_000 } = {},
): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  const received: Uint8Array[] = [];
  try {
    const reading = (async () => {
      const buffer = new Uint8Array(64 * 1024);
      while (true) {
        const n = await conn.read(buffer).catch(() => null);
        if (n === null) break;
        received.push(buffer.slice(0, n));
      }
    })();
    for (const piece of pieces) {
      const bytes = typeof piece === "string" ? encoder.encode(piece) : piece;
      for (let at = 0; at < bytes.length;) {
        const n = await conn.write(bytes.subarray(at)).catch(() => null);
        if (n === null) break; // the server closed: read what it said
        at += n;
      }
    }
    if (end) await conn.closeWrite().catch(() => {});
    await reading;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
  return concat(...received);
}

/** Decodes a chunked body at `bytes[at...]`: the body and where it ends, or null if cut. */
function dechunk(bytes: Uint8Array, at: number): { body: Uint8Array; end: number } | null {
  const parts: Uint8Array[] = [];
  while (true) {
    const lf = bytes.indexOf(10, at);
    if (lf < 0) return null;
    const size = parseInt(decoder.decode(bytes.subarray(at, lf - 1)), 16);
    at = lf + 1;
    if (size === 0) {
      // no trailers from our server: the empty line
      if (bytes.length < at + 2) return null;
      return { body: concat(...parts), end: at + 2 };
    }
    if (bytes.length < at + size + 2) return null;
    parts.push(bytes.subarray(at, at + size));
    at += size + 2;
  }
}

/**
 * Splits received bytes into replies; `heads[i]` says reply i answers a HEAD. A reply with
 * `Content-Length` takes that many bytes, a chunked one its chunks, any other the rest.
 */
export function parseAnswers(bytes: Uint8Array, heads: boolean[] = []): Answer[] {
  const answers: Answer[] = [];
  let at = 0;
  while (at < bytes.length) {
    const text = decoder.decode(bytes.subarray(at, Math.min(bytes.length, at + 64 * 1024)));
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) throw new Error(`incomplete head: ${JSON.stringify(text.slice(0, 200))}`);
    const lines = text.slice(0, end).split("\r\n");
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
    }
    const status = Number(lines[0].split(" ")[1]);
    at += encoder.encode(text.slice(0, end + 4)).length;
    const noBody = status < 200 || status === 204 || status === 304 ||
      heads[answers.length] === true;
    if (noBody) {
      answers.push({ status, headers, body: new Uint8Array(0), complete: true });
    } else if (headers.has("content-length")) {
      const length = Number(headers.get("content-length"));
      const body = bytes.slice(at, at + length);
      answers.push({ status, headers, body, complete: body.length === length });
      at += length;
    } else if (headers.get("transfer-encoding") === "chunked") {
      const decoded = dechunk(bytes, at);
      if (decoded === null) {
        answers.push({ status, headers, body: bytes.slice(at), complete: false });
        at = bytes.length;
      } else {
        answers.push({ status, headers, body: decoded.body, complete: true });
        at = decoded.end;
      }
    } else {
      answers.push({ status, headers, body: bytes.slice(at), complete: true });
      at = bytes.length;
    }
    // an interim 100 does not take a request's place
    if (status === 100) heads.splice(answers.length - 1, 0, false);
  }
  return answers;
}

/** The body of an answer as text. */
export function textOf(answer: Answer): string {
  return decoder.decode(answer.body);
}

/** Frames `bytes` in chunks of `size` bytes, with an extension on every chunk and a trailer. */
export function chunked(
  bytes: Uint8Array,
  size: number,
  extension = "",
  trailer = "",
): Uint8Array<ArrayBuffer> {
  const parts: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += size) {
    const piece = bytes.subarray(at, at + size);
    parts.push(encoder.encode(`${piece.length.toString(16)}${extension}\r\n`), piece);
    parts.push(encoder.encode("\r\n"));
  }
  parts.push(encoder.encode(`0\r\n${trailer}\r\n`));
  return concat(...parts);
}

/** A byte source that hands out `pieces` in order (a read takes at most one piece). */
export class PieceReader implements ByteReader {
  readonly #pieces: Uint8Array[];
  #index = 0;
  #offset = 0;

  /** Serves `pieces`, then the end of the stream. */
  constructor(pieces: Uint8Array[]) {
    this.#pieces = pieces.filter((piece) => piece.length > 0);
  }

  /** @inheritdoc */
  read(into: Uint8Array): Promise<number | null> {
    const piece = this.#pieces[this.#index];
    if (piece === undefined) return Promise.resolve(null);
    const n = Math.min(into.length, piece.length - this.#offset);
    into.set(piece.subarray(this.#offset, this.#offset + n));
    this.#offset += n;
    if (this.#offset === piece.length) {
      this.#index++;
      this.#offset = 0;
    }
    return Promise.resolve(n);
  }
}

/** `bytes` cut at the given offsets (any order, duplicates and out-of-range ones ignored). */
export function splitAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.filter((cut) => cut > 0 && cut < bytes.length))].sort((a, b) =>
    a - b
  );
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const point of points) {
    pieces.push(bytes.subarray(from, point));
    from = point;
  }
  pieces.push(bytes.subarray(from));
  return pieces;
}

/** A request as parsed off the wire, its body read whole. */
export interface Parsed {
  readonly method: string;
  readonly url: string;
  /** The fields as the handler sees them (names in lower case, repeats joined). */
  readonly fields: [string, string][];
  readonly http10: boolean;
  readonly keepAlive: boolean;
  readonly expectContinue: boolean;
  readonly framing: "none" | "length" | "chunked";
  readonly body: Uint8Array;
}

/** How `parseRequests` reads. */
export interface ParseOptions {
  /** The head cap (default 64 KiB). */
  readonly maxHeadBytes?: number;
  /** The size of the buffers bodies are read into (default 64 KiB). */
  readonly readSize?: number;
}

/**
 * Parses every request in `pieces` (delivered one read per piece) with the server's head
 * parser and body readers, reading each body whole; throws what they throw.
 */
export async function parseRequests(
  pieces: Uint8Array[],
  options: ParseOptions = {},
): Promise<Parsed[]> {
  const reader = new WireReader(new PieceReader(pieces));
  const parsed: Parsed[] = [];
  while (true) {
    const head = await readHead(reader, {
      maxHeadBytes: options.maxHeadBytes ?? 64 * 1024,
      defaultAuthority: "default.test:80",
    });
    if (head === null) return parsed;
    const { framing } = head;
    let body = new Uint8Array(0);
    if (framing.kind !== "none") {
      const wire = new WireBody(reader, framing.kind === "length" ? framing.length : null);
      const parts: Uint8Array[] = [];
      let buffer = new Uint8Array(options.readSize ?? 64 * 1024);
      while (true) {
        const view = await wire.read(buffer);
        if (view.length === 0) break;
        parts.push(view.slice());
        buffer = new Uint8Array(view.buffer);
      }
      if (!wire.done) throw new Error("a body read returned nothing before its end");
      body = concat(...parts);
    }
    parsed.push({
      method: head.request.method,
      url: head.request.url,
      fields: [...head.request.headers],
      http10: head.http10,
      keepAlive: head.keepAlive,
      expectContinue: head.expectContinue,
      framing: framing.kind,
      body,
    });
  }
}
