/**
 * Helpers for the garbage collection tests: a registry over the memory driver with a clock the
 * test moves, and the facts a test asserts on (is a blob's file there, is a link there).
 */

import { DEFAULTS, type GcConfig, type RetentionRule } from "../../src/config/mod.ts";
import type { GcReport } from "../../src/gc/collector.ts";
import type { LockManager } from "../../src/storage/lock.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { blobKey, layerKey, revisionKey, tagKey } from "../../src/storage/keys.ts";
import type { Digest, RepositoryName, Tag } from "../../src/types/oci.ts";
import { type MemoryRegistry, memoryRegistry } from "../helpers/registry.ts";

export const HOUR = 60 * 60 * 1000;

/** A memory registry whose clock (driver and services) the test moves with `advance`. */
export interface ClockedRegistry extends MemoryRegistry {
  /** Moves the clock forward. */
  advance(ms: number): void;
  /** Runs a collection and returns its report. */
  collect(dryRun?: boolean): Promise<GcReport>;
  /** Whether the blob's file exists. */
  hasBlob(digest: string): Promise<boolean>;
  /** Whether the repository links the blob. */
  hasLink(name: string, digest: string): Promise<boolean>;
  /** Whether the repository holds the revision. */
  hasRevision(name: string, digest: string): Promise<boolean>;
  /** Whether the tag exists. */
  hasTag(name: string, tag: string): Promise<boolean>;
}

/** Options of `clockedRegistry`. */
export interface ClockedOptions {
  readonly gc?: Partial<GcConfig>;
  readonly retention?: RetentionRule[];
  readonly locks?: LockManager;
  readonly gcProbe?: (phase: string, subject: string) => Promise<void> | void;
  /** The driver says it `storesWhole` (as S3's does; the memory driver's sync ignores it). */
  readonly storesWhole?: boolean;
}

/** A retention rule with defaults for the fields not given. */
export function rule(fields: Partial<RetentionRule>): RetentionRule {
  return {
    repositories: ["**"],
    keepTags: null,
    keepTagPatterns: [],
    keepPulledWithinMs: null,
    untaggedAfterMs: null,
    ...fields,
  };
}

/** Builds the registry (grace 1 h unless given; no schedule). */
export async function clockedRegistry(options: ClockedOptions = {}): Promise<ClockedRegistry> {
  let offset = 0;
  const clock = () => Date.now() + offset;
  const driver = Object.assign(new MemoryDriver(clock), {
    storesWhole: options.storesWhole === true,
  });
  const gc: GcConfig = {
    ...DEFAULTS.gc,
    intervalMs: 0,
    ...options.gc,
    retention: options.retention ?? options.gc?.retention ?? [],
  };
  const reg = await memoryRegistry({
    driver,
    now: () => new Date(clock()),
    config: { gc },
    ...(options.locks ? { locks: options.locks } : {}),
    ...(options.gcProbe ? { gcProbe: options.gcProbe } : {}),
  });
  const d = (digest: string) => digest as Digest;
  const r = (name: string) => name as RepositoryName;
  return Object.assign(reg, {
    advance: (ms: number) => void (offset += ms),
    collect: (dryRun = false) => reg.app.services.gc.run({ dryRun }).report,
    hasBlob: async (digest: string) => (await driver.stat(blobKey(d(digest)))) !== null,
    hasLink: async (name: string, digest: string) =>
      (await driver.stat(layerKey(r(name), d(digest)))) !== null,
    hasRevision: async (name: string, digest: string) =>
      (await driver.stat(revisionKey(r(name), d(digest)))) !== null,
    hasTag: async (name: string, tag: string) =>
      (await driver.stat(tagKey(r(name), tag as Tag))) !== null,
  });
}
