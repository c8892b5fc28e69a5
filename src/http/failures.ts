/**
 * Operating-system failures of the storage (a full disk, a read-only or unwritable data root,
 * too many open files) as clean OCI errors with a clear message and a fitting 5xx status,
 * instead of an anonymous 500. Anything else stays an unexpected error.
 */

import { RegistryError } from "../errors.ts";
import { StorageUnavailable } from "../storage/driver.ts";

/** Error codes of the OS (`error.code` on Deno's errors) and what the client is told. */
const KNOWN: Readonly<Record<string, { status: number; message: string; retry?: string }>> = {
  ENOSPC: { status: 507, message: "Storage is full: no space left on the registry's disk" },
  EDQUOT: { status: 507, message: "Storage is full: the registry's disk quota is exhausted" },
  EROFS: { status: 503, message: "Storage is read-only: the registry cannot write" },
  EACCES: { status: 500, message: "Storage is not writable: permission denied" },
  EPERM: { status: 500, message: "Storage is not writable: operation not permitted" },
  EMFILE: { status: 503, message: "Too many open files; retry shortly", retry: "1" },
  ENFILE: { status: 503, message: "Too many open files; retry shortly", retry: "1" },
  EIO: { status: 500, message: "Storage input/output error" },
  ENAMETOOLONG: { status: 400, message: "A name is too long for the storage" },
  ELOOP: { status: 500, message: "Storage path has a symbolic link loop" },
  ELINKED: {
    status: 500,
    message: "Storage holds a symbolic link the registry refuses to follow; see the registry log",
  },
};

/** The OCI error for an OS-level storage failure, or null when `error` is not one. */
export function storageFailure(error: unknown): RegistryError | null {
  if (!(error instanceof Error)) return null;
  if (error instanceof StorageUnavailable) {
    return new RegistryError("UNKNOWN", "Storage is unavailable; retry shortly", {
      status: 503,
      detail: { reason: "storage unavailable" },
      cause: error,
      headers: { "Retry-After": "1" },
    });
  }
  const given = (error as { code?: unknown }).code;
  let code: string;
  if (typeof given === "string") code = given;
  else if (error instanceof Deno.errors.PermissionDenied) code = "EACCES";
  else if (/\(os error 28\)/.test(error.message)) code = "ENOSPC";
  else return null;
  const known = KNOWN[code];
  if (!known) return null;
  // A client's name too long for the filesystem is the client's mistake: a 4xx with a spec
  // code. Everything else is the registry's trouble: a 5xx, which alone may say UNKNOWN.
  return new RegistryError(known.status < 500 ? "NAME_INVALID" : "UNKNOWN", known.message, {
    status: known.status,
    detail: { reason: code },
    cause: error,
    ...(known.retry ? { headers: { "Retry-After": known.retry } } : {}),
  });
}
