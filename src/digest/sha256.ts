/**
 * Resumable SHA-256 hashing with two interchangeable backends.
 *
 * - "native": the system libcrypto (OpenSSL 3) through Deno FFI; needs
 *   `--allow-ffi` (no unstable flag is required on Deno 2.x).
 * - "portable": a pure TypeScript implementation, always available.
 *
 * A hasher's midstate can be exported at any byte offset, serialized, and
 * resumed later by a new hasher of either backend.
 *
 * ## Serialized state format (the upload's `hashstate` file)
 *
 * A single line of JSON (no trailing newline is written; surrounding JSON
 * whitespace is tolerated on decode), with exactly these keys in this order:
 *
 * ```json
 * {"algorithm":"sha256","length":N,"words":["6a09e667",...],"pending":"6162"}
 * ```
 *
 * - `algorithm`: the string `"sha256"`.
 * - `length`: total bytes hashed so far; a safe non-negative integer.
 * - `words`: the eight chaining words H0..H7 after the last complete 64-byte
 *   block, each as exactly 8 lowercase hex digits (big-endian value).
 * - `pending`: lowercase hex of the bytes of the incomplete block, i.e. the
 *   last `length % 64` bytes hashed (empty string when on a block boundary).
 *
 * The format depends only on the SHA-256 definition, never on a backend.
 * Unknown keys are rejected.
 *
 * @module
 */

import { createNativeSha256, nativeLoadError } from "./sha256_native.ts";
import { PortableSha256, toHex } from "./sha256_portable.ts";
import type { Sha256, Sha256State } from "./sha256_types.ts";

export type { Sha256, Sha256State };

/** Reports whether the native (libcrypto via FFI) backend can be used here; never throws. */
export function nativeSha256Available(): boolean {
  return nativeLoadError() === undefined;
}

/**
 * Creates a hasher, optionally resumed from `state`, preferring the native
 * backend and falling back to the portable one unless `options.backend`
 * forces a choice; throws a TypeError on a malformed state and an Error when
 * the forced native backend is unavailable.
 */
export function createSha256(
  state?: Sha256State,
  options?: { backend?: "native" | "portable" },
): Sha256 {
  const checked = state === undefined ? undefined : checkState(state);
  const backend = options?.backend;
  if (backend !== undefined && backend !== "native" && backend !== "portable") {
    throw new TypeError(`unknown SHA-256 backend: ${String(backend)}`);
  }
  if (backend === "portable") return new PortableSha256(checked);
  const err = nativeLoadError();
  if (err === undefined) return createNativeSha256(checked);
  if (backend === "native") {
    throw new Error(`native SHA-256 backend unavailable: ${err}`);
  }
  return new PortableSha256(checked);
}

/** Serializes a state to the single-line JSON stored in an upload's `hashstate` file; throws a TypeError on a malformed state. */
export function encodeSha256State(state: Sha256State): string {
  const s = checkState(state);
  return JSON.stringify({
    algorithm: "sha256",
    length: s.length,
    words: s.words.map((w) => w.toString(16).padStart(8, "0")),
    pending: toHex(s.pending),
  });
}

const KEYS = ["algorithm", "length", "words", "pending"];
const WORD_RE = /^[0-9a-f]{8}$/;
const PENDING_RE = /^(?:[0-9a-f]{2})*$/;

/** Parses `hashstate` text into a state; throws an Error naming the problem when the text is malformed, names another algorithm, or is inconsistent. */
export function decodeSha256State(text: string): Sha256State {
  const fail = (why: string): never => {
    throw new Error(`invalid sha256 hashstate: ${why}`);
  };
  if (typeof text !== "string") fail("not a string");
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    fail("not valid JSON");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return fail("not a JSON object");
  }
  const obj = raw as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!KEYS.includes(key)) fail(`unknown key ${JSON.stringify(key)}`);
  }
  const { algorithm, length, words, pending } = obj;
  if (algorithm !== "sha256") {
    fail(
      `algorithm is ${JSON.stringify(algorithm) ?? "missing"}, expected "sha256"`,
    );
  }
  if (
    typeof length !== "number" || !Number.isSafeInteger(length) || length < 0
  ) {
    return fail("length must be a safe non-negative integer");
  }
  if (!Array.isArray(words) || words.length !== 8) {
    return fail("words must be an array of exactly 8 strings");
  }
  const parsed: number[] = [];
  for (const w of words) {
    if (typeof w !== "string" || !WORD_RE.test(w)) {
      fail(`word ${JSON.stringify(w)} is not 8 lowercase hex digits`);
    }
    parsed.push(parseInt(w as string, 16));
  }
  if (typeof pending !== "string" || !PENDING_RE.test(pending)) {
    return fail("pending must be an even-length lowercase hex string");
  }
  if (pending.length / 2 !== length % 64) {
    fail(
      `pending has ${pending.length / 2} bytes, expected length % 64 = ${length % 64}`,
    );
  }
  const bytes = new Uint8Array(pending.length / 2);
  for (let i = 0; i < bytes.length; i++) {
    bytes[i] = parseInt(pending.slice(2 * i, 2 * i + 2), 16);
  }
  return { words: parsed, length, pending: bytes };
}

/** Validates a state's shape and returns a private copy; throws TypeError. */
function checkState(state: Sha256State): Sha256State {
  if (typeof state !== "object" || state === null) {
    throw new TypeError("SHA-256 state must be an object");
  }
  const { words, length, pending } = state;
  if (!Array.isArray(words) || words.length !== 8) {
    throw new TypeError("SHA-256 state needs exactly 8 words");
  }
  for (const w of words) {
    if (
      typeof w !== "number" || !Number.isInteger(w) || w < 0 || w > 0xffffffff
    ) {
      throw new TypeError(`SHA-256 state word ${String(w)} is not a uint32`);
    }
  }
  if (
    typeof length !== "number" || !Number.isSafeInteger(length) || length < 0
  ) {
    throw new TypeError(
      "SHA-256 state length must be a safe non-negative integer",
    );
  }
  if (!(pending instanceof Uint8Array) || pending.length !== length % 64) {
    throw new TypeError(
      "SHA-256 state pending must be a Uint8Array of length % 64 bytes",
    );
  }
  return { words: words.slice(), length, pending: pending.slice() };
}
