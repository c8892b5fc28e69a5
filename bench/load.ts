/**
 * A keep-alive HTTP/1.1 load generator for HEAD and GET, run as its own process by the
 * benchmark so that it has its own event loop (and, on a 2-core machine, its own core).
 *
 * `hey` spends more CPU per request than the servers it measures on a 2-core machine (it
 * topped out at ~16–20k req/s against a constant Deno.serve response here), and `wrk`
 * cannot parse a HEAD response that carries a non-zero `Content-Length`. This one opens
 * `--conns` connections, each sending one request at a time for `--seconds`, checks every
 * response's status (and `Content-Length` when `--expect-length` is given), and prints one
 * JSON line: requests/s, p50/p90/p99/max latency in ms, ok and failed counts, its own CPU
 * seconds.
 *
 * With `--paths FILE` (one request target per line, e.g. `/v2/a/b/manifests/v1`), each request
 * goes to a target picked at random from the file (a fixed seed per connection); `--url` then
 * only names the server.
 *
 * Usage: deno run --allow-net [--allow-read] bench/load.ts --url URL [--method HEAD|GET]
 *        [--conns 64] [--seconds 10] [--header "Name: value"]... [--expect-status 200]
 *        [--expect-length N] [--paths FILE]
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { headEnd, scanChunked } from "./http1.ts";

/** The result line printed by the load generator. */
export interface LoadResult {
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly ok: number;
  readonly failed: number;
  readonly firstFailure: string | null;
  readonly cpuSeconds: number;
}

interface Options {
  readonly url: URL;
  readonly method: string;
  readonly conns: number;
  readonly seconds: number;
  readonly headers: string[];
  readonly expectStatus: number;
  readonly expectLength: number | null;
  /** Request targets picked at random, instead of the URL's own. */
  readonly paths?: readonly string[];
}

const decoder = new TextDecoder();

/** Runs the load and returns its result. */
export async function runLoad(opts: Options): Promise<LoadResult> {
  const { url, method } = opts;
  const extra = opts.headers.map((h) => `${h}\r\n`).join("");
  const encoder = new TextEncoder();
  const requestFor = (target: string) =>
    encoder.encode(`${method} ${target} HTTP/1.1\r\nHost: ${url.host}\r\n${extra}\r\n`);
  const fixed = requestFor(`${url.pathname}${url.search}`);
  const paths = opts.paths ?? [];
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  let firstFailure: string | null = null;
  const fail = (why: string) => {
    failed++;
    firstFailure ??= why;
  };
  const started = performance.now();
  const deadline = started + opts.seconds * 1000;

  const worker = async (index: number) => {
    // xorshift32, seeded per connection: the same spread of targets run after run
    let seed = 0x9e3779b9 ^ (index + 1) * 0x85ebca6b;
    const pick = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return paths[(seed >>> 0) % paths.length]!;
    };
    const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
    conn.setNoDelay(true);
    let buf = new Uint8Array(64 * 1024);
    try {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const request = paths.length > 0 ? requestFor(pick()) : fixed;
        let off = 0;
        while (off < request.length) off += await conn.write(request.subarray(off));
        let have = 0;
        let end = -1;
        let status = 0;
        let length: number | null = null;
        let chunked = false;
        let bodyDone = false;
        let chunkPos = 0;
        while (!bodyDone) {
          if (have === buf.length) {
            const bigger = new Uint8Array(buf.length * 2);
            bigger.set(buf);
            buf = bigger;
          }
          const n = await conn.read(buf.subarray(have));
          if (n === null) throw new Error("Server closed the connection");
          have += n;
          if (end < 0) {
            end = headEnd(buf, have - n, have);
            if (end < 0) continue;
            const head = decoder.decode(buf.subarray(0, end));
            status = Number(head.slice(9, 12));
            const cl = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
            length = cl ? Number(cl[1]) : null;
            chunked = /\r\ntransfer-encoding:[^\r]*chunked/i.test(head);
            chunkPos = end;
            if (method === "HEAD" || status === 204 || status === 304) break;
          }
          if (chunked) {
            const scan = scanChunked(buf, chunkPos, have);
            chunkPos = scan.pos;
            bodyDone = scan.done;
          } else {
            bodyDone = have - end >= (length ?? 0);
          }
        }
        latencies.push(performance.now() - t0);
        if (status !== opts.expectStatus) fail(`status ${status}`);
        else if (opts.expectLength !== null && length !== opts.expectLength) {
          fail(`Content-Length ${length}, expected ${opts.expectLength}`);
        } else ok++;
      }
    } catch (error) {
      fail(error instanceof Error ? error.message : String(error));
    } finally {
      conn.close();
    }
  };

  const cpu0 = process.cpuUsage();
  await Promise.all(Array.from({ length: opts.conns }, (_, i) => worker(i)));
  const cpu = process.cpuUsage(cpu0);
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0;
  return {
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    p50: q(0.5),
    p90: q(0.9),
    p99: q(0.99),
    max: latencies[latencies.length - 1] ?? 0,
    ok,
    failed,
    firstFailure,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      url: { type: "string" },
      method: { type: "string", default: "GET" },
      conns: { type: "string", default: "64" },
      seconds: { type: "string", default: "10" },
      header: { type: "string", multiple: true, default: [] },
      "expect-status": { type: "string", default: "200" },
      "expect-length": { type: "string" },
      paths: { type: "string" },
    },
  });
  if (!values.url) {
    console.error("load.ts: --url is required");
    Deno.exit(2);
  }
  const result = await runLoad({
    url: new URL(values.url),
    method: values.method.toUpperCase(),
    conns: Number(values.conns),
    seconds: Number(values.seconds),
    headers: values.header,
    expectStatus: Number(values["expect-status"]),
    expectLength: values["expect-length"] === undefined ? null : Number(values["expect-length"]),
    paths: values.paths === undefined
      ? undefined
      : Deno.readTextFileSync(values.paths).split("\n").filter((line) => line !== ""),
  });
  console.log(JSON.stringify(result));
}
