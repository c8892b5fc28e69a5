/**
 * SHA-256 backed by the system libcrypto (OpenSSL 3) through Deno FFI.
 *
 * The `SHA256_CTX` lives in a 112-byte `Uint8Array` owned by JavaScript, so
 * its midstate can be read and written directly. OpenSSL 3 layout (native
 * endianness): `uint32 h[8]` @0, `uint32 Nl` @32 and `Nh` @36 (message length
 * in bits), `uint32 data[16]` @40 (pending bytes, in byte order),
 * `uint32 num` @104 (pending byte count), `uint32 md_len` @108.
 * The layout is verified once when the library is loaded; any mismatch makes
 * the backend unavailable rather than wrong.
 *
 * @module
 */

import type { Sha256, Sha256State } from "./sha256_types.ts";
import { SHA256_IV, toHex } from "./sha256_portable.ts";

/** Where libcrypto may be, in the order tried. */
export const LIBRARY_PATHS = [
  "libcrypto.so.3",
  "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
  "/usr/lib/aarch64-linux-gnu/libcrypto.so.3",
  "libcrypto.so",
];

const SYMBOLS = {
  SHA256_Init: { parameters: ["buffer"], result: "i32" },
  SHA256_Update: { parameters: ["buffer", "buffer", "usize"], result: "i32" },
  /** The same function run on a pool thread, off the JS thread (returns a promise). */
  SHA256_Update_nonblocking: {
    name: "SHA256_Update",
    parameters: ["buffer", "buffer", "usize"],
    result: "i32",
    nonblocking: true,
  },
  SHA256_Final: { parameters: ["buffer", "buffer"], result: "i32" },
} as const;

/**
 * The bound functions. `usize` takes a bigint: Deno also accepts a number
 * there, but only through its slow call path (measured ~4x slower per call).
 */
type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const CTX_SIZE = 112;
const OFF_NL = 8; // in uint32 units
const OFF_NH = 9;
const OFF_DATA = 40; // in bytes
const OFF_NUM = 26; // in uint32 units
const OFF_MDLEN = 27;

let loaded = false;
let symbols: Symbols | undefined;
let loadError: string | undefined;
/** Output buffer for SHA256_Final, shared: calls are synchronous. */
const OUT = new Uint8Array(32);

/** Whether FFI may be used for `path` without prompting the user. */
export function ffiGranted(path: string): boolean {
  try {
    const perms = Deno.permissions;
    if (perms.querySync({ name: "ffi" }).state === "granted") return true;
    return path.startsWith("/") &&
      perms.querySync({ name: "ffi", path }).state === "granted";
  } catch {
    return false;
  }
}

/** Checks that libcrypto's SHA256_CTX matches the layout this module assumes. */
function verifyLayout(s: Symbols): string | undefined {
  const ctx = new Uint8Array(CTX_SIZE);
  const u32 = new Uint32Array(ctx.buffer);
  if (s.SHA256_Init(ctx) !== 1) return "SHA256_Init failed";
  for (let i = 0; i < 8; i++) {
    if (u32[i] !== SHA256_IV[i]) return "unexpected SHA256_CTX.h layout";
  }
  if (u32[OFF_MDLEN] !== 32) return "unexpected SHA256_CTX.md_len layout";
  const msg = new TextEncoder().encode("abc");
  if (s.SHA256_Update(ctx, msg, 3n) !== 1) return "SHA256_Update failed";
  if (
    u32[OFF_NUM] !== 3 || u32[OFF_NL] !== 24 || u32[OFF_NH] !== 0 ||
    ctx[OFF_DATA] !== 0x61 || ctx[OFF_DATA + 2] !== 0x63
  ) {
    return "unexpected SHA256_CTX length/data layout";
  }
  if (s.SHA256_Final(OUT, ctx) !== 1) return "SHA256_Final failed";
  const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  if (toHex(OUT) !== want) return "libcrypto SHA-256 self-test failed";
  return undefined;
}

/** Loads libcrypto once; returns undefined on success or the reason it is unusable. */
export function nativeLoadError(): string | undefined {
  if (loaded) return loadError;
  loaded = true;
  const reasons: string[] = [];
  if (typeof Deno?.dlopen !== "function") {
    loadError = "Deno.dlopen is not available";
    return loadError;
  }
  for (const path of LIBRARY_PATHS) {
    if (!ffiGranted(path)) {
      reasons.push(`${path}: no FFI permission`);
      continue;
    }
    let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      lib = Deno.dlopen(path, SYMBOLS);
    } catch (e) {
      reasons.push(`${path}: ${e instanceof Error ? e.message : String(e)}`);
      continue;
    }
    const bound = lib.symbols;
    const bad = verifyLayout(bound);
    if (bad === undefined) {
      symbols = bound; // The library stays open for the life of the process.
      return undefined;
    }
    lib.close();
    reasons.push(`${path}: ${bad}`);
  }
  loadError = reasons.join("; ");
  return loadError;
}

/** Creates a libcrypto-backed hasher from an optional validated state; throws an Error if libcrypto is unavailable. */
export function createNativeSha256(state?: Sha256State): Sha256 {
  const err = nativeLoadError();
  if (err !== undefined || symbols === undefined) {
    throw new Error(`native SHA-256 backend unavailable: ${err}`);
  }
  return new NativeSha256(symbols, state);
}

class NativeSha256 implements Sha256 {
  readonly backend = "native" as const;
  #s: Symbols;
  #ctx = new Uint8Array(CTX_SIZE);
  #u32 = new Uint32Array(this.#ctx.buffer);
  #length = 0;
  #done = false;
  /** True while a nonblocking update runs on another thread and owns the context. */
  #busy = false;

  constructor(s: Symbols, state?: Sha256State) {
    this.#s = s;
    if (s.SHA256_Init(this.#ctx) !== 1) throw new Error("SHA256_Init failed");
    if (state !== undefined) {
      const u32 = this.#u32;
      u32.set(state.words);
      // Bit length split into 32-bit halves without leaving safe range.
      u32[OFF_NL] = (state.length % 0x20000000) * 8;
      u32[OFF_NH] = Math.floor(state.length / 0x20000000);
      this.#ctx.set(state.pending, OFF_DATA);
      u32[OFF_NUM] = state.pending.length;
      this.#length = state.length;
    }
  }

  get length(): number {
    return this.#length;
  }

  update(data: Uint8Array): void {
    this.#check();
    const n = data.length;
    if (n === 0) return;
    if (this.#s.SHA256_Update(this.#ctx, data, BigInt(n)) !== 1) {
      throw new Error("SHA256_Update failed");
    }
    this.#length += n;
  }

  async updateAsync(data: Uint8Array): Promise<void> {
    this.#check();
    const n = data.length;
    if (n === 0) return;
    this.#busy = true;
    let result: number;
    try {
      result = await this.#s.SHA256_Update_nonblocking(this.#ctx, data, BigInt(n));
    } finally {
      this.#busy = false;
    }
    if (result !== 1) throw new Error("SHA256_Update failed");
    this.#length += n;
  }

  #check(): void {
    if (this.#done) throw new Error("SHA-256 hasher already finalized");
    if (this.#busy) throw new Error("SHA-256 hasher is busy with an asynchronous update");
  }

  exportState(): Sha256State {
    this.#check();
    const num = this.#u32[OFF_NUM]!;
    return {
      words: Array.from(this.#u32.subarray(0, 8)),
      length: this.#length,
      pending: this.#ctx.slice(OFF_DATA, OFF_DATA + num),
    };
  }

  digestHex(): string {
    this.#check();
    this.#done = true;
    if (this.#s.SHA256_Final(OUT, this.#ctx) !== 1) {
      throw new Error("SHA256_Final failed");
    }
    return toHex(OUT);
  }
}
