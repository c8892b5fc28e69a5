/**
 * The model behind `tests/e2e/stress_test.ts`: a seeded PRNG, a small universe of blobs and
 * manifests over two repositories, random operations over it, and a reference model of the
 * per-repository consistency guarantee.
 *
 * The guarantee: manifest PUT, tag move, tag DELETE, manifest DELETE, blob DELETE and blob
 * mount are linearizable per repository, and at every instant
 * - every tag names a stored revision;
 * - every stored index's children are stored in the repository;
 * - every stored image manifest's config and layers are linked in the repository;
 * - the referrers of a subject are exactly the stored manifests whose `subject` is it.
 * Hence a manifest PUT naming a missing blob or child answers 400 MANIFEST_BLOB_UNKNOWN, a
 * manifest DELETE that a stored index still lists answers 409 DENIED naming the index, a
 * blob DELETE that a stored manifest still needs answers 405 UNSUPPORTED naming the manifest,
 * and a manifest DELETE by digest also removes the tags pointing to it.
 *
 * How the model checks concurrent answers without knowing the interleaving: a batch of
 * operations starts from a quiescent, observed state. Each client sees that state through a
 * *view* in which every fact (a layer link, a revision, a tag) that another client of the
 * batch may write is unknown. When every fact an operation reads is known, linearizability
 * determines its answer exactly (`predict`); otherwise only the static set of answers
 * (`ALLOWED`) applies. After the batch, with every answer known, `hindsightView` knows each
 * fact no other operation of the batch changed, and `predict` over it judges the answers
 * again; `historyProblems` checks that the new observed state is explained by the answers
 * (no lost or phantom writes), and `stateProblems` checks the invariants on it.
 *
 * Garbage collection is an operation too (the test's registry collects with no grace window and
 * drops untagged manifests at once): in a batch it may remove any revision or link (so it makes
 * them unknown, and explains their disappearance in `historyProblems`), and alone, at a
 * quiescent point, it must turn the state into exactly `collected(state)`: tags, the children
 * of stored indexes, every referrer (orphans are kept) and the links they need stay, the rest
 * goes.
 *
 * Nothing here speaks HTTP or reads the disk; that is the test's business.
 */

import { jsonBytes } from "./manifests.ts";
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST } from "./media_types.ts";
import { sha256Digest } from "./registry.ts";

/** The media type of the empty descriptor (OCI image spec 1.1). */
const OCI_EMPTY = "application/vnd.oci.empty.v1+json";
const SIGNATURE_TYPE = "application/vnd.example.signature.v1";
const SBOM_TYPE = "application/vnd.example.sbom.v1";

// ---------------------------------------------------------------------------------------------
// PRNG

/** The mulberry32 generator: 32-bit state, floats in [0, 1). Same seed, same sequence. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Convenience draws over `mulberry32`. */
export class Rng {
  readonly #next: () => number;

  /** A generator for one seed. */
  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.#next() < p;
  }

  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** `count` distinct elements of a list, in list order. */
  sample<T>(items: readonly T[], count: number): T[] {
    const chosen = new Set<number>();
    while (chosen.size < Math.min(count, items.length)) chosen.add(this.int(items.length));
    return [...chosen].sort((a, b) => a - b).map((i) => items[i]);
  }

  /** An entry chosen by weight from `[weight, value]` pairs. */
  weighted<T>(table: readonly (readonly [number, T])[]): T {
    const total = table.reduce((sum, [w]) => sum + w, 0);
    let roll = this.#next() * total;
    for (const [weight, value] of table) {
      roll -= weight;
      if (roll < 0) return value;
    }
    return table[table.length - 1][1];
  }

  /** `length` pseudo-random bytes. */
  bytes(length: number): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.int(256);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Universe

/** A blob of the universe. */
export interface UniverseBlob {
  readonly name: string;
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly digest: string;
}

/** A manifest of the universe: an image, an index of images, or a referrer (an artifact). */
export interface UniverseManifest {
  readonly name: string;
  readonly kind: "image" | "index" | "referrer";
  readonly mediaType: string;
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly digest: string;
  /** Blob indexes the manifest needs, config first (images and referrers). */
  readonly blobs: readonly number[];
  /** Manifest indexes an index lists. */
  readonly children: readonly number[];
  /** The manifest index of the `subject`, or null. */
  readonly subject: number | null;
  /** The artifact type the referrers API reports, or null. */
  readonly artifactType: string | null;
}

/** Everything a run may push: fixed by the seed. */
export interface Universe {
  readonly repos: readonly string[];
  readonly tags: readonly string[];
  readonly blobs: readonly UniverseBlob[];
  readonly manifests: readonly UniverseManifest[];
  /** Manifest index by digest. */
  readonly byDigest: ReadonlyMap<string, number>;
}

/**
 * Builds the universe of a seed: 2 repositories, 4 tags, 7 blobs (an empty `{}`, two configs,
 * three layers, one artifact payload), 5 images over random blob combinations, 3 indexes of
 * 1-3 images, and 5 referrers (of images, of an index, and of another referrer).
 */
export async function buildUniverse(rng: Rng): Promise<Universe> {
  const encoder = new TextEncoder();
  const blobs: UniverseBlob[] = [];
  const addBlob = async (name: string, bytes: Uint8Array<ArrayBuffer>) => {
    blobs.push({ name, bytes, digest: await sha256Digest(bytes) });
    return blobs.length - 1;
  };
  const empty = await addBlob("empty", encoder.encode("{}"));
  const configs = [
    await addBlob(
      "configA",
      encoder.encode(JSON.stringify({ architecture: "amd64", os: "linux", seed: rng.int(1e9) })),
    ),
    await addBlob(
      "configB",
      encoder.encode(JSON.stringify({ architecture: "arm64", os: "linux", seed: rng.int(1e9) })),
    ),
  ];
  const layers: number[] = [];
  for (let i = 0; i < 3; i++) {
    layers.push(await addBlob(`layer${i}`, rng.bytes(100 + rng.int(1900))));
  }
  const payload = await addBlob("payload", rng.bytes(32 + rng.int(200)));

  const manifests: UniverseManifest[] = [];
  const descriptorOf = (b: number, mediaType: string) => ({
    mediaType,
    digest: blobs[b].digest,
    size: blobs[b].bytes.length,
  });
  const manifestDescriptor = (m: number) => ({
    mediaType: manifests[m].mediaType,
    digest: manifests[m].digest,
    size: manifests[m].bytes.length,
  });
  const addManifest = async (
    fields: Omit<UniverseManifest, "bytes" | "digest">,
    body: Record<string, unknown>,
  ) => {
    const { bytes, digest } = await jsonBytes(body);
    manifests.push({ ...fields, bytes, digest });
    return manifests.length - 1;
  };

  const images: number[] = [];
  for (let i = 0; i < 5; i++) {
    const config = rng.pick(configs);
    const chosen = rng.sample(layers, 1 + rng.int(2));
    const name = `img${i}`;
    images.push(
      await addManifest(
        {
          name,
          kind: "image",
          mediaType: OCI_MANIFEST,
          blobs: [config, ...chosen],
          children: [],
          subject: null,
          artifactType: null,
        },
        {
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: descriptorOf(config, OCI_CONFIG),
          layers: chosen.map((l) => descriptorOf(l, OCI_LAYER)),
          annotations: { "org.example.stress": name },
        },
      ),
    );
  }
  const indexes: number[] = [];
  for (let i = 0; i < 3; i++) {
    const children = rng.sample(images, 1 + rng.int(3));
    const name = `idx${i}`;
    indexes.push(
      await addManifest(
        {
          name,
          kind: "index",
          mediaType: OCI_INDEX,
          blobs: [],
          children,
          subject: null,
          artifactType: null,
        },
        {
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: children.map((c, k) => ({
            ...manifestDescriptor(c),
            platform: { architecture: `arch${k}`, os: "linux" },
          })),
          annotations: { "org.example.stress": name },
        },
      ),
    );
  }
  const subjects = [...images, ...indexes];
  for (let i = 0; i < 5; i++) {
    // The last referrer refers to the first one: a signature of a signature.
    const subject = i === 4 ? manifests.length - 4 : rng.pick(subjects);
    const signature = rng.chance(0.5);
    const artifactType = signature ? SIGNATURE_TYPE : SBOM_TYPE;
    const layer = signature ? payload : empty;
    const name = `ref${i}`;
    await addManifest(
      {
        name,
        kind: "referrer",
        mediaType: OCI_MANIFEST,
        blobs: layer === empty ? [empty] : [empty, layer],
        children: [],
        subject,
        artifactType,
      },
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType,
        config: descriptorOf(empty, OCI_EMPTY),
        layers: [descriptorOf(layer, signature ? artifactType : OCI_EMPTY)],
        subject: manifestDescriptor(subject),
        annotations: { "org.example.stress": name },
      },
    );
  }
  return {
    repos: ["stress/a", "stress/b"],
    tags: ["latest", "v1", "v2", "stable"],
    blobs,
    manifests,
    byDigest: new Map(manifests.map((m, i) => [m.digest, i])),
  };
}

/** One line per blob and manifest: its name, digest and what it refers to. */
export function legend(u: Universe): string[] {
  const blobName = (b: number) => u.blobs[b].name;
  const manifestName = (m: number) => u.manifests[m].name;
  return [
    ...u.blobs.map((b) => `${b.name} = ${b.digest}`),
    ...u.manifests.map((m) => {
      const parts = m.kind === "index"
        ? `children ${m.children.map(manifestName).join(",")}`
        : `blobs ${m.blobs.map(blobName).join(",")}`;
      const subject = m.subject === null ? "" : `, subject ${manifestName(m.subject)}`;
      return `${m.name} = ${m.digest} (${m.kind}: ${parts}${subject})`;
    }),
  ];
}

// ---------------------------------------------------------------------------------------------
// Operations

/** A manifest reference: by tag (index into `Universe.tags`) or by digest (manifest index). */
export type Ref = { readonly tag: number } | { readonly manifest: number };

/** One client operation. Indexes refer to `Universe` lists. */
export type Op =
  | {
    readonly kind: "pushBlob";
    readonly repo: number;
    readonly blob: number;
    readonly how: "monolithic" | "post-put" | "chunked";
  }
  | { readonly kind: "mountBlob"; readonly repo: number; readonly blob: number }
  | { readonly kind: "deleteBlob"; readonly repo: number; readonly blob: number }
  | {
    readonly kind: "getBlob";
    readonly repo: number;
    readonly blob: number;
    readonly head: boolean;
  }
  | {
    readonly kind: "putManifest";
    readonly repo: number;
    readonly manifest: number;
    readonly tag: number | null;
  }
  | { readonly kind: "deleteTag"; readonly repo: number; readonly tag: number }
  | { readonly kind: "deleteManifest"; readonly repo: number; readonly manifest: number }
  | {
    readonly kind: "getManifest";
    readonly repo: number;
    readonly ref: Ref;
    readonly head: boolean;
  }
  | { readonly kind: "listTags"; readonly repo: number }
  | { readonly kind: "referrers"; readonly repo: number; readonly subject: number }
  /** A garbage collection (of every repository; `repo` is unused). */
  | { readonly kind: "gc"; readonly repo: number };

/** The repository a mount takes a blob from: the other one. */
export function mountSource(op: { repo: number }): number {
  return 1 - op.repo;
}

/** `count` random operations; depends only on the generator's state, never on answers. */
export function generateOps(rng: Rng, u: Universe, count: number): Op[] {
  const ofKind = (kind: UniverseManifest["kind"]) =>
    u.manifests.flatMap((m, i) => (m.kind === kind ? [i] : []));
  const images = ofKind("image");
  const indexes = ofKind("index");
  const referrers = ofKind("referrer");
  const all = u.manifests.map((_, i) => i);
  const blobs = u.blobs.map((_, i) => i);
  const tags = u.tags.map((_, i) => i);
  const ops: Op[] = [];
  for (let i = 0; i < count; i++) {
    const repo = rng.int(u.repos.length);
    const make: () => Op = rng.weighted<() => Op>([
      [14, () => ({
        kind: "pushBlob",
        repo,
        blob: rng.pick(blobs),
        how: rng.pick(["monolithic", "post-put", "chunked"] as const),
      })],
      [6, () => ({ kind: "mountBlob", repo, blob: rng.pick(blobs) })],
      [9, () => ({ kind: "deleteBlob", repo, blob: rng.pick(blobs) })],
      [4, () => ({ kind: "getBlob", repo, blob: rng.pick(blobs), head: rng.chance(0.5) })],
      [14, () => ({
        kind: "putManifest",
        repo,
        manifest: rng.pick(images),
        tag: rng.chance(0.5) ? rng.pick(tags) : null,
      })],
      [9, () => ({
        kind: "putManifest",
        repo,
        manifest: rng.pick(indexes),
        tag: rng.chance(0.75) ? rng.pick(tags) : null,
      })],
      [6, () => ({
        kind: "putManifest",
        repo,
        manifest: rng.pick(referrers),
        tag: rng.chance(0.1) ? rng.pick(tags) : null,
      })],
      [5, () => ({ kind: "deleteTag", repo, tag: rng.pick(tags) })],
      [11, () => ({
        kind: "deleteManifest",
        repo,
        // Mostly images, the children of indexes, so that DELETE meets 409 often.
        manifest: rng.pick(rng.weighted([[5, images], [2, indexes], [3, referrers]])),
      })],
      [10, () => ({
        kind: "getManifest",
        repo,
        ref: rng.chance(0.5) ? { tag: rng.pick(tags) } : { manifest: rng.pick(all) },
        head: rng.chance(0.3),
      })],
      [3, () => ({ kind: "listTags", repo })],
      [2, () => ({ kind: "gc", repo: 0 })],
      [
        4,
        () => ({
          kind: "referrers",
          repo,
          subject: rng.pick([...images, ...indexes, ...referrers]),
        }),
      ],
    ]);
    ops.push(make());
  }
  return ops;
}

/** A one-line description of an operation, with universe names (see `legend`). */
export function describeOp(u: Universe, op: Op): string {
  const repo = u.repos[op.repo];
  switch (op.kind) {
    case "pushBlob":
      return `push blob ${u.blobs[op.blob].name} to ${repo} (${op.how})`;
    case "mountBlob":
      return `mount blob ${u.blobs[op.blob].name} into ${repo} from ${u.repos[mountSource(op)]}`;
    case "deleteBlob":
      return `DELETE blob ${u.blobs[op.blob].name} in ${repo}`;
    case "getBlob":
      return `${op.head ? "HEAD" : "GET"} blob ${u.blobs[op.blob].name} in ${repo}`;
    case "putManifest":
      return `PUT ${u.manifests[op.manifest].name} to ${repo}${
        op.tag === null ? " by digest" : `:${u.tags[op.tag]}`
      }`;
    case "deleteTag":
      return `DELETE tag ${repo}:${u.tags[op.tag]}`;
    case "deleteManifest":
      return `DELETE manifest ${u.manifests[op.manifest].name} in ${repo}`;
    case "getManifest":
      return `${op.head ? "HEAD" : "GET"} ${repo}${
        "tag" in op.ref ? `:${u.tags[op.ref.tag]}` : `@${u.manifests[op.ref.manifest].name}`
      }`;
    case "listTags":
      return `list tags of ${repo}`;
    case "referrers":
      return `referrers of ${u.manifests[op.subject].name} in ${repo}`;
    case "gc":
      return "garbage collection";
  }
}

// ---------------------------------------------------------------------------------------------
// State, keys and views

/** What one repository holds: layer links, revisions, and the manifest each tag names. */
export interface RepoState {
  readonly links: boolean[];
  readonly revs: boolean[];
  readonly tags: (number | null)[];
}

/** The state of every repository of the universe. */
export type State = RepoState[];

/** The empty state (a new registry). */
export function emptyState(u: Universe): State {
  return u.repos.map(() => ({
    links: u.blobs.map(() => false),
    revs: u.manifests.map(() => false),
    tags: u.tags.map(() => null),
  }));
}

/** A deep copy of a state. */
export function cloneState(s: State): State {
  return s.map((r) => ({ links: [...r.links], revs: [...r.revs], tags: [...r.tags] }));
}

/** The fact "blob `b` is linked in repository `r`". */
export const linkKey = (r: number, b: number): string => `L${r}:${b}`;
/** The fact "manifest `m` is a revision of repository `r`". */
export const revKey = (r: number, m: number): string => `R${r}:${m}`;
/** The fact "the value of tag `t` in repository `r`". */
export const tagKey = (r: number, t: number): string => `T${r}:${t}`;

/** A key in words, e.g. `revision idx0 of stress/a`. */
export function describeKey(u: Universe, key: string): string {
  const [r, i] = key.slice(1).split(":").map(Number);
  const repo = u.repos[r];
  if (key[0] === "L") return `link of ${u.blobs[i].name} in ${repo}`;
  if (key[0] === "R") return `revision ${u.manifests[i].name} of ${repo}`;
  return `tag ${repo}:${u.tags[i]}`;
}

/** A client's view of the state during a batch: facts another client may change are unknown. */
export interface View {
  readonly state: State;
  readonly unknown: ReadonlySet<string>;
}

/** Stored images and referrers of repository `r` (in `s`) that need blob `b`. */
function needers(u: Universe, s: State, r: number, b: number): number[] {
  return u.manifests.flatMap((m, i) => (s[r].revs[i] && m.blobs.includes(b) ? [i] : []));
}

/** Stored indexes of repository `r` (in `s`) that list manifest `m`. */
function holders(u: Universe, s: State, r: number, m: number): number[] {
  return u.manifests.flatMap((x, i) => (s[r].revs[i] && x.children.includes(m) ? [i] : []));
}

/**
 * The facts an operation may change, whatever it answers. A manifest DELETE may remove every
 * tag that can name the manifest during the batch: its tags at the start, and the tags any
 * PUT of that manifest in the batch moves.
 */
export function writeKeys(u: Universe, op: Op, start: State, batch: readonly Op[]): string[] {
  switch (op.kind) {
    case "pushBlob":
    case "mountBlob":
    case "deleteBlob":
      return [linkKey(op.repo, op.blob)];
    case "putManifest":
      return op.tag === null
        ? [revKey(op.repo, op.manifest)]
        : [revKey(op.repo, op.manifest), tagKey(op.repo, op.tag)];
    case "deleteTag":
      return [tagKey(op.repo, op.tag)];
    case "deleteManifest": {
      const keys = new Set([revKey(op.repo, op.manifest)]);
      u.tags.forEach((_, t) => {
        if (start[op.repo].tags[t] === op.manifest) keys.add(tagKey(op.repo, t));
      });
      for (const other of batch) {
        if (
          other.kind === "putManifest" && other.repo === op.repo &&
          other.manifest === op.manifest && other.tag !== null
        ) keys.add(tagKey(op.repo, other.tag));
      }
      return [...keys];
    }
    case "gc":
      return u.repos.flatMap((_, r) => [
        ...u.blobs.map((_, b) => linkKey(r, b)),
        ...u.manifests.map((_, m) => revKey(r, m)),
      ]);
    case "getBlob":
    case "getManifest":
    case "listTags":
    case "referrers":
      return [];
  }
}

/**
 * The state a garbage collection running alone leaves (no grace window, untagged manifests
 * dropped, orphan referrers kept): per repository, the tagged manifests, every referrer, and
 * (repeatedly) the children of kept indexes stay; the links the kept images and referrers
 * need stay; everything else goes.
 */
export function collected(u: Universe, s: State): State {
  const out = cloneState(s);
  s.forEach((repo, r) => {
    const kept = new Set<number>();
    repo.tags.forEach((m) => {
      if (m !== null && repo.revs[m]) kept.add(m);
    });
    u.manifests.forEach((m, i) => {
      if (repo.revs[i] && m.subject !== null) kept.add(i);
    });
    for (let changed = true; changed;) {
      changed = false;
      for (const i of [...kept]) {
        for (const c of u.manifests[i].children) {
          if (repo.revs[c] && !kept.has(c)) {
            kept.add(c);
            changed = true;
          }
        }
      }
    }
    const needed = new Set([...kept].flatMap((i) => u.manifests[i].blobs));
    u.manifests.forEach((_, i) => out[r].revs[i] = kept.has(i));
    u.blobs.forEach((_, b) => out[r].links[b] = repo.links[b] && needed.has(b));
  });
  return out;
}

/** The facts an operation's answer depends on, given what the view knows. */
export function readKeys(u: Universe, op: Op, view: View): string[] {
  const r = op.repo;
  const revsWhere = (pred: (m: UniverseManifest) => boolean) =>
    u.manifests.flatMap((m, i) => (pred(m) ? [revKey(r, i)] : []));
  switch (op.kind) {
    case "pushBlob":
      return [];
    case "mountBlob":
      return [linkKey(mountSource(op), op.blob)];
    case "deleteBlob":
      return [linkKey(r, op.blob), ...revsWhere((m) => m.blobs.includes(op.blob))];
    case "getBlob":
      return [linkKey(r, op.blob)];
    case "putManifest": {
      const m = u.manifests[op.manifest];
      return m.kind === "index"
        ? m.children.map((c) => revKey(r, c))
        : m.blobs.map((b) => linkKey(r, b));
    }
    case "deleteTag":
      return [tagKey(r, op.tag)];
    case "deleteManifest":
      return [revKey(r, op.manifest), ...revsWhere((m) => m.children.includes(op.manifest))];
    case "getManifest": {
      if (!("tag" in op.ref)) return [revKey(r, op.ref.manifest)];
      const key = tagKey(r, op.ref.tag);
      const value = view.state[r].tags[op.ref.tag];
      return view.unknown.has(key) || value === null ? [key] : [key, revKey(r, value)];
    }
    case "listTags":
      return u.tags.map((_, t) => tagKey(r, t));
    case "referrers":
      return revsWhere((m) => m.subject === op.subject);
    case "gc":
      return [];
  }
}

/** The answer linearizability requires of an operation whose read facts are all known. */
export interface Prediction {
  /** Acceptable statuses (one, except where the model cannot tell, e.g. an unknown repo). */
  readonly statuses: readonly number[];
  /** Why, in words. */
  readonly why: string;
  /** A successful manifest GET/HEAD must serve this manifest. */
  readonly manifest?: number;
  /** A successful tag list must be exactly these tags. */
  readonly tags?: readonly number[];
  /** A referrers answer must list exactly these manifests. */
  readonly referrers?: readonly number[];
  /** An error answer must name (by digest) one of these manifests (409, 405) or blobs (400). */
  readonly names?: readonly string[];
}

/** The exact expected answer, or null when some fact it depends on is unknown in the view. */
export function predict(u: Universe, op: Op, view: View): Prediction | null {
  if (readKeys(u, op, view).some((k) => view.unknown.has(k))) return null;
  const s = view.state;
  const r = op.repo;
  const repo = u.repos[r];
  const mName = (m: number) => u.manifests[m].name;
  switch (op.kind) {
    case "pushBlob":
      return { statuses: [201], why: "a complete push always succeeds" };
    case "mountBlob": {
      const from = u.repos[mountSource(op)];
      return s[mountSource(op)].links[op.blob]
        ? { statuses: [201], why: `the blob is linked in ${from}` }
        : { statuses: [202], why: `the blob is not linked in ${from}: an upload session instead` };
    }
    case "deleteBlob": {
      const needed = needers(u, s, r, op.blob);
      if (!s[r].links[op.blob]) {
        return { statuses: needed.length ? [404, 405] : [404], why: `not linked in ${repo}` };
      }
      if (needed.length) {
        return {
          statuses: [405],
          why: `stored ${needed.map(mName).join(", ")} of ${repo} still needs it (UNSUPPORTED)`,
          names: needed.map((m) => u.manifests[m].digest),
        };
      }
      return { statuses: [202], why: `linked in ${repo} and no stored manifest needs it` };
    }
    case "getBlob":
      return s[r].links[op.blob]
        ? { statuses: [200], why: `linked in ${repo}` }
        : { statuses: [404], why: `not linked in ${repo}` };
    case "putManifest": {
      const m = u.manifests[op.manifest];
      const missing = m.kind === "index"
        ? m.children.filter((c) => !s[r].revs[c]).map((c) => u.manifests[c])
        : m.blobs.filter((b) => !s[r].links[b]).map((b) => u.blobs[b]);
      return missing.length
        ? {
          statuses: [400],
          why: `${missing.map((x) => x.name).join(", ")} not in ${repo} (MANIFEST_BLOB_UNKNOWN)`,
          names: missing.map((x) => x.digest),
        }
        : { statuses: [201], why: `everything it references is in ${repo}` };
    }
    case "deleteTag":
      return s[r].tags[op.tag] !== null
        ? { statuses: [202], why: `the tag names ${mName(s[r].tags[op.tag]!)}` }
        : { statuses: [404], why: "the tag does not exist" };
    case "deleteManifest": {
      if (!s[r].revs[op.manifest]) return { statuses: [404], why: `not stored in ${repo}` };
      const held = holders(u, s, r, op.manifest);
      return held.length
        ? {
          statuses: [409],
          why: `stored index ${held.map(mName).join(", ")} of ${repo} lists it (DENIED)`,
          names: held.map((m) => u.manifests[m].digest),
        }
        : { statuses: [202], why: `stored in ${repo} and no stored index lists it` };
    }
    case "getManifest": {
      const target = "tag" in op.ref ? s[r].tags[op.ref.tag] : op.ref.manifest;
      if (target === null) return { statuses: [404], why: "the tag does not exist" };
      return s[r].revs[target]
        ? { statuses: [200], why: `${mName(target)} is stored`, manifest: target }
        : { statuses: [404], why: `${mName(target)} is not stored in ${repo}` };
    }
    case "listTags": {
      const tags = u.tags.flatMap((_, t) => (s[r].tags[t] !== null ? [t] : []));
      return {
        statuses: tags.length ? [200] : [200, 404],
        why: `tags ${tags.length ? tags.map((t) => u.tags[t]).join(", ") : "(none)"}`,
        tags,
      };
    }
    case "referrers": {
      const refs = u.manifests.flatMap((m, i) =>
        s[r].revs[i] && m.subject === op.subject ? [i] : []
      );
      return {
        statuses: [200],
        why: `stored referrers ${refs.length ? refs.map(mName).join(", ") : "(none)"}`,
        referrers: refs,
      };
    }
    case "gc":
      return { statuses: [200], why: "a collection always finishes" };
  }
}

/** Applies an answered operation's effect to the known facts of a view's state. */
export function applyEffect(u: Universe, op: Op, status: number, view: View): void {
  const s = view.state;
  const r = op.repo;
  const known = (key: string) => !view.unknown.has(key);
  const setLink = (value: boolean) => {
    if (known(linkKey(r, (op as { blob: number }).blob))) {
      s[r].links[(op as { blob: number }).blob] = value;
    }
  };
  switch (op.kind) {
    case "pushBlob":
    case "mountBlob":
      if (status === 201) setLink(true);
      return;
    case "deleteBlob":
      if (status === 202) setLink(false);
      return;
    case "putManifest":
      if (status !== 201) return;
      if (known(revKey(r, op.manifest))) s[r].revs[op.manifest] = true;
      if (op.tag !== null && known(tagKey(r, op.tag))) s[r].tags[op.tag] = op.manifest;
      return;
    case "deleteTag":
      if (status === 202 && known(tagKey(r, op.tag))) s[r].tags[op.tag] = null;
      return;
    case "deleteManifest":
      if (status !== 202) return;
      if (known(revKey(r, op.manifest))) s[r].revs[op.manifest] = false;
      u.tags.forEach((_, t) => {
        if (known(tagKey(r, t)) && s[r].tags[t] === op.manifest) s[r].tags[t] = null;
      });
      return;
    case "gc":
      // What it removed depends on every other client: the test makes its writes unknown.
      return;
    case "getBlob":
    case "getManifest":
    case "listTags":
    case "referrers":
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Answers

/** What a client saw for one operation (the test fills it from HTTP). */
export interface Outcome {
  /** Final status, or the status of the step that broke a multi-request flow; 0: no answer. */
  readonly status: number;
  /** The request of a multi-request flow that gave `status`, when it was not the last. */
  readonly step?: string;
  /** First OCI error code of an error body, or null. */
  readonly code: string | null;
  /** Body text (error bodies; truncated), for messages. */
  readonly body: string;
  /** `Docker-Content-Digest` of a manifest or blob answer. */
  readonly digestHeader?: string | null;
  /** Digest of the bytes a GET received. */
  readonly contentDigest?: string;
  /** `Content-Length` of a HEAD answer. */
  readonly contentLength?: string | null;
  /** `Content-Type` of a manifest answer. */
  readonly contentType?: string | null;
  /** `OCI-Subject` of a manifest PUT answer. */
  readonly subjectHeader?: string | null;
  /** Tags of a tag list. */
  readonly tags?: readonly string[];
  /** Descriptors of a referrers answer. */
  readonly referrers?: readonly unknown[];
}

/** Statuses each kind may answer under any interleaving, with the error codes allowed. */
export const ALLOWED: Readonly<Record<Op["kind"], Readonly<Record<number, readonly string[]>>>> = {
  pushBlob: { 201: [] },
  mountBlob: { 201: [], 202: [] },
  deleteBlob: { 202: [], 404: ["BLOB_UNKNOWN", "NAME_UNKNOWN"], 405: ["UNSUPPORTED"] },
  getBlob: { 200: [], 404: ["BLOB_UNKNOWN", "NAME_UNKNOWN"] },
  putManifest: { 201: [], 400: ["MANIFEST_BLOB_UNKNOWN"] },
  deleteTag: { 202: [], 404: ["MANIFEST_UNKNOWN", "NAME_UNKNOWN"] },
  deleteManifest: { 202: [], 404: ["MANIFEST_UNKNOWN", "NAME_UNKNOWN"], 409: ["DENIED"] },
  getManifest: { 200: [], 404: ["MANIFEST_UNKNOWN", "NAME_UNKNOWN"] },
  listTags: { 200: [], 404: ["NAME_UNKNOWN"] },
  referrers: { 200: [] },
  gc: { 200: [] },
};

/** Digests an error answer may name under any interleaving (a superset of `Prediction.names`). */
function possibleNames(u: Universe, op: Op): string[] | null {
  switch (op.kind) {
    case "deleteBlob":
      return u.manifests.filter((m) => m.blobs.includes(op.blob)).map((m) => m.digest);
    case "deleteManifest":
      return u.manifests.filter((m) => m.children.includes(op.manifest)).map((m) => m.digest);
    case "putManifest": {
      const m = u.manifests[op.manifest];
      return m.kind === "index"
        ? m.children.map((c) => u.manifests[c].digest)
        : m.blobs.map((b) => u.blobs[b].digest);
    }
    default:
      return null;
  }
}

/**
 * Checks one answer against the static rules (allowed statuses and codes, content integrity)
 * and, when there is one, against the exact prediction. Returns one sentence per problem.
 */
export function checkOutcome(
  u: Universe,
  op: Op,
  out: Outcome,
  prediction: Prediction | null,
): string[] {
  const problems: string[] = [];
  const got = `${out.step ? `${out.step} answered ` : "got "}${out.status}${
    out.code ? ` ${out.code}` : ""
  }${out.body && out.status >= 300 ? ` ${out.body}` : ""}`;
  const allowed = ALLOWED[op.kind][out.status];
  if (out.status === 0 || out.status >= 500 || !allowed || out.step) {
    problems.push(`answer not allowed for this operation: ${got}`);
    return problems;
  }
  const head = (op.kind === "getBlob" || op.kind === "getManifest") && op.head;
  if (allowed.length && !head && !allowed.includes(out.code ?? "")) {
    problems.push(`error code ${out.code} is not one of ${allowed.join(", ")}: ${got}`);
  }
  if (prediction && !prediction.statuses.includes(out.status)) {
    problems.push(
      `expected ${prediction.statuses.join(" or ")} because ${prediction.why}; ${got}`,
    );
    return problems;
  }
  if ([400, 405, 409].includes(out.status)) {
    const names = prediction?.names ?? possibleNames(u, op) ?? [];
    if (!names.some((d) => out.body.includes(d))) {
      problems.push(
        `the ${out.status} error names none of ${
          names.map((d) => nameOf(u, d)).join(", ")
        }: ${out.body}`,
      );
    }
  }
  const r = op.repo;
  switch (op.kind) {
    case "getBlob":
      if (out.status !== 200) break;
      if (out.digestHeader !== u.blobs[op.blob].digest) {
        problems.push(`Docker-Content-Digest ${out.digestHeader}`);
      }
      if (op.head && out.contentLength !== String(u.blobs[op.blob].bytes.length)) {
        problems.push(`Content-Length ${out.contentLength}`);
      }
      if (!op.head && out.contentDigest !== u.blobs[op.blob].digest) {
        problems.push(`served bytes with digest ${out.contentDigest}`);
      }
      break;
    case "putManifest": {
      if (out.status !== 201) break;
      const m = u.manifests[op.manifest];
      if (out.digestHeader !== m.digest) problems.push(`Docker-Content-Digest ${out.digestHeader}`);
      const subject = m.subject === null ? null : u.manifests[m.subject].digest;
      if (subject !== null && out.subjectHeader !== subject) {
        problems.push(`OCI-Subject ${out.subjectHeader}, expected ${subject}`);
      }
      break;
    }
    case "getManifest": {
      if (out.status !== 200) break;
      const served = u.byDigest.get(out.digestHeader ?? "");
      if (served === undefined) {
        problems.push(`served Docker-Content-Digest ${out.digestHeader}, not a manifest pushed`);
        break;
      }
      const m = u.manifests[served];
      if (!op.head && out.contentDigest !== m.digest) {
        problems.push(`served bytes with digest ${out.contentDigest} as ${m.digest}`);
      }
      if (op.head && out.contentLength !== String(m.bytes.length)) {
        problems.push(`Content-Length ${out.contentLength} for ${m.name}`);
      }
      if (out.contentType !== m.mediaType) problems.push(`Content-Type ${out.contentType}`);
      if ("manifest" in op.ref && served !== op.ref.manifest) {
        problems.push(`asked for ${u.manifests[op.ref.manifest].name}, served ${m.name}`);
      }
      const expected = prediction?.manifest;
      if (expected !== undefined && served !== expected) {
        problems.push(
          `expected ${u.manifests[expected].name} (${prediction!.why}), served ${m.name}`,
        );
      }
      break;
    }
    case "listTags": {
      if (out.status !== 200) break;
      const tags = out.tags ?? [];
      const strange = tags.filter((t) => !u.tags.includes(t));
      if (strange.length) problems.push(`listed tags never pushed: ${strange.join(", ")}`);
      if ([...tags].sort().join() !== [...new Set(tags)].sort().join()) {
        problems.push(`listed a tag twice: ${tags.join(", ")}`);
      }
      if (prediction?.tags) {
        const want = prediction.tags.map((t) => u.tags[t]).sort();
        if ([...tags].sort().join() !== want.join()) {
          problems.push(`listed [${tags.join(", ")}], expected [${want.join(", ")}]`);
        }
      }
      break;
    }
    case "referrers": {
      const { problems: bad, listed } = checkReferrers(u, op.subject, out.referrers ?? []);
      problems.push(...bad);
      if (prediction?.referrers) {
        const want = prediction.referrers.map((m) => u.manifests[m].name).sort().join(", ");
        const have = listed.map((m) => u.manifests[m].name).sort().join(", ");
        if (want !== have) problems.push(`listed [${have}], expected [${want}] in ${u.repos[r]}`);
      }
      break;
    }
    default:
      break;
  }
  return problems;
}

/** The universe name of a digest, or the digest itself. */
function nameOf(u: Universe, digest: string): string {
  const m = u.byDigest.get(digest);
  if (m !== undefined) return u.manifests[m].name;
  return u.blobs.find((b) => b.digest === digest)?.name ?? digest;
}

/**
 * Checks the descriptors of a referrers answer: each is a referrer of `subject` from the
 * universe, with its media type, size and artifact type, listed once. Returns the manifests
 * listed and one sentence per problem.
 */
export function checkReferrers(
  u: Universe,
  subject: number,
  descriptors: readonly unknown[],
): { problems: string[]; listed: number[] } {
  const problems: string[] = [];
  const listed: number[] = [];
  for (const value of descriptors) {
    const d = value as {
      digest?: unknown;
      mediaType?: unknown;
      size?: unknown;
      artifactType?: unknown;
    };
    const m = u.byDigest.get(String(d.digest));
    if (m === undefined) {
      problems.push(`referrers list ${JSON.stringify(value)}, not a manifest pushed`);
      continue;
    }
    const x = u.manifests[m];
    if (x.subject !== subject) {
      problems.push(
        `referrers of ${u.manifests[subject].name} list ${x.name}, whose subject is not it`,
      );
    }
    if (
      d.mediaType !== x.mediaType || d.size !== x.bytes.length || d.artifactType !== x.artifactType
    ) {
      problems.push(`referrers descriptor of ${x.name} is wrong: ${JSON.stringify(value)}`);
    }
    if (listed.includes(m)) problems.push(`referrers list ${x.name} twice`);
    listed.push(m);
  }
  return { problems, listed };
}

// ---------------------------------------------------------------------------------------------
// Quiescent checks

/** A problem found by a quiescent check, with the facts it is about (for the op history). */
export interface Finding {
  readonly message: string;
  readonly keys: readonly string[];
  /** The sequence number of the operation whose answer is wrong, if that is the problem. */
  readonly op?: number;
}

/**
 * The invariants on one observed state: every tag names a stored revision; every stored
 * index's children are stored; every stored image's (and referrer's) blobs are linked.
 */
export function stateProblems(u: Universe, s: State): Finding[] {
  const out: Finding[] = [];
  s.forEach((repo, r) => {
    const name = u.repos[r];
    repo.tags.forEach((m, t) => {
      if (m !== null && !repo.revs[m]) {
        out.push({
          message: `${name}:${u.tags[t]} names ${u.manifests[m].name}, which is not stored`,
          keys: [tagKey(r, t), revKey(r, m)],
        });
      }
    });
    u.manifests.forEach((m, i) => {
      if (!repo.revs[i]) return;
      for (const c of m.children) {
        if (!repo.revs[c]) {
          out.push({
            message: `${name}: stored index ${m.name} lists ${u.manifests[c].name}, not stored`,
            keys: [revKey(r, i), revKey(r, c)],
          });
        }
      }
      for (const b of m.blobs) {
        if (!repo.links[b]) {
          out.push({
            message: `${name}: stored ${m.name} needs ${u.blobs[b].name}, not linked`,
            keys: [revKey(r, i), linkKey(r, b)],
          });
        }
      }
    });
  });
  return out;
}

/** An answered operation of a batch. */
export interface Answered {
  readonly op: Op;
  readonly outcome: Outcome;
}

/** Answers after which an operation certainly changed nothing. */
const NO_EFFECT: Partial<Record<Op["kind"], readonly number[]>> = {
  mountBlob: [202],
  deleteBlob: [404, 405],
  putManifest: [400],
  deleteTag: [404],
  deleteManifest: [404, 409],
};

/** Success statuses of the operations that change something. */
const SUCCESS: Partial<Record<Op["kind"], number>> = {
  pushBlob: 201,
  mountBlob: 201,
  deleteBlob: 202,
  putManifest: 201,
  deleteTag: 202,
  deleteManifest: 202,
};

/**
 * Whether an answered operation changed the state: "yes" for a success, "no" for a read or
 * an allowed refusal, "maybe" for an answer that is not allowed (a 5xx, no answer) and for a
 * garbage collection.
 */
export function effectOf(op: Op, status: number): "yes" | "no" | "maybe" {
  if (op.kind === "gc") return "maybe"; // it may or may not have removed any revision or link
  const success = SUCCESS[op.kind];
  if (success === undefined) return "no";
  if (status === success) return "yes";
  return NO_EFFECT[op.kind]?.includes(status) ? "no" : "maybe";
}

/**
 * The view of operation `at` in hindsight: the state before the batch, where a fact is
 * unknown only if another operation of the batch may have changed it (given the answers).
 * A fact no other operation changed had its value from before the batch when `at` ran, so
 * `predict` over this view gives answers linearizability requires whatever the interleaving.
 */
export function hindsightView(
  u: Universe,
  before: State,
  batch: readonly Answered[],
  at: number,
): View {
  const ops = batch.map((a) => a.op);
  const unknown = new Set<string>();
  batch.forEach(({ op, outcome }, i) => {
    if (i === at || effectOf(op, outcome.status) === "no") return;
    for (const key of writeKeys(u, op, before, ops)) unknown.add(key);
  });
  return { state: before, unknown };
}

/**
 * Checks that the state after a batch is explained by the batch's answers, as any
 * linearization would have it:
 * - a revision, link or tag value appears only through a PUT, push or mount that succeeded
 *   (or whose answer was not allowed, so may have);
 * - one stored before, or acknowledged, disappears only through a DELETE that may have
 *   removed it;
 * - one whose DELETE was acknowledged is gone unless a write may have brought it back.
 */
export function historyProblems(
  u: Universe,
  before: State,
  after: State,
  batch: readonly Answered[],
): Finding[] {
  const out: Finding[] = [];
  const effects = batch.map(({ op, outcome }) => ({ op, effect: effectOf(op, outcome.status) }));
  const yes = (pred: (op: Op) => boolean) => effects.some((e) => e.effect === "yes" && pred(e.op));
  const maybe = (pred: (op: Op) => boolean) => effects.some((e) => e.effect !== "no" && pred(e.op));
  u.repos.forEach((name, r) => {
    u.manifests.forEach((m, i) => {
      const key = revKey(r, i);
      const isPut = (op: Op) => op.kind === "putManifest" && op.repo === r && op.manifest === i;
      const isDel = (op: Op) =>
        op.kind === "gc" || (op.kind === "deleteManifest" && op.repo === r && op.manifest === i);
      const was = before[r].revs[i];
      const is = after[r].revs[i];
      if (is && !was && !maybe(isPut)) {
        out.push({ message: `${name}: ${m.name} stored, never PUT`, keys: [key] });
      }
      if (!is && (was || yes(isPut)) && !maybe(isDel)) {
        out.push({
          message: `${name}: ${m.name} ${
            was ? "was stored" : "was PUT (201)"
          }, now gone, and no DELETE of it succeeded`,
          keys: [key],
        });
      }
      if (is && yes(isDel) && !maybe(isPut)) {
        out.push({
          message: `${name}: ${m.name} still stored after its DELETE answered 202`,
          keys: [key],
        });
      }
    });
    u.blobs.forEach((b, i) => {
      const key = linkKey(r, i);
      const isAdd = (op: Op) =>
        (op.kind === "pushBlob" || op.kind === "mountBlob") && op.repo === r && op.blob === i;
      const isDel = (op: Op) =>
        op.kind === "gc" || (op.kind === "deleteBlob" && op.repo === r && op.blob === i);
      const was = before[r].links[i];
      const is = after[r].links[i];
      if (is && !was && !maybe(isAdd)) {
        out.push({ message: `${name}: ${b.name} linked, never pushed`, keys: [key] });
      }
      if (!is && (was || yes(isAdd)) && !maybe(isDel)) {
        out.push({
          message: `${name}: link of ${b.name} lost, and no blob DELETE of it succeeded`,
          keys: [key],
        });
      }
      if (is && yes(isDel) && !maybe(isAdd)) {
        out.push({
          message: `${name}: ${b.name} still linked after its DELETE answered 202`,
          keys: [key],
        });
      }
    });
    u.tags.forEach((tag, t) => {
      const key = tagKey(r, t);
      const putsTo = (kind: "yes" | "maybe") =>
        new Set(
          effects.flatMap(({ op, effect }) =>
            op.kind === "putManifest" && op.repo === r && op.tag === t &&
              (effect === "yes" || (kind === "maybe" && effect === "maybe"))
              ? [op.manifest]
              : []
          ),
        );
      const sure = putsTo("yes");
      const puts = putsTo("maybe");
      const was = before[r].tags[t];
      const is = after[r].tags[t];
      const possible = new Set(puts);
      if (was !== null) possible.add(was);
      const removes = (names: ReadonlySet<number>) => (op: Op) =>
        (op.kind === "deleteTag" && op.repo === r && op.tag === t) ||
        (op.kind === "deleteManifest" && op.repo === r && names.has(op.manifest));
      const label = (m: number | null) => (m === null ? "nothing" : u.manifests[m].name);
      if (is !== null && !puts.has(is) && (sure.size > 0 || is !== was)) {
        out.push({
          message: `${name}:${tag} names ${label(is)}; before ${label(was)}, acknowledged PUTs [${
            [...sure].map(label).join(", ")
          }]`,
          keys: [key],
        });
      }
      if (is === null && (was !== null || sure.size) && !maybe(removes(possible))) {
        out.push({
          message: `${name}:${tag} is gone (it named ${[...possible].map(label).join(" or ")}), ` +
            "and no tag or manifest DELETE that removes it succeeded",
          keys: [key],
        });
      }
      if (is !== null && !puts.size && was !== null && yes(removes(new Set([was])))) {
        out.push({
          message: `${name}:${tag} still names ${
            label(is)
          } after a DELETE removing it answered 202`,
          keys: [key],
        });
      }
    });
  });
  return out;
}

/** Differences between two states (e.g. what the API shows and what the disk holds). */
export function stateDifferences(
  u: Universe,
  a: State,
  b: State,
  labels: readonly [string, string],
): Finding[] {
  const out: Finding[] = [];
  const [la, lb] = labels;
  u.repos.forEach((name, r) => {
    u.blobs.forEach((blob, i) => {
      if (a[r].links[i] !== b[r].links[i]) {
        out.push({
          message: `${name}: ${la} has ${blob.name} ${a[r].links[i] ? "" : "not "}linked, ${lb} ${
            b[r].links[i] ? "" : "not "
          }linked`,
          keys: [linkKey(r, i)],
        });
      }
    });
    u.manifests.forEach((m, i) => {
      if (a[r].revs[i] !== b[r].revs[i]) {
        out.push({
          message: `${name}: ${la} has ${m.name} ${a[r].revs[i] ? "" : "not "}stored, ${lb} ${
            b[r].revs[i] ? "" : "not "
          }stored`,
          keys: [revKey(r, i)],
        });
      }
    });
    u.tags.forEach((tag, t) => {
      if (a[r].tags[t] !== b[r].tags[t]) {
        const label = (m: number | null) => (m === null ? "nothing" : u.manifests[m].name);
        out.push({
          message: `${name}:${tag} names ${label(a[r].tags[t])} in ${la}, ${
            label(b[r].tags[t])
          } in ${lb}`,
          keys: [tagKey(r, t)],
        });
      }
    });
  });
  return out;
}
