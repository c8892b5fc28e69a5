/**
 * Helpers of the scale-out tests: registry replicas run as `main.ts` processes over one S3
 * bucket and one PostgreSQL database (configured through the environment only: no data root),
 * and a round-robin HTTP proxy that sends each request to the next replica.
 */

import { PROJECT_ROOT } from "./registry.ts";
import type { TestBucket } from "./s3.ts";

/** A replica: a registry process of the scale-out mode. */
export interface Replica extends AsyncDisposable {
  readonly url: string;
  readonly pid: number;
  /** The lines it logged so far. */
  readonly output: string[];
  /** Sends a signal (default SIGKILL) and waits for the exit. */
  kill(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/** The variables that put a registry in the scale-out mode over `bucket` and `databaseUrl`. */
export function scaleOutEnv(bucket: TestBucket, databaseUrl: string): Record<string, string> {
  const o = bucket.options;
  return {
    REGISTRY_STORAGE_S3_ACCESSKEY: o.accesskey,
    REGISTRY_STORAGE_S3_SECRETKEY: o.secretkey,
    REGISTRY_STORAGE_S3_REGION: o.region,
    REGISTRY_STORAGE_S3_REGIONENDPOINT: o.regionendpoint ?? "",
    REGISTRY_STORAGE_S3_BUCKET: o.bucket,
    REGISTRY_STORAGE_S3_FORCEPATHSTYLE: "true",
    REGISTRY_STORAGE_S3_CHUNKSIZE: String(5 * 1024 * 1024),
    REGISTRY_DATABASE_URL: databaseUrl,
    REGISTRY_STORAGE_GC_INTERVAL: "0",
  };
}

/**
 * Starts `main.ts` with `env` (and no `--data`) on a free loopback port; resolves once it
 * listens, or rejects with what it printed (`startTimeoutMs`, default 30 s).
 */
export async function spawnReplica(
  env: Record<string, string>,
  startTimeoutMs = 30_000,
): Promise<Replica> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-ffi",
      `${PROJECT_ROOT}main.ts`,
      "--port",
      "0",
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
    clearEnv: true,
  }).spawn();
  const output: string[] = [];
  let status: Promise<Deno.CommandStatus> | null = null;
  const kill = (signal: Deno.Signal = "SIGKILL") => {
    if (!status) {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
      status = child.status;
    }
    return status;
  };
  let listening!: (url: string) => void;
  const url = new Promise<string>((resolve) => (listening = resolve));
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    let partial = "";
    try {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        partial += text;
        const lines = partial.split("\n");
        partial = lines.pop()!;
        for (const line of lines) {
          output.push(line);
          const m = /listening on (http:\/\/[0-9.]+:[0-9]+)\/v2\//.exec(line);
          if (m) listening(m[1]);
        }
      }
    } catch { /* closed */ }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const started = await Promise.race([
      url,
      child.status.then(async () => {
        await drained;
        throw new Error(`replica exited before listening:\n${output.join("\n")}`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`replica did not start:\n${output.join("\n")}`)),
          startTimeoutMs,
        );
      }),
    ]);
    return {
      url: started,
      pid: child.pid,
      output,
      kill,
      async [Symbol.asyncDispose]() {
        await kill("SIGKILL");
        await drained;
      },
    };
  } catch (error) {
    await kill("SIGKILL");
    await drained;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** A proxy sending request n to backend n mod count (the backends can change meanwhile). */
export interface RoundRobin extends AsyncDisposable {
  readonly url: string;
  /** The backend each request went to, in order. */
  readonly sent: string[];
  /** `fetch` relative to the proxy, redirects not followed. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

/** Starts a round-robin proxy over `backends` (base URLs) on a free loopback port. */
export function roundRobin(backends: () => readonly string[]): RoundRobin {
  let next = 0;
  const sent: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const list = backends();
    const backend = list[next++ % list.length];
    sent.push(backend);
    const incoming = new URL(request.url);
    const headers = new Headers(request.headers);
    headers.delete("host");
    try {
      const response = await fetch(`${backend}${incoming.pathname}${incoming.search}`, {
        method: request.method,
        headers,
        body: request.body,
        redirect: "manual",
      });
      return new Response(response.body, { status: response.status, headers: response.headers });
    } catch (error) {
      return new Response(`proxy: ${backend} failed: ${error}`, { status: 502 });
    }
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  return {
    url,
    sent,
    fetch: (path, init) => fetch(`${url}${path}`, { redirect: "manual", ...init }),
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}
