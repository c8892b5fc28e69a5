/**
 * Test helper: raw HTTP/1.1 over a TCP socket, for requests `fetch` would normalize or refuse
 * (`..` in paths, NUL bytes, lying Content-Length, huge headers) and for clients that stall.
 */

/** A parsed HTTP response read from a socket. */
export interface RawResponse {
  readonly status: number;
  readonly headers: Map<string, string>;
  readonly body: string;
}

const encoder = new TextEncoder();

/** Writes all bytes; false when the peer closed the connection. */
export async function writeAllTo(conn: Deno.Conn, data: Uint8Array | string): Promise<boolean> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  try {
    for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads one response from a connection: the head, then `Content-Length` bytes of body (or
 * until the peer closes). Null when the connection closed without a response. Gives up
 * after `timeoutMs`.
 */
export async function readResponse(
  conn: Deno.Conn,
  timeoutMs = 10_000,
): Promise<RawResponse | null> {
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, timeoutMs);
  let data = new Uint8Array(0);
  const buffer = new Uint8Array(64 * 1024);
  const text = () => new TextDecoder().decode(data);
  try {
    for (;;) {
      const head = text().indexOf("\r\n\r\n");
      if (head >= 0) {
        const lines = text().slice(0, head).split("\r\n");
        const headers = new Map<string, string>();
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(":");
          headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
        }
        const length = Number(headers.get("content-length") ?? "0");
        const bodyStart = encoder.encode(text().slice(0, head + 4)).length;
        if (data.length - bodyStart >= length) {
          return {
            status: Number(lines[0].split(" ")[1]),
            headers,
            body: new TextDecoder().decode(data.subarray(bodyStart, bodyStart + length)),
          };
        }
      }
      let n: number | null;
      try {
        n = await conn.read(buffer);
      } catch {
        n = null;
      }
      if (n === null) return null;
      const next = new Uint8Array(data.length + n);
      next.set(data);
      next.set(buffer.subarray(0, n), data.length);
      data = next;
    }
  } finally {
    clearTimeout(timer);
  }
}

/** Sends a raw request (head and body as given) on a new connection and reads the answer. */
export async function rawRequest(
  port: number,
  request: string | Uint8Array,
  timeoutMs = 10_000,
): Promise<RawResponse | null> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAllTo(conn, request);
    return await readResponse(conn, timeoutMs);
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** The port of a base URL such as `http://127.0.0.1:4321`. */
export function portOf(url: string): number {
  return Number(new URL(url).port);
}
