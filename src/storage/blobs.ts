/**
 * Content-addressed blob storage: `blobs/<alg>/<xx>/<hex>` over a storage driver. A blob
 * enters the store only by one move of upload bytes whose digest was already verified (or by
 * an atomic write of small verified bytes), so a blob never holds bytes that do not match its
 * name.
 */

import { isDigest } from "../digest/digest.ts";
import type { Digest, UploadId } from "../types/oci.ts";
import type { DeleteOptions, ObjectReader, Span, StorageDriver } from "./driver.ts";
import { blobKey, uploadFileKey } from "./keys.ts";

/** What the services need from a blob store. */
export interface BlobStore {
  /** Size of a blob, or null when it is not stored. */
  size(digest: Digest): Promise<number | null>;
  /** Opens a blob for streaming, whole or a span of it; null when absent. */
  open(digest: Digest, span?: Span): Promise<ObjectReader | null>;
  /** Reads a small blob (a manifest) whole; null when absent. */
  read(digest: Digest): Promise<Uint8Array<ArrayBuffer> | null>;
  /** Stores small verified bytes (a manifest) under their digest. */
  write(digest: Digest, bytes: Uint8Array): Promise<void>;
  /**
   * Moves the verified, flushed data of an upload session into the store under its digest;
   * `size` is the verified length of that data, when the caller knows it (a store that records
   * sizes then need not ask the driver).
   */
  commitUpload(id: UploadId, digest: Digest, size?: number): Promise<void>;
  /** Deletes a blob's bytes (`lazy`: see `DeleteOptions`); false when it was not stored. */
  delete(digest: Digest, options?: DeleteOptions): Promise<boolean>;
  /** Every stored digest, in no particular order. */
  list(): AsyncIterable<Digest>;
}

/** The blob store over a driver; it caches nothing (see cache.ts). */
export class DriverBlobStore implements BlobStore {
  readonly #driver: StorageDriver;

  /** Makes a store over a driver. */
  constructor(driver: StorageDriver) {
    this.#driver = driver;
  }

  /** @inheritdoc */
  async size(digest: Digest): Promise<number | null> {
    return (await this.#driver.stat(blobKey(digest)))?.size ?? null;
  }

  /** @inheritdoc */
  open(digest: Digest, span?: Span): Promise<ObjectReader | null> {
    return this.#driver.read(blobKey(digest), span);
  }

  /** @inheritdoc */
  read(digest: Digest): Promise<Uint8Array<ArrayBuffer> | null> {
    return this.#driver.get(blobKey(digest));
  }

  /** @inheritdoc */
  async write(digest: Digest, bytes: Uint8Array): Promise<void> {
    if ((await this.size(digest)) === bytes.length) return;
    await this.#driver.put(blobKey(digest), bytes);
  }

  /** @inheritdoc */
  commitUpload(id: UploadId, digest: Digest): Promise<void> {
    return this.#driver.move(uploadFileKey(id, "data"), blobKey(digest));
  }

  /** @inheritdoc */
  delete(digest: Digest, options?: DeleteOptions): Promise<boolean> {
    return this.#driver.delete(blobKey(digest), options);
  }

  /** @inheritdoc */
  async *list(): AsyncIterable<Digest> {
    for (const algorithm of await this.#driver.list("blobs")) {
      for (const prefix of await this.#driver.list(`blobs/${algorithm}`)) {
        for (const hex of await this.#driver.list(`blobs/${algorithm}/${prefix}`)) {
          const digest = `${algorithm}:${hex}`;
          if (isDigest(digest)) yield digest;
        }
      }
    }
  }
}
