/**
 * The worker of intake_workers.ts: accepts on the shared port and streams each request body
 * to the main isolate in transferred 1 MiB buffers; answers 202 once the main isolate has
 * hashed, written and flushed it. Expects the main isolate to message "start" before "data"
 * (messages from one worker arrive in order).
 */

import { readHead, Wire, WireBody } from "../../src/http/wire.ts";

/** The worker's global scope, as far as this file uses it. */
interface Scope {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown, transfer?: Transferable[]): void;
}

const scope = globalThis as unknown as Scope;
const finished = new Map<string, () => void>();
const spare: ArrayBuffer[] = [];
let sequence = 0;

scope.onmessage = (event: MessageEvent) => {
  const message = event.data;
  if (message.type === "listen") {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: message.port, reusePort: true });
    (async () => {
      for await (const conn of listener) void serve(conn);
    })();
  } else if (message.type === "done") {
    finished.get(message.id)?.();
  } else if (message.type === "buffer") {
    spare.push(message.buffer);
  }
};

async function serve(conn: Deno.TcpConn): Promise<void> {
  const wire = new Wire(conn);
  try {
    while (true) {
      const head = await readHead(wire, 65536, "127.0.0.1", () => {});
      if (!head) break;
      const id = `${crypto.randomUUID()}-${sequence++}`;
      const length = head.framing.kind === "length" ? head.framing.length : null;
      const body = head.framing.kind === "none" ? null : new WireBody(wire, length, null);
      scope.postMessage({ type: "start", id });
      while (body !== null) {
        const buffer = new Uint8Array(spare.pop() ?? new ArrayBuffer(1024 * 1024));
        let filled = 0;
        let ended = false;
        while (filled < buffer.length) {
          const view = await body.read(buffer.subarray(filled));
          if (view.length === 0) {
            ended = true;
            break;
          }
          filled += view.length;
        }
        if (filled > 0) {
          scope.postMessage({ type: "data", id, buffer: buffer.buffer, length: filled }, [
            buffer.buffer,
          ]);
        }
        if (ended) break;
      }
      const done = new Promise<void>((resolve) => finished.set(id, resolve));
      scope.postMessage({ type: "end", id });
      await done;
      finished.delete(id);
      await wire.write(
        new TextEncoder().encode("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"),
      );
    }
  } finally {
    conn.close();
  }
}
