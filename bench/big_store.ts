/**
 * `deno task bench:big-store`: the registry on a big store. Writes a store of many manifests
 * directly in our on-disk layout (and a smaller one in CNCF Distribution's, as the comparison),
 * starts the registry on it and measures what an operator sees:
 *
 * - start-up: from spawning the process to `/v2/` answering;
 * - resident memory at rest, after touching every repository (a manifest GET in each) and
 *   the peak over the whole session;
 * - `_catalog`: the first page (`n=100`, the first request after start) and a full walk
 *   (`n=1000`, following `Link`);
 * - the tag list of a repository of `--big-tags` tags;
 * - the manifest GET rate over a random spread of repositories and tags (bench/load.ts with
 *   `--paths`), cold (the first run after start) and warm (the next run).
 *
 * The store: `--repositories` repositories named `orgNNN/appNNNNN`, plus `big/tags`, which
 * holds `--big-tags` manifests; the other manifests are spread evenly. Each repository has one
 * config and one layer blob; each manifest is an OCI image manifest naming them, with an
 * annotation making it unique, tagged `vN`. Every file is what a push through the API writes
 * (tests/bench/big_store_test.ts checks that the registry serves it whole).
 *
 * Usage: deno run -A bench/big_store.ts [--manifests 1000000] [--repositories 20000]
 *          [--big-tags 10000] [--distribution-manifests 100000] [--seconds 5] [--dir PARENT]
 *          [--keep] [--reuse WORKDIR] [--skip-distribution]
 *
 * `--keep` leaves the stores (and their write figures, `<store>.json`) in the work folder;
 * `--reuse WORKDIR` measures such a folder's stores again without rewriting them (a store not
 * in it is written); a reused folder is never removed.
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { runLoadProcess } from "./ceilings.ts";
import { Http1 } from "./http1.ts";
import { type Server, startDistribution, startOurs } from "./servers.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const encoder = new TextEncoder();

/** The shape of a generated store. */
export interface StorePlan {
  readonly manifests: number;
  readonly repositories: number;
  readonly bigTags: number;
}

/** The repository of many tags. */
export const BIG_REPOSITORY = "big/tags";

/** Which layout to write: ours (`keys.ts`) or Distribution's (`docker/registry/v2`). */
export type Layout = "ours" | "distribution";

/** Repository names and their manifest counts, `big/tags` first. */
export function repositoriesOf(plan: StorePlan): { name: string; manifests: number }[] {
  const others = Math.max(0, plan.manifests - plan.bigTags);
  const out = [{ name: BIG_REPOSITORY, manifests: Math.min(plan.bigTags, plan.manifests) }];
  const orgs = Math.max(1, Math.ceil(plan.repositories / 100));
  const width = String(plan.repositories).length;
  for (let i = 0; i < plan.repositories; i++) {
    const base = Math.floor(others / plan.repositories);
    const count = base + (i < others % plan.repositories ? 1 : 0);
    const org = `org${String(i % orgs).padStart(3, "0")}`;
    out.push({ name: `${org}/app${String(i).padStart(width, "0")}`, manifests: count });
  }
  return out.filter((r) => r.manifests > 0);
}

function hexOf(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Writes files, creating each folder once (and backdating each file to `mtime`, if given). */
class Writer {
  readonly #made = new Set<string>();
  readonly #mtime: Date | undefined;
  readonly #dry: boolean;
  files = 0;
  bytes = 0;

  /** `dry`: counts what it would write, and writes nothing (a store written before). */
  constructor(mtime?: Date, dry = false) {
    this.#mtime = mtime;
    this.#dry = dry;
  }

  write(path: string, data: Uint8Array | string): void {
    if (this.#dry) {
      this.files++;
      this.bytes += typeof data === "string" ? encoder.encode(data).length : data.length;
      return;
    }
    const dir = dirname(path);
    if (!this.#made.has(dir)) {
      Deno.mkdirSync(dir, { recursive: true });
      this.#made.add(dir);
    }
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    Deno.writeFileSync(path, bytes);
    if (this.#mtime !== undefined) Deno.utimeSync(path, this.#mtime, this.#mtime);
    this.files++;
    this.bytes += bytes.length;
  }
}

/**
 * Garbage in a generated store, for the collection benchmark (bench/gc_bench.ts). Fractions are
 * of the manifests: each manifest is picked (or not) for each kind by a fixed hash of its
 * repository and number, so that both layouts get the same garbage. The first manifest of each
 * repository (`v0`) is always tagged.
 */
export interface GarbagePlan {
  /** Each manifest names a layer of its own (instead of the repository's shared one). */
  readonly uniqueLayers?: boolean;
  /** Manifests written without a tag (a revision only). */
  readonly untagged?: number;
  /** Blobs written with no link in any repository and named by no manifest. */
  readonly unlinked?: number;
  /** Blobs linked into the repository but named by no manifest. */
  readonly linkedUnreferenced?: number;
  /** Each file's modification (and access) time, e.g. older than the collector's grace window. */
  readonly mtime?: Date;
}

/** What a generated store holds, counted as it is written. */
export interface StoreCounts {
  /** Blob files (manifests' bytes included). */
  blobs: number;
  blobBytes: number;
  /** Manifests (revisions) and the untagged ones among them. */
  manifests: number;
  untaggedManifests: number;
  /** Blob files and their bytes that only untagged manifests reach (a unique layer, the manifest). */
  untaggedBlobs: number;
  untaggedBytes: number;
  /** Blob files nothing links and nothing names. */
  unlinkedBlobs: number;
  /** Blob files linked but named by no manifest (each has one link). */
  linkedUnreferencedBlobs: number;
  garbageBytes: number;
}

/** A fixed pseudo-random number in [0, 1) for manifest `j` of repository `r`, per `salt`. */
function pick(r: number, j: number, salt: number): number {
  let h = Math.imul(r + 1, 0x9e3779b1) ^ Math.imul(j + 1, 0x85ebca77) ^ Math.imul(salt, 0xc2b2ae3d);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return (h >>> 0) / 2 ** 32;
}

/** Writes a store of `plan` under `root` in `layout`; returns the request targets to sample. */
export function writeStore(
  root: string,
  plan: StorePlan,
  layout: Layout,
  garbage: GarbagePlan = {},
  options: { readonly dry?: boolean } = {},
): {
  files: number;
  targets: string[];
  every: string[];
  counts: StoreCounts;
} {
  const w = new Writer(garbage.mtime, options.dry ?? false);
  const counts: StoreCounts = {
    blobs: 0,
    blobBytes: 0,
    manifests: 0,
    untaggedManifests: 0,
    untaggedBlobs: 0,
    untaggedBytes: 0,
    unlinkedBlobs: 0,
    linkedUnreferencedBlobs: 0,
    garbageBytes: 0,
  };
  const v2 = layout === "ours" ? root : join(root, "docker", "registry", "v2");
  const blob = (bytes: Uint8Array): string => {
    const hex = hexOf(bytes);
    counts.blobs++;
    counts.blobBytes += bytes.length;
    w.write(
      layout === "ours"
        ? join(v2, "blobs", "sha256", hex.slice(0, 2), hex)
        : join(v2, "blobs", "sha256", hex.slice(0, 2), hex, "data"),
      bytes,
    );
    return hex;
  };
  if (layout === "ours") w.write(join(root, "format.json"), '{"format":1}\n');
  const targets: string[] = [];
  const every: string[] = [];
  const repos = repositoriesOf(plan);
  repos.forEach((repo, r) => {
    const dir = join(v2, "repositories", repo.name);
    const config = encoder.encode(JSON.stringify({ architecture: "amd64", os: "linux", r }));
    const sharedLayer = encoder.encode(`layer of ${repo.name}\n`.repeat(16));
    const link = (hex: string) =>
      w.write(
        layout === "ours"
          ? join(dir, "_layers", "sha256", hex)
          : join(dir, "_layers", "sha256", hex, "link"),
        `sha256:${hex}`,
      );
    const configHex = blob(config);
    const sharedLayerHex = garbage.uniqueLayers ? null : blob(sharedLayer);
    link(configHex);
    if (sharedLayerHex !== null) link(sharedLayerHex);
    for (let j = 0; j < repo.manifests; j++) {
      const untagged = j > 0 && pick(r, j, 1) < (garbage.untagged ?? 0);
      let layer = sharedLayer;
      let layerHex = sharedLayerHex;
      if (layerHex === null) {
        layer = encoder.encode(`layer ${j} of ${repo.name}\n`.repeat(16));
        layerHex = blob(layer);
        link(layerHex);
        if (untagged) {
          counts.untaggedBlobs++;
          counts.untaggedBytes += layer.length;
        }
      }
      if (pick(r, j, 2) < (garbage.unlinked ?? 0)) {
        const bytes = encoder.encode(`unlinked ${j} of ${repo.name}\n`.repeat(8));
        blob(bytes);
        counts.unlinkedBlobs++;
        counts.garbageBytes += bytes.length;
      }
      if (pick(r, j, 3) < (garbage.linkedUnreferenced ?? 0)) {
        const bytes = encoder.encode(`linked, unreferenced ${j} of ${repo.name}\n`.repeat(8));
        link(blob(bytes));
        counts.linkedUnreferencedBlobs++;
        counts.garbageBytes += bytes.length;
      }
      const manifest = encoder.encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: {
          mediaType: "application/vnd.oci.image.config.v1+json",
          digest: `sha256:${configHex}`,
          size: config.length,
        },
        layers: [{
          mediaType: "application/vnd.oci.image.layer.v1.tar",
          digest: `sha256:${layerHex}`,
          size: layer.length,
        }],
        annotations: { "org.example.n": String(j) },
      }));
      const hex = blob(manifest);
      counts.manifests++;
      const digest = `sha256:${hex}`;
      const tag = `v${j}`;
      const revisions = join(dir, "_manifests", "revisions", "sha256");
      const tags = join(dir, "_manifests", "tags");
      if (untagged) {
        counts.untaggedManifests++;
        counts.untaggedBlobs++;
        counts.untaggedBytes += manifest.length;
        w.write(
          layout === "ours" ? join(revisions, hex) : join(revisions, hex, "link"),
          layout === "ours"
            ? JSON.stringify({
              mediaType: OCI_MANIFEST,
              size: manifest.length,
              refs: [`sha256:${configHex}`, `sha256:${layerHex}`],
            })
            : digest,
        );
        continue;
      }
      if (layout === "ours") {
        w.write(
          join(revisions, hex),
          JSON.stringify({
            mediaType: OCI_MANIFEST,
            size: manifest.length,
            refs: [`sha256:${configHex}`, `sha256:${layerHex}`],
          }),
        );
        w.write(join(tags, tag), digest);
      } else {
        w.write(join(revisions, hex, "link"), digest);
        w.write(join(tags, tag, "current", "link"), digest);
        w.write(join(tags, tag, "index", "sha256", hex, "link"), digest);
      }
      const target = `/v2/${repo.name}/manifests/${tag}`;
      if (j === 0) every.push(target);
      // a sample of about 100,000 targets, spread over every repository
      if (j % Math.max(1, Math.floor(plan.manifests / 100_000)) === 0) targets.push(target);
    }
  });
  counts.garbageBytes += counts.untaggedBytes;
  return { files: w.files, targets, every, counts };
}

/** Resident memory of a process in MiB (VmRSS or VmHWM). */
function memoryMiB(pid: number, key: "VmRSS" | "VmHWM"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const value = await fn();
  return [value, performance.now() - t0];
}

/** What the scenario measures on one server. */
export interface StoreFigures {
  readonly startupMs: number;
  readonly restMiB: number;
  readonly catalogFirstMs: number;
  readonly catalogWalkMs: number;
  readonly catalogNames: number;
  readonly tagListMs: number;
  readonly tagListTags: number;
  readonly getColdRps: number;
  readonly getWarmRps: number;
  readonly touchedMiB: number;
  readonly peakMiB: number;
}

async function getJson(conn: Http1, target: string): Promise<{ body: unknown; link: string }> {
  const res = await conn.request("GET", target);
  if (res.status !== 200) throw new Error(`GET ${target}: HTTP ${res.status}`);
  return {
    body: JSON.parse(new TextDecoder().decode(res.body)),
    link: res.headers.get("link") ?? "",
  };
}

/** Measures a started server; `targets` are manifest GET targets, `every` one per repository. */
async function measure(
  server: Server,
  startupMs: number,
  plan: StorePlan,
  targets: string[],
  every: string[],
  opts: { benchDir: string; workDir: string; seconds: number },
): Promise<StoreFigures> {
  const restMiB = memoryMiB(server.pid, "VmRSS");
  const conn = await Http1.connect(server.base);
  try {
    const [, catalogFirstMs] = await timed(() => getJson(conn, "/v2/_catalog?n=100"));
    let names = 0;
    const [, catalogWalkMs] = await timed(async () => {
      let target: string | null = "/v2/_catalog?n=1000";
      while (target !== null) {
        const { body, link } = await getJson(conn, target);
        names += (body as { repositories: string[] }).repositories.length;
        const next = /<([^>]+)>;\s*rel="next"/.exec(link);
        target = next
          ? new URL(next[1]!, server.base).pathname + new URL(next[1]!, server.base).search
          : null;
      }
    });
    const expected = repositoriesOf(plan).length;
    if (names !== expected) {
      throw new Error(`${server.name}: catalog walk gave ${names} of ${expected}`);
    }
    const [tagList, tagListMs] = await timed(() =>
      getJson(conn, `/v2/${BIG_REPOSITORY}/tags/list`)
    );
    const tagListTags = ((tagList.body as { tags: string[] }).tags ?? []).length;
    if (tagListTags !== Math.min(plan.bigTags, plan.manifests)) {
      throw new Error(`${server.name}: ${tagListTags} tags in ${BIG_REPOSITORY}`);
    }
    const pathsFile = join(opts.workDir, `${server.name}-targets.txt`);
    await Deno.writeTextFile(pathsFile, targets.join("\n"));
    const load = async () => {
      const out = await runLoadProcess(opts.benchDir, [
        "--url",
        server.base,
        "--paths",
        pathsFile,
        "--method",
        "GET",
        "--conns",
        "32",
        "--seconds",
        String(opts.seconds),
        "--header",
        `Accept: ${OCI_MANIFEST}`,
      ]);
      if (out.failed > 0) throw new Error(`${server.name}: manifest GET: ${out.firstFailure}`);
      return out.rps;
    };
    const getColdRps = await load();
    const getWarmRps = await load();
    for (const target of every) {
      const res = await conn.request("GET", target, { headers: { Accept: OCI_MANIFEST } });
      if (res.status !== 200) throw new Error(`${server.name}: GET ${target}: HTTP ${res.status}`);
    }
    const touchedMiB = memoryMiB(server.pid, "VmRSS");
    return {
      startupMs,
      restMiB,
      catalogFirstMs,
      catalogWalkMs,
      catalogNames: names,
      tagListMs,
      tagListTags,
      getColdRps,
      getWarmRps,
      touchedMiB,
      peakMiB: memoryMiB(server.pid, "VmHWM"),
    };
  } finally {
    conn.close();
  }
}

/** Inodes and KiB used on the file system holding `path` (from `df`). */
async function diskUse(path: string): Promise<{ inodes: number; kib: number }> {
  const out = await new Deno.Command("df", { args: ["--output=iused,used", "-k", path] }).output();
  const [inodes, kib] = new TextDecoder().decode(out.stdout).trim().split("\n").pop()!.trim()
    .split(/\s+/).map(Number);
  return { inodes: inodes!, kib: kib! };
}

async function dropPageCache(): Promise<boolean> {
  try {
    await new Deno.Command("sync").output();
    await Deno.writeTextFile("/proc/sys/vm/drop_caches", "3");
    return true;
  } catch {
    return false;
  }
}

async function scenario(
  name: "ours" | "distribution",
  plan: StorePlan,
  opts: { benchDir: string; workDir: string; repoRoot: string; seconds: number },
): Promise<{ figures: StoreFigures; files: number; writeS: number; inodes: number; kib: number }> {
  const dataDir = join(opts.workDir, `${name}-${plan.manifests}`);
  // A store written by an earlier run kept with --keep (its figures in `<store>.json`) is
  // measured again without being rewritten.
  const written = join(opts.workDir, `${name}-${plan.manifests}.json`);
  const earlier = await Deno.readTextFile(written).then(
    (text) => JSON.parse(text) as { files: number; writeS: number; inodes: number; kib: number },
    () => null,
  );
  const t0 = performance.now();
  let store: { files: number; writeS: number; inodes: number; kib: number };
  let targets: string[];
  let every: string[];
  if (earlier !== null) {
    ({ targets, every } = writeStore(dataDir, plan, name, {}, { dry: true }));
    store = earlier;
    console.log(`${name}: reusing the store of ${plan.manifests} manifests in ${dataDir}`);
  } else {
    const before = await diskUse(opts.workDir);
    let files: number;
    ({ files, targets, every } = writeStore(dataDir, plan, name));
    const writeS = (performance.now() - t0) / 1000;
    await new Deno.Command("sync").output();
    const after = await diskUse(opts.workDir);
    store = { files, writeS, inodes: after.inodes - before.inodes, kib: after.kib - before.kib };
    await Deno.writeTextFile(written, JSON.stringify(store));
    console.log(
      `${name}: wrote ${files} files for ${plan.manifests} manifests in ${writeS.toFixed(0)} s`,
    );
  }
  const dropped = await dropPageCache();
  if (!dropped) console.log("(the page cache could not be dropped: the cold run is warm on disk)");
  const [server, startupMs] = await timed(() =>
    name === "ours"
      ? startOurs(dataDir, opts.workDir, { repoRoot: opts.repoRoot, logName: `big-${name}.log` })
      : startDistribution("/usr/bin/docker-registry", dataDir, opts.workDir)
  );
  try {
    const figures = await measure(server, startupMs, plan, targets, every, opts);
    return { figures, ...store };
  } finally {
    await server.stop();
  }
}

function row(label: string, plan: StorePlan, r: Awaited<ReturnType<typeof scenario>>): string {
  const f = r.figures;
  return `| ${label} | ${plan.manifests.toLocaleString("en-US")} / ${
    f.catalogNames.toLocaleString("en-US")
  } | ${f.startupMs.toFixed(0)} | ${f.restMiB.toFixed(1)} / ${f.touchedMiB.toFixed(1)} / ${
    f.peakMiB.toFixed(1)
  } | ${f.catalogFirstMs.toFixed(1)} | ${(f.catalogWalkMs / 1000).toFixed(2)} | ${
    f.tagListMs.toFixed(1)
  } | ${f.getColdRps.toFixed(0)} / ${f.getWarmRps.toFixed(0)} | ${
    (r.inodes / plan.manifests).toFixed(2)
  } / ${(r.kib / plan.manifests).toFixed(1)} |`;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      manifests: { type: "string", default: "1000000" },
      repositories: { type: "string", default: "20000" },
      "big-tags": { type: "string", default: "10000" },
      "distribution-manifests": { type: "string", default: "100000" },
      seconds: { type: "string", default: "5" },
      dir: { type: "string" },
      keep: { type: "boolean", default: false },
      reuse: { type: "string" },
      "skip-distribution": { type: "boolean", default: false },
    },
  });
  const benchDir = dirname(new URL(import.meta.url).pathname);
  const repoRoot = dirname(benchDir);
  const workDir = values.reuse ??
    await Deno.makeTempDir({ dir: values.dir, prefix: "registry-big-store-" });
  const opts = { benchDir, workDir, repoRoot, seconds: Number(values.seconds) };
  const big: StorePlan = {
    manifests: Number(values.manifests),
    repositories: Number(values.repositories),
    bigTags: Number(values["big-tags"]),
  };
  const small: StorePlan = {
    manifests: Number(values["distribution-manifests"]),
    repositories: Math.max(
      1,
      Math.round(big.repositories * Number(values["distribution-manifests"]) / big.manifests),
    ),
    bigTags: big.bigTags,
  };
  console.log(
    `# Big store; Deno ${Deno.version.deno}; ${navigator.hardwareConcurrency} CPUs; in ${workDir}\n`,
  );
  const rows: string[] = [];
  const table = () =>
    [
      "",
      "| server | manifests / repositories | start-up ms | RSS MiB at rest / all repositories touched / peak | catalog first page ms | catalog walk s | 10k-tag list ms | manifest GET req/s cold / warm | inodes / KiB per manifest |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
      ...rows,
    ].join("\n");
  try {
    const ours = await scenario("ours", big, opts);
    rows.push(row("ours", big, ours));
    console.log(table()); // a row as soon as it is measured: the clean-up takes minutes
    if (!values["skip-distribution"]) {
      const oursSmall = await scenario("ours", small, opts);
      rows.push(row("ours", small, oursSmall));
      const dist = await scenario("distribution", small, opts);
      rows.push(row("Distribution 2.8.2", small, dist));
      console.log(table());
    }
  } finally {
    if (!values.keep && values.reuse === undefined) {
      console.log(`removing ${workDir}`);
      await Deno.remove(workDir, { recursive: true }).catch(() => {});
    }
  }
}
