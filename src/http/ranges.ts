/**
 * Range headers: the request `Content-Range` of a PATCH, the request `Range` of a blob GET,
 * and the upload progress `Range: 0-<last>` the registry answers with.
 */

import { RegistryError } from "../errors.ts";
import type { ByteSpan, ChunkRange } from "../types/spans.ts";

export type { ByteSpan, ChunkRange };

const CONTENT_RANGE_RE = /^(?:bytes[ =])?([0-9]{1,15})-([0-9]{1,15})(?:\/([0-9]{1,15}|\*))?$/;

/**
 * Parses a PATCH `Content-Range`: `<start>-<end>` or `bytes <start>-<end>[/<total>]`.
 * Returns null when absent; throws 416 BLOB_UPLOAD_INVALID when malformed, when end < start,
 * or when a numeric total does not exceed end (invalid per RFC 9110 section 14.4).
 */
export function parseContentRange(value: string | null): ChunkRange | null {
  if (value === null) return null;
  const m = CONTENT_RANGE_RE.exec(value.trim());
  const start = m ? Number(m[1]) : NaN;
  const end = m ? Number(m[2]) : NaN;
  const total = m && m[3] !== undefined && m[3] !== "*" ? Number(m[3]) : Infinity;
  if (!m || end < start || total <= end) {
    throw new RegistryError(
      "BLOB_UPLOAD_INVALID",
      `Invalid Content-Range ${JSON.stringify(value.slice(0, 100))}: expected <start>-<end>`,
      { status: 416 },
    );
  }
  return { start, end };
}

/** The progress header value for a session holding `size` bytes (`0-0` when empty). */
export function uploadRange(size: number): string {
  return `0-${Math.max(0, size - 1)}`;
}

/**
 * Resolves a GET `Range` header against a blob size. Returns null for "whole blob" (no header,
 * a unit other than bytes, several ranges, or a header that does not parse, which RFC 9110
 * says to ignore); throws 416 with `Content-Range: bytes * /size` when unsatisfiable.
 */
export function resolveRange(value: string | null, size: number): ByteSpan | null {
  if (value === null) return null;
  const m = /^bytes=([0-9]{0,15})-([0-9]{0,15})$/.exec(value.trim());
  if (!m || (m[1] === "" && m[2] === "")) return null;
  let start: number;
  let end: number;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) throw unsatisfiable(value, size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== "" && Number(m[2]) < start) return null;
  }
  if (start >= size || end < start) throw unsatisfiable(value, size);
  return { start, end };
}

function unsatisfiable(value: string, size: number): RegistryError {
  return new RegistryError(
    "SIZE_INVALID",
    `Range ${JSON.stringify(value.slice(0, 100))} cannot be satisfied by a blob of ${size} bytes`,
    { status: 416, headers: { "Content-Range": `bytes */${size}` } },
  );
}
