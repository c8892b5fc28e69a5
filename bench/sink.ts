/**
 * The benchmark's ceiling server: a bare `Deno.serve` that does no registry work. Request
 * bodies are drained and dropped (201); HEAD answers 200 with blob-like headers and a
 * non-zero Content-Length; GET answers a fixed 1 KiB body. Measured with the benchmark's own
 * clients it shows what any Deno.serve server can reach on this machine, so the registry's
 * figures can be read against it.
 *
 * With `--file PATH`, `GET /file` answers that file as `new Response(file.readable)`, the way a
 * Deno server streams a blob.
 *
 * Usage: deno run --allow-net --allow-read bench/sink.ts [--port 0] [--file PATH]; prints
 * `sink listening on PORT`.
 */

import { parseArgs } from "node:util";

const BODY = new Uint8Array(1024).fill(120);

const { values } = parseArgs({
  args: Deno.args,
  options: { port: { type: "string", default: "0" }, file: { type: "string" } },
});

Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port),
  onListen: ({ port }) => console.log(`sink listening on ${port}`),
}, async (request) => {
  if (request.body !== null) {
    let n = 0;
    for await (const chunk of request.body) n += chunk.length;
    return new Response(null, { status: 201, headers: { "X-Received": String(n) } });
  }
  if (values.file && new URL(request.url).pathname === "/file") {
    const file = await Deno.open(values.file, { read: true });
    const { size } = await file.stat();
    return new Response(file.readable, { headers: { "Content-Length": String(size) } });
  }
  const headers = {
    "Content-Length": String(BODY.length),
    "Content-Type": "application/octet-stream",
    "Docker-Content-Digest": "sha256:" + "0".repeat(64),
  };
  if (request.method === "HEAD") return new Response(null, { status: 200, headers });
  return new Response(BODY, { status: 200, headers });
});
