/**
 * Wires the stores and services of one registry over one data root: the filesystem driver,
 * the data-root lock that makes this process the only writer, the format check, the cache
 * layer that single ownership makes valid, and the lock manager the services share.
 */

import { type Config, DEFAULTS } from "../config/mod.ts";
import { type EventSink, NO_EVENTS } from "../events/sink.ts";
import { Collector } from "../gc/collector.ts";
import { Activity } from "../storage/activity.ts";
import { type BlobStore, DriverBlobStore } from "../storage/blobs.ts";
import { CachedBlobStore, CachedMetadataStore } from "../storage/cache.ts";
import type { StorageDriver } from "../storage/driver.ts";
import { FsDriver } from "../storage/drivers/fs.ts";
import { InstrumentedDriver } from "../storage/drivers/instrumented.ts";
import { canonicalRoot, ensureDir } from "../storage/drivers/fs_files.ts";
import { lockRoot, type RootLock } from "../storage/drivers/fs_lock.ts";
import { checkFormat } from "../storage/format.ts";
import { AREAS } from "../storage/keys.ts";
import { KeyedMutex, type LockManager } from "../storage/lock.ts";
import { LocalMetadataStore } from "../storage/metadata/local.ts";
import type { MetadataStore } from "../storage/metadata/metadata.ts";
import { DriverUploadStore, type UploadStore } from "../storage/uploads.ts";
import { immutableMatcher } from "../auth/policy.ts";
import { RepositoryDeleter } from "../maintenance/repositories.ts";
import { BlobService } from "./blobs.ts";
import { ListingService } from "./listings.ts";
import { ManifestService } from "./manifests.ts";
import { UploadService } from "./uploads.ts";

/** Every service of a registry, plus the configuration the routes need. */
export interface Services {
  readonly config: Config;
  readonly blobs: BlobService;
  readonly uploads: UploadService;
  readonly manifests: ManifestService;
  readonly listings: ListingService;
  /** Repository deletion (the admin endpoint's), under the same locks as the services. */
  readonly repositories: RepositoryDeleter;
  /** Blob touches and manifest pulls (garbage collection's grace window and retention). */
  readonly activity: Activity;
  /** The garbage collector. */
  readonly gc: Collector;
  /** The driver under the stores (timed and counted when metrics are on: health, metrics). */
  readonly driver: StorageDriver;
  /** Releases the data root (its lock); the services must not be used afterwards. */
  close(): void;
}

/** Options of `createServices` beyond the configuration. */
export interface ServiceOptions {
  /** The clock (tests). */
  readonly now?: () => Date;
  /** Force a SHA-256 backend (tests). */
  readonly hashBackend?: "native" | "portable";
  /**
   * A driver replacing the filesystem one over `config.dataDir` (tests: the memory driver, or
   * a driver injecting faults). The caller guarantees this process is its only writer.
   */
  readonly driver?: StorageDriver;
  /** The lock manager of the services (tests: one that tells when a lock is asked for). */
  readonly locks?: LockManager;
  /**
   * Called at named points of a garbage collection (tests: interleave a request at an exact
   * point of a sweep).
   */
  readonly gcProbe?: (phase: string, subject: string) => Promise<void> | void;
  /** Stores replacing the ones over the driver (tests inject faults this way). */
  readonly stores?: {
    readonly blobs?: BlobStore;
    readonly uploads?: UploadStore;
    readonly meta?: MetadataStore;
  };
  /**
   * Makes the sink the services report events to, over the opened driver (the app: the event
   * dispatcher of `notifications.endpoints`; default: none).
   */
  readonly eventSink?: (driver: StorageDriver) => Promise<EventSink>;
}

/**
 * Opens the data root (creating it, taking its lock, checking its format) and builds the
 * services over it. Throws StartupError when another process holds the root or its format is
 * newer; OS errors when it is unusable.
 */
export async function createServices(
  config: Config,
  options: ServiceOptions = {},
): Promise<Services> {
  let driver = options.driver;
  let rootLock: RootLock | null = null;
  if (!driver) {
    // Canonical, so that the driver can refuse any symbolic link planted under the root.
    const root = await canonicalRoot(config.dataDir);
    rootLock = await lockRoot(root);
    try {
      for (const area of Object.values(AREAS)) await ensureDir(`${root}/${area}`);
    } catch (error) {
      rootLock.release();
      throw error;
    }
    driver = new FsDriver(root);
  }
  let events: EventSink = NO_EVENTS;
  try {
    await checkFormat(driver, config.dataDir);
    if (options.eventSink) events = await options.eventSink(driver);
  } catch (error) {
    rootLock?.release();
    throw error;
  }
  if (config.metrics.enabled) driver = new InstrumentedDriver(driver); // storage metrics
  // This process is the only writer (the root lock, or the caller's word for an injected
  // driver): the cache layer is valid.
  const blobs = options.stores?.blobs ?? new CachedBlobStore(new DriverBlobStore(driver));
  const meta = options.stores?.meta ??
    new CachedMetadataStore(new LocalMetadataStore(driver));
  const uploads = options.stores?.uploads ?? new DriverUploadStore(driver);
  const locks: LockManager = options.locks ?? new KeyedMutex();
  const clock = options.now;
  const now = clock ? () => clock().getTime() : Date.now;
  const activity = new Activity(driver, { now });
  try {
    await activity.load();
  } catch (error) {
    rootLock?.release();
    throw error;
  }
  const uploadService = new UploadService({ uploads, blobs, meta, locks, events, activity }, {
    maxAgeMs: config.uploadMaxAgeMs,
    ...(options.now ? { now: options.now } : {}),
    ...(options.hashBackend ? { backend: options.hashBackend } : {}),
  });
  return {
    config,
    driver,
    blobs: new BlobService({ blobs, meta, locks, events, activity }),
    uploads: uploadService,
    manifests: new ManifestService({ blobs, meta, locks, events, activity }, {
      immutableTag: immutableMatcher(config.immutableTags ?? []),
    }),
    listings: new ListingService({ meta }),
    repositories: new RepositoryDeleter({ meta, locks, events }),
    activity,
    gc: new Collector({
      driver,
      blobs,
      meta,
      locks,
      uploads: uploadService,
      activity,
      config: config.gc ?? DEFAULTS.gc,
      now,
      ...(options.gcProbe ? { probe: options.gcProbe } : {}),
    }),
    close: () => rootLock?.release(),
  };
}
