/**
 * Blob sizes in PostgreSQL (table `blobs`, migration 4), and the scale-out mode's blob store
 * that keeps them: the bytes stay in the bucket (`DriverBlobStore`), the size of each stored
 * blob is a row, so a size (a HEAD, a mount, a manifest PUT's check of its references) is one
 * indexed query instead of a HeadObject, and every replica sees the same rows at once.
 *
 * Invariant: a row means the bytes are stored, with that size. No row means nothing (blobs
 * stored before the table existed, or whose insert failed after their bytes went in): `size`
 * then asks the driver, and does not insert what it finds. Such a lazy insert would race a
 * collection, which may delete the row and then the bytes between the driver's answer and the
 * insert (a size takes no lock), leaving a row for a deleted blob, and with it a 200 to HEAD
 * for bytes that are gone.
 *
 * The writers keep it by order, and by the blob's lock (`services/locks.ts`), which every path
 * that stores or deletes a blob's bytes already holds: the upload commit
 * (`UploadService.complete`), the manifest PUT (`ManifestService`, its bytes are a blob) and
 * the collector's sweep (`gc/collector.ts`, each delete re-checked under the lock). A row goes
 * in after its bytes are stored and out before they are deleted; a crash between the two steps
 * leaves bytes without a row (answered by the driver, swept by the next collection as ever),
 * never a row without bytes. Repository deletion removes links only, never bytes or rows.
 */

import type { Digest, RepositoryName, UploadId } from "../../types/oci.ts";
import type { BlobStore } from "../blobs.ts";
import { type DeleteOptions, type ObjectReader, type Span, StorageUnavailable } from "../driver.ts";
import { guarded, type Sql } from "./client.ts";
import { Coalescer } from "./coalesce.ts";

/** The rows of `blobs`: sizes of stored blobs. */
export class BlobSizes {
  readonly #sql: Sql;

  /** Rows through `sql`, whose database is migrated (`PostgresMetadataStore.open`). */
  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** The recorded size of a blob, or null when there is no row (which says nothing). */
  async get(digest: Digest): Promise<number | null> {
    const rows = await guarded(() =>
      this.#sql<{ size: string | number }[]>`select size from blobs where digest = ${digest}`
    );
    return rows[0] === undefined ? null : Number(rows[0].size);
  }

  /** Records a blob whose bytes are stored (call after they are, under the blob's lock). */
  async record(digest: Digest, size: number): Promise<void> {
    // The bytes just stored are the truth: a row that disagreed (it cannot, for bytes of one
    // digest) would be corrected.
    await guarded(() =>
      this.#sql`
        insert into blobs (digest, size) values (${digest}, ${size})
        on conflict (digest) do update set size = excluded.size`
    );
  }

  /** Removes a blob's row (call before its bytes go, under the blob's lock). */
  async forget(digest: Digest): Promise<void> {
    await guarded(() => this.#sql`delete from blobs where digest = ${digest}`);
  }

  /**
   * Whether the blob is linked in the repository, and its recorded size: null when it is not
   * linked, `{ size: null }` when it is but has no row. The blob HEAD's look-up: concurrent
   * calls share queries (`Coalescer`), each answered by a query sent after it was made.
   */
  linked(name: RepositoryName, digest: Digest): Promise<{ size: number | null } | null> {
    return this.#linked.get({ name, digest });
  }

  readonly #linked = new Coalescer<
    { name: RepositoryName; digest: Digest },
    { size: number | null } | null
  >(
    async (keys) => {
      // Each list is one text parameter, split by the database: names and digests hold no
      // space (their grammars), and the client's own array parameters fail on a connection
      // that has not yet learned the array types (a fresh pool after a restart).
      const joined = (values: readonly string[]) => {
        if (values.some((v) => v.includes(" "))) throw new RangeError("a key holds a space");
        return values.join(" ");
      };
      const rows = await guarded(() =>
        this.#sql<{ linked: boolean; size: string | number | null }[]>`
          select l.digest is not null as linked, b.size
          from unnest(string_to_array(${joined(keys.map((k) => k.name))}::text, ' '),
                      string_to_array(${joined(keys.map((k) => k.digest))}::text, ' '))
            with ordinality as k (repository, digest, i)
          left join layer_links l on l.repository = k.repository and l.digest = k.digest
          left join blobs b on b.digest = l.digest
          order by k.i`
      );
      return rows.map((row) =>
        row.linked ? { size: row.size === null ? null : Number(row.size) } : null
      );
    },
    {
      // Of the pool's 10 connections, at most 3 carry HEADs: the rest stay for other requests,
      // and under load each of the 3 answers many HEADs at once.
      maxInFlight: 3,
      maxBatch: 256,
      // A HEAD's query takes milliseconds; one that has not answered in 10 s is lost (503).
      timeoutMs: 10_000,
      timedOut: () => new StorageUnavailable("The database did not answer a blob look-up in 10 s"),
    },
  );
}

/** A blob store that keeps the rows of `BlobSizes` right around an inner store's bytes. */
export class SizedBlobStore implements BlobStore {
  readonly #inner: BlobStore;
  readonly #sizes: BlobSizes;

  /** Wraps `inner` (the driver's store); its rows in `sizes`. */
  constructor(inner: BlobStore, sizes: BlobSizes) {
    this.#inner = inner;
    this.#sizes = sizes;
  }

  /** @inheritdoc */
  async size(digest: Digest): Promise<number | null> {
    return (await this.#sizes.get(digest)) ?? await this.#inner.size(digest);
  }

  /** @inheritdoc */
  open(digest: Digest, span?: Span): Promise<ObjectReader | null> {
    return this.#inner.open(digest, span);
  }

  /** @inheritdoc */
  read(digest: Digest): Promise<Uint8Array<ArrayBuffer> | null> {
    return this.#inner.read(digest);
  }

  /** @inheritdoc */
  async write(digest: Digest, bytes: Uint8Array): Promise<void> {
    // A row of this size means these bytes are stored (the caller holds the blob's lock, so no
    // collection can delete them meanwhile): no request to the bucket.
    if ((await this.#sizes.get(digest)) === bytes.length) return;
    await this.#inner.write(digest, bytes);
    await this.#sizes.record(digest, bytes.length);
  }

  /** @inheritdoc */
  async commitUpload(id: UploadId, digest: Digest, size?: number): Promise<void> {
    await this.#inner.commitUpload(id, digest, size);
    const stored = size ?? await this.#inner.size(digest);
    if (stored !== null) await this.#sizes.record(digest, stored);
  }

  /**
   * Removes the row, then the bytes, at once: `lazy` is not passed on. A delete a driver
   * deferred to `settle()` (after the caller's blob lock is released) could remove bytes that
   * a commit or write under the lock had meanwhile found, or brought back, and recorded.
   */
  async delete(digest: Digest, _options?: DeleteOptions): Promise<boolean> {
    await this.#sizes.forget(digest);
    return await this.#inner.delete(digest);
  }

  /** @inheritdoc */
  list(): AsyncIterable<Digest> {
    return this.#inner.list();
  }
}
