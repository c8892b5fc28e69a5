/**
 * Why the registry could not start, in one line: the listening address (in use, not local,
 * unknown host) or the data root (not writable, not a folder, held by another process, of a
 * newer format). `main.ts` prints the line and exits with code 2, without a stack trace.
 */

import type { Config } from "./config/mod.ts";
import { maskDatabaseUrl } from "./config/storage_settings.ts";
import { StartupError } from "./errors.ts";
import { StorageUnavailable } from "./storage/driver.ts";

/** Formats a host and port for a message or a URL: IPv6 addresses in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The one line saying why listening on `host:port` failed, or null for other errors. */
export function listenFailure(error: unknown, host: string, port: number): string | null {
  const where = hostPort(host, port);
  if (error instanceof Deno.errors.AddrInUse) {
    return `cannot listen on ${where}: the address is already in use (another registry?)`;
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return `cannot listen on ${where}: ${host} is not an address of this machine`;
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return `cannot listen on ${where}: permission denied (ports below 1024 need privileges)`;
  }
  if (error instanceof URIError || /failed to lookup address/i.test(String(error))) {
    return `cannot listen on ${where}: unknown host ${JSON.stringify(host)}`;
  }
  return null;
}

/** The one line saying why the data root cannot be used, or null for other errors. */
export function dataRootFailure(error: unknown, dataDir: string): string | null {
  if (error instanceof StartupError) return error.message;
  if (error instanceof Deno.errors.PermissionDenied) {
    return `data root ${dataDir} is not writable: permission denied`;
  }
  if (error instanceof Deno.errors.NotADirectory || error instanceof Deno.errors.AlreadyExists) {
    return `data root ${dataDir} is not a folder (a file is in the way)`;
  }
  const code = (error as { code?: unknown })?.code;
  if (code === "EROFS") return `data root ${dataDir} is on a read-only file system`;
  if (code === "ENOSPC") return `data root ${dataDir} has no space left`;
  if (code === "ELINKED") return `data root ${dataDir}: ${(error as Error).message}`;
  return null;
}

/**
 * The one line saying why the scale-out mode's storage cannot be used (the database, the
 * bucket, its format), never with a secret; null for other errors.
 */
export function scaleOutFailure(error: unknown, config: Config): string | null {
  if (error instanceof StartupError) return error.message;
  const message = error instanceof Error ? firstLine(error) : String(error);
  const code = (error as { code?: unknown })?.code;
  const url = config.databaseUrl === null ? "" : maskDatabaseUrl(config.databaseUrl);
  const bucket = config.s3 === null ? "" : `s3://${config.s3.bucket}`;
  const hide = (text: string): string => {
    for (const secret of [config.s3?.secretKey, config.databaseUrl]) {
      if (secret) text = text.replaceAll(secret, "********");
    }
    return text;
  };
  if (
    typeof code === "string" &&
    (/^(?:ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EHOSTUNREACH|CONNECT_TIMEOUT)$/.test(code) ||
      /^(?:28|3D|42501)/.test(code))
  ) {
    return hide(`cannot use the database ${url} (database.url): ${message}`);
  }
  if (
    error instanceof StorageUnavailable ||
    /S3|bucket|NoSuchBucket|AccessDenied|SignatureDoesNotMatch/i.test(message)
  ) {
    return hide(`cannot use the bucket ${bucket} (storage.s3): ${message}`);
  }
  if (error instanceof TypeError && /connect|dns|fetch/i.test(message)) {
    return hide(`cannot reach the S3 endpoint of ${bucket} (storage.s3): ${message}`);
  }
  return null;
}

/** A PEM certificate chain and key read from `http.tls.certificate` and `http.tls.key`. */
export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
}

/** Reads the certificate and key files (throws what reading or `tlsFailure` explains). */
export async function readTlsFiles(tls: { certificate: string; key: string }): Promise<TlsFiles> {
  const [cert, key] = await Promise.all([
    Deno.readTextFile(tls.certificate),
    Deno.readTextFile(tls.key),
  ]);
  return { cert, key };
}

/**
 * The one line saying why the TLS certificate or key (`http.tls.*`) cannot be used, or null
 * for other errors.
 */
export function tlsFailure(
  error: unknown,
  tls: { certificate: string; key: string },
): string | null {
  const files = `${tls.certificate} and ${tls.key}`;
  if (error instanceof Deno.errors.NotFound) {
    return `TLS certificate or key not found (http.tls.certificate, http.tls.key): ${files}`;
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return `TLS certificate or key not readable: permission denied (${files})`;
  }
  if (error instanceof Deno.errors.InvalidData || error instanceof TypeError) {
    return `TLS certificate or key unusable (${files}): ${firstLine(error)}`;
  }
  if (error instanceof Error && /key|cert|pem/i.test(error.message)) {
    return `TLS certificate or key unusable (${files}): ${firstLine(error)}`;
  }
  return null;
}

/** Whether `host` only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function firstLine(error: Error): string {
  return error.message.split("\n")[0];
}
