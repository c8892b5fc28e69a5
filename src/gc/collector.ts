/**
 * Online mark-and-sweep garbage collection, running while the registry serves.
 *
 * 1. Repositories, one at a time, each under its repository lock (the lock every manifest
 *    PUT, DELETE, unlink and mount of it takes, so its state cannot change meanwhile): read
 *    its tags, revisions and links with their push times and the activity tracker's touches
 *    and pulls; decide with the retention rules (`retention.ts`) which tags and revisions go;
 *    delete them in an order that keeps the consistency guarantee at every instant for the
 *    readers, which take no lock (tags, then referrers entries, then revisions, indexes before
 *    their children); then unlink every layer no kept image manifest of the repository names,
 *    unless the blob was touched within the grace window or the link is younger than it.
 * 2. Blob bytes: every blob no repository links and no repository holds as a revision (a
 *    manifest's bytes are a blob too), untouched within the grace window, is re-checked under
 *    its blob lock and deleted. Every path that links a blob or stores a revision (upload
 *    commits, mounts, manifest PUTs) touches the blob under that lock, and the tracker
 *    remembers every digest touched since the mark began (`Activity.openWindow`): a blob
 *    linked after its repository was scanned is spared, without re-reading every repository
 *    for every candidate. A metadata store shared by several processes, whose touches this
 *    process cannot see, answers `blobReferenced` instead. Link removals and blob deletes
 *    are lazy (each folder is flushed once: the links' before the sweep begins, the blobs' at
 *    its end): a link or bytes nothing needs that come back after a crash are removed again
 *    by the next collection, and a link never comes back without its bytes.
 *    The digest of every live upload session's bytes is spared too: on S3 those bytes may be
 *    stored at the blob's key before the commit (`WholeBytes` in `storage/uploads.ts`), under
 *    the blob's lock; the scale-out mode's re-check (`blobReferenced`) also finds an upload
 *    whose state names them, saved under that lock before its hash state.
 * 3. Stale upload sessions: the upload service's own purge.
 *
 * Every delete goes through the stores: the cache layer drops its entry before the file goes,
 * the scale-out mode's blob store the row of the blob's size before the bytes go. A crash
 * between two deletes leaves a consistent store (each step is one durable delete that the
 * readers' order allows); the next collection finishes the job. A dry run decides the same
 * way, deletes nothing, and reports what would go and the bytes that would be freed.
 */

import type { GcConfig } from "../config/mod.ts";
import { blobLock, repositoryLock } from "../services/locks.ts";
import { isIndexMediaType, parseManifest, referencesOf } from "../services/manifest_parse.ts";
import type { UploadService } from "../services/uploads.ts";
import type { Activity } from "../storage/activity.ts";
import type { BlobStore } from "../storage/blobs.ts";
import type { StorageDriver } from "../storage/driver.ts";
import { blobKey } from "../storage/keys.ts";
import type { LockManager } from "../storage/lock.ts";
import type { MetadataStore, RevisionRecord } from "../storage/metadata/metadata.ts";
import type { Digest, RepositoryName, Tag } from "../types/oci.ts";
import { Retention, type RevisionFact, type TagFact } from "./retention.ts";

/** Reads of one repository's metadata in flight at once (under its lock). */
const READS = 16;

/** `fn` over every item, at most `READS` at a time; the results in the items' order. */
async function inOrder<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(READS, items.length) }, worker));
  return out;
}

/** At most this many items of each kind are listed in a report (all are counted). */
export const REPORT_ITEMS = 1000;

/** What one collection did (or, in a dry run, would do). */
export interface GcReport {
  readonly dryRun: boolean;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationMs: number;
  /** How many of each kind were deleted (would be, in a dry run). */
  readonly counts: {
    readonly tags: number;
    readonly manifests: number;
    readonly links: number;
    readonly blobs: number;
    readonly uploads: number;
  };
  /** Bytes of blob files deleted (would be), manifests' bytes included. */
  readonly bytesFreed: number;
  /** The first `REPORT_ITEMS` of each kind. */
  readonly tags: { repository: string; tag: string; digest: string }[];
  readonly manifests: { repository: string; digest: string }[];
  readonly links: { repository: string; digest: string }[];
  readonly blobs: { digest: string; size: number }[];
  /** Candidates found by the scan that the re-check under the lock kept. */
  readonly spared: number;
  /** Why the run stopped early, when it did (an error, or the registry shutting down). */
  readonly error?: string;
  /** Why nothing was collected, when nothing was (another replica is collecting). */
  readonly skipped?: string;
}

/**
 * Runs a collection alone among the replicas sharing the storage, or not at all: `fn`'s
 * result, or null (without calling `fn`) while another replica runs one.
 */
export type Exclusive = <T>(fn: () => Promise<T>) => Promise<{ value: T } | null>;

/** The `skipped` reason of a run that met another replica's. */
export const ANOTHER_REPLICA = "another replica is collecting";

/** What the collector works on. */
export interface CollectorDeps {
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  readonly meta: MetadataStore;
  readonly locks: LockManager;
  readonly uploads: UploadService;
  readonly activity: Activity;
  readonly config: GcConfig;
  /** The clock, epoch milliseconds. */
  readonly now?: () => number;
  /**
   * Called at named points of a run (tests: to interleave a request at an exact point, or
   * stop a process there). `phase` is `repository`, `link`, `blob` or `done`.
   */
  readonly probe?: (phase: string, subject: string) => Promise<void> | void;
  /**
   * Keeps collections of replicas sharing the storage apart (the scale-out mode: an advisory
   * lock of the shared database); absent, this process is the only collector.
   */
  readonly exclusive?: Exclusive;
}

class Aborted extends Error {}

interface Draft {
  tags: GcReport["tags"];
  manifests: GcReport["manifests"];
  links: GcReport["links"];
  blobs: GcReport["blobs"];
  counts: { tags: number; manifests: number; links: number; blobs: number; uploads: number };
  bytesFreed: number;
  spared: number;
}

/** The report of a run that collected nothing, and why. */
function skippedReport(dryRun: boolean, at: string, why: string): GcReport {
  return {
    dryRun,
    startedAt: at,
    finishedAt: at,
    durationMs: 0,
    counts: { tags: 0, manifests: 0, links: 0, blobs: 0, uploads: 0 },
    bytesFreed: 0,
    tags: [],
    manifests: [],
    links: [],
    blobs: [],
    spared: 0,
    skipped: why,
  };
}

/** The garbage collector of one registry. */
export class Collector {
  readonly #deps: CollectorDeps;
  readonly #now: () => number;
  readonly #retention: Retention;
  #running: Promise<GcReport> | null = null;
  #runningDry = false;
  #last: GcReport | null = null;
  #aborted = false;
  readonly #listeners: ((report: GcReport) => void)[] = [];

  /** Makes the collector over the registry's stores and locks. */
  constructor(deps: CollectorDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    this.#retention = new Retention(deps.config.retention);
  }

  /** Calls `listener` with the report of every finished run (logs, metrics). */
  onReport(listener: (report: GcReport) => void): void {
    this.#listeners.push(listener);
  }

  /** The report of the last finished run, or null. */
  get last(): GcReport | null {
    return this.#last;
  }

  /** Whether a run is under way, and whether it is a dry run. */
  get running(): { readonly dryRun: boolean } | null {
    return this.#running === null ? null : { dryRun: this.#runningDry };
  }

  /**
   * Runs a collection, or joins the one under way (`started` false then; its report is the
   * one returned, even if it is not of the same kind).
   */
  run(
    options: { readonly dryRun?: boolean } = {},
  ): { started: boolean; report: Promise<GcReport> } {
    if (this.#running !== null) return { started: false, report: this.#running };
    const dryRun = options.dryRun ?? false;
    this.#runningDry = dryRun;
    const collect = async (): Promise<GcReport> => {
      const exclusive = this.#deps.exclusive;
      if (exclusive === undefined) return await this.#collect(dryRun);
      const started = new Date(this.#now()).toISOString();
      const ran = await exclusive(() => this.#collect(dryRun));
      return ran?.value ?? skippedReport(dryRun, started, ANOTHER_REPLICA);
    };
    const report = collect().then((r) => {
      if (r.skipped === undefined) this.#last = r; // the last run of this replica
      for (const listener of this.#listeners) listener(r);
      return r;
    }).finally(() => {
      this.#running = null;
    });
    this.#running = report;
    return { started: true, report };
  }

  /** Stops a run under way at its next step (shutdown), and waits for it. */
  async stop(): Promise<void> {
    this.#aborted = true;
    await this.#running?.catch(() => {});
  }

  async #collect(dryRun: boolean): Promise<GcReport> {
    const started = this.#now();
    const clock = performance.now();
    const draft: Draft = {
      tags: [],
      manifests: [],
      links: [],
      blobs: [],
      counts: { tags: 0, manifests: 0, links: 0, blobs: 0, uploads: 0 },
      bytesFreed: 0,
      spared: 0,
    };
    let error: string | undefined;
    try {
      await this.#deps.activity.refresh(); // every replica's touches, when shared
      this.#deps.activity.openWindow();
      const referenced = new Set<Digest>();
      for (const name of [...(await this.#deps.meta.listRepositories())]) {
        this.#check();
        await this.#probe("repository", name);
        const run = () => this.#repository(name, dryRun, draft, referenced);
        if (dryRun) await run();
        else await this.#deps.locks.run(repositoryLock(name), run);
      }
      // The links removed are durable before any blob goes: after a crash, a link that came
      // back still names bytes that are there (the next collection removes it again).
      if (!dryRun) await this.#deps.driver.settle?.();
      await this.#sweepBlobs(dryRun, draft, referenced);
      if (!dryRun) {
        this.#check();
        draft.counts.uploads = await this.#deps.uploads.purgeStale();
        await this.#deps.activity.compact(this.#keepMs());
      }
      await this.#probe("done", "");
    } catch (e) {
      error = e instanceof Aborted ? "stopped: the registry is shutting down" : String(e);
    } finally {
      this.#deps.activity.closeWindow();
      this.#deps.activity.release(); // read again by the next collection
    }
    const finished = this.#now();
    return {
      dryRun,
      startedAt: new Date(started).toISOString(),
      finishedAt: new Date(finished).toISOString(),
      durationMs: Math.round((performance.now() - clock) * 1000) / 1000,
      counts: draft.counts,
      bytesFreed: draft.bytesFreed,
      tags: draft.tags,
      manifests: draft.manifests,
      links: draft.links,
      blobs: draft.blobs,
      spared: draft.spared,
      ...(error !== undefined ? { error } : {}),
    };
  }

  /** How long activity must be remembered: the grace window and the longest pull window. */
  get activityWindowMs(): number {
    return this.#keepMs();
  }

  #keepMs(): number {
    let keep = this.#deps.config.graceMs;
    for (const rule of this.#deps.config.retention) {
      keep = Math.max(keep, rule.keepPulledWithinMs ?? 0);
    }
    return keep;
  }

  #check(): void {
    if (this.#aborted) throw new Aborted();
  }

  async #probe(phase: string, subject: string): Promise<void> {
    await this.#deps.probe?.(phase, subject);
  }

  /** Marks and sweeps one repository (under its lock unless `dryRun`). */
  async #repository(
    name: RepositoryName,
    dryRun: boolean,
    draft: Draft,
    referenced: Set<Digest>,
  ): Promise<void> {
    const { meta, activity, config } = this.#deps;
    const now = this.#now();
    const grace = config.graceMs;
    // The repository's lock is held: its reads may overlap (`READS` at a time), in order.
    const tags: TagFact[] = [];
    const tagNames = [...((await meta.listTags(name)) ?? [])];
    for (
      const fact of await inOrder(tagNames, async (tag) => {
        const [digest, info] = await Promise.all([
          meta.getTag(name, tag),
          meta.writtenAt("tag", name, tag),
        ]);
        return digest !== null && info !== null ? { tag, digest, pushedAt: info } : null;
      })
    ) if (fact !== null) tags.push(fact);
    const revisions: RevisionFact[] = [];
    const records = new Map<Digest, RevisionRecord>();
    const read = await inOrder(await meta.listRevisions(name), async (digest) => {
      const [record, info] = await Promise.all([
        meta.getRevision(name, digest),
        meta.writtenAt("revision", name, digest),
      ]);
      if (record === null || info === null) return null;
      return { digest, record, info, refs: record.refs ?? await this.#refsOf(digest, record) };
    });
    for (const entry of read) {
      if (entry === null) continue;
      const { digest, record, info, refs } = entry;
      records.set(digest, record);
      revisions.push({
        digest,
        isIndex: isIndexMediaType(record.mediaType),
        refs,
        subject: record.subject ?? null,
        pushedAt: info,
        touchedAt: activity.lastTouch(digest),
        pulledAt: activity.lastPull(name, digest),
      });
    }
    const decision = this.#retention.decide(name, {
      tags,
      revisions,
      now,
      graceMs: grace,
      deleteOrphanReferrers: config.deleteOrphanReferrers,
    });
    for (const t of decision.tags) {
      this.#check();
      if (!dryRun) await meta.deleteTag(name, t.tag as Tag);
      draft.counts.tags++;
      if (draft.tags.length < REPORT_ITEMS) {
        draft.tags.push({ repository: name, tag: t.tag, digest: t.digest });
      }
    }
    for (const digest of decision.revisions) {
      this.#check();
      if (!dryRun) {
        const subject = records.get(digest)?.subject;
        if (subject) await meta.deleteReferrer(name, subject, digest);
        await meta.deleteRevision(name, digest);
      }
      draft.counts.manifests++;
      if (draft.manifests.length < REPORT_ITEMS) {
        draft.manifests.push({ repository: name, digest });
      }
    }
    const needed = new Set<Digest>();
    for (const r of revisions) {
      if (!decision.kept.has(r.digest)) continue;
      referenced.add(r.digest);
      if (!r.isIndex) { for (const ref of r.refs) needed.add(ref); }
    }
    const unneeded: Digest[] = [];
    for (const digest of await meta.listLayers(name)) {
      if (needed.has(digest)) referenced.add(digest);
      else unneeded.push(digest);
    }
    const linked = await inOrder(unneeded, (digest) => meta.writtenAt("link", name, digest));
    for (const [i, digest] of unneeded.entries()) {
      const touched = Math.max(activity.lastTouch(digest), linked[i] ?? now);
      if (this.#now() - touched < grace) {
        referenced.add(digest);
        continue;
      }
      this.#check();
      await this.#probe("link", `${name}@${digest}`);
      if (!dryRun) await meta.unlinkLayer(name, digest, { lazy: true });
      draft.counts.links++;
      if (draft.links.length < REPORT_ITEMS) draft.links.push({ repository: name, digest });
    }
  }

  /** The references of a record written before records carried them. */
  async #refsOf(digest: Digest, record: RevisionRecord): Promise<Digest[]> {
    const bytes = await this.#deps.blobs.read(digest);
    if (bytes === null) return [];
    try {
      return referencesOf(parseManifest(bytes, record.mediaType));
    } catch {
      return [];
    }
  }

  /** Deletes the bytes of every blob nothing references, each re-checked under its lock. */
  async #sweepBlobs(dryRun: boolean, draft: Draft, referenced: Set<Digest>): Promise<void> {
    const { blobs, driver, locks, activity, config } = this.#deps;
    // A live upload's bytes may be stored at their blob's key already (S3: see `WholeBytes`).
    const held = await this.#deps.uploads.heldDigests();
    const candidates: Digest[] = [];
    for await (const digest of blobs.list()) {
      if (!referenced.has(digest) && !held.has(digest)) candidates.push(digest);
    }
    try {
      for (const digest of candidates) {
        this.#check();
        const sweep = async () => {
          const info = await driver.stat(blobKey(digest));
          if (info === null) return; // gone already
          const touched = Math.max(activity.lastTouch(digest), info.modifiedAt);
          if (this.#now() - touched < config.graceMs) return;
          if (!dryRun) {
            if (await this.#stillReferenced(digest)) {
              draft.spared++;
              return;
            }
            await this.#probe("blob", digest);
            if (!(await blobs.delete(digest, { lazy: true }))) return;
          }
          draft.counts.blobs++;
          draft.bytesFreed += info.size;
          if (draft.blobs.length < REPORT_ITEMS) draft.blobs.push({ digest, size: info.size });
        };
        if (dryRun) await sweep();
        else await locks.run(blobLock(digest), sweep);
      }
    } finally {
      if (!dryRun) await driver.settle?.();
    }
  }

  /**
   * Whether the blob was linked or stored as a revision since the mark began (under its blob
   * lock, which every such path holds while it touches the blob).
   */
  async #stillReferenced(digest: Digest): Promise<boolean> {
    const { activity, meta } = this.#deps;
    if (activity.touchedInWindow(digest)) return true;
    return (await meta.blobReferenced?.(digest)) ?? false;
  }
}
