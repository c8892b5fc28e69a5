/**
 * Upload sessions: start, append chunks (hashing while writing and saving the hash state at
 * every chunk boundary), report progress, complete into the blob store, cancel, and recover
 * or purge sessions left by a crash.
 */

import { createHash } from "node:crypto";
import { digestAlgorithm, digestHex, makeDigest } from "../digest/digest.ts";
import {
  createSha256,
  decodeSha256State,
  encodeSha256State,
  type Sha256,
  type Sha256State,
} from "../digest/sha256.ts";
import { RegistryError } from "../errors.ts";
import { BLOB_MEDIA_TYPE } from "../events/event.ts";
import { type EventSink, NO_EVENTS } from "../events/sink.ts";
import type { Activity } from "../storage/activity.ts";
import type { BlobStore } from "../storage/blobs.ts";
import type { ByteSource } from "../storage/byte_source.ts";
import { UploadDataLost } from "../storage/driver.ts";
import type { LockManager } from "../storage/lock.ts";
import type { MetadataStore } from "../storage/metadata/metadata.ts";
import type { StoredSession, UploadStore } from "../storage/uploads.ts";
import { isUploadId } from "../types/names.ts";
import type { Digest, RepositoryName, UploadId } from "../types/oci.ts";
import type { ChunkRange } from "../types/spans.ts";
import { blobLock, repositoryLock, uploadLock } from "./locks.ts";

/** Where a session stands: its id and how many bytes it safely holds. */
export interface UploadStatus {
  readonly id: UploadId;
  readonly size: number;
}

/** A chunk as the route received it. */
export interface Chunk {
  readonly body: ByteSource | null;
  readonly range: ChunkRange | null;
  readonly contentLength: number | null;
}

/** Options of the upload service. */
export interface UploadServiceOptions {
  /** Sessions not started or written to within this many milliseconds are purged. */
  readonly maxAgeMs: number;
  /** The clock. */
  readonly now?: () => Date;
  /** Hash backend override (tests). */
  readonly backend?: "native" | "portable";
}

const EMPTY_STATE = encodeSha256State(createSha256(undefined).exportState());

/** Registry semantics of blob upload sessions. */
export class UploadService {
  readonly #uploads: UploadStore;
  readonly #blobs: BlobStore;
  readonly #meta: MetadataStore;
  readonly #options: UploadServiceOptions;
  readonly #locks: LockManager;
  readonly #now: () => Date;
  readonly #events: EventSink;
  readonly #activity: Activity | null;

  /**
   * Makes the service over its stores, the lock manager shared with the other services, the
   * sink of its events (default: none) and the activity tracker told of every commit.
   */
  constructor(
    stores: {
      uploads: UploadStore;
      blobs: BlobStore;
      meta: MetadataStore;
      locks: LockManager;
      events?: EventSink;
      activity?: Activity;
    },
    options: UploadServiceOptions,
  ) {
    this.#uploads = stores.uploads;
    this.#blobs = stores.blobs;
    this.#meta = stores.meta;
    this.#locks = stores.locks;
    this.#options = options;
    this.#now = options.now ?? (() => new Date());
    this.#events = stores.events ?? NO_EVENTS;
    this.#activity = stores.activity ?? null;
  }

  /** Opens a new empty session in a repository. */
  async start(name: RepositoryName): Promise<UploadStatus> {
    const id = crypto.randomUUID() as UploadId;
    // Under the session's lock: the purge never sees a session whose files are half made.
    await this.#locks.run(
      uploadLock(id),
      () => this.#uploads.create(id, name, this.#now(), EMPTY_STATE),
    );
    return { id, size: 0 };
  }

  /** Reports the bytes a session safely holds; throws BLOB_UPLOAD_UNKNOWN. */
  async status(name: RepositoryName, id: UploadId): Promise<UploadStatus> {
    if (this.#locks.isBusy(uploadLock(id))) {
      // A chunk is being written: report what the last saved state covers, touch nothing.
      const stored = await this.#stored(name, id);
      const state = tryDecode(stored.hashState);
      return { id, size: state ? Math.min(state.length, stored.dataSize) : 0 };
    }
    return await this.#locks.run(uploadLock(id), () =>
      this.#unlessLost(id, async () => {
        const { state } = await this.#load(name, id);
        return { id, size: state.length };
      }));
  }

  /**
   * Runs `fn` (under the session's lock); when the session's data turns out lost for good
   * (UploadDataLost), removes the session and throws BLOB_UPLOAD_UNKNOWN: the client starts
   * the upload again instead of meeting a 500 at every request.
   */
  async #unlessLost<T>(id: UploadId, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      if (!(error instanceof UploadDataLost)) throw error;
      await this.#uploads.remove(id);
      throw new RegistryError(
        "BLOB_UPLOAD_UNKNOWN",
        `Upload "${id}" is gone: its stored data was lost; start the upload again`,
        { detail: { uuid: id } },
      );
    }
  }

  /** Appends one chunk; throws 416 for a chunk that does not continue the data, SIZE_INVALID. */
  append(name: RepositoryName, id: UploadId, chunk: Chunk): Promise<UploadStatus> {
    return this.#locks.run(uploadLock(id), () =>
      this.#unlessLost(id, async () => {
        const { state } = await this.#load(name, id);
        const hasher = createSha256(state, this.#hashOptions());
        await this.#write(id, hasher, chunk);
        return { id, size: hasher.length };
      }));
  }

  /**
   * Appends an optional final chunk, verifies the digest of all bytes, commits the blob by
   * rename and links it into the repository; the blob's push event is queued durably before
   * returning. On a digest mismatch the session is removed and DIGEST_INVALID thrown; nothing
   * is stored.
   */
  complete(name: RepositoryName, id: UploadId, digest: Digest, chunk: Chunk): Promise<Digest> {
    return this.#locks.run(
      uploadLock(id),
      () => this.#unlessLost(id, () => this.#complete(name, id, digest, chunk)),
    );
  }

  /** `complete`, under the session's lock. */
  async #complete(
    name: RepositoryName,
    id: UploadId,
    digest: Digest,
    chunk: Chunk,
  ): Promise<Digest> {
    const { state } = await this.#load(name, id);
    const hasher = createSha256(state, this.#hashOptions());
    const hasBody = chunk.body !== null && chunk.contentLength !== 0;
    if (hasBody || chunk.range !== null) await this.#write(id, hasher, chunk);
    const actual = await this.#digestOf(id, hasher, digest);
    if (actual !== digest) {
      await this.#uploads.remove(id);
      throw new RegistryError(
        "DIGEST_INVALID",
        `Upload content has digest "${actual}", not the given "${digest}"`,
        { detail: { expected: digest, actual } },
      );
    }
    // Under the blob's lock: a collection sweeping an old copy of these bytes runs wholly
    // before (the commit then brings them back) or after (it then sees the touch and link).
    // The touch comes after the link (see locks.ts): a touch before it could fall before the
    // collection's window opened while the link lands after the mark read this repository.
    await this.#locks.run(blobLock(digest), async () => {
      await this.#blobs.commitUpload(id, digest, hasher.length);
      await this.#locks.run(repositoryLock(name), async () => {
        await this.#meta.linkLayer(name, digest);
        this.#activity?.touch(digest);
        await this.#events.record([{
          action: "push",
          kind: "blob",
          repository: name,
          digest,
          mediaType: BLOB_MEDIA_TYPE,
          size: hasher.length,
        }]);
      });
    });
    await this.#uploads.remove(id, { committed: true });
    return digest;
  }

  /** Uploads a whole blob in one request (POST `?digest=` with a body). */
  async uploadWhole(name: RepositoryName, digest: Digest, chunk: Chunk): Promise<Digest> {
    const { id } = await this.start(name);
    try {
      return await this.complete(name, id, digest, chunk); // removes the session
    } catch (error) {
      await this.#uploads.remove(id);
      throw error;
    }
  }

  /** Cancels a session and removes its folder; throws BLOB_UPLOAD_UNKNOWN. */
  cancel(name: RepositoryName, id: UploadId): Promise<void> {
    return this.#locks.run(uploadLock(id), async () => {
      await this.#stored(name, id);
      await this.#uploads.remove(id);
    });
  }

  /**
   * Reconciles every session after a restart (truncating bytes past the saved state, or
   * re-hashing `data` when the state is missing or wrong) and purges stale or broken ones.
   */
  async recover(): Promise<{ resumed: number; purged: number }> {
    let resumed = 0;
    let purged = 0;
    for (const name of await this.#uploads.list()) {
      if (!isUploadId(name)) continue;
      const id = name;
      const outcome = await this.#locks.run(uploadLock(id), async () => {
        const stored = await this.#uploads.get(id);
        if (stored === null || this.#isStale(stored)) {
          await this.#uploads.remove(id);
          return "purged";
        }
        try {
          await this.#reconcile(stored);
        } catch (error) {
          if (!(error instanceof UploadDataLost)) throw error;
          await this.#uploads.remove(id);
          return "purged";
        }
        return "resumed";
      });
      if (outcome === "purged") purged++;
      else resumed++;
    }
    return { resumed, purged };
  }

  /**
   * The digest of the bytes every session's saved hash state covers (all of its data, or the
   * first bytes a restart cuts it back to). On a driver that `storesWhole`, those bytes may be
   * stored at that blob's key before any commit (see `WholeBytes`): the collector spares these
   * digests while their sessions live.
   */
  async heldDigests(): Promise<Set<Digest>> {
    const held = new Set<Digest>();
    if (!this.#uploads.storesWhole) return held; // nothing is stored there before a commit
    for (const name of await this.#uploads.list()) {
      if (!isUploadId(name)) continue;
      const stored = await this.#uploads.get(name);
      const state = stored === null ? null : tryDecode(stored.hashState);
      if (state === null || state.length === 0 || state.length > stored!.dataSize) continue;
      held.add(makeDigest("sha256", createSha256(state, this.#hashOptions()).digestHex()));
    }
    return held;
  }

  /** Purges sessions older than the maximum age that no request is using. */
  async purgeStale(): Promise<number> {
    let purged = 0;
    for (const name of await this.#uploads.list()) {
      if (!isUploadId(name) || this.#locks.isBusy(uploadLock(name))) continue;
      const id = name;
      const removed = await this.#locks.run(uploadLock(id), async () => {
        const stored = await this.#uploads.get(id);
        if (stored !== null && !this.#isStale(stored)) return false;
        return await this.#uploads.remove(id);
      });
      if (removed) purged++;
    }
    return purged;
  }

  #isStale(stored: StoredSession): boolean {
    const started = Date.parse(stored.startedAt);
    const touched = Math.max(Number.isNaN(started) ? 0 : started, stored.modifiedAt);
    return this.#now().getTime() - touched > this.#options.maxAgeMs;
  }

  #hashOptions(): { backend?: "native" | "portable" } {
    return this.#options.backend ? { backend: this.#options.backend } : {};
  }

  /** Reads a session of this repository; throws BLOB_UPLOAD_UNKNOWN otherwise. */
  async #stored(name: RepositoryName, id: UploadId): Promise<StoredSession> {
    const stored = await this.#uploads.get(id);
    if (stored === null || stored.repository !== name) {
      throw new RegistryError("BLOB_UPLOAD_UNKNOWN", `Unknown upload "${id}" in "${name}"`, {
        detail: { uuid: id },
      });
    }
    return stored;
  }

  /** Reads a session and makes its state trustworthy. Call under the session's lock. */
  async #load(name: RepositoryName, id: UploadId): Promise<{ state: Sha256State }> {
    const stored = await this.#stored(name, id);
    return { state: await this.#reconcile(stored) };
  }

  /** Trust the saved state only at the exact offset; otherwise truncate or re-hash. */
  async #reconcile(stored: StoredSession): Promise<Sha256State> {
    const state = tryDecode(stored.hashState);
    if (state && state.length === stored.dataSize) return state;
    if (state && state.length < stored.dataSize) {
      // Bytes past the state come from a chunk that was never acknowledged.
      await this.#uploads.truncate(stored.id, state.length);
      return state;
    }
    const hasher = createSha256(undefined, this.#hashOptions());
    for await (const chunk of await this.#uploads.readData(stored.id)) hasher.update(chunk);
    const fresh = hasher.exportState();
    await this.#uploads.saveHashState(stored.id, encodeSha256State(fresh));
    return fresh;
  }

  /** Validates a chunk against the session, streams it to disk and saves the new state. */
  async #write(id: UploadId, hasher: Sha256, chunk: Chunk): Promise<void> {
    const offset = hasher.length;
    const { range, contentLength } = chunk;
    let expected = contentLength;
    if (range !== null) {
      if (range.start !== offset) {
        throw new RegistryError(
          "BLOB_UPLOAD_INVALID",
          `Chunk range ${range.start}-${range.end} does not continue upload "${id}" at offset ${offset}`,
          { status: 416, headers: { Range: offset === 0 ? "0-0" : `0-${offset - 1}` } },
        );
      }
      const declared = range.end - range.start + 1;
      if (contentLength !== null && contentLength !== declared) {
        throw new RegistryError(
          "SIZE_INVALID",
          `Content-Range ${range.start}-${range.end} declares ${declared} bytes but Content-Length is ${contentLength}`,
        );
      }
      expected = declared;
    }
    const { written, flushed } = await this.#uploads.append(
      id,
      offset,
      limited(chunk.body, expected),
      (batch) => hasher.updateAsync(batch),
      {
        digest: () =>
          makeDigest("sha256", createSha256(hasher.exportState(), this.#hashOptions()).digestHex()),
        // Not behind another holder of the blob's lock in this process (an upload or commit
        // of the same bytes, a mount, a collection's check): the bytes go as any others. With
        // locks in PostgreSQL such a holder may be waiting for a connection of the pool that
        // this upload's lock holds.
        guard: (digest, sync) => {
          const lock = blobLock(digest);
          if (this.#locks.isBusy(lock)) return sync(false);
          return this.#locks.run(lock, () => sync(true));
        },
      },
    );
    if (expected !== null && written !== expected) {
      await flushed.catch(() => {});
      await this.#uploads.truncate(id, offset);
      throw new RegistryError(
        "SIZE_INVALID",
        `Chunk for upload "${id}" carried ${written} bytes, ${expected} were declared`,
      );
    }
    if (written > 0 || range !== null) {
      // The data flush and the new state's write run together; the state is renamed into
      // place only once the data it covers is on disk.
      const state = encodeSha256State(hasher.exportState());
      await this.#uploads.saveHashState(id, state, flushed);
    } else {
      await flushed;
    }
  }

  async #digestOf(id: UploadId, hasher: Sha256, wanted: Digest): Promise<Digest> {
    if (digestAlgorithm(wanted) === "sha256") return makeDigest("sha256", hasher.digestHex());
    const sha512 = createHash("sha512");
    for await (const chunk of await this.#uploads.readData(id)) sha512.update(chunk);
    const hex = sha512.digest("hex");
    return hex === digestHex(wanted) ? wanted : makeDigest("sha512", hex);
  }
}

const EMPTY_SOURCE: ByteSource = { read: (into) => Promise.resolve(into.subarray(0, 0)) };

/** A source that throws SIZE_INVALID as soon as more than `limit` bytes were read. */
function limited(body: ByteSource | null, limit: number | null): ByteSource {
  if (body === null) return EMPTY_SOURCE;
  if (limit === null) return body;
  let total = 0;
  return {
    async read(into) {
      const view = await body.read(into);
      total += view.length;
      if (total > limit) {
        throw new RegistryError("SIZE_INVALID", `Chunk is larger than the ${limit} bytes declared`);
      }
      return view;
    },
  };
}

function tryDecode(text: string | null): Sha256State | null {
  if (text === null) return null;
  try {
    return decodeSha256State(text);
  } catch {
    return null;
  }
}
