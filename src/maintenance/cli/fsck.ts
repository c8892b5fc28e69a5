/**
 * `deno task fsck [--json] [--config FILE | --data DIR | any flag of deno task start]`: the
 * integrity check of a data root (`../fsck.ts`). One line per finding (kind, key, detail) on
 * standard output, or one JSON document with `--json`; exit code 1 when something is wrong,
 * 0 when the store is sound, 2 for a usage error. It never repairs anything.
 *
 * It takes the data-root lock while it checks, so no registry starts meanwhile. When a
 * registry holds the lock it checks all the same, reading only, and says so: in-flight
 * writes younger than ten minutes are not findings, and a finding may be a write made during
 * the check (run it again to confirm).
 */

import { nativeSha256Available } from "../../digest/sha256.ts";
import { checkStore, formatFinding } from "../fsck.ts";
import { existingRoot, type Io, openRoot, parseCommand, run, STDIO, tryLock } from "../cli.ts";

const HELP =
  `Usage: deno task fsck [--json] [--config FILE] [--data DIR] [other flags of deno task start]

Verifies a data root: every blob's digest, every tag, manifest revision, index child, config,
layer, layer link and referrer entry, upload sessions and leftover temporary files. Prints one
line per finding (kind, key, detail), or JSON with --json. Repairs nothing.
Exit code: 0 sound, 1 findings, 2 usage error.`;

/**
 * The one line of the scale-out mode, which this command does not cover: it reads a data
 * root, and would otherwise inspect `dataDir` (unused in that mode) and report on nothing.
 */
export const SCALE_OUT_REFUSAL =
  `deno task fsck works on a data root only; storage.s3 is configured (the scale-out mode), ` +
  `whose data is in the bucket and the database: nothing checked`;

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
    if (command.positionals.length > 0) {
      io.err(`Unexpected argument ${JSON.stringify(command.positionals[0])} (see --help)`);
      return 2;
    }
    for (const warning of command.warnings) io.err(warning);
    if (command.config.s3 !== null) {
      io.err(SCALE_OUT_REFUSAL);
      return 2;
    }
    const root = await existingRoot(command.config.dataDir);
    const attempt = await tryLock(root);
    if (!attempt.held) {
      io.err(
        `${attempt.reason}: checking without the lock, reading only; ` +
          "a write made during the check may show as a finding (run again to confirm)",
      );
    }
    try {
      const driver = await openRoot(root);
      const report = await checkStore(driver, {
        root,
        live: !attempt.held,
        ...(nativeSha256Available() ? {} : { hashBackend: "portable" as const }),
      });
      if (command.switches.has("json")) {
        const ok = report.findings.length === 0;
        io.out(JSON.stringify({ root, ok, live: !attempt.held, ...report }));
      } else {
        for (const finding of report.findings) io.out(formatFinding(finding));
        const c = report.checked;
        io.err(
          `${report.findings.length === 0 ? "sound" : `${report.findings.length} findings`}: ` +
            `${c.blobs} blobs, ${c.repositories} repositories, ${c.manifests} manifests, ` +
            `${c.tags} tags, ${c.links} links, ${c.referrers} referrer entries, ` +
            `${c.uploads} upload sessions checked in ${root}`,
        );
      }
      return report.findings.length === 0 ? 0 : 1;
    } finally {
      if (attempt.held) attempt.lock.release();
    }
  });
}

if (import.meta.main) Deno.exit(await main(Deno.args, Deno.env.toObject()));
