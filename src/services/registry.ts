/**
 * Wires the stores and services of one registry over one data root.
 */

import type { Config } from "../config.ts";
import { type BlobStore, FsBlobStore } from "../storage/blobs.ts";
import { canonicalRoot, ensureDir } from "../storage/fs.ts";
import { Paths } from "../storage/paths.ts";
import { FsMetadataStore, type MetadataStore } from "../storage/repositories.ts";
import { FsUploadStore, type UploadStore } from "../storage/uploads.ts";
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
}

/** Options of `createServices` beyond the configuration. */
export interface ServiceOptions {
  /** The clock (tests). */
  readonly now?: () => Date;
  /** Force a SHA-256 backend (tests). */
  readonly hashBackend?: "native" | "portable";
  /** Stores replacing the filesystem ones (tests inject faults this way). */
  readonly stores?: {
    readonly blobs?: BlobStore;
    readonly uploads?: UploadStore;
    readonly meta?: MetadataStore;
  };
}

/** Creates the data root folders and the services over them. Throws if the root is unusable. */
export async function createServices(
  config: Config,
  options: ServiceOptions = {},
): Promise<Services> {
  // Canonical, so that storage can refuse any symbolic link planted under the root.
  const paths = new Paths(await canonicalRoot(config.dataDir));
  for (const dir of [paths.blobsDir, paths.uploadsDir, paths.repositoriesDir]) {
    await ensureDir(dir);
  }
  const blobs = options.stores?.blobs ?? new FsBlobStore(paths);
  const meta = options.stores?.meta ?? new FsMetadataStore(paths);
  const uploads = options.stores?.uploads ?? new FsUploadStore(paths);
  return {
    config,
    blobs: new BlobService({ blobs, meta }),
    uploads: new UploadService({ uploads, blobs, meta }, {
      maxAgeMs: config.uploadMaxAgeMs,
      ...(options.now ? { now: options.now } : {}),
      ...(options.hashBackend ? { backend: options.hashBackend } : {}),
    }),
    manifests: new ManifestService({ blobs, meta }),
    listings: new ListingService({ meta }),
  };
}
