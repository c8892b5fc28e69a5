/**
 * `deno task du [--json] [NAME] [--config FILE | --data DIR | …]`: the storage
 * usage of a data root (`../usage.ts`), as text or JSON. It only reads, and takes no lock:
 * it runs the same with or without a registry on the root (the numbers are then a moment's).
 * Exit code 0, 1 for an unknown repository, 2 for a usage error.
 */

import { RegistryError } from "../../errors.ts";
import { isRepositoryName } from "../../types/names.ts";
import { formatUsage, measureUsage } from "../usage.ts";
import { existingRoot, type Io, openRoot, parseCommand, run, STDIO, UsageError } from "../cli.ts";

const HELP =
  `Usage: deno task du [--json] [NAME] [--config FILE] [--data DIR] [other flags of deno task start]

Storage usage: per repository, the bytes it alone holds and the bytes it shares with other
repositories, and its manifests, tags and blobs; for the store, all blob bytes, the bytes no
repository holds (what the collector can free), and upload sessions. NAME: one repository.
Reads only, takes no lock. Exit code: 0, 1 unknown repository, 2 usage error.`;

/**
 * The one line of the scale-out mode, which this command does not cover: it reads a data
 * root, and would otherwise inspect `dataDir` (unused in that mode) and report on nothing.
 */
export const SCALE_OUT_REFUSAL =
  `deno task du works on a data root only; storage.s3 is configured (the scale-out mode), ` +
  `whose data is in the bucket and the database: nothing measured`;

/** Runs the command; returns the exit code. */
export function main(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: Io = STDIO,
): Promise<number> {
  return run(io, async () => {
    const command = parseCommand(args, env, ["json"]);
    if (command === "help") {
      io.out(HELP);
      return 0;
    }
    if (command.positionals.length > 1) {
      throw new UsageError(`Unexpected argument ${JSON.stringify(command.positionals[1])}`);
    }
    const name = command.positionals[0];
    if (name !== undefined && !isRepositoryName(name)) {
      throw new UsageError(`Invalid repository name ${JSON.stringify(name.slice(0, 200))}`);
    }
    for (const warning of command.warnings) io.err(warning);
    if (command.config.s3 !== null) {
      io.err(SCALE_OUT_REFUSAL);
      return 2;
    }
    const driver = await openRoot(await existingRoot(command.config.dataDir));
    let report;
    try {
      report = await measureUsage(driver, name === undefined ? {} : { repository: name });
    } catch (error) {
      if (error instanceof RegistryError && error.code === "NAME_UNKNOWN") {
        io.err(error.message);
        return 1;
      }
      throw error;
    }
    io.out(command.switches.has("json") ? JSON.stringify(report) : formatUsage(report));
    return 0;
  });
}

if (import.meta.main) Deno.exit(await main(Deno.args, Deno.env.toObject()));
