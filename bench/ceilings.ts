/**
 * The machine's ceilings, measured in the same run as the workloads: disk write with
 * fdatasync (`dd`, through the page cache and around it), SHA-256 (`openssl speed -evp
 * sha256` at 16 KiB blocks), loopback TCP (`iperf3`), what a bare Deno.serve server reaches
 * with the benchmark's own clients, and what skopeo reaches copying the client rows' image
 * between two local layouts (no registry). Also the page-cache fill that precedes everything.
 */

import { join } from "node:path";
import { Http1 } from "./http1.ts";
import { writeLayoutImage } from "./images.ts";
import type { LoadResult } from "./load.ts";
import { freePort } from "./servers.ts";

const MiB = 1024 * 1024;

/** Runs a command and returns its stdout and stderr; throws when it fails. */
export async function run(
  cmd: string,
  args: string[],
): Promise<{ stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  const stdout = dec.decode(out.stdout);
  const stderr = dec.decode(out.stderr);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${out.code}):\n${stderr.slice(-1000)}`);
  }
  return { stdout, stderr };
}

/** Flushes all filesystems (`sync`). */
export async function syncAll(): Promise<void> {
  await run("sync", []);
}

/**
 * Writes `bytes` of data into a file in `dir` without syncing, then deletes it, so that RAM
 * that was never used as page cache is touched before any measurement. Returns seconds taken.
 */
export async function fillPageCache(dir: string, bytes: number): Promise<number> {
  const t0 = performance.now();
  const path = join(dir, "page-cache-fill.tmp");
  const block = new Uint8Array(16 * MiB);
  for (let i = 0; i < block.length; i += 4096) block[i] = i & 0xff;
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    for (let done = 0; done < bytes; done += block.length) {
      let off = 0;
      while (off < block.length) off += await file.write(block.subarray(off));
    }
  } finally {
    file.close();
  }
  await Deno.remove(path);
  await syncAll();
  return (performance.now() - t0) / 1000;
}

/**
 * `dd if=/dev/zero of=DIR/… bs=1M count=N conv=fdatasync`, with `oflag=direct` when `direct`
 * (around the page cache: the disk's rate without the cache's copy); returns MiB/s. Throws
 * when the filesystem refuses direct writes (tmpfs before Linux 6.6).
 */
export async function diskWrite(dir: string, mib: number, direct = false): Promise<number> {
  const path = join(dir, "dd-ceiling.tmp");
  try {
    const { stderr } = await run("dd", [
      "if=/dev/zero",
      `of=${path}`,
      "bs=1M",
      `count=${mib}`,
      "conv=fdatasync",
      ...(direct ? ["oflag=direct"] : []),
    ]);
    // "268435456 bytes (268 MB, 256 MiB) copied, 0.52 s, 516 MB/s"
    const m = /(\d+) bytes .* copied, ([\d.,]+) s/.exec(stderr);
    if (!m) throw new Error(`Cannot parse dd output: ${stderr}`);
    return Number(m[1]) / MiB / Number(m[2]!.replace(",", "."));
  } finally {
    await Deno.remove(path).catch(() => {});
    await syncAll();
  }
}

/** `openssl speed -seconds 1 -bytes 16384 -evp sha256`; returns MiB/s at 16 KiB blocks. */
export async function opensslSha256(): Promise<number> {
  const { stdout } = await run("openssl", [
    "speed",
    "-seconds",
    "1",
    "-bytes",
    "16384",
    "-evp",
    "sha256",
  ]);
  // "sha256         1880585.48k" (1000s of bytes per second)
  const line = stdout.split("\n").reverse().find((l) => /^sha256\s+[\d.]+k/i.test(l));
  const m = line ? /([\d.]+)k/.exec(line) : null;
  if (!m) throw new Error(`Cannot parse openssl speed output:\n${stdout}`);
  return Number(m[1]) * 1000 / MiB;
}

/**
 * `skopeo copy oci:A:latest oci:B:latest` of a new image of `bytes` in `layers` layers, both
 * layouts in `dir` (the data roots' filesystem), timed end to end as the skopeo rows are, once
 * per run: what skopeo itself reaches with no registry and no network, the bound of
 * `skopeo-push`. Returns MiB/s per run.
 */
export async function skopeoLocalCopy(
  dir: string,
  bytes: number,
  layers: number,
  runs: number,
): Promise<number[]> {
  const work = await Deno.makeTempDir({ dir, prefix: "skopeo-local-" });
  try {
    const policy = join(work, "policy.json");
    await Deno.writeTextFile(policy, '{"default":[{"type":"insecureAcceptAnything"}]}\n');
    const image = await writeLayoutImage(join(work, "source"), {
      layers,
      totalBytes: bytes,
      name: "bench.local/skopeo-local:latest",
    });
    const rates: number[] = [];
    for (let i = 0; i < runs; i++) {
      const dest = join(work, `copy-${i}`);
      const t0 = performance.now();
      await run("skopeo", [
        "--policy",
        policy,
        "copy",
        "--quiet",
        `oci:${image.dir}:latest`,
        `oci:${dest}:latest`,
      ]);
      rates.push(image.totalBytes / MiB / ((performance.now() - t0) / 1000));
      await Deno.remove(dest, { recursive: true });
      await syncAll();
    }
    return rates;
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/** One iperf3 run over loopback (`iperf3 -s -1` and `iperf3 -c 127.0.0.1 -t N -J`); MiB/s. */
export async function loopbackTcp(seconds: number): Promise<number> {
  const port = freePort();
  const server = new Deno.Command("iperf3", {
    args: ["-s", "-1", "-p", String(port)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const serverOut = server.output();
  try {
    let result: { stdout: string } | null = null;
    for (let attempt = 0; attempt < 50 && result === null; attempt++) {
      await new Promise((r) => setTimeout(r, 100));
      result = await run("iperf3", [
        "-c",
        "127.0.0.1",
        "-p",
        String(port),
        "-t",
        String(seconds),
        "-J",
      ])
        .catch(() => null);
    }
    if (result === null) throw new Error("iperf3 client could not reach the iperf3 server");
    const json = JSON.parse(result.stdout);
    return json.end.sum_received.bits_per_second / 8 / MiB;
  } finally {
    try {
      server.kill("SIGTERM");
    } catch {
      // exited after its one test (-1)
    }
    await serverOut;
  }
}

/** A running bench/sink.ts. */
export interface Sink {
  readonly base: string;
  stop(): Promise<void>;
}

/** Starts bench/sink.ts (a bare Deno.serve) on a free port, serving `file` at GET /file. */
export async function startSink(benchDir: string, file: string): Promise<Sink> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      join(benchDir, "sink.ts"),
      "--port",
      "0",
      "--file",
      file,
    ],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  let port: string | null = null;
  while (port === null) {
    const { value, done } = await reader.read();
    if (done) throw new Error("bench/sink.ts exited before listening");
    text += new TextDecoder().decode(value);
    port = /sink listening on (\d+)/.exec(text)?.[1] ?? null;
  }
  reader.releaseLock();
  const drained = child.stdout.pipeTo(new WritableStream()).catch(() => {});
  return {
    base: `http://127.0.0.1:${port}`,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
      await drained;
    },
  };
}

/** Pushes `data` to the sink with Content-Length, or chunked in `frame`-byte chunks; MiB/s. */
export async function sinkIntake(
  base: string,
  data: Uint8Array,
  frame: number | null,
): Promise<number> {
  const conn = await Http1.connect(base);
  try {
    const t0 = performance.now();
    const res = frame === null
      ? await conn.request("PUT", "/sink", { body: data })
      : await conn.request("PATCH", "/sink", { chunks: frames(data, frame) });
    const seconds = (performance.now() - t0) / 1000;
    if (res.status !== 201 || res.headers.get("x-received") !== String(data.length)) {
      throw new Error(`Sink answered ${res.status}, received ${res.headers.get("x-received")}`);
    }
    return data.length / MiB / seconds;
  } finally {
    conn.close();
  }
}

/** GETs the sink's file into `rx` (as the pull workload does); MiB/s. */
export async function sinkFileGet(base: string, rx: Uint8Array, size: number): Promise<number> {
  const conn = await Http1.connect(base);
  try {
    const t0 = performance.now();
    const res = await conn.request("GET", "/file", { sink: rx });
    const seconds = (performance.now() - t0) / 1000;
    if (res.status !== 200 || res.received !== size) {
      throw new Error(`Sink file GET: HTTP ${res.status}, ${res.received} of ${size} bytes`);
    }
    return size / MiB / seconds;
  } finally {
    conn.close();
  }
}

/** Splits a buffer into views of `size` bytes (the last may be shorter). */
export function* frames(data: Uint8Array, size: number): Generator<Uint8Array> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, off + size);
}

/** Runs bench/load.ts in its own process and returns its result. */
export async function runLoadProcess(benchDir: string, args: string[]): Promise<LoadResult> {
  const { stdout } = await run(Deno.execPath(), [
    "run",
    "--allow-net",
    "--allow-read",
    join(benchDir, "load.ts"),
    ...args,
  ]);
  return JSON.parse(stdout.trim().split("\n").pop()!) as LoadResult;
}
