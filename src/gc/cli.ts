/**
 * `deno task gc [--dry-run] [--config FILE] [the flags of deno task start]`: one garbage
 * collection of the data root the same settings as `deno task start` name.
 *
 * When a registry holds the data root (its lock), the command asks it, through the admin
 * endpoint, with the admin token it wrote to `<root>/.admin.json`, and waits for the report.
 * When none does, the command takes the data root's lock itself and collects offline (a
 * registry started meanwhile finds the root held and exits with code 2). It prints the report
 * as JSON on standard output; exit code 0 when the collection finished, 1 when it stopped or
 * could not run, 2 for a bad setting.
 *
 * In the scale-out mode (`storage.s3` with `database.url`) there is no data root: the command
 * collects itself, alongside the running replicas, as one of them would: every lock it takes
 * is an advisory lock of the shared database, and the collection lock keeps it from running
 * while a replica collects (it then says so and exits with code 1).
 */

import { ConfigError, parseCommandLine } from "../config/mod.ts";
import { StartupError } from "../errors.ts";
import { createServices } from "../services/registry.ts";
import { canonicalRoot } from "../storage/drivers/fs_files.ts";
import { lockRoot } from "../storage/drivers/fs_lock.ts";
import { dataRootFailure, scaleOutFailure } from "../startup.ts";
import { ADMIN_TOKEN_HEADER, GC_PATH } from "./admin.ts";
import { readAdminFile } from "./admin_file.ts";
import type { GcReport } from "./collector.ts";

const USAGE = `Usage: deno task gc [--dry-run] [--config FILE] [flags of deno task start]

Runs one garbage collection of the data root: through the running registry when one holds
it, offline otherwise. Prints the report as JSON. --dry-run deletes nothing.`;

/** Runs the command; returns the exit code. */
export async function main(args: readonly string[], env: Record<string, string>): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const dryRun = args.includes("--dry-run");
  let config;
  try {
    const invocation = parseCommandLine(args.filter((a) => a !== "--dry-run"), env);
    if (invocation.action !== "run" && invocation.action !== "print-config") {
      console.log(invocation.text.trimEnd());
      return 0;
    }
    config = invocation.config;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`${error.message} (see --help)`);
    return 2;
  }
  if (config.readOnly && !dryRun) {
    console.error(
      "The registry is in read-only mode (storage.maintenance.readonly): use --dry-run",
    );
    return 1;
  }
  if (config.s3 !== null) {
    const report = await offline(config, dryRun);
    if (report === null) return 1;
    console.log(JSON.stringify(report, null, 2));
    if (report.skipped !== undefined) console.error(`nothing collected: ${report.skipped}`);
    return report.error === undefined && report.skipped === undefined ? 0 : 1;
  }
  let held = false;
  try {
    const lock = await lockRoot(await canonicalRoot(config.dataDir));
    lock.release();
  } catch (error) {
    if (!(error instanceof StartupError && error.message.includes("in use"))) {
      const line = dataRootFailure(error, config.dataDir);
      if (line === null) throw error;
      console.error(line);
      return 1;
    }
    held = true;
  }
  const report = held ? await remote(config.dataDir, dryRun) : await offline(config, dryRun);
  if (report === null) return 1;
  console.log(JSON.stringify(report, null, 2));
  return report.error === undefined ? 0 : 1;
}

/** Asks the registry holding the data root. */
async function remote(dataDir: string, dryRun: boolean): Promise<GcReport | null> {
  const file = await readAdminFile(dataDir);
  if (file === null) {
    console.error(
      `data root ${dataDir} is held by a registry that has not written ${dataDir}/.admin.json ` +
        "(it writes it once it listens); try again",
    );
    return null;
  }
  const url = `${file.url}${GC_PATH}?wait=true${dryRun ? "&dryRun=true" : ""}`;
  let response: Response;
  try {
    response = await fetch(url, { method: "POST", headers: { [ADMIN_TOKEN_HEADER]: file.token } });
  } catch (error) {
    console.error(`the registry (PID ${file.pid}) does not answer at ${file.url}: ${error}`);
    return null;
  }
  const text = await response.text();
  if (response.status !== 200) {
    console.error(`the registry answered ${response.status}: ${text.trim()}`);
    return null;
  }
  return JSON.parse(text) as GcReport;
}

/**
 * Collects with the data root's lock held by this process, or, in the scale-out mode, under
 * the shared database's locks.
 */
async function offline(
  config: Parameters<typeof createServices>[0],
  dryRun: boolean,
): Promise<GcReport | null> {
  let services;
  try {
    services = await createServices(config);
  } catch (error) {
    const line = config.s3 === null
      ? dataRootFailure(error, config.dataDir)
      : scaleOutFailure(error, config);
    if (line === null) throw error;
    console.error(line);
    return null;
  }
  try {
    return await services.gc.run({ dryRun }).report;
  } finally {
    services.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args, Deno.env.toObject()));
