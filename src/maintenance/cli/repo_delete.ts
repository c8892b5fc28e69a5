/**
 * `deno task repo-delete NAME [--config FILE | --data DIR | …]`: deletes a repository's tags,
 * manifests, referrer entries and layer links (`../repositories.ts`); blob bytes stay for the
 * collector.
 *
 * Offline (no registry on the data root) it takes the data-root lock for the time of the
 * deletion, so no registry starts meanwhile; no events are sent (no registry runs to send
 * them). When a registry holds the lock it must do the deletion itself, under its own locks
 * and caches: with access control off and plain HTTP, the command asks it over HTTP at the
 * configured `http.addr` (`DELETE /admin/repositories/NAME`, from this machine, which the
 * admin rule allows); otherwise it says so and names the endpoint to call with an admin's
 * credentials. In the scale-out mode (`storage.s3` with `database.url`) it deletes on the
 * database itself, under the advisory locks the replicas take, so it is safe while they run.
 * Exit code 0 deleted, 1 not deleted (unknown repository, registry or database unreachable,
 * or refusing), 2 usage error.
 */

import { RegistryError } from "../../errors.ts";
import { s3Where } from "../../services/registry.ts";
import { KeyedMutex } from "../../storage/lock.ts";
import { PostgresMetadataStore } from "../../storage/metadata/postgres.ts";
import { connect, databaseFailure, isConnectionError } from "../../storage/postgres/client.ts";
import { PostgresLockManager } from "../../storage/postgres/locks.ts";
import { LocalMetadataStore } from "../../storage/metadata/local.ts";
import { hostPort } from "../../startup.ts";
import { isRepositoryName } from "../../types/names.ts";
import type { RepositoryName } from "../../types/oci.ts";
import type { Config } from "../../config/mod.ts";
import { type DeletionReport, RepositoryDeleter } from "../repositories.ts";
import {
  existingRoot,
  type Io,
  openRoot,
  parseCommand,
  run,
  STDIO,
  tryLock,
  UsageError,
} from "../cli.ts";

const HELP =
  `Usage: deno task repo-delete NAME [--config FILE] [--data DIR] [other flags of deno task start]

Deletes repository NAME: its tags, manifests, referrer entries and layer links. Blob bytes stay
(the collector frees the ones no repository links). Without a running registry it works on the
data root directly; with one, it asks the registry (DELETE /admin/repositories/NAME). With
storage.s3 and database.url it deletes in the database, under the replicas' own locks.
Exit code: 0 deleted, 1 not deleted, 2 usage error.`;

/** How long the registry may take to answer an HTTP deletion. */
const HTTP_TIMEOUT_MS = 10 * 60_000;

/** Runs the command; returns the exit code. */
export function main(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: Io = STDIO,
): Promise<number> {
  return run(io, async () => {
    const command = parseCommand(args, env, []);
    if (command === "help") {
      io.out(HELP);
      return 0;
    }
    if (command.positionals.length !== 1) {
      throw new UsageError("Expected one repository name (see --help)");
    }
    const name = command.positionals[0];
    if (!isRepositoryName(name)) {
      throw new UsageError(`Invalid repository name ${JSON.stringify(name.slice(0, 200))}`);
    }
    for (const warning of command.warnings) io.err(warning);
    const { config } = command;
    if (config.s3 !== null) return await scaledOut(config, name, io);
    const root = await existingRoot(config.dataDir);
    const attempt = await tryLock(root);
    if (!attempt.held) return await online(config, name, attempt.reason, io);
    try {
      const driver = await openRoot(root);
      const deleter = new RepositoryDeleter({
        meta: new LocalMetadataStore(driver),
        locks: new KeyedMutex(),
      });
      const report = await deleter.deleteRepository(name);
      io.out(summary(report));
      return 0;
    } catch (error) {
      if (error instanceof RegistryError && error.code === "NAME_UNKNOWN") {
        io.err(`${error.message} in ${root}`);
        return 1;
      }
      throw error;
    } finally {
      attempt.lock.release();
    }
  });
}

/**
 * The scale-out mode (`storage.s3` with `database.url`): the deletion runs here, on the
 * PostgreSQL metadata store, under the advisory locks the replicas take (so it is safe while
 * they run, as their admin endpoint is). No events are sent (each replica sends its own).
 */
async function scaledOut(config: Config, name: RepositoryName, io: Io): Promise<number> {
  const where = `${s3Where(config.s3!)} (database ${redactedUrl(config.databaseUrl!)})`;
  const sql = connect(config.databaseUrl!, { max: 2, connectTimeout: 10 });
  const lockSql = connect(config.databaseUrl!, { max: 2, connectTimeout: 10 });
  try {
    const deleter = new RepositoryDeleter({
      meta: await PostgresMetadataStore.open(sql),
      locks: new PostgresLockManager(lockSql),
    });
    const report = await deleter.deleteRepository(name);
    io.out(summary(report));
    return 0;
  } catch (error) {
    if (error instanceof RegistryError && error.code === "NAME_UNKNOWN") {
      io.err(`${error.message} in ${where}`);
      return 1;
    }
    if (isConnectionError(error)) {
      io.err(`cannot use the database of ${where}: ${(databaseFailure(error) as Error).message}`);
      return 1;
    }
    throw error;
  } finally {
    await sql.end({ timeout: 5 });
    await lockSql.end({ timeout: 5 });
  }
}

/** `url` with its password replaced by asterisks. */
function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "********";
    return parsed.href;
  } catch {
    return "(database.url)";
  }
}

/** The deletion through the running registry's admin endpoint. */
async function online(config: Config, name: string, reason: string, io: Io): Promise<number> {
  const address = localAddress(config);
  const url = `${config.tls ? "https" : "http"}://${address}/admin/repositories/${name}`;
  const pointer = `delete it through the registry: curl -X DELETE ${
    config.auth.htpasswdPath !== null ? "-u ADMIN " : ""
  }${url}`;
  if (config.auth.htpasswdPath !== null || config.tls !== null || config.port === 0) {
    io.err(`${reason}; ${pointer}`);
    return 1;
  }
  io.err(`${reason}; asking it: DELETE ${url}`);
  let response: Response;
  try {
    response = await fetch(url, {
      method: "DELETE",
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
  } catch (error) {
    io.err(
      `the registry did not answer at ${url} (${(error as Error).message.split("\n")[0]}); ` +
        `is http.addr the running registry's? ${pointer}`,
    );
    return 1;
  }
  const text = await response.text();
  if (response.status === 202) {
    try {
      io.out(summary(JSON.parse(text) as DeletionReport));
      return 0;
    } catch {
      io.err(`unexpected answer from ${url}: ${text.slice(0, 200)}`);
      return 1;
    }
  }
  io.err(`the registry answered ${response.status}: ${errorMessage(text)}`);
  return 1;
}

/** Where to reach the registry from this machine: a wildcard address becomes loopback. */
function localAddress(config: Config): string {
  const host = config.host === "0.0.0.0" || config.host === ""
    ? "127.0.0.1"
    : config.host === "::"
    ? "::1"
    : config.host;
  return hostPort(host, config.port);
}

function errorMessage(text: string): string {
  try {
    const body = JSON.parse(text) as { errors?: { message?: string }[] };
    return body.errors?.[0]?.message ?? text.slice(0, 200);
  } catch {
    return text.slice(0, 200);
  }
}

function summary(report: DeletionReport): string {
  return `deleted ${report.repository}: ${report.tags} tags, ${report.manifests} manifests, ` +
    `${report.referrers} referrer entries, ${report.layers} layer links (blob bytes stay)`;
}

if (import.meta.main) Deno.exit(await main(Deno.args, Deno.env.toObject()));
