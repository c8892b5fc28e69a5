/**
 * `deno task migrate-to-s3`: copies a filesystem store into S3 (blob bytes) and PostgreSQL
 * (repository metadata), then verifies the copy (`migrate.ts`).
 *
 * The source is the data root of the usual settings (`--config FILE`, `--data DIR`, the
 * `REGISTRY_*` variables, as `deno task start` reads them). The command takes the data root's
 * lock for the whole run and refuses to start when a registry holds it: the operator stops
 * the registry first, so nothing is written to the source during the copy.
 *
 * The target comes from Distribution's `storage.s3` keys and `database.url`, read from (in
 * order of precedence) the command's flags (`--s3-endpoint`, `--s3-region`, `--bucket`,
 * `--s3-root`: never a secret), the variables `REGISTRY_STORAGE_S3_<KEY>` and
 * `REGISTRY_DATABASE_URL`, and the file given by `--target-config FILE` (the configuration the
 * registry will run with after the move; only those keys are read from it). The access key,
 * secret key and database URL (which may hold a password) come only from a variable or that
 * file, and are never printed: the report names the endpoint, bucket, root and the database's
 * host and name.
 *
 * Exit code: 0 copied and verified (or a dry run), 1 findings or an interruption (run again
 * to resume), 2 a usage error or the data root in use.
 */

import { readConfigFile, type YamlNode } from "../config/file.ts";
import { S3Driver, type S3DriverOptions } from "../storage/drivers/s3.ts";
import { MemoryDriver } from "../storage/drivers/memory.ts";
import { LocalMetadataStore } from "../storage/metadata/local.ts";
import type { MetadataStore } from "../storage/metadata/metadata.ts";
import { PostgresMetadataStore } from "../storage/metadata/postgres.ts";
import { BlobSizes } from "../storage/postgres/blobs.ts";
import { connect, type Sql } from "../storage/postgres/client.ts";
import {
  existingRoot,
  type Io,
  openRoot,
  parseCommand,
  run,
  STDIO,
  tryLock,
  UsageError,
} from "./cli.ts";
import { mib, migrate, type MigrationReport, type Tally } from "./migrate.ts";

const HELP = `Usage: deno task migrate-to-s3 [--dry-run] [--jobs N]
         [--target-config FILE] [--s3-endpoint URL] [--s3-region REGION] [--bucket NAME]
         [--s3-root PREFIX] [--config FILE] [--data DIR] [other flags of deno task start]

Copies the filesystem store (the data root deno task start would use) into S3 and PostgreSQL:
every blob (streamed, hashed on the way, re-read from S3 and hashed again), every repository's
layer links, manifest revisions, referrer entries and tags; then checks that every tag resolves
to the same manifest in the target and that the counts match. Re-running skips what the target
already holds (verified) and copies the rest. The collector's activity journal and queued
notification events are copied as they are; upload sessions in progress and the token issuer's
generated signing key are not.

Stop the registry first: the command takes the data root's lock and refuses while a registry
holds it.

Target (flags first, then variables, then the --target-config file):
  --s3-endpoint URL      storage.s3.regionendpoint   REGISTRY_STORAGE_S3_REGIONENDPOINT
  --s3-region REGION     storage.s3.region           REGISTRY_STORAGE_S3_REGION (us-east-1)
  --bucket NAME          storage.s3.bucket           REGISTRY_STORAGE_S3_BUCKET
  --s3-root PREFIX       storage.s3.rootdirectory    REGISTRY_STORAGE_S3_ROOTDIRECTORY
                         storage.s3.accesskey        REGISTRY_STORAGE_S3_ACCESSKEY
                         storage.s3.secretkey        REGISTRY_STORAGE_S3_SECRETKEY
                         storage.s3.secure, chunksize (REGISTRY_STORAGE_S3_SECURE, _CHUNKSIZE)
                         database.url                REGISTRY_DATABASE_URL
Secrets (keys, the database URL) are read only from variables or the file, never printed.

  --dry-run   say what would be copied; write nothing
  --jobs N    blobs copied at the same time (default 4)
Exit code: 0 copied and verified, 1 findings or interrupted (run again), 2 usage error.`;

/** The command's own flags that take a value. */
const VALUE_FLAGS = ["target-config", "s3-endpoint", "s3-region", "bucket", "s3-root", "jobs"];
/** The `storage.s3` keys read, and the flag that may give each. */
const S3_KEYS: readonly { key: keyof S3DriverOptions; flag?: string; secret?: boolean }[] = [
  { key: "accesskey", secret: true },
  { key: "secretkey", secret: true },
  { key: "region", flag: "s3-region" },
  { key: "regionendpoint", flag: "s3-endpoint" },
  { key: "bucket", flag: "bucket" },
  { key: "rootdirectory", flag: "s3-root" },
  { key: "secure" },
  { key: "chunksize" },
];
const S3_ENV = "REGISTRY_STORAGE_S3";
const DATABASE_ENV = "REGISTRY_DATABASE_URL";

/** Where the migration writes, resolved from flags, variables and the target file. */
export interface Target {
  readonly s3: S3DriverOptions;
  readonly databaseUrl: string;
}

/** Runs the command; returns the exit code. */
export function main(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: Io = STDIO,
): Promise<number> {
  return run(io, async () => {
    const { own, rest } = splitFlags(args);
    // The target's variables are this command's; the registry's loader does not know them yet.
    const registryEnv = Object.fromEntries(
      Object.entries(env).filter(([name]) =>
        !name.startsWith(`${S3_ENV}_`) && name !== S3_ENV && name !== DATABASE_ENV &&
        name !== "REGISTRY_DATABASE"
      ),
    );
    const command = sourceCommand(rest, registryEnv);
    if (command === "help") {
      io.out(HELP);
      return 0;
    }
    if (command.positionals.length > 0) {
      throw new UsageError(
        `Unexpected argument ${JSON.stringify(command.positionals[0])} (see --help)`,
      );
    }
    for (const warning of command.warnings) io.err(warning);
    const jobs = own.jobs === undefined ? 4 : Number(own.jobs);
    if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64) {
      throw new UsageError(`--jobs must be a whole number from 1 to 64, not ${own.jobs}`);
    }
    const target = resolveTarget(own, env);
    const dryRun = command.switches.has("dry-run");

    const root = await existingRoot(command.config.dataDir);
    const attempt = await tryLock(root);
    if (!attempt.held) {
      throw new UsageError(
        `${attempt.reason}: stop the registry before moving its store (the copy must not ` +
          "miss writes made meanwhile), then run this command again",
      );
    }
    let sql: Sql | null = null;
    try {
      const source = await openRoot(root);
      const driver = new S3Driver(target.s3);
      sql = connect(target.databaseUrl, { max: jobs + 1 });
      io.err(
        `${dryRun ? "dry run: " : ""}moving ${root} to ${describeS3(target.s3)} and ` +
          `database ${describeDatabase(target.databaseUrl)}`,
      );
      let targetMeta: MetadataStore;
      try {
        await driver.list("");
        targetMeta = dryRun ? await readOnlyMeta(sql) : await PostgresMetadataStore.open(sql);
      } catch (error) {
        io.err(`the target cannot be reached: ${firstLine(error)}`);
        return 1;
      }
      let report: MigrationReport;
      try {
        report = await migrate({
          source,
          target: driver,
          targetMeta,
          // The replicas answer a blob HEAD from these rows (src/storage/postgres/blobs.ts).
          ...(dryRun ? {} : { targetSizes: new BlobSizes(sql) }),
          dryRun,
          jobs,
          progress: (line) => io.err(line),
        });
      } catch (error) {
        io.err(
          `interrupted: ${firstLine(error)}; what was copied is kept: run the command again ` +
            "to copy the rest",
        );
        return 1;
      }
      for (const f of report.findings) io.out(`${f.kind}\t${f.subject}\t${f.detail}`);
      for (const line of summary(report)) io.err(line);
      return report.findings.length === 0 ? 0 : 1;
    } finally {
      await sql?.end({ timeout: 5 });
      attempt.lock.release();
    }
  });
}

/**
 * The source's settings, loaded as `deno task start` loads them; a configuration that already
 * names the target (which the loader refuses today) gets a pointer to where the target goes.
 */
function sourceCommand(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ReturnType<typeof parseCommand> {
  try {
    return parseCommand(args, env, ["dry-run"]);
  } catch (error) {
    if (error instanceof UsageError && /storage\.s3|database/.test(error.message)) {
      throw new UsageError(
        `${error.message}. --config names the settings the registry runs with now (its data ` +
          "root); give the S3 and PostgreSQL ones with --target-config FILE or the " +
          `${S3_ENV}_* and ${DATABASE_ENV} variables`,
      );
    }
    throw error;
  }
}

/** The command's own valued flags (`--bucket B` or `--bucket=B`), and the other arguments. */
function splitFlags(args: readonly string[]): { own: Record<string, string>; rest: string[] } {
  const own: Record<string, string> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      rest.push(...args.slice(i));
      break;
    }
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (m && VALUE_FLAGS.includes(m[1])) {
      const value = m[2] ?? args[++i];
      if (value === undefined) throw new UsageError(`${arg} needs a value`);
      own[m[1]] = value;
    } else rest.push(arg);
  }
  return { own, rest };
}

/** The target's settings; a UsageError names what is missing and where to set it. */
export function resolveTarget(
  flags: Readonly<Record<string, string>>,
  env: Readonly<Record<string, string | undefined>>,
): Target {
  const file = flags["target-config"];
  const node = file === undefined ? null : readTargetFile(file);
  const fromFile = (path: string[]): string | undefined => {
    let at: YamlNode | null = node;
    for (const part of path) {
      if (at?.kind !== "map") return undefined;
      at = at.entries.find((e) => e.key === part)?.value ?? null;
    }
    return at?.kind === "scalar" && at.value !== null ? at.value : undefined;
  };
  const values: Record<string, string> = {};
  for (const { key, flag } of S3_KEYS) {
    const value = (flag && flags[flag]) || env[`${S3_ENV}_${key.toUpperCase()}`] ||
      fromFile(["storage", "s3", key]);
    if (value !== undefined && value !== "") values[key] = value;
  }
  const missing = (what: string, variable: string, flag?: string) =>
    new UsageError(
      `No ${what} for the target: set ${flag ? `${flag}, ` : ""}${variable}` +
        `${file === undefined ? " or give --target-config FILE" : ` or ${what} in ${file}`}`,
    );
  for (const { key, flag } of S3_KEYS) {
    if (key === "accesskey" || key === "secretkey" || key === "bucket") {
      if (values[key] === undefined) {
        throw missing(`storage.s3.${key}`, `${S3_ENV}_${key.toUpperCase()}`, flag && `--${flag}`);
      }
    }
  }
  const databaseUrl = env[DATABASE_ENV] || fromFile(["database", "url"]);
  if (!databaseUrl) throw missing("database.url", DATABASE_ENV);
  if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new UsageError("database.url must be a postgres:// URL");
  }
  let secure: boolean | undefined;
  if (values.secure !== undefined) {
    if (!/^(true|false)$/i.test(values.secure)) {
      throw new UsageError(`storage.s3.secure must be true or false, not ${values.secure}`);
    }
    secure = values.secure.toLowerCase() === "true";
  }
  let chunksize: number | undefined;
  if (values.chunksize !== undefined) {
    chunksize = Number(values.chunksize);
    if (!Number.isSafeInteger(chunksize) || chunksize < 1) {
      throw new UsageError(`storage.s3.chunksize must be a number of bytes`);
    }
  }
  return {
    s3: {
      accesskey: values.accesskey,
      secretkey: values.secretkey,
      region: values.region ?? "us-east-1",
      bucket: values.bucket,
      ...(values.regionendpoint === undefined ? {} : { regionendpoint: values.regionendpoint }),
      ...(values.rootdirectory === undefined ? {} : { rootdirectory: values.rootdirectory }),
      ...(secure === undefined ? {} : { secure }),
      ...(chunksize === undefined ? {} : { chunksize }),
      forcepathstyle: true,
    },
    databaseUrl,
  };
}

function readTargetFile(path: string): YamlNode {
  try {
    return readConfigFile(path);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/**
 * A metadata store for a dry run that reads the database without creating its tables: the
 * real store when the schema is there, else an empty store (nothing is there yet).
 */
async function readOnlyMeta(sql: Sql): Promise<MetadataStore> {
  const rows = await sql<{ present: boolean }[]>`
    select to_regclass('repositories') is not null as present`;
  return rows[0]?.present
    ? new PostgresMetadataStore(sql)
    : new LocalMetadataStore(new MemoryDriver());
}

/** The S3 target without secrets. */
function describeS3(s3: S3DriverOptions): string {
  const root = s3.rootdirectory ? `, root ${s3.rootdirectory}` : "";
  return `s3 ${s3.regionendpoint ?? `region ${s3.region}`} bucket ${s3.bucket}${root}`;
}

/** The database URL's host, port and database name only (never its user or password). */
export function describeDatabase(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.host}${parsed.pathname}`;
  } catch {
    return "(unparsable URL)";
  }
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0];
}

/** The report's lines. */
export function summary(report: MigrationReport): string[] {
  const seconds = report.ms / 1000;
  const part = (what: string, t: Tally, format: (n: number) => string = String) =>
    `${what} ${format(t.total)} (${report.dryRun ? "to copy" : "copied"} ${format(t.copied)}, ` +
    `already there ${format(t.present)})`;
  const lines = [
    `repositories ${report.repositories}; ${part("tags", report.tags)}; ` +
    `${part("manifests", report.manifests)}; ${part("links", report.links)}; ` +
    `${part("referrers", report.referrers)}; ${part("journal and event objects", report.journal)}`,
    `${part("blobs", report.blobs)}; ${part("bytes", report.bytes, mib)}; ` +
    `${seconds.toFixed(1)} s` +
    (report.dryRun
      ? ""
      : ` (${
        mib(report.bytes.copied / Math.max(seconds, 0.001))
      }/s copied, all verification included)`),
  ];
  if (report.uploadsNotCopied > 0) {
    lines.push(
      `${report.uploadsNotCopied} upload sessions in progress not copied (clients restart them)`,
    );
  }
  if (report.dryRun) {
    lines.push("dry run: nothing written (blobs already there were compared by size only)");
  } else if (report.findings.length === 0) {
    lines.push(
      `verified: ${report.verifiedBlobs} blobs re-read from the target and hashed, ` +
        `${report.verifiedTags} tags resolve to the same manifests, counts match`,
    );
  } else {
    lines.push(`${report.findings.length} findings: the move is not complete (see above)`);
  }
  return lines;
}

if (import.meta.main) Deno.exit(await main(Deno.args, Deno.env.toObject()));
