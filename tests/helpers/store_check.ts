/**
 * Test helper: checks a registry data root for corruption, offline, without the registry.
 *
 * - every file under `blobs/<alg>/<xx>/` is named by the digest of its bytes;
 * - every layer link names a stored blob; every manifest revision names a stored blob of the
 *   recorded size; every tag names a revision of its repository; every referrers entry names
 *   a revision of its repository;
 * - no symbolic link anywhere (the registry never makes one).
 *
 * `.tmp-*` files (an atomic write cut short by a crash) and upload session folders are not
 * problems; they are reported separately.
 */

import { createHash } from "node:crypto";
import { join } from "node:path";

/** What `checkStore` found. */
export interface StoreReport {
  /** One sentence per problem; empty when the store is sound. */
  readonly problems: string[];
  /** Digests of the blob files (all verified). */
  readonly blobs: Set<string>;
  /** `repo@digest` of every manifest revision. */
  readonly revisions: Set<string>;
  /** `repo:tag` -> digest. */
  readonly tags: Map<string, string>;
  /** `repo@digest` of every layer link. */
  readonly layers: Set<string>;
  /** Upload session folder names. */
  readonly uploads: string[];
  /** Paths (relative to the root) of leftover `.tmp-*` files. */
  readonly temporaries: string[];
}

const HEX = { sha256: /^[0-9a-f]{64}$/, sha512: /^[0-9a-f]{128}$/ } as const;
const DIGEST_RE = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;

async function entries(dir: string): Promise<Deno.DirEntry[]> {
  const out: Deno.DirEntry[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) out.push(entry);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

async function hashFile(path: string, algorithm: "sha256" | "sha512"): Promise<string> {
  const hash = createHash(algorithm);
  using file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(256 * 1024);
  for (;;) {
    const n = await file.read(buffer);
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
  }
  return hash.digest("hex");
}

async function readText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Checks a data root; never throws for a problem in the store, only for an unreadable one. */
export async function checkStore(root: string): Promise<StoreReport> {
  const report: StoreReport = {
    problems: [],
    blobs: new Set(),
    revisions: new Set(),
    tags: new Map(),
    layers: new Set(),
    uploads: [],
    temporaries: [],
  };
  const { problems } = report;
  const rel = (path: string) => path.slice(root.length + 1);
  const plain = (entry: Deno.DirEntry, path: string, want: "file" | "dir") => {
    if (entry.isSymlink) {
      problems.push(`${rel(path)} is a symbolic link`);
      return false;
    }
    if (entry.name.startsWith(".tmp-") && entry.isFile) {
      report.temporaries.push(rel(path));
      return false;
    }
    if (want === "file" ? !entry.isFile : !entry.isDirectory) {
      problems.push(`${rel(path)} is not a ${want === "file" ? "file" : "folder"}`);
      return false;
    }
    return true;
  };

  // Blobs.
  const blobSizes = new Map<string, number>();
  const blobsDir = join(root, "blobs");
  for (const alg of await entries(blobsDir)) {
    const algDir = join(blobsDir, alg.name);
    if (!plain(alg, algDir, "dir")) continue;
    if (alg.name !== "sha256" && alg.name !== "sha512") {
      problems.push(`blobs/${alg.name} is not a known algorithm`);
      continue;
    }
    const algorithm = alg.name;
    for (const prefix of await entries(algDir)) {
      const prefixDir = join(algDir, prefix.name);
      if (!plain(prefix, prefixDir, "dir")) continue;
      for (const blob of await entries(prefixDir)) {
        const path = join(prefixDir, blob.name);
        if (!plain(blob, path, "file")) continue;
        if (!HEX[algorithm].test(blob.name) || !blob.name.startsWith(prefix.name)) {
          problems.push(`${rel(path)} is not named <hex> under its two-character prefix`);
          continue;
        }
        const actual = await hashFile(path, algorithm);
        if (actual !== blob.name) {
          problems.push(`${rel(path)} holds bytes with ${algorithm} ${actual}`);
          continue;
        }
        const digest = `${algorithm}:${blob.name}`;
        report.blobs.add(digest);
        blobSizes.set(digest, (await Deno.stat(path)).size);
      }
    }
  }

  // Repositories: a folder holding `_layers` or `_manifests` is a repository.
  const repositories: string[] = [];
  const walk = async (dir: string, name: string) => {
    const list = await entries(dir);
    if (name && list.some((e) => e.name === "_layers" || e.name === "_manifests")) {
      repositories.push(name);
    }
    for (const entry of list) {
      if (entry.name.startsWith("_")) continue;
      const path = join(dir, entry.name);
      if (!plain(entry, path, "dir")) continue;
      await walk(path, name ? `${name}/${entry.name}` : entry.name);
    }
  };
  await walk(join(root, "repositories"), "");

  // Files named <alg>/<hex> under a folder, as digests.
  const digestFiles = async (dir: string): Promise<{ digest: string; path: string }[]> => {
    const out: { digest: string; path: string }[] = [];
    for (const alg of await entries(dir)) {
      const algDir = join(dir, alg.name);
      if (!plain(alg, algDir, "dir")) continue;
      for (const file of await entries(algDir)) {
        const path = join(algDir, file.name);
        if (!plain(file, path, "file")) continue;
        const digest = `${alg.name}:${file.name}`;
        if (!DIGEST_RE.test(digest)) problems.push(`${rel(path)} is not named by a digest`);
        else out.push({ digest, path });
      }
    }
    return out;
  };

  for (const name of repositories) {
    const repoDir = join(root, "repositories", name);
    for (const { digest, path } of await digestFiles(join(repoDir, "_layers"))) {
      report.layers.add(`${name}@${digest}`);
      const text = await readText(path);
      if (text !== null && text.trim() !== digest) {
        problems.push(`${rel(path)} names ${JSON.stringify(text.slice(0, 80))}`);
      }
      if (!blobSizes.has(digest)) problems.push(`layer link ${name}@${digest} has no blob`);
    }
    const revisions = join(repoDir, "_manifests", "revisions");
    for (const { digest, path } of await digestFiles(revisions)) {
      report.revisions.add(`${name}@${digest}`);
      const size = blobSizes.get(digest);
      if (size === undefined) {
        problems.push(`revision ${name}@${digest} has no blob`);
        continue;
      }
      const text = (await readText(path)) ?? "";
      try {
        const record = JSON.parse(text) as { size?: unknown; mediaType?: unknown };
        if (record.size !== size || typeof record.mediaType !== "string") {
          problems.push(`revision ${name}@${digest} records ${text}, blob has ${size} bytes`);
        }
      } catch {
        problems.push(`revision ${name}@${digest} is not JSON: ${JSON.stringify(text)}`);
      }
    }
    const tagsDir = join(repoDir, "_manifests", "tags");
    for (const entry of await entries(tagsDir)) {
      const path = join(tagsDir, entry.name);
      if (!plain(entry, path, "file")) continue;
      const text = ((await readText(path)) ?? "").trim();
      report.tags.set(`${name}:${entry.name}`, text);
      if (!DIGEST_RE.test(text)) {
        problems.push(`tag ${name}:${entry.name} holds ${JSON.stringify(text.slice(0, 80))}`);
      } else if (!report.revisions.has(`${name}@${text}`)) {
        problems.push(`tag ${name}:${entry.name} points to ${text}, not a revision of ${name}`);
      }
    }
    const referrersDir = join(repoDir, "_referrers");
    for (const alg of await entries(referrersDir)) {
      for (const subject of await entries(join(referrersDir, alg.name))) {
        const dir = join(referrersDir, alg.name, subject.name);
        for (const entry of await entries(dir)) {
          const path = join(dir, entry.name);
          if (!plain(entry, path, "file")) continue;
          const digest = entry.name.replace("-", ":");
          if (!report.revisions.has(`${name}@${digest}`)) {
            problems.push(`referrer ${rel(path)} names ${digest}, not a revision of ${name}`);
          }
          try {
            const descriptor = JSON.parse((await readText(path)) ?? "") as { digest?: string };
            if (descriptor.digest !== digest) problems.push(`referrer ${rel(path)} is wrong`);
          } catch {
            problems.push(`referrer ${rel(path)} is not JSON`);
          }
        }
      }
    }
  }

  for (const entry of await entries(join(root, "uploads"))) {
    const path = join(root, "uploads", entry.name);
    if (!plain(entry, path, "dir")) continue;
    report.uploads.push(entry.name);
  }
  return report;
}

/** Every path under `dir` (relative, sorted), folders with a trailing `/`; symlinks not followed. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (path: string, prefix: string) => {
    for (const entry of await entries(path)) {
      const name = `${prefix}${entry.name}`;
      if (entry.isDirectory) {
        out.push(`${name}/`);
        await walk(join(path, entry.name), `${name}/`);
      } else {
        out.push(name);
      }
    }
  };
  await walk(dir, "");
  return out.sort();
}

/**
 * A fingerprint of the stored content: every file under blobs/ and repositories/ with its size
 * and modification time, ignoring `.tmp-*` files. Equal fingerprints mean nothing was changed.
 */
export async function storeFingerprint(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (path: string, prefix: string) => {
    for (const entry of await entries(path)) {
      const name = `${prefix}${entry.name}`;
      const full = join(path, entry.name);
      if (entry.isDirectory) await walk(full, `${name}/`);
      else if (!entry.name.startsWith(".tmp-")) {
        const info = await Deno.lstat(full);
        out.set(name, `${info.size}:${info.mtime?.getTime()}:${entry.isSymlink ? "link" : ""}`);
      }
    }
  };
  await walk(join(root, "blobs"), "blobs/");
  await walk(join(root, "repositories"), "repositories/");
  return out;
}
