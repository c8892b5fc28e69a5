/**
 * Content-addressed blob storage: `blobs/<alg>/<xx>/<hex>`. A blob enters the store only by
 * one rename of bytes whose digest was already verified (or by an atomic write of small
 * verified bytes), so a blob file never holds bytes that do not match its name.
 */

import { dirname } from "node:path/posix";
import type { Digest } from "../types/oci.ts";
import {
  atomicWrite,
  ensureDir,
  isNotFound,
  lstatOrNull,
  readFileOrNull,
  refuseLinks,
  syncDir,
} from "./fs.ts";
import { fileStream } from "./file_stream.ts";
import type { Paths } from "./paths.ts";

/** An open blob: its size and a stream of the requested bytes. */
export interface BlobReader {
  readonly size: number;
  readonly stream: ReadableStream<Uint8Array>;
}

/** What the services need from a blob store (a filesystem or, later, an object store). */
export interface BlobStore {
  /** Size of a blob, or null when it is not stored. */
  size(digest: Digest): Promise<number | null>;
  /** Opens a blob for streaming, from `start` for `length` bytes (default: all); null when absent. */
  open(digest: Digest, span?: { start: number; length: number }): Promise<BlobReader | null>;
  /** Reads a small blob (a manifest) whole; null when absent. */
  read(digest: Digest): Promise<Uint8Array<ArrayBuffer> | null>;
  /** Stores small verified bytes (a manifest) under their digest. */
  write(digest: Digest, bytes: Uint8Array): Promise<void>;
  /** Moves a verified, flushed file into the store under its digest (one rename). */
  adopt(source: string, digest: Digest): Promise<void>;
}

const MAX_CACHED_SIZES = 100_000;

/** The filesystem blob store. Blob sizes are cached: blobs are immutable and never deleted. */
export class FsBlobStore implements BlobStore {
  readonly #paths: Paths;
  readonly #sizes = new Map<string, number>();

  /** Makes a store over a path mapper. */
  constructor(paths: Paths) {
    this.#paths = paths;
  }

  /** @inheritdoc */
  async size(digest: Digest): Promise<number | null> {
    const cached = this.#sizes.get(digest);
    if (cached !== undefined) return cached;
    try {
      const info = await lstatOrNull(this.#paths.blob(digest));
      if (info === null || !info.isFile) return null;
      this.#remember(digest, info.size);
      return info.size;
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  /** @inheritdoc */
  async open(
    digest: Digest,
    span?: { start: number; length: number },
  ): Promise<BlobReader | null> {
    let file: Deno.FsFile;
    await refuseLinks(this.#paths.blob(digest));
    try {
      file = await Deno.open(this.#paths.blob(digest), { read: true });
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
    try {
      const { size } = await file.stat();
      this.#remember(digest, size);
      if (!span || (span.start === 0 && span.length === size)) {
        return { size, stream: fileStream(file, size) };
      }
      await file.seek(span.start, Deno.SeekMode.Start);
      return { size, stream: fileStream(file, span.length) };
    } catch (error) {
      file.close();
      throw error;
    }
  }

  /** @inheritdoc */
  read(digest: Digest): Promise<Uint8Array<ArrayBuffer> | null> {
    return readFileOrNull(this.#paths.blob(digest));
  }

  /** @inheritdoc */
  async write(digest: Digest, bytes: Uint8Array): Promise<void> {
    if ((await this.size(digest)) === bytes.length) return;
    await atomicWrite(this.#paths.blob(digest), bytes);
    this.#remember(digest, bytes.length);
  }

  /** @inheritdoc */
  async adopt(source: string, digest: Digest): Promise<void> {
    const target = this.#paths.blob(digest);
    await ensureDir(dirname(target));
    await Deno.rename(source, target);
    await syncDir(dirname(target));
  }

  #remember(digest: Digest, size: number): void {
    if (this.#sizes.size >= MAX_CACHED_SIZES) this.#sizes.clear();
    this.#sizes.set(digest, size);
  }
}
