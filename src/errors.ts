/**
 * The registry's one error type, the only OCI code -> HTTP status table, and the JSON
 * error envelope `{"errors":[{"code","message","detail"}]}`.
 */

import type { ErrorCode } from "./types/oci.ts";

/** Default HTTP status of each OCI error code (CNCF Distribution's mapping). */
export const ERROR_STATUS: Readonly<Record<ErrorCode, number>> = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  TOOMANYREQUESTS: 429,
  UNKNOWN: 500,
};

/** Options of a RegistryError beyond its code and message. */
export interface RegistryErrorOptions {
  /** Machine-readable detail placed in the envelope. */
  readonly detail?: unknown;
  /** Status overriding the table, e.g. 416 for a non-contiguous chunk, 413 for a large body. */
  readonly status?: number;
  /** Extra response headers, e.g. `Range` or `Content-Range`. */
  readonly headers?: Readonly<Record<string, string>>;
  /** The underlying error, for logs only. */
  readonly cause?: unknown;
}

/** An error the client should see, carrying an OCI code. */
export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Readonly<Record<string, string>>;

  /** Makes an error with an OCI code; the status comes from the table unless overridden. */
  constructor(code: ErrorCode, message: string, options: RegistryErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "RegistryError";
    this.code = code;
    this.status = options.status ?? ERROR_STATUS[code];
    this.detail = options.detail;
    this.headers = options.headers ?? {};
  }
}

/** The JSON body of an error response. */
export function errorBody(code: ErrorCode, message: string, detail?: unknown): string {
  const entry: Record<string, unknown> = { code, message };
  if (detail !== undefined) entry.detail = detail;
  return JSON.stringify({ errors: [entry] });
}

/**
 * A reason the registry cannot start (a held data-root lock, a data root of a newer format,
 * a port in use): `main.ts` prints its message as one line and exits with code 2.
 */
export class StartupError extends Error {
  /** Makes the error with the line to print. */
  constructor(message: string) {
    super(message);
    this.name = "StartupError";
  }
}
