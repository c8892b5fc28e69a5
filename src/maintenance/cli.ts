/**
 * What the maintenance commands (`deno task fsck`, `du`, `repo-delete`) share: their own
 * arguments split from the registry's (`--config FILE`, `--data DIR`, every flag of
 * `deno task start`, and the `REGISTRY_*` variables, read by the same loader), the data root
 * opened without creating anything, and the data-root lock.
 *
 * Exit codes: 0 done (fsck: the store is sound), 1 not done or something is wrong (fsck:
 * findings), 2 a usage error (a bad argument, setting or data root).
 */

import { type Config, ConfigError, parseCommandLine } from "../config/mod.ts";
import { SETTINGS } from "../config/settings.ts";
import { StartupError } from "../errors.ts";
import { FsDriver } from "../storage/drivers/fs.ts";
import { lockRoot, type RootLock } from "../storage/drivers/fs_lock.ts";
import { FORMAT_VERSION } from "../storage/format.ts";
import { FORMAT_KEY } from "../storage/keys.ts";

/** Where a command writes: its result lines, and its messages. */
export interface Io {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

/** The process's standard output and error. */
export const STDIO: Io = { out: (line) => console.log(line), err: (line) => console.error(line) };

/** A usage error: the command prints the line and exits with code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The parsed command line of a maintenance command. */
export interface Command {
  readonly config: Config;
  /** The command's own switches that were given (`json`). */
  readonly switches: ReadonlySet<string>;
  readonly positionals: readonly string[];
  /** Lines the configuration loader warns about. */
  readonly warnings: readonly string[];
}

/** The registry's flags that take a value (`--config FILE`, `--data DIR`, …). */
function valueFlags(): Set<string> {
  const flags = new Set(["--config"]);
  for (const setting of SETTINGS) {
    for (const alias of setting.aliases) if (alias.flag && alias.arg) flags.add(`--${alias.flag}`);
  }
  return flags;
}

/**
 * Splits the command's own switches (`--json`, from `switches`) and positional arguments from
 * the registry's flags, and loads the settings as `deno task start` does; "help" for
 * `--help`. Throws UsageError.
 */
export function parseCommand(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  switches: readonly string[],
): Command | "help" {
  const own = new Set<string>();
  const positionals: string[] = [];
  const rest: string[] = [];
  const takesValue = valueFlags();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h") return "help";
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg.startsWith("--") && switches.includes(arg.slice(2))) own.add(arg.slice(2));
    else if (!arg.startsWith("-")) positionals.push(arg);
    else {
      rest.push(arg);
      if (takesValue.has(arg) && i + 1 < args.length) rest.push(args[++i]);
    }
  }
  try {
    const invocation = parseCommandLine(rest, env);
    if (invocation.action !== "run") {
      throw new UsageError(`${rest.find((a) => a.startsWith("--")) ?? ""} is not for this command`);
    }
    return { config: invocation.config, switches: own, positionals, warnings: invocation.warnings };
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(error.message);
    throw error;
  }
}

/**
 * The canonical path of an existing data root, without creating it. Throws UsageError when it
 * does not exist or is not a folder.
 */
export async function existingRoot(dataDir: string): Promise<string> {
  let root: string;
  try {
    root = await Deno.realPath(dataDir);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new UsageError(`data root ${dataDir} does not exist`);
    }
    throw new UsageError(`data root ${dataDir} cannot be read: ${(error as Error).message}`);
  }
  const info = await Deno.stat(root);
  if (!info.isDirectory) throw new UsageError(`data root ${dataDir} is not a folder`);
  return root;
}

/**
 * The driver over an existing root, refusing a root of a newer format (UsageError). Nothing
 * is written.
 */
export async function openRoot(root: string): Promise<FsDriver> {
  const driver = new FsDriver(root);
  const bytes = await driver.get(FORMAT_KEY);
  if (bytes !== null) {
    let format: unknown;
    try {
      format = (JSON.parse(new TextDecoder().decode(bytes)) as { format?: unknown }).format;
    } catch {
      format = undefined;
    }
    if (typeof format === "number" && format > FORMAT_VERSION) {
      throw new UsageError(
        `data root ${root} has format ${format}; this version reads format ${FORMAT_VERSION} and older`,
      );
    }
  }
  return driver;
}

/** The outcome of trying to take the data-root lock. */
export type LockAttempt =
  | { readonly held: true; readonly lock: RootLock }
  | { readonly held: false; readonly reason: string };

/**
 * Takes the data root's lock without waiting; when a registry (or another command) holds it,
 * or it cannot be taken (no write access), says why instead.
 */
export async function tryLock(root: string): Promise<LockAttempt> {
  try {
    return { held: true, lock: await lockRoot(root) };
  } catch (error) {
    if (error instanceof StartupError) return { held: false, reason: error.message };
    if (error instanceof Deno.errors.PermissionDenied) {
      return {
        held: false,
        reason: `the lock of data root ${root} cannot be taken: permission denied`,
      };
    }
    throw error;
  }
}

/** Runs a command's body: prints a UsageError's line and answers 2. */
export async function run(io: Io, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(error.message);
      return 2;
    }
    throw error;
  }
}
