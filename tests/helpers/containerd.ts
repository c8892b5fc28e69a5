/**
 * Test helper: a containerd daemon of the test's own (root, state, sockets and plugin folder
 * under a private folder, the CRI plugin off), `ctr` against it, and the `hosts.toml` that
 * tells containerd's resolver which CA a registry's certificate is signed by.
 */

import { join } from "node:path";
import { run, type RunOptions, type RunResult } from "./clients.ts";

/** How long containerd may take to boot before the helper gives up. */
const BOOT_TIMEOUT_MS = 30_000;
/** How long containerd may take to exit on SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 10_000;

/** A running containerd; disposing stops it (SIGTERM, then SIGKILL) and waits for its exit. */
export interface Containerd extends AsyncDisposable {
  /** The gRPC socket (`ctr -a`). */
  readonly socket: string;
  readonly pid: number;
  /** What the daemon wrote to standard error so far. */
  readonly log: string[];
  /** Runs `ctr -a <socket> <args>`; throws when it fails (unless allowed). */
  ctr(args: readonly string[], options?: RunOptions): Promise<RunResult>;
}

/** The daemon's configuration: everything under `dir`, only the plugins `ctr` pull/push need. */
function configToml(dir: string): string {
  return [
    "version = 2",
    `root = "${join(dir, "root")}"`,
    `state = "${join(dir, "state")}"`,
    // The CRI plugin (Kubernetes) needs CNI and privileges, and no test uses it.
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    "[grpc]",
    `  address = "${join(dir, "containerd.sock")}"`,
    "[ttrpc]",
    `  address = "${join(dir, "containerd.sock.ttrpc")}"`,
    "[debug]",
    '  address = ""',
    "[metrics]",
    '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${join(dir, "opt")}"`,
    "",
  ].join("\n");
}

/**
 * Starts containerd with a private configuration under `dir` (created) and waits until it
 * says it has booted (its socket then accepts `ctr`).
 */
export async function startContainerd(dir: string): Promise<Containerd> {
  await Deno.mkdir(dir, { recursive: true });
  const config = join(dir, "config.toml");
  await Deno.writeTextFile(config, configToml(dir));
  const socket = join(dir, "containerd.sock");
  const child = new Deno.Command("containerd", {
    args: ["--config", config, "--log-level", "info"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log: string[] = [];
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let status: Promise<Deno.CommandStatus> | null = null;
  const stop = (): Promise<Deno.CommandStatus> => {
    if (status === null) {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      const killer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
      }, STOP_TIMEOUT_MS);
      status = child.status.finally(() => clearTimeout(killer));
    }
    return status;
  };
  // A daemon that never boots is stopped, which ends its output and so the wait below.
  const timeout = setTimeout(stop, BOOT_TIMEOUT_MS);
  try {
    let seen = "";
    while (!/containerd successfully booted/.test(seen)) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`containerd exited before booting:\n${seen.slice(-4000)}`);
      seen += value;
    }
    log.push(seen);
  } catch (error) {
    await stop();
    throw error;
  } finally {
    clearTimeout(timeout);
  }
  // Keep draining its output so it never blocks on a full pipe.
  const drained = (async () => {
    try {
      for (let r = await lines.read(); !r.done; r = await lines.read()) log.push(r.value);
    } catch { /* closed */ }
  })();
  return {
    socket,
    pid: child.pid,
    log,
    ctr: (args, options) => run("ctr", ["-a", socket, ...args], options),
    async [Symbol.asyncDispose]() {
      await stop();
      await drained;
    },
  };
}

/**
 * Writes `hostsDir/HOST/hosts.toml` (with the CA copied next to it as `ca.crt`) so that
 * `ctr … --hosts-dir hostsDir` reaches `https://HOST` trusting that CA, as the README shows.
 * ctr tries the `[host."https://HOST"]` table (which containerd 1.6 requires), then `server`
 * on any failure (a 401 too): the CA is named for both. Returns the file's text.
 */
export async function writeHostsToml(
  hostsDir: string,
  host: string,
  caFile: string,
): Promise<string> {
  const dir = join(hostsDir, host);
  await Deno.mkdir(dir, { recursive: true });
  const ca = join(dir, "ca.crt");
  await Deno.copyFile(caFile, ca);
  const text = [
    `server = "https://${host}"`,
    `ca = "${ca}"`,
    `[host."https://${host}"]`,
    '  capabilities = ["pull", "resolve", "push"]',
    `  ca = "${ca}"`,
    "",
  ].join("\n");
  await Deno.writeTextFile(join(dir, "hosts.toml"), text);
  return text;
}
