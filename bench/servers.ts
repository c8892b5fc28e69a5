/**
 * Starting, sampling and stopping the two registries under test: ours (`deno run main.ts`)
 * and CNCF Distribution (`docker-registry serve CONFIG.yml`), each on a free loopback port
 * with a fresh data root, with their output going to log files in the bench folder.
 */

import { join } from "node:path";

/** One registry process under test. */
export interface Server {
  /** "ours" or "distribution". */
  readonly name: string;
  /** `http://127.0.0.1:PORT`. */
  readonly base: string;
  readonly pid: number;
  readonly dataDir: string;
  readonly logPath: string;
  /** Where the committed bytes of a sha256 blob live on disk (for cleanup between runs). */
  blobPath(hex: string): string;
  /**
   * When set (a server on S3), removes a committed blob from its storage instead of deleting
   * `blobPath` (for cleanup between runs), after checking that its stored size is `size`.
   */
  dropBlob?(digest: string, size: number): Promise<void>;
  /** Stops the process (SIGTERM, then SIGKILL after 15 s; at once with `force`). */
  stop(force?: boolean): Promise<void>;
  /** Kills the process and starts a new one on the same data root (new port and pid). */
  restart(): Promise<Server>;
}

/** The path of an executable `cmd` on PATH, or null. */
export function which(cmd: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const path = join(dir, cmd);
    try {
      const info = Deno.statSync(path);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return path;
    } catch {
      // not here
    }
  }
  return null;
}

/** Finds a free loopback TCP port. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Starts a process whose standard output and error go straight to `logPath` (appended), as a
 * service's output goes to a file or the journal: no pipe through the bench process, whose
 * copying would take CPU from the server under test. `sh` execs the command, so the child's
 * PID is the server's.
 */
function spawnLogged(
  command: string,
  args: readonly string[],
  logPath: string,
  options: { cwd?: string; env?: Record<string, string>; unsetEnv?: readonly string[] } = {},
): Deno.ChildProcess {
  const unset = options.unsetEnv ?? [];
  const env = unset.length === 0 ? options.env : Object.fromEntries(
    Object.entries({ ...Deno.env.toObject(), ...options.env }).filter(([k]) => !unset.includes(k)),
  );
  return new Deno.Command("sh", {
    args: ["-c", 'exec "$@" >>"$0" 2>&1', logPath, command, ...args],
    cwd: options.cwd,
    env,
    clearEnv: unset.length > 0,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

async function stopChild(child: Deno.ChildProcess, force = false): Promise<void> {
  try {
    child.kill(force ? "SIGKILL" : "SIGTERM");
  } catch {
    return; // already gone
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
  }, 15_000);
  await child.status;
  clearTimeout(timer);
}

/** The text of a file from byte `offset` on ("" when it is missing). */
async function readFrom(path: string, offset: number): Promise<string> {
  // Only what follows `offset`: a log kept over many runs grows to hundreds of MB, and reading
  // it whole (from the disk, after the big-store bench drops the page cache) every 50 ms made
  // a start-up look seconds slower than it was.
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch {
    return "";
  }
  try {
    await file.seek(offset, Deno.SeekMode.Start);
  } catch {
    file.close();
    return "";
  }
  return await new Response(file.readable).text().catch(() => ""); // closes the file
}

async function waitReady(
  base: string,
  child: Deno.ChildProcess,
  logPath: string,
  logStart: number,
): Promise<void> {
  const deadline = Date.now() + 20_000;
  let exited = false;
  child.status.then(() => exited = true);
  while (Date.now() < deadline && !exited) {
    try {
      const res = await fetch(`${base}/v2/`);
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) return; // 401: up, with access control
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const log = await readFrom(logPath, logStart);
  throw new Error(`Server at ${base} did not become ready; log ${logPath}:\n${log.slice(-2000)}`);
}

/** Options for starting our registry. */
export interface OursOptions {
  /** The repository root (where main.ts is). */
  readonly repoRoot: string;
  /** Extra `deno run` flags, e.g. `--cpu-prof`. */
  readonly denoFlags?: string[];
  /** Extra environment variables (settings), e.g. `REGISTRY_LOG_REQUESTS`. */
  readonly env?: Record<string, string>;
  /** The log file's name in the log folder (default `ours.log`). */
  readonly logName?: string;
  /**
   * `--allow-all` instead of `deno task start`'s permissions: Deno grants a path under /dev
   * (a data root in /dev/shm) only to a process allowed everything.
   */
  readonly allowAll?: boolean;
  /**
   * A configuration file (`--config FILE`) instead of `--data DATA_DIR`: the S3 mode, where a
   * filesystem root is refused.
   */
  readonly configPath?: string;
}

/**
 * Starts our registry with `--port 0` and parses the port from its
 * `registry listening on http://HOST:PORT/v2/` line.
 */
export async function startOurs(
  dataDir: string,
  logDir: string,
  opts: OursOptions,
): Promise<Server> {
  await Deno.mkdir(dataDir, { recursive: true });
  const logPath = join(logDir, opts.logName ?? "ours.log");
  const logStart = await Deno.stat(logPath).then((st) => st.size, () => 0);
  const child = spawnLogged(
    Deno.execPath(),
    [
      "run",
      ...(opts.allowAll
        ? ["--allow-all"]
        : ["--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-ffi"]),
      // as `deno task start` runs it: a 4 MiB young generation keeps peak memory under load
      // at ~75 MiB instead of ~125 (bench/load.ts, 64 connections of HEAD); the old one grows
      // by a quarter of what a full collection left (BENCHMARKS.md, "Memory at 1,000,000
      // manifests")
      "--v8-flags=--max-semi-space-size=4,--heap-growing-percent=25",
      ...(opts.denoFlags ?? []),
      join(opts.repoRoot, "main.ts"),
      "--port",
      "0",
      ...(opts.configPath ? ["--config", opts.configPath] : ["--data", dataDir]),
    ],
    logPath,
    { cwd: opts.repoRoot, env: { NO_COLOR: "1", ...opts.env } },
  );
  // Read the log until this start's listening line appears.
  let exited = false;
  child.status.then(() => exited = true);
  let base: string | null = null;
  const deadline = Date.now() + 30_000;
  while (base === null && !exited && Date.now() < deadline) {
    const text = await readFrom(logPath, logStart);
    const m = /registry listening on http:\/\/([^/\s]+):(\d+)\/v2\//.exec(text);
    if (m) base = `http://127.0.0.1:${m[2]}`;
    else await new Promise((r) => setTimeout(r, 50));
  }
  if (base === null) {
    await stopChild(child);
    const tail = await readFrom(logPath, logStart);
    throw new Error(`Our registry did not print its listening line; log:\n${tail.slice(-2000)}`);
  }
  try {
    await waitReady(base, child, logPath, logStart);
  } catch (error) {
    await stopChild(child); // never leave a server behind
    throw error;
  }
  return {
    name: "ours",
    base,
    pid: child.pid,
    dataDir,
    logPath,
    blobPath: (hex) => join(dataDir, "blobs", "sha256", hex.slice(0, 2), hex),
    stop: async (force = false) => {
      await stopChild(child, force);
    },
    restart: async () => {
      await stopChild(child, true);
      return await startOurs(dataDir, logDir, opts);
    },
  };
}

/** A running receiver of pushes: a registry, or one of bench/intake.ts's. */
export interface Receiver {
  readonly name: string;
  /** `http://127.0.0.1:PORT`. */
  readonly base: string;
  readonly pid: number;
  /** Stops the process (SIGTERM, then SIGKILL after 15 s; at once with `force`). */
  stop(force?: boolean): Promise<void>;
}

/**
 * Starts bench/intake.ts in `mode` on a free port, its files in `dataDir`, its output appended
 * to `intake-MODE.log` in `logDir`; with `deno task start`'s V8 flags, as our registry runs.
 */
export async function startIntake(
  repoRoot: string,
  mode: string,
  dataDir: string,
  logDir: string,
): Promise<Receiver> {
  await Deno.mkdir(dataDir, { recursive: true });
  const logPath = join(logDir, `intake-${mode}.log`);
  const logStart = await Deno.stat(logPath).then((st) => st.size, () => 0);
  const child = spawnLogged(
    Deno.execPath(),
    [
      "run",
      ...["--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-ffi"],
      "--v8-flags=--max-semi-space-size=4,--heap-growing-percent=25",
      join(repoRoot, "bench", "intake.ts"),
      ...["--mode", mode, "--port", "0", "--dir", dataDir],
    ],
    logPath,
    { cwd: repoRoot, env: { NO_COLOR: "1" } },
  );
  let exited = false;
  child.status.then(() => exited = true);
  let base: string | null = null;
  const deadline = Date.now() + 30_000;
  while (base === null && !exited && Date.now() < deadline) {
    const m = /intake listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(
      await readFrom(logPath, logStart),
    );
    if (m) base = `http://127.0.0.1:${m[1]}`;
    else await new Promise((r) => setTimeout(r, 50));
  }
  if (base === null) {
    await stopChild(child);
    const tail = await readFrom(logPath, logStart);
    throw new Error(`bench/intake.ts did not print its listening line; log:\n${tail.slice(-2000)}`);
  }
  return {
    name: `intake-${mode}`,
    base,
    pid: child.pid,
    stop: (force = false) => stopChild(child, force),
  };
}

/**
 * Starts `bench/intake.ts --mode durable` (the registry's durable data path alone) as a server
 * the bench's rows can run against: its committed blobs lie where ours keeps them, under
 * `dataDir`.
 */
export async function startDurableIntake(
  repoRoot: string,
  dataDir: string,
  logDir: string,
): Promise<Server> {
  const intake = await startIntake(repoRoot, "durable", dataDir, logDir);
  return {
    name: intake.name,
    base: intake.base,
    pid: intake.pid,
    dataDir,
    logPath: join(logDir, "intake-durable.log"),
    blobPath: (hex) => join(dataDir, "blobs", "sha256", hex.slice(0, 2), hex),
    stop: (force = false) => intake.stop(force),
    restart: async () => {
      await intake.stop(true);
      return await startDurableIntake(repoRoot, dataDir, logDir);
    },
  };
}

/** The Distribution configuration the benchmark writes (filesystem storage, delete on). */
export function distributionConfig(dataDir: string, port: number): string {
  // As the Debian package's /etc/docker/registry/config.yml (filesystem storage, in-memory
  // blob descriptor cache, delete enabled), minus auth and the storage health check, and with
  // request logging off: our registry does not log requests by default either.
  return [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  cache:",
    "    blobdescriptor: inmemory",
    "  filesystem:",
    `    rootdirectory: ${dataDir}`,
    "  delete:",
    "    enabled: true",
    "  maintenance:",
    "    uploadpurging:",
    "      enabled: false",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    "",
  ].join("\n");
}

/** Starts CNCF Distribution with a config file written next to its data root. */
export async function startDistribution(
  binary: string,
  dataDir: string,
  logDir: string,
  /**
   * Another configuration (e.g. the S3 driver's) for a port, the files' base name, and
   * environment variables the process must not see.
   */
  custom?: { config: (port: number) => string; name: string; unsetEnv?: readonly string[] },
): Promise<Server> {
  await Deno.mkdir(dataDir, { recursive: true });
  const port = freePort();
  const name = custom?.name ?? "distribution";
  const configPath = join(logDir, `${name}.yml`);
  await Deno.writeTextFile(
    configPath,
    custom ? custom.config(port) : distributionConfig(dataDir, port),
  );
  const logPath = join(logDir, `${name}.log`);
  const logStart = await Deno.stat(logPath).then((st) => st.size, () => 0);
  const child = spawnLogged(binary, ["serve", configPath], logPath, {
    unsetEnv: custom?.unsetEnv,
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitReady(base, child, logPath, logStart);
  } catch (error) {
    await stopChild(child);
    throw error;
  }
  return {
    name: "distribution",
    base,
    pid: child.pid,
    dataDir,
    logPath,
    blobPath: (hex) =>
      join(dataDir, "docker", "registry", "v2", "blobs", "sha256", hex.slice(0, 2), hex),
    stop: async (force = false) => {
      await stopChild(child, force);
    },
    restart: async () => {
      await stopChild(child, true);
      return await startDistribution(binary, dataDir, logDir, custom);
    },
  };
}

/**
 * A process's user and system CPU time (all threads) in seconds, from /proc/PID/stat; null
 * when it is gone.
 */
function processTimes(pid: number): { user: number; system: number } | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15, in clock ticks.
    return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
  } catch {
    return null;
  }
}

/** CPU time of a process (all threads) in seconds; null when gone. */
export function cpuSeconds(pid: number): number | null {
  const t = processTimes(pid);
  return t === null ? null : t.user + t.system;
}

/** The system (kernel) part of a process's CPU time (stime), in seconds; null if gone. */
export function systemCpuSeconds(pid: number): number | null {
  return processTimes(pid)?.system ?? null;
}

function statusKiB(pid: number, key: string): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * CPU time the whole machine spent busy so far, in seconds summed over its cores; null where
 * there is no /proc/stat.
 */
export function machineBusySeconds(): number | null {
  try {
    return busySecondsOf(Deno.readTextFileSync("/proc/stat"));
  } catch {
    return null;
  }
}

/**
 * The busy seconds in the text of /proc/stat: the first line's user, nice, system, irq,
 * softirq and steal times (in clock ticks of 1/100 s); idle and I/O wait are not busy.
 */
export function busySecondsOf(stat: string): number {
  const line = stat.split("\n", 1)[0]!;
  if (!line.startsWith("cpu ")) throw new Error(`not /proc/stat: ${line.slice(0, 40)}`);
  // cpu user nice system idle iowait irq softirq steal ...
  const t = line.trim().split(/\s+/).slice(1).map(Number);
  return (t[0]! + t[1]! + t[2]! + t[5]! + t[6]! + (t[7] ?? 0)) / 100;
}

/** Peak resident memory and CPU use of one process over an interval. */
export interface Usage {
  readonly peakRssMiB: number;
  readonly cpuSeconds: number;
  /** The part of `cpuSeconds` spent in the kernel for the process (system time). */
  readonly systemSeconds: number;
  /** CPU seconds the whole machine was busy meanwhile (every process and the kernel). */
  readonly machineBusySeconds: number;
}

/**
 * Samples a process: resets its VmHWM (writing 5 to /proc/PID/clear_refs) at start, polls
 * VmRSS every 10 ms, and at stop reports max(VmHWM, polled VmRSS), the CPU time it used and
 * the CPU time the whole machine was busy.
 */
export class Sampler {
  readonly #pid: number;
  #peakKiB = 0;
  #cpu0 = 0;
  #system0 = 0;
  #busy0 = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Makes a sampler for one process. */
  constructor(pid: number) {
    this.#pid = pid;
  }

  /** Starts sampling. */
  start(): void {
    try {
      Deno.writeTextFileSync(`/proc/${this.#pid}/clear_refs`, "5");
    } catch {
      // not permitted: polling alone gives the peak
    }
    this.#peakKiB = statusKiB(this.#pid, "VmRSS") ?? 0;
    this.#cpu0 = cpuSeconds(this.#pid) ?? 0;
    this.#system0 = systemCpuSeconds(this.#pid) ?? 0;
    this.#busy0 = machineBusySeconds() ?? 0;
    this.#timer = setInterval(() => {
      const rss = statusKiB(this.#pid, "VmRSS");
      if (rss !== null && rss > this.#peakKiB) this.#peakKiB = rss;
    }, 10);
  }

  /** Stops sampling and reports. */
  stop(): Usage {
    clearInterval(this.#timer);
    const hwm = statusKiB(this.#pid, "VmHWM") ?? 0;
    const rss = statusKiB(this.#pid, "VmRSS") ?? 0;
    const peak = Math.max(this.#peakKiB, hwm, rss);
    return {
      peakRssMiB: peak / 1024,
      cpuSeconds: (cpuSeconds(this.#pid) ?? this.#cpu0) - this.#cpu0,
      systemSeconds: (systemCpuSeconds(this.#pid) ?? this.#system0) - this.#system0,
      machineBusySeconds: (machineBusySeconds() ?? this.#busy0) - this.#busy0,
    };
  }
}
