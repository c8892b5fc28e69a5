/**
 * Test helpers for upload sessions: start a session, send chunks (including chunked transfer
 * encoding and raw HTTP/1.1 requests), read a session's files, and wait for conditions.
 */

import { join } from "node:path";
import { decodeSha256State, type Sha256State } from "../../src/digest/sha256.ts";

/** Anything with a base-URL-relative `fetch` (a temp registry or a spawned one). */
export interface Fetcher {
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

/** A `Fetcher` over a base URL such as a spawned registry's. */
export function fetcher(url: string): Fetcher {
  return { fetch: (path, init) => fetch(`${url}${path}`, init) };
}

/** An upload session as the POST answered it. */
export interface Session {
  readonly location: string;
  readonly uuid: string;
}

/** POSTs a new session in `name`; throws unless the answer is 202 with Location and UUID. */
export async function startUpload(reg: Fetcher, name: string): Promise<Session> {
  const res = await reg.fetch(`/v2/${name}/blobs/uploads/`, { method: "POST" });
  await res.body?.cancel();
  const location = res.headers.get("location");
  const uuid = res.headers.get("docker-upload-uuid");
  if (res.status !== 202 || !location || !uuid) throw new Error(`POST gave ${res.status}`);
  return { location, uuid };
}

/** PATCHes `body` to a session, with an optional `Content-Range`; the body of the answer is read. */
export async function patch(
  reg: Fetcher,
  location: string,
  body: BodyInit | null,
  range?: string,
): Promise<{ status: number; headers: Headers; text: string }> {
  const headers: Record<string, string> = { "Content-Type": "application/octet-stream" };
  if (range !== undefined) headers["Content-Range"] = range;
  const res = await reg.fetch(location, { method: "PATCH", headers, body });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** The first OCI error code of a JSON error body given as text ("" when there is none). */
export function codeOf(text: string): string {
  try {
    return (JSON.parse(text) as { errors?: { code?: string }[] }).errors?.[0]?.code ?? "";
  } catch {
    return "";
  }
}

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A stream of `bytes` in pieces of `piece` bytes (fetch sends it with chunked encoding). */
export function streamOf(bytes: Uint8Array, piece = 16 * 1024): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) {
        controller.close();
        return;
      }
      controller.enqueue(bytes.slice(at, at + piece));
      at += piece;
    },
  });
}

/** A request body the test feeds by hand: `push` bytes, then `close` (or abandon it). */
export class ControlledBody {
  readonly stream: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #pending: (() => void) | null = null;

  /** Makes an empty body. */
  constructor() {
    this.stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () => {
        const resolve = this.#pending;
        this.#pending = null;
        resolve?.();
      },
    }, { highWaterMark: 0 });
  }

  /** Enqueues bytes and resolves once the consumer asked for more (backpressure). */
  push(bytes: Uint8Array): Promise<void> {
    const drained = new Promise<void>((resolve) => (this.#pending = resolve));
    this.#controller.enqueue(bytes);
    return drained;
  }

  /** Ends the body. */
  close(): void {
    this.#controller.close();
  }
}

/** Paths of a session's files under a data root. */
export function sessionFile(
  dataDir: string,
  uuid: string,
  file: "data" | "startedat" | "hashstate" | "repository",
): string {
  return join(dataDir, "uploads", uuid, file);
}

/** Decodes a session's `hashstate` file. */
export async function hashStateOf(dataDir: string, uuid: string): Promise<Sha256State> {
  return decodeSha256State(await Deno.readTextFile(sessionFile(dataDir, uuid, "hashstate")));
}

/** The size of a session's `data` file. */
export async function dataSizeOf(dataDir: string, uuid: string): Promise<number> {
  return (await Deno.stat(sessionFile(dataDir, uuid, "data"))).size;
}

/** Polls `condition` every 10 ms until it holds; throws after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A raw HTTP/1.1 answer. */
export interface RawResponse {
  readonly status: number;
  /** Header names in lower case. */
  readonly headers: Map<string, string>;
  readonly body: string;
}

/**
 * Sends one raw HTTP/1.1 request (`Connection: close`) with exactly the given headers and
 * body pieces (nothing added but Host), so tests control framing: chunked encoding, a
 * `Content-Length` that disagrees with `Content-Range`, no length at all.
 */
export async function rawRequest(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array = new Uint8Array(0),
): Promise<RawResponse> {
  const { hostname, port } = new URL(base);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  try {
    let head = `${method} ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n`;
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    await writeAll(conn, new TextEncoder().encode(`${head}\r\n`));
    if (body.length > 0) await writeAll(conn, body);
    const received: Uint8Array[] = [];
    const buffer = new Uint8Array(65536);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      received.push(buffer.slice(0, n));
    }
    const text = new TextDecoder().decode(concat(...received));
    const split = text.indexOf("\r\n\r\n");
    const lines = text.slice(0, split).split("\r\n");
    const map = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      map.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    return { status: Number(lines[0].split(" ")[1]), headers: map, body: text.slice(split + 4) };
  } finally {
    conn.close();
  }
}

/** Frames byte pieces with HTTP/1.1 chunked transfer encoding (terminating chunk included). */
export function chunkedEncoding(...pieces: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const piece of pieces) {
    if (piece.length === 0) continue;
    parts.push(enc.encode(`${piece.length.toString(16)}\r\n`), piece, enc.encode("\r\n"));
  }
  parts.push(enc.encode("0\r\n\r\n"));
  return concat(...parts);
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
}
