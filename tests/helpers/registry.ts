/**
 * Test helpers: a registry served by its real HTTP server on 127.0.0.1 port 0 over a fresh
 * temporary data root, and a registry run as a separate `deno` process (for SIGKILL tests).
 */

import { fileURLToPath } from "node:url";
import { type App, type AppOptions, createApp } from "../../src/app.ts";
import { type Config, DEFAULTS } from "../../src/config/mod.ts";
import { serve } from "../../src/serve.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";

/** A running registry over a temporary data root; disposing stops it and removes the root. */
export interface TempRegistry extends AsyncDisposable {
  readonly url: string;
  readonly dataDir: string;
  readonly app: App;
  /** Lines the app logged. */
  readonly logs: string[];
  /** `fetch` relative to the registry's base URL. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

/** Options of `tempRegistry`. */
export interface TempRegistryOptions extends AppOptions {
  readonly config?: Partial<Config>;
  /** Use this data root instead of a new temporary one (it is not removed). */
  readonly dataDir?: string;
}

/** Starts a registry on a free loopback port over a new temporary data root. */
export async function tempRegistry(options: TempRegistryOptions = {}): Promise<TempRegistry> {
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "registry-test-" });
  const logs: string[] = [];
  const config: Config = { ...DEFAULTS, port: 0, ...options.config, dataDir };
  const app = await createApp(config, { log: (line) => logs.push(line), ...options });
  const server = serve(app, { ...config, host: "127.0.0.1" });
  const url = `http://127.0.0.1:${server.addr.port}`;
  return {
    url,
    dataDir,
    app,
    logs,
    fetch: (path, init) => fetch(`${url}${path}`, init),
    async [Symbol.asyncDispose]() {
      app.close();
      await server.shutdown();
      if (!options.dataDir) await Deno.remove(dataDir, { recursive: true });
    },
  };
}

/** The app over the memory driver, answering requests without a socket. */
export interface MemoryRegistry extends AsyncDisposable {
  readonly app: App;
  readonly driver: MemoryDriver;
  /** Lines the app logged. */
  readonly logs: string[];
  /** Answers a request for `path` (starting with `/v2/`) by calling the app directly. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

/**
 * Builds the app over a memory driver (a fresh one unless given), for unit tests of routes
 * and services: no socket, no data root, no data-root lock.
 */
export async function memoryRegistry(
  options: AppOptions & { readonly config?: Partial<Config>; readonly driver?: MemoryDriver } = {},
): Promise<MemoryRegistry> {
  const logs: string[] = [];
  const driver = options.driver ?? new MemoryDriver();
  const config: Config = { ...DEFAULTS, port: 0, ...options.config, dataDir: "memory" };
  const app = await createApp(config, { log: (line) => logs.push(line), ...options, driver });
  return {
    app,
    driver,
    logs,
    fetch: (path, init) => app(new Request(`http://registry.test${path}`, init)),
    [Symbol.asyncDispose]() {
      app.close();
      return Promise.resolve();
    },
  };
}

/** The repository root, for running `main.ts` in a subprocess. */
export const PROJECT_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** A registry running as its own `deno` process. */
export interface RegistryProcess extends AsyncDisposable {
  readonly url: string;
  readonly pid: number;
  /** The complete lines it wrote to standard output so far (its log), in order. */
  readonly output: string[];
  /** Sends a signal and waits for the process to exit. */
  kill(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
  /** Resident memory in KiB from /proc/<pid>/status (VmRSS). */
  rssKiB(): Promise<number>;
}

/**
 * Starts `main.ts` on a free port over `dataDir` and waits until it listens (`url` is
 * `https://…` when `args` name a configuration with `http.tls`).
 */
export async function spawnRegistry(
  dataDir: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<RegistryProcess> {
  const command = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-ffi",
      "--v8-flags=--max-semi-space-size=4,--heap-growing-percent=25", // as `deno task start`
      `${PROJECT_ROOT}main.ts`,
      "--port",
      "0",
      "--data",
      dataDir,
      ...args,
    ],
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1", ...env },
  });
  const child = command.spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  let url = "";
  const deadline = Date.now() + 20_000;
  while (!url) {
    if (Date.now() > deadline) throw new Error(`registry did not start: ${seen}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`registry exited before listening: ${seen}`);
    seen += value;
    const m = /listening on (https?:\/\/[0-9.]+:[0-9]+)\/v2\//.exec(seen);
    if (m) url = m[1];
  }
  // Keep draining stdout so the child never blocks on a full pipe, keeping its lines.
  const output: string[] = [];
  let partial = seen;
  const keep = (text: string) => {
    partial += text;
    const lines = partial.split("\n");
    partial = lines.pop()!;
    output.push(...lines);
  };
  keep("");
  (async () => {
    try {
      for (let r = await reader.read(); !r.done; r = await reader.read()) keep(r.value);
    } catch { /* closed */ }
  })();
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
  return {
    url,
    pid: child.pid,
    output,
    kill,
    async rssKiB() {
      const text = await Deno.readTextFile(`/proc/${child.pid}/status`);
      const m = /VmRSS:\s+([0-9]+) kB/.exec(text);
      if (!m) throw new Error("no VmRSS in /proc status");
      return Number(m[1]);
    },
    async [Symbol.asyncDispose]() {
      await kill("SIGKILL");
    },
  };
}

/**
 * Polls a registry process's VmRSS every 100 ms and keeps the peak; `stop` takes a last sample
 * and returns the peak in KiB.
 */
export function sampleRss(server: RegistryProcess): { stop(): Promise<number> } {
  let peak = 0;
  let failure: unknown = null;
  const sample = async () => {
    try {
      peak = Math.max(peak, await server.rssKiB());
    } catch (error) {
      failure = error;
    }
  };
  let busy: Promise<void> = sample();
  const timer = setInterval(() => {
    busy = busy.then(sample);
  }, 100);
  return {
    async stop(): Promise<number> {
      clearInterval(timer);
      await busy;
      await sample();
      if (failure) throw failure;
      return peak;
    },
  };
}

/** SHA-256 digest string of bytes. */
export async function sha256Digest(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return `sha256:${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Random bytes of any length (crypto.getRandomValues fills at most 64 KiB per call). */
export function randomBytes(length: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  for (let at = 0; at < length; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(length, at + 65536)));
  }
  return out;
}

/** Reads a JSON error body and returns its first code. */
export async function errorCode(response: Response): Promise<string> {
  const body = await response.json() as { errors?: { code?: string }[] };
  return body.errors?.[0]?.code ?? "";
}

/** Pushes a blob in one POST + PUT and returns its digest. */
export async function pushBlob(
  reg: TempRegistry | { fetch: TempRegistry["fetch"] },
  name: string,
  bytes: Uint8Array<ArrayBuffer>,
): Promise<string> {
  const digest = await sha256Digest(bytes);
  const start = await reg.fetch(`/v2/${name}/blobs/uploads/`, { method: "POST" });
  await start.body?.cancel();
  const location = start.headers.get("location");
  if (start.status !== 202 || !location) throw new Error(`POST gave ${start.status}`);
  const put = await reg.fetch(`${location}?digest=${digest}`, { method: "PUT", body: bytes });
  await put.body?.cancel();
  if (put.status !== 201) throw new Error(`PUT gave ${put.status}`);
  return digest;
}
