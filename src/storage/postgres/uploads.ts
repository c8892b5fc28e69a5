/**
 * Upload sessions of the scale-out mode: a session's small files (its repository, start time
 * and SHA-256 state) are one row of `upload_sessions` (migration 5), and its bytes stay in the
 * bucket as `uploads/<uuid>/data` (the S3 driver's multipart upload and tail object; the state
 * naming them is a row of `append_states`, see `states.ts`), as in `DriverUploadStore`. A PATCH then saves its state with one query instead of a PutObject, and
 * a request reads its session with one query beside the data's stat, instead of four GetObjects
 * and a stat: ten fewer bucket requests in a POST, PATCH, PUT push.
 *
 * The rules of `UploadStore` hold as they do on the filesystem: the state is replaced only once
 * the data it covers is durable (the row is updated after the data's flush), so after a crash
 * the data holds at least the bytes the state covers. Both halves must be there: a session is
 * only found (`get`) when it has its row and its data. The row and the data are made together
 * and removed together, and `list` names both the rows and the session folders of the bucket:
 * whatever half a crash leaves is listed, not found, and removed by the purge.
 *
 * A session a bucket held before this store (its small files are objects, it has no row) goes
 * on as it was, through `DriverUploadStore`: an upload started before the upgrade can be
 * finished after it. The other way does not work: a replica of an earlier version does not
 * know the rows, so it answers 404 to a session kept here and its purge would remove the
 * session's data; replicas of an earlier version are stopped before the first of this one
 * starts (README, "Upgrading replicas").
 */

import type { RepositoryName, UploadId } from "../../types/oci.ts";
import type { ByteSource } from "../byte_source.ts";
import { AlreadyExists, type StorageDriver } from "../driver.ts";
import { AREAS, uploadFileKey, uploadKey } from "../keys.ts";
import {
  DriverUploadStore,
  type StoredSession,
  type UploadStore,
  type WholeBytes,
} from "../uploads.ts";
import { guarded, type Sql, sqlState } from "./client.ts";

/** PostgreSQL's unique_violation. */
const UNIQUE_VIOLATION = "23505";

interface SessionRow {
  readonly repository: string;
  readonly started_at: Date;
  readonly hash_state: string;
}

/** Upload sessions as rows, their data through the driver. */
export class PostgresUploadStore implements UploadStore {
  readonly #sql: Sql;
  readonly #driver: StorageDriver;
  /** The data half: appends, cuts and reads of `uploads/<uuid>/data`. */
  readonly #data: DriverUploadStore;

  /** Sessions in `sql`'s database (migrated: `PostgresMetadataStore.open`), data in `driver`. */
  constructor(sql: Sql, driver: StorageDriver) {
    this.#sql = sql;
    this.#driver = driver;
    this.#data = new DriverUploadStore(driver);
  }

  /** @inheritdoc */
  get storesWhole(): boolean {
    return this.#data.storesWhole;
  }

  /** @inheritdoc */
  async create(
    id: UploadId,
    repository: RepositoryName,
    startedAt: Date,
    hashState: string,
  ): Promise<void> {
    // The row and the data at once: whichever half a crash or a failure leaves is purged.
    const row = guarded(() =>
      this.#sql`
        insert into upload_sessions (id, repository, started_at, hash_state)
        values (${id}, ${repository}, ${startedAt}, ${hashState})`
    ).catch((error) => {
      throw sqlState(error) === UNIQUE_VIOLATION ? new AlreadyExists(uploadKey(id)) : error;
    });
    const [inserted, created] = await Promise.allSettled([
      row,
      this.#driver.create(uploadFileKey(id, "data"), { fresh: true }),
    ]);
    if (inserted.status === "rejected") throw inserted.reason;
    if (created.status === "rejected") throw created.reason;
  }

  /** @inheritdoc */
  async get(id: UploadId): Promise<StoredSession | null> {
    const [rows, data] = await Promise.all([
      guarded(() =>
        this.#sql<SessionRow[]>`
          select repository, started_at, hash_state from upload_sessions where id = ${id}`
      ),
      this.#driver.stat(uploadFileKey(id, "data")),
    ]);
    const row = rows[0];
    if (data === null) return null;
    // No row: a session written before this store, whose small files are objects (or half a
    // session, which has none: not found).
    if (row === undefined) return await this.#data.get(id);
    return {
      id,
      repository: row.repository,
      startedAt: row.started_at.toISOString(),
      hashState: row.hash_state,
      dataSize: data.size,
      modifiedAt: data.modifiedAt,
    };
  }

  /** @inheritdoc */
  append(
    id: UploadId,
    offset: number,
    source: ByteSource,
    observe?: (batch: Uint8Array) => Promise<void>,
    whole?: WholeBytes,
  ): Promise<{ written: number; flushed: Promise<void> }> {
    return this.#data.append(id, offset, source, observe, whole);
  }

  /** @inheritdoc */
  truncate(id: UploadId, size: number): Promise<void> {
    return this.#data.truncate(id, size);
  }

  /** @inheritdoc */
  async saveHashState(id: UploadId, text: string, after?: Promise<void>): Promise<void> {
    await after;
    const rows = await guarded(() =>
      this.#sql`update upload_sessions set hash_state = ${text} where id = ${id} returning id`
    );
    if (rows.length === 0) await this.#data.saveHashState(id, text); // a session from before
  }

  /** @inheritdoc */
  readData(id: UploadId): Promise<ReadableStream<Uint8Array>> {
    return this.#data.readData(id);
  }

  /**
   * Removes the row and the data at once: a session of this store has no other object in the
   * bucket, so one delete of `data` instead of a listing of its folder; after a commit, which
   * moved the data away, only the row (no bucket request: under load a HeadObject waits 20 to
   * 120 ms behind other uploads' bytes). A folder without a row (a crash's half, a session
   * from before this store) is removed whole.
   */
  async remove(id: UploadId, options: { readonly committed?: boolean } = {}): Promise<boolean> {
    const [rows, data] = await Promise.all([
      guarded(() => this.#sql`delete from upload_sessions where id = ${id} returning id`),
      options.committed ? false : this.#driver.delete(uploadFileKey(id, "data")),
    ]);
    // No row: a session from before this store, or a crash's half: its folder goes whole.
    if (rows.length === 0) return (await this.#driver.deleteAll(uploadKey(id))) || data;
    return true;
  }

  /** @inheritdoc */
  async list(): Promise<string[]> {
    const [rows, folders] = await Promise.all([
      guarded(() => this.#sql<{ id: string }[]>`select id from upload_sessions`),
      this.#driver.list(AREAS.uploads),
    ]);
    return [...new Set([...rows.map((row) => row.id), ...folders])];
  }
}
