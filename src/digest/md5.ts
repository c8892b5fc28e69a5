/**
 * MD5 of request bodies (the `Content-MD5` the S3 client sends with every PutObject and
 * UploadPart), computed off the JavaScript thread: libcrypto's `MD5_Update` through Deno FFI
 * as a nonblocking call, which runs on a pool thread while the JS thread goes on receiving.
 * An 8 MiB body costs about 12 ms of MD5; done on the JS thread, eight parallel uploads would
 * stall every other request for about 100 ms. Without libcrypto (or FFI permission) the
 * hash is `node:crypto`'s, on the JS thread.
 *
 * A buffer handed to `update` must not change until its promise settles.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { ffiGranted, LIBRARY_PATHS } from "./sha256_native.ts";

const SYMBOLS = {
  MD5_Init: { parameters: ["buffer"], result: "i32" },
  MD5_Update: { parameters: ["buffer", "buffer", "usize"], result: "i32" },
  /** The same function run on a pool thread, off the JS thread (returns a promise). */
  MD5_Update_nonblocking: {
    name: "MD5_Update",
    parameters: ["buffer", "buffer", "usize"],
    result: "i32",
    nonblocking: true,
  },
  MD5_Final: { parameters: ["buffer", "buffer"], result: "i32" },
} as const;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Room for an `MD5_CTX` (92 bytes in OpenSSL 3), with a margin; never read by this module. */
const CTX_SIZE = 256;

/** Base64 of a few bytes. */
const base64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

/** Bodies below this size are hashed on the JS thread. */
const SMALL = 64 * 1024;

/**
 * libcrypto's MD5 functions, checked against a known digest; null when unusable. Loaded as
 * this module is (not at the first upload: a library opened then would count as a resource
 * leaked by whatever test sent it).
 */
const symbols: Symbols | null = load();

function load(): Symbols | null {
  if (typeof Deno?.dlopen !== "function") return null;
  for (const path of LIBRARY_PATHS) {
    if (!ffiGranted(path)) continue;
    let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      lib = Deno.dlopen(path, SYMBOLS);
    } catch {
      continue;
    }
    if (selfTest(lib.symbols)) return lib.symbols; // open for the life of the process
    lib.close();
  }
  return null;
}

/** MD5 of "abc" through the functions, against RFC 1321's. */
function selfTest(s: Symbols): boolean {
  const ctx = new Uint8Array(CTX_SIZE);
  const out = new Uint8Array(16);
  const ok = s.MD5_Init(ctx) === 1 &&
    s.MD5_Update(ctx, new TextEncoder().encode("abc"), 3n) === 1 &&
    s.MD5_Final(out, ctx) === 1;
  return ok && base64(out) === "kAFQmDzST7DWlj99KOF/cg==";
}

/** An MD5 in progress. */
export interface Md5 {
  /** Adds bytes (left unchanged by the caller until this settles). */
  update(bytes: Uint8Array): Promise<void>;
  /** The digest of the bytes so far, base64 (as `Content-MD5` takes it); more may follow. */
  digest(): string;
}

/** A new MD5: libcrypto's when it can be had, else node:crypto's. */
export function createMd5(): Md5 {
  const s = symbols;
  if (s === null) {
    const hash = createHash("md5");
    return {
      update: (bytes) => Promise.resolve(void hash.update(bytes)),
      digest: () => hash.copy().digest("base64"),
    };
  }
  const ctx = new Uint8Array(CTX_SIZE);
  if (s.MD5_Init(ctx) !== 1) throw new Error("MD5_Init failed");
  return {
    async update(bytes) {
      if (bytes.length === 0) return;
      if ((await s.MD5_Update_nonblocking(ctx, bytes, BigInt(bytes.length))) !== 1) {
        throw new Error("MD5_Update failed");
      }
    },
    digest() {
      // The context holds no pointer: a copy of its bytes is finished, the original goes on.
      const out = new Uint8Array(16);
      if (s.MD5_Final(out, ctx.slice()) !== 1) throw new Error("MD5_Final failed");
      return base64(out);
    },
  };
}

/** The MD5 of `bytes`, base64 (left unchanged by the caller until this settles). */
export async function md5Base64(bytes: Uint8Array): Promise<string> {
  // A small body costs less on this thread than the hop to a pool thread.
  if (bytes.length < SMALL) return createHash("md5").update(bytes).digest("base64");
  const hash = createMd5();
  await hash.update(bytes);
  return hash.digest();
}
