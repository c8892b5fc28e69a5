/**
 * Client of intake_workers.ts: CONNS concurrent chunked PATCHes of SIZE MiB in 32 KiB frames
 * (as Go's net/http sends them), three rounds, aggregate MiB/s per round.
 *
 *   deno run -A bench/experiments/intake_client.ts PORT CONNS SIZE_MIB
 */

import { Http1 } from "../http1.ts";

const port = Number(Deno.args[0] ?? 18090);
const conns = Number(Deno.args[1] ?? 8);
const size = Number(Deno.args[2] ?? 128) * 1024 * 1024;
const data = new Uint8Array(size);
crypto.getRandomValues(data.subarray(0, 65536));
for (let at = 65536; at < size; at += 65536) data.copyWithin(at, 0, 65536);

function* frames(bytes: Uint8Array, frame: number): Generator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += frame) yield bytes.subarray(at, at + frame);
}

for (let round = 0; round < 3; round++) {
  const started = performance.now();
  await Promise.all(Array.from({ length: conns }, async () => {
    const conn = await Http1.connect(`http://127.0.0.1:${port}`);
    const response = await conn.request("PATCH", "/upload", { chunks: frames(data, 32 * 1024) });
    if (response.status !== 202) throw new Error(`status ${response.status}`);
    conn.close();
  }));
  const seconds = (performance.now() - started) / 1000;
  console.log(`${(conns * size / 1048576 / seconds).toFixed(0)} MiB/s`);
}
