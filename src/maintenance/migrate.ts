/**
 * Moving a filesystem store into a scale-out target (`deno task migrate-to-s3`, see
 * `migrate_cli.ts`): blob bytes into a storage driver (S3), repository metadata into a
 * metadata store (PostgreSQL), then a verification of what the target holds.
 *
 * Only the interfaces are used (`StorageDriver`, `MetadataStore`), so the same code moves a
 * store between any two drivers; the tests also run it against wrapped drivers.
 *
 * Blobs. Each blob is read from the source once, streamed and hashed on the way: a blob of at
 * most SMALL_BLOB bytes is put whole (one request), a larger one is appended to a temporary
 * object under `_migrate/` and moved to its key only when the bytes sent hash to its digest,
 * so a blob key in the target only ever receives bytes that match their name, whole (a put
 * and a move replace atomically). A source blob whose bytes do not match its name is a
 * finding and is not copied. Every blob key of the target is then re-read and hashed: a blob
 * already in the target (an earlier run) is skipped only once it re-reads to its digest; one
 * that does not is copied again. So a re-run after an interruption copies only what is
 * missing or damaged, and every run ends with every blob verified.
 *
 * Each blob copied or found whole in the target is then recorded with its size in the
 * target's table of stored blobs (`targetSizes`), which the replicas answer a HEAD from.
 *
 * Metadata. Per repository, in the source's name order: layer links, manifest revisions
 * (their records: media type, size, subject, references), referrer entries, then tags (last,
 * so a tag in the target never names a manifest whose record is not there yet). Each entry is
 * compared with the target's first and written only when missing or different; every write is
 * an upsert, so a re-run is harmless. Then the target is compared with the source: the same
 * repositories, links, revision records, referrer entries, and every tag resolving to the same
 * manifest digest.
 *
 * The activity journal (`gc/activity/`: the collector's grace and pull-based retention) and
 * the queued notification events (`events/`) are small objects copied as they are, under the
 * same keys, and read back. The data root's format record is copied when the target has none.
 * Not moved: upload sessions in progress (clients restart them) and the token issuer's
 * generated signing key (a private key: not put into a bucket without the operator's say).
 */

import { createHash } from "node:crypto";
import { digestAlgorithm, isDigest } from "../digest/digest.ts";
import { DriverBlobStore } from "../storage/blobs.ts";
import type { StorageDriver } from "../storage/driver.ts";
import {
  ACTIVITY_AREA,
  AREAS,
  blobKey,
  EVENTS_AREA,
  FORMAT_KEY,
  repositoryKey,
} from "../storage/keys.ts";
import { LocalMetadataStore } from "../storage/metadata/local.ts";
import type { MetadataStore, RevisionRecord } from "../storage/metadata/metadata.ts";
import { sqlState } from "../storage/postgres/client.ts";
import type { Digest, RepositoryName } from "../types/oci.ts";

/**
 * Blobs up to this size are read into memory and put in one request (at most `jobs` of them
 * held at once: 32 MiB with the default 4); larger ones stream through a temporary object,
 * which costs the object store a second write (the driver's move of an appended object).
 */
export const SMALL_BLOB = 8 * 1024 * 1024;
/** Where large blobs are assembled in the target before their move to the blob key. */
export const TEMP_AREA = "_migrate";

/** What the migration found wrong (it copied nothing wrong, but the move is not complete). */
export interface MigrationFinding {
  /**
   * `corrupt-source`: a source blob's bytes do not match its name (not copied);
   * `unreadable-source`: a source entry cannot be read (not copied);
   * `blob-mismatch`: a blob in the target does not re-read to its digest after a copy;
   * `rejected-by-target`: the database refused an entry (a value breaking its constraints);
   * `metadata-mismatch`: the target's metadata differs from the source after the copy.
   */
  readonly kind:
    | "corrupt-source"
    | "unreadable-source"
    | "blob-mismatch"
    | "rejected-by-target"
    | "metadata-mismatch";
  readonly subject: string;
  readonly detail: string;
}

/** Counts of one kind of entry: in the source, copied by this run, already in the target. */
export interface Tally {
  total: number;
  copied: number;
  present: number;
}

/** What a run did. */
export interface MigrationReport {
  readonly dryRun: boolean;
  readonly repositories: number;
  readonly blobs: Tally;
  /** Bytes of the blobs: all of them, the copied ones, the ones already there. */
  readonly bytes: Tally;
  readonly links: Tally;
  readonly manifests: Tally;
  readonly referrers: Tally;
  readonly tags: Tally;
  /** Objects of the activity journal and the event queues, copied as they are. */
  readonly journal: Tally;
  /** Upload sessions in progress in the source, which are not copied. */
  readonly uploadsNotCopied: number;
  /** Blobs re-read from the target and hashed to their digest (0 in a dry run). */
  readonly verifiedBlobs: number;
  /** Tags that resolve to the same manifest digest in the target (0 in a dry run). */
  readonly verifiedTags: number;
  readonly findings: MigrationFinding[];
  /** Wall-clock time of the run, milliseconds. */
  readonly ms: number;
}

/** What `migrate` works on. */
export interface MigrateOptions {
  /** The filesystem store's driver (read only). */
  readonly source: StorageDriver;
  /** The target's byte store (S3). */
  readonly target: StorageDriver;
  /** The target's metadata store (PostgreSQL). */
  readonly targetMeta: MetadataStore;
  /**
   * The target's record of stored blobs' sizes (the `blobs` table of the scale-out mode), told
   * of every blob once it is copied or found whole in the target: the replicas then answer its
   * HEAD from the database. Absent: sizes are not recorded (the replicas ask the bucket).
   */
  readonly targetSizes?: { record(digest: Digest, size: number): Promise<void> };
  /** Only say what would be copied: nothing is written, nothing re-read. */
  readonly dryRun?: boolean;
  /** Blobs copied at the same time (default 4). */
  readonly jobs?: number;
  /** Progress lines (a line every `progressEveryMs` while blobs are copied). */
  readonly progress?: (line: string) => void;
  readonly progressEveryMs?: number;
}

function tally(): Tally {
  return { total: 0, copied: 0, present: 0 };
}

/** Copies the source store into the target, then verifies it; see the module comment. */
export async function migrate(options: MigrateOptions): Promise<MigrationReport> {
  const started = performance.now();
  const { source, target, targetMeta } = options;
  const dryRun = options.dryRun ?? false;
  const findings: MigrationFinding[] = [];
  const report = {
    dryRun,
    repositories: 0,
    blobs: tally(),
    bytes: tally(),
    links: tally(),
    manifests: tally(),
    referrers: tally(),
    tags: tally(),
    journal: tally(),
    uploadsNotCopied: (await source.list(AREAS.uploads)).length,
    verifiedBlobs: 0,
    verifiedTags: 0,
    findings,
    ms: 0,
  };

  if (!dryRun) {
    // What an interrupted run left half-assembled is never a blob: start clean.
    await target.deleteAll(TEMP_AREA);
    if ((await target.get(FORMAT_KEY)) === null) {
      const format = await source.get(FORMAT_KEY);
      if (format !== null) await target.put(FORMAT_KEY, format);
    }
  }

  // Blobs.
  const blobs: { digest: Digest; size: number }[] = [];
  for await (const digest of new DriverBlobStore(source).list()) {
    const info = await source.stat(blobKey(digest));
    if (info !== null) blobs.push({ digest, size: info.size });
  }
  blobs.sort((a, b) => a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0);
  report.blobs.total = blobs.length;
  report.bytes.total = blobs.reduce((sum, b) => sum + b.size, 0);
  const every = options.progressEveryMs ?? 10_000;
  let lastProgress = performance.now();
  let done = 0;
  let doneBytes = 0;
  await eachLimited(blobs, options.jobs ?? 4, async ({ digest, size }) => {
    const outcome = dryRun
      ? await plannedBlob(target, digest, size)
      : await copyBlob(source, target, digest, size);
    if (outcome === "copied" || outcome === "present") {
      // After the bytes are verified in the target: a row never names bytes that are not
      // there. No blob lock is taken: the move is made before replicas serve the target (a
      // collection running there meanwhile would miss the links copied next just as well).
      if (!dryRun) await options.targetSizes?.record(digest, size);
      report.blobs[outcome]++;
      report.bytes[outcome] += size;
      if (!dryRun) report.verifiedBlobs++;
    } else {
      findings.push(outcome);
    }
    done++;
    doneBytes += size;
    if (options.progress && performance.now() - lastProgress >= every) {
      lastProgress = performance.now();
      options.progress(
        `${done}/${blobs.length} blobs, ${mib(doneBytes)} of ${mib(report.bytes.total)}`,
      );
    }
  });
  if (!dryRun) await target.deleteAll(TEMP_AREA);

  // Metadata.
  const sourceMeta = new LocalMetadataStore(source);
  const names = await sourceMeta.listRepositories();
  report.repositories = names.length;
  for (const name of names) {
    await copyRepository(source, sourceMeta, targetMeta, name, dryRun, report);
  }

  // The activity journal (the collector's grace and pull-based retention) and undelivered
  // events: small objects under the same keys.
  for (const area of [ACTIVITY_AREA, EVENTS_AREA]) {
    for (const key of await objectsUnder(source, area)) {
      report.journal.total++;
      const bytes = await source.get(key);
      if (bytes === null) continue;
      const there = await target.get(key);
      if (there !== null && sameBytes(there, bytes)) report.journal.present++;
      else {
        if (!dryRun) {
          await target.put(key, bytes);
          const back = await target.get(key);
          if (back === null || !sameBytes(back, bytes)) {
            findings.push({ kind: "blob-mismatch", subject: key, detail: "reads back different" });
          }
        }
        report.journal.copied++;
      }
    }
  }

  if (!dryRun) {
    const targetNames = await targetMeta.listRepositories();
    if (!sameNames(targetNames, names)) {
      findings.push({
        kind: "metadata-mismatch",
        subject: "repositories",
        detail: `the source has ${names.length} repositories, the target ${targetNames.length}` +
          differences(names, targetNames),
      });
    }
    for (const name of names) report.verifiedTags += await verifyRepository(name);
    let targetBlobs = 0;
    for await (const _ of new DriverBlobStore(target).list()) targetBlobs++;
    const expected = report.blobs.copied + report.blobs.present;
    if (targetBlobs !== expected) {
      findings.push({
        kind: "metadata-mismatch",
        subject: "blobs",
        detail: `${expected} blobs copied or verified, the target holds ${targetBlobs}`,
      });
    }
  }
  report.ms = performance.now() - started;
  return report;

  /** Compares one repository's metadata in the target with the source; the tags verified. */
  async function verifyRepository(name: RepositoryName): Promise<number> {
    const mismatch = (what: string, detail: string) =>
      findings.push({ kind: "metadata-mismatch", subject: `${name} ${what}`, detail });
    const [sourceLinks, targetLinks] = await Promise.all([
      sourceMeta.listLayers(name),
      targetMeta.listLayers(name),
    ]);
    if (!sameNames(sourceLinks, targetLinks)) {
      mismatch("links", differences(sourceLinks, targetLinks));
    }
    const [sourceRevisions, targetRevisions] = await Promise.all([
      sourceMeta.listRevisions(name),
      targetMeta.listRevisions(name),
    ]);
    if (!sameNames(sourceRevisions, targetRevisions)) {
      mismatch("manifests", differences(sourceRevisions, targetRevisions));
    }
    for (const digest of sourceRevisions) {
      const [a, b] = await Promise.all([
        sourceMeta.getRevision(name, digest),
        targetMeta.getRevision(name, digest),
      ]);
      if (a !== null && !sameRecord(a, b)) {
        mismatch(digest, `record ${JSON.stringify(a)} in the source, ${JSON.stringify(b)}`);
      }
    }
    for (const [subject, entries] of await sourceReferrers(source, name)) {
      const want = entries.map((e) => e.descriptor);
      const have = await targetMeta.listReferrers(name, subject);
      if (!sameNames(want, have)) {
        mismatch(
          `referrers of ${subject}`,
          `${want.length} in the source, ${have.length} in the target`,
        );
      }
    }
    const sourceTags = (await sourceMeta.listTags(name)) ?? [];
    const targetTags = (await targetMeta.listTags(name)) ?? [];
    if (!sameNames(sourceTags, targetTags)) mismatch("tags", differences(sourceTags, targetTags));
    let verified = 0;
    for (const tag of sourceTags) {
      const want = await sourceMeta.getTag(name, tag);
      if (want === null) continue; // an unreadable-source finding already
      const have = await targetMeta.getTag(name, tag);
      if (have !== want) mismatch(`tag ${tag}`, `${want} in the source, ${have} in the target`);
      else if ((await target.stat(blobKey(want))) === null) {
        mismatch(`tag ${tag}`, `manifest ${want} has no blob in the target`);
      } else verified++;
    }
    return verified;
  }
}

/** In a dry run: whether the blob would be copied (absent or of another size). */
async function plannedBlob(
  target: StorageDriver,
  digest: Digest,
  size: number,
): Promise<"copied" | "present"> {
  const info = await target.stat(blobKey(digest));
  return info !== null && info.size === size ? "present" : "copied";
}

/**
 * Makes the target hold the blob, verified: skipped when the target's object re-reads to the
 * digest, else copied (hashing the source bytes on the way) and re-read.
 */
async function copyBlob(
  source: StorageDriver,
  target: StorageDriver,
  digest: Digest,
  size: number,
): Promise<"copied" | "present" | MigrationFinding> {
  const key = blobKey(digest);
  const there = await target.stat(key);
  if (there !== null && there.size === size && (await hashOf(target, key, digest)) === digest) {
    return "present";
  }
  const reader = await source.read(key);
  if (reader === null) {
    return {
      kind: "unreadable-source",
      subject: digest,
      detail: "the blob vanished from the source",
    };
  }
  const hash = createHash(digestAlgorithm(digest));
  let sent = 0;
  if (size <= SMALL_BLOB) {
    const bytes = new Uint8Array(size);
    for await (const chunk of reader.stream) {
      if (sent + chunk.length > size) {
        return corrupt(digest, `more than its ${size} bytes`);
      }
      bytes.set(chunk, sent);
      hash.update(chunk);
      sent += chunk.length;
    }
    const got = `${digestAlgorithm(digest)}:${hash.digest("hex")}`;
    if (sent !== size || got !== digest) return corrupt(digest, `${sent} bytes hashing to ${got}`);
    await target.put(key, bytes);
  } else {
    const temp = `${TEMP_AREA}/${crypto.randomUUID()}`;
    await target.create(temp);
    let complete = false;
    try {
      const writer = await target.append(temp, 0);
      try {
        for await (const chunk of reader.stream) {
          hash.update(chunk);
          await writer.write(chunk);
          sent += chunk.length;
        }
        await writer.sync();
      } finally {
        writer.close();
      }
      const got = `${digestAlgorithm(digest)}:${hash.digest("hex")}`;
      if (sent !== size || got !== digest) {
        return corrupt(digest, `${sent} bytes hashing to ${got}`);
      }
      await target.move(temp, key);
      complete = true;
    } finally {
      if (!complete) await target.delete(temp).catch(() => false);
    }
  }
  const reread = await hashOf(target, key, digest);
  if (reread !== digest) {
    // A blob key never keeps bytes that do not match its name: the registry would serve them.
    await target.delete(key);
    return {
      kind: "blob-mismatch",
      subject: digest,
      detail: `copied, but the target's object re-read as ${reread ?? "nothing"}; deleted ` +
        "(run again to copy it again)",
    };
  }
  return "copied";
}

function corrupt(digest: Digest, detail: string): MigrationFinding {
  return {
    kind: "corrupt-source",
    subject: digest,
    detail: `the source blob holds ${detail}; not copied (run deno task fsck on the data root)`,
  };
}

/** The digest of an object's bytes (in the digest's algorithm), or null when it is absent. */
async function hashOf(driver: StorageDriver, key: string, digest: Digest): Promise<string | null> {
  const reader = await driver.read(key);
  if (reader === null) return null;
  const hash = createHash(digestAlgorithm(digest));
  for await (const chunk of reader.stream) hash.update(chunk);
  return `${digestAlgorithm(digest)}:${hash.digest("hex")}`;
}

/** Every object key under `prefix`, depth first. */
async function objectsUnder(driver: StorageDriver, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for (const child of await driver.list(prefix)) {
    const key = `${prefix}/${child}`;
    if ((await driver.stat(key)) !== null) out.push(key);
    else out.push(...await objectsUnder(driver, key));
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A referrer entry of the source: subject, referrer, descriptor text. */
interface ReferrerEntry {
  readonly referrer: Digest;
  readonly descriptor: string;
}

/**
 * The referrer entries of a repository in the source, by subject (the metadata interface lists
 * referrers of a known subject only; the subjects are the folders of the layout in keys.ts).
 */
async function sourceReferrers(
  source: StorageDriver,
  name: RepositoryName,
): Promise<Map<Digest, ReferrerEntry[]>> {
  const out = new Map<Digest, ReferrerEntry[]>();
  const base = `${repositoryKey(name)}/_referrers`;
  const decoder = new TextDecoder();
  for (const algorithm of await source.list(base)) {
    for (const hex of await source.list(`${base}/${algorithm}`)) {
      const subject = `${algorithm}:${hex}`;
      if (!isDigest(subject)) continue;
      const entries: ReferrerEntry[] = [];
      for (const entry of await source.list(`${base}/${algorithm}/${hex}`)) {
        const referrer = entry.replace("-", ":");
        if (!isDigest(referrer)) continue;
        const bytes = await source.get(`${base}/${algorithm}/${hex}/${entry}`);
        if (bytes !== null) entries.push({ referrer, descriptor: decoder.decode(bytes) });
      }
      if (entries.length > 0) out.set(subject, entries);
    }
  }
  return out;
}

/** Copies one repository's metadata, each entry only when the target lacks it or differs. */
async function copyRepository(
  source: StorageDriver,
  sourceMeta: MetadataStore,
  targetMeta: MetadataStore,
  name: RepositoryName,
  dryRun: boolean,
  report: {
    links: Tally;
    manifests: Tally;
    referrers: Tally;
    tags: Tally;
    findings: MigrationFinding[];
  },
): Promise<void> {
  // Writes one entry; an entry the database refuses (a data exception or a constraint, SQLSTATE
  // class 22 or 23) is a finding, and the copy goes on; anything else stops the run.
  const write = async (subject: string, fn: () => Promise<void>): Promise<boolean> => {
    if (dryRun) return true;
    try {
      await fn();
      return true;
    } catch (error) {
      const state = sqlState(error);
      if (state === null || !/^2[23]/.test(state)) throw error;
      report.findings.push({
        kind: "rejected-by-target",
        subject,
        detail: `the database refused it (SQLSTATE ${state}: ${
          (error as Error).message.split("\n")[0]
        }); not copied`,
      });
      return false;
    }
  };
  for (const digest of await sourceMeta.listLayers(name)) {
    report.links.total++;
    if (await targetMeta.hasLayer(name, digest)) report.links.present++;
    else {
      if (await write(`${name} link ${digest}`, () => targetMeta.linkLayer(name, digest))) {
        report.links.copied++;
      }
    }
  }
  for (const digest of await sourceMeta.listRevisions(name)) {
    report.manifests.total++;
    const record = await sourceMeta.getRevision(name, digest);
    if (record === null) {
      report.findings.push({
        kind: "unreadable-source",
        subject: `${name}@${digest}`,
        detail: "the manifest revision record cannot be read; not copied",
      });
      continue;
    }
    if (sameRecord(record, await targetMeta.getRevision(name, digest))) report.manifests.present++;
    else {
      if (await write(`${name}@${digest}`, () => targetMeta.putRevision(name, digest, record))) {
        report.manifests.copied++;
      }
    }
  }
  for (const [subject, entries] of await sourceReferrers(source, name)) {
    const have = new Set(await targetMeta.listReferrers(name, subject));
    for (const { referrer, descriptor } of entries) {
      report.referrers.total++;
      if (have.has(descriptor)) report.referrers.present++;
      else {
        const copied = await write(
          `${name} referrer ${referrer} of ${subject}`,
          () => targetMeta.putReferrer(name, subject, referrer, descriptor),
        );
        if (copied) report.referrers.copied++;
      }
    }
  }
  for (const tag of (await sourceMeta.listTags(name)) ?? []) {
    report.tags.total++;
    const digest = await sourceMeta.getTag(name, tag);
    if (digest === null) {
      report.findings.push({
        kind: "unreadable-source",
        subject: `${name}:${tag}`,
        detail: "the tag does not name a digest; not copied",
      });
      continue;
    }
    if ((await targetMeta.getTag(name, tag)) === digest) report.tags.present++;
    else {
      if (await write(`${name}:${tag}`, () => targetMeta.putTag(name, tag, digest))) {
        report.tags.copied++;
      }
    }
  }
}

/** Whether two revision records say the same (refs absent and refs given differ). */
function sameRecord(a: RevisionRecord, b: RevisionRecord | null): boolean {
  if (b === null) return false;
  return a.mediaType === b.mediaType && a.size === b.size &&
    (a.subject ?? null) === (b.subject ?? null) &&
    (a.refs === undefined) === (b.refs === undefined) &&
    sameList(a.refs ?? [], b.refs ?? []);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Whether two lists hold the same names, in any order (stores may sort by another collation). */
function sameNames(a: readonly string[], b: readonly string[]): boolean {
  const order = (x: string, y: string) => x < y ? -1 : x > y ? 1 : 0;
  return sameList([...a].sort(order), [...b].sort(order));
}

/** `: missing a, b; extra c` (at most three names of each). */
function differences(want: readonly string[], have: readonly string[]): string {
  const inHave = new Set(have);
  const inWant = new Set(want);
  const missing = want.filter((x) => !inHave.has(x));
  const extra = have.filter((x) => !inWant.has(x));
  const few = (list: string[]) =>
    list.slice(0, 3).join(", ") + (list.length > 3 ? ` and ${list.length - 3} more` : "");
  const parts = [];
  if (missing.length > 0) parts.push(`missing in the target: ${few(missing)}`);
  if (extra.length > 0) parts.push(`only in the target: ${few(extra)}`);
  return parts.length > 0 ? `: ${parts.join("; ")}` : " (another order)";
}

/** Runs `fn` on every item, at most `jobs` at a time; stops at the first error and throws it. */
async function eachLimited<T>(
  items: readonly T[],
  jobs: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | null = null;
  const worker = async () => {
    while (failure === null && next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, items.length)) }, worker));
  if (failure !== null) throw (failure as { error: unknown }).error;
}

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
