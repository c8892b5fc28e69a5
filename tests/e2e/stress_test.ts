/**
 * Stress: seeded random operations from concurrent clients over a small universe (2
 * repositories, 4 tags, 7 blobs, images, indexes, referrers), checking the per-repository
 * consistency guarantee described in `tests/helpers/stress_model.ts`.
 *
 * The operations run in batches. In a batch, each client runs its share of the batch's
 * operations one after another, all clients at once. Every answer must be allowed for its
 * operation (never a 5xx), and must be exactly what linearizability requires when no other
 * client of the batch can change what it depends on. Between batches nothing is in flight,
 * and the test checks, through the API and on disk, that every tag names a stored manifest,
 * every stored index's children and every stored image's blobs are in the repository, the
 * referrers of every digest are exactly the stored manifests with that subject, the API and
 * the disk agree, and the new state is explained by the acknowledged operations. Garbage
 * collection (no grace window, untagged manifests dropped) is one of the operations, and
 * every 4 batches one runs alone and must leave exactly the state the model computes.
 *
 * Environment:
 * - `STRESS_SEED` (default 20240917): the seed of the universe and of the operations;
 * - `STRESS_OPS` (default 600): operations in all;
 * - `STRESS_BATCH` (default 48): operations per batch;
 * - `STRESS_CLIENTS` (default 8): concurrent clients; 1 runs everything sequentially;
 * - `STRESS_TRACE`: write the trace (JSON lines) to this file; a failing run always writes
 *   one to a temporary file and prints its path;
 * - `STRESS_KEEP_GOING=1`: report every problem at the end instead of stopping at the first
 *   failing batch.
 *
 * The operations depend only on the seed, `STRESS_OPS` and `STRESS_BATCH`, so the same values
 * replay the same operations in the same batches (the interleaving of clients varies).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { sha256Digest, type TempRegistry, tempRegistry } from "../helpers/registry.ts";
import { checkStore, type StoreReport } from "../helpers/store_check.ts";
import {
  type Answered,
  applyEffect,
  buildUniverse,
  checkOutcome,
  checkReferrers,
  cloneState,
  collected,
  describeKey,
  describeOp,
  effectOf,
  emptyState,
  type Finding,
  generateOps,
  hindsightView,
  historyProblems,
  legend,
  mountSource,
  type Op,
  type Outcome,
  predict,
  readKeys,
  revKey,
  Rng,
  type State,
  stateDifferences,
  stateProblems,
  tagKey,
  type Universe,
  writeKeys,
} from "../helpers/stress_model.ts";
import { OCI_INDEX, OCI_MANIFEST } from "../helpers/media_types.ts";

function envInt(name: string, fallback: number): number {
  const text = Deno.env.get(name);
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name}=${text}: not a count`);
  return value;
}

const SEED = envInt("STRESS_SEED", 20240917);
const OPS_DEFAULT = envInt("STRESS_OPS", 600);
const BATCH_DEFAULT = Math.max(1, envInt("STRESS_BATCH", 48));
const CLIENTS_DEFAULT = Math.max(1, envInt("STRESS_CLIENTS", 8));
/** A collection runs alone after every this many batches (and as a random operation). */
const GC_EVERY = 4;
const TRACE = Deno.env.get("STRESS_TRACE") || null;
const KEEP_GOING = Deno.env.get("STRESS_KEEP_GOING") === "1";
const REPLAY = `STRESS_SEED=${SEED} STRESS_OPS=${OPS_DEFAULT} STRESS_BATCH=${BATCH_DEFAULT} ` +
  `STRESS_CLIENTS=${CLIENTS_DEFAULT} ` +
  "NO_COLOR=1 deno test -A tests/e2e/stress_test.ts";

// ---------------------------------------------------------------------------------------------
// What the test runs against

/** A registry the test runs against: `fetch` relative to its base URL, and its log lines. */
export interface StressRegistry extends AsyncDisposable {
  readonly logs: string[];
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

/**
 * What a registry's storage holds, read without the registry: the data root's files
 * (`checkStore`), or the scale-out mode's bucket and database.
 */
export interface StoreListing
  extends Pick<StoreReport, "problems" | "blobs" | "revisions" | "tags" | "layers" | "uploads"> {
  /** Per repository, `<subject digest> <referrer digest>` of each of its referrers entries. */
  readonly referrers: Map<string, Set<string>>;
}

/** A registry for the test and how to read its storage; the run's counts. */
export interface StressSuite {
  /**
   * A new registry collecting only on demand, with no grace window, dropping untagged
   * manifests at once (no retention of any tag count), orphan referrers kept.
   */
  readonly registry: () => Promise<StressRegistry>;
  /** Reads `reg`'s storage for the universe's repositories; the name of what it reads. */
  readonly store: (reg: StressRegistry, repos: readonly string[]) => Promise<StoreListing>;
  readonly storeName: string;
  readonly label?: string;
  readonly ops?: number;
  readonly batch?: number;
  readonly clients?: number;
  /**
   * Whether the collection run alone every GC_EVERY batches must leave exactly the state the
   * model of a collection computes (default); off, its answer and the state after it are
   * still checked like any other.
   */
  readonly collectionModel?: boolean;
  /** Registers the test ignored. */
  readonly ignore?: boolean;
}

// ---------------------------------------------------------------------------------------------
// HTTP

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly bytes: Uint8Array<ArrayBuffer>;
}

async function call(
  reg: StressRegistry,
  method: string,
  path: string,
  init: { headers?: Record<string, string>; body?: Uint8Array<ArrayBuffer> } = {},
): Promise<Answer> {
  const res = await reg.fetch(path, { method, ...init });
  const bytes = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, bytes };
}

function text(answer: Answer): string {
  return new TextDecoder().decode(answer.bytes);
}

function errorCodeOf(answer: Answer): string | null {
  if (answer.status < 400 || answer.bytes.length === 0) return null;
  try {
    const body = JSON.parse(text(answer)) as { errors?: { code?: unknown }[] };
    const code = body.errors?.[0]?.code;
    return typeof code === "string" ? code : null;
  } catch {
    return null;
  }
}

/** The outcome of an answer; `step` names the request when it is not the flow's last. */
function outcomeOf(answer: Answer, step?: string): Outcome {
  return {
    status: answer.status,
    ...(step ? { step } : {}),
    code: errorCodeOf(answer),
    body: answer.status >= 300 ? text(answer).slice(0, 400) : "",
    digestHeader: answer.headers.get("docker-content-digest"),
    contentLength: answer.headers.get("content-length"),
    contentType: answer.headers.get("content-type"),
    subjectHeader: answer.headers.get("oci-subject"),
  };
}

const ACCEPT = [OCI_MANIFEST, OCI_INDEX].join(", ");

/** Runs one operation over HTTP. Never throws: a failed request is status 0. */
async function execute(reg: StressRegistry, u: Universe, op: Op): Promise<Outcome> {
  try {
    return await executeOrThrow(reg, u, op);
  } catch (error) {
    return { status: 0, code: null, body: `request failed: ${error}` };
  }
}

async function executeOrThrow(reg: StressRegistry, u: Universe, op: Op): Promise<Outcome> {
  const repo = u.repos[op.repo];
  switch (op.kind) {
    case "pushBlob": {
      const { bytes, digest } = u.blobs[op.blob];
      if (op.how === "monolithic") {
        return outcomeOf(
          await call(reg, "POST", `/v2/${repo}/blobs/uploads/?digest=${digest}`, {
            headers: { "content-type": "application/octet-stream" },
            body: bytes,
          }),
        );
      }
      const start = await call(reg, "POST", `/v2/${repo}/blobs/uploads/`);
      let location = start.headers.get("location");
      if (start.status !== 202 || !location) return outcomeOf(start, "POST (start)");
      let rest = bytes;
      if (op.how === "chunked") {
        const half = Math.floor(bytes.length / 2);
        const patch = await call(reg, "PATCH", location, {
          headers: {
            "content-type": "application/octet-stream",
            "content-range": `0-${half - 1}`,
          },
          body: bytes.slice(0, half),
        });
        location = patch.headers.get("location");
        if (patch.status !== 202 || !location) return outcomeOf(patch, "PATCH");
        rest = bytes.slice(half);
      }
      const put = await call(
        reg,
        "PUT",
        `${location}${location.includes("?") ? "&" : "?"}digest=${digest}`,
        { headers: { "content-type": "application/octet-stream" }, body: rest },
      );
      return outcomeOf(put);
    }
    case "mountBlob": {
      const { digest } = u.blobs[op.blob];
      const from = u.repos[mountSource(op)];
      const mount = await call(
        reg,
        "POST",
        `/v2/${repo}/blobs/uploads/?mount=${digest}&from=${from}`,
      );
      const location = mount.headers.get("location");
      if (mount.status === 202 && location) {
        // Not mounted: an upload session was opened instead; close it.
        const cancel = await call(reg, "DELETE", location);
        if (cancel.status !== 204) return outcomeOf(cancel, "DELETE (cancel the session)");
      }
      return outcomeOf(mount);
    }
    case "deleteBlob":
      return outcomeOf(await call(reg, "DELETE", `/v2/${repo}/blobs/${u.blobs[op.blob].digest}`));
    case "getBlob": {
      const answer = await call(
        reg,
        op.head ? "HEAD" : "GET",
        `/v2/${repo}/blobs/${u.blobs[op.blob].digest}`,
      );
      const out = outcomeOf(answer);
      return op.head || answer.status !== 200
        ? out
        : { ...out, contentDigest: await sha256Digest(answer.bytes) };
    }
    case "putManifest": {
      const m = u.manifests[op.manifest];
      const reference = op.tag === null ? m.digest : u.tags[op.tag];
      return outcomeOf(
        await call(reg, "PUT", `/v2/${repo}/manifests/${reference}`, {
          headers: { "content-type": m.mediaType },
          body: m.bytes,
        }),
      );
    }
    case "deleteTag":
      return outcomeOf(await call(reg, "DELETE", `/v2/${repo}/manifests/${u.tags[op.tag]}`));
    case "deleteManifest":
      return outcomeOf(
        await call(reg, "DELETE", `/v2/${repo}/manifests/${u.manifests[op.manifest].digest}`),
      );
    case "getManifest": {
      const reference = "tag" in op.ref ? u.tags[op.ref.tag] : u.manifests[op.ref.manifest].digest;
      const answer = await call(
        reg,
        op.head ? "HEAD" : "GET",
        `/v2/${repo}/manifests/${reference}`,
        {
          headers: { accept: ACCEPT },
        },
      );
      const out = outcomeOf(answer);
      return op.head || answer.status !== 200
        ? out
        : { ...out, contentDigest: await sha256Digest(answer.bytes) };
    }
    case "listTags": {
      const answer = await call(reg, "GET", `/v2/${repo}/tags/list`);
      const out = outcomeOf(answer);
      if (answer.status !== 200) return out;
      const body = JSON.parse(text(answer)) as { tags?: unknown };
      return { ...out, tags: Array.isArray(body.tags) ? body.tags.map(String) : [] };
    }
    case "gc":
      return outcomeOf(await call(reg, "POST", "/admin/gc?wait=true"));
    case "referrers": {
      const answer = await call(
        reg,
        "GET",
        `/v2/${repo}/referrers/${u.manifests[op.subject].digest}`,
      );
      const out = outcomeOf(answer);
      if (answer.status !== 200) return out;
      const body = JSON.parse(text(answer)) as { manifests?: unknown };
      return { ...out, referrers: Array.isArray(body.manifests) ? body.manifests : [] };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Batches

/** One answered operation, as the trace records it. */
interface TraceEntry {
  readonly batch: number;
  readonly seq: number;
  readonly client: number;
  readonly op: string;
  readonly status: number;
  readonly code: string | null;
  /** The statuses the model required while the batch ran (null: other clients decide). */
  readonly predicted: readonly number[] | null;
  readonly problems: readonly string[];
  /** Milliseconds since the run started. */
  readonly start: number;
  readonly end: number;
  /** Facts the answer depends on (`L`ink, `R`evision, `T`ag keys; see the trace header). */
  readonly reads: readonly string[];
  /** Facts the operation may change. */
  readonly writes: readonly string[];
}

interface BatchResult {
  readonly answered: Answered[];
  readonly entries: TraceEntry[];
  readonly findings: Finding[];
}

async function runBatch(
  reg: StressRegistry,
  u: Universe,
  batch: number,
  ops: readonly { seq: number; op: Op }[],
  start: State,
  t0: number,
  clients: number,
): Promise<BatchResult> {
  const batchOps = ops.map(({ op }) => op);
  const writes = ops.map(({ op }) => writeKeys(u, op, start, batchOps));
  const clientOf = (i: number) => i % clients;
  const answered: Answered[] = new Array(ops.length);
  const entries: TraceEntry[] = new Array(ops.length);
  const findings: Finding[] = [];
  const client = async (c: number) => {
    const unknown = new Set<string>();
    writes.forEach((keys, i) => {
      if (clientOf(i) !== c) { for (const key of keys) unknown.add(key); }
    });
    const view = { state: cloneState(start), unknown };
    for (let i = c; i < ops.length; i += clients) {
      const { seq, op } = ops[i];
      const prediction = predict(u, op, view);
      const reads = readKeys(u, op, view);
      const begin = performance.now() - t0;
      const out = await execute(reg, u, op);
      const end = performance.now() - t0;
      const problems = checkOutcome(u, op, out, prediction);
      applyEffect(u, op, out.status, view);
      // An answer that is not allowed leaves its effect unknown, to this client as well.
      if (effectOf(op, out.status) === "maybe") { for (const key of writes[i]) unknown.add(key); }
      answered[i] = { op, outcome: out };
      entries[i] = {
        batch,
        seq,
        client: c,
        op: describeOp(u, op),
        status: out.status,
        code: out.code,
        predicted: prediction?.statuses ?? null,
        problems,
        start: Math.round(begin * 10) / 10,
        end: Math.round(end * 10) / 10,
        reads,
        writes: writes[i],
      };
      for (const problem of problems) {
        findings.push({
          message: `op #${seq} (${describeOp(u, op)}): ${problem}`,
          keys: reads,
          op: seq,
        });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(clients, ops.length) }, (_, c) => client(c)));
  return { answered, entries, findings };
}

/**
 * Judges the answers again once all of them are known: a fact no other operation of the
 * batch changed (see `hindsightView`) had its value from before the batch. Skips operations
 * already found wrong while the batch ran.
 */
function hindsightFindings(u: Universe, before: State, result: BatchResult): Finding[] {
  const out: Finding[] = [];
  result.answered.forEach(({ op, outcome }, i) => {
    const entry = result.entries[i];
    if (entry.problems.length) return;
    const view = hindsightView(u, before, result.answered, i);
    const prediction = predict(u, op, view);
    if (!prediction) return;
    for (const problem of checkOutcome(u, op, outcome, prediction)) {
      out.push({
        message: `op #${entry.seq} (${entry.op}), judged after the batch: ${problem}`,
        keys: readKeys(u, op, view),
        op: entry.seq,
      });
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Quiescent observation

/** Reads the whole state through the API and checks it: bytes, tags, referrers, invariants. */
async function observeApi(
  reg: StressRegistry,
  u: Universe,
): Promise<{ state: State; findings: Finding[] }> {
  const state = emptyState(u);
  const findings: Finding[] = [];
  const problem = (message: string, keys: string[] = []) =>
    findings.push({ message: `API: ${message}`, keys });
  await Promise.all(u.repos.map(async (repo, r) => {
    await Promise.all(u.blobs.map(async (blob, b) => {
      const answer = await call(reg, "GET", `/v2/${repo}/blobs/${blob.digest}`);
      if (answer.status === 200) {
        state[r].links[b] = true;
        const digest = await sha256Digest(answer.bytes);
        if (digest !== blob.digest) problem(`GET blob ${blob.name} in ${repo} served ${digest}`);
      } else if (answer.status !== 404) {
        problem(`GET blob ${blob.name} in ${repo} answered ${answer.status} ${text(answer)}`);
      }
    }));
    await Promise.all(u.manifests.map(async (m, i) => {
      const answer = await call(reg, "GET", `/v2/${repo}/manifests/${m.digest}`, {
        headers: { accept: ACCEPT },
      });
      if (answer.status === 200) {
        state[r].revs[i] = true;
        const digest = await sha256Digest(answer.bytes);
        if (digest !== m.digest) problem(`GET ${repo}@${m.name} served bytes of ${digest}`);
        if (answer.headers.get("content-type") !== m.mediaType) {
          problem(`GET ${repo}@${m.name} has Content-Type ${answer.headers.get("content-type")}`);
        }
      } else if (answer.status !== 404) {
        problem(`GET ${repo}@${m.name} answered ${answer.status} ${text(answer)}`);
      }
    }));
    const list = await call(reg, "GET", `/v2/${repo}/tags/list`);
    let listed: string[] = [];
    if (list.status === 200) {
      const tags = (JSON.parse(text(list)) as { tags?: unknown }).tags;
      listed = Array.isArray(tags) ? tags.map(String) : [];
      const strange = listed.filter((t) => !u.tags.includes(t));
      if (strange.length) problem(`${repo} lists tags never pushed: ${strange.join(", ")}`);
    } else if (list.status !== 404) {
      problem(`tags list of ${repo} answered ${list.status} ${text(list)}`);
    }
    await Promise.all(u.tags.map(async (tag, t) => {
      const answer = await call(reg, "GET", `/v2/${repo}/manifests/${tag}`, {
        headers: { accept: ACCEPT },
      });
      const key = tagKey(r, t);
      if (answer.status === 200) {
        const digest = await sha256Digest(answer.bytes);
        const m = u.byDigest.get(digest);
        if (m === undefined) problem(`GET ${repo}:${tag} served bytes of ${digest}`, [key]);
        else state[r].tags[t] = m;
        if (answer.headers.get("docker-content-digest") !== digest) {
          problem(
            `GET ${repo}:${tag} served ${digest} as ${answer.headers.get("docker-content-digest")}`,
            [key],
          );
        }
        if (!listed.includes(tag)) problem(`${repo}:${tag} resolves but is not listed`, [key]);
      } else if (answer.status === 404) {
        if (listed.includes(tag)) problem(`${repo}:${tag} is listed but GET answered 404`, [key]);
      } else {
        problem(`GET ${repo}:${tag} answered ${answer.status} ${text(answer)}`, [key]);
      }
    }));
    await Promise.all(u.manifests.map(async (subject, s) => {
      const answer = await call(reg, "GET", `/v2/${repo}/referrers/${subject.digest}`);
      if (answer.status !== 200) {
        problem(`referrers of ${subject.name} in ${repo} answered ${answer.status}`);
        return;
      }
      const body = JSON.parse(text(answer)) as { manifests?: unknown };
      const { problems, listed } = checkReferrers(
        u,
        s,
        Array.isArray(body.manifests) ? body.manifests : [],
      );
      for (const p of problems) problem(`${repo}: ${p}`);
      const expected = u.manifests.flatMap((m, i) =>
        state[r].revs[i] && m.subject === s ? [i] : []
      );
      const names = (list: number[]) => list.map((i) => u.manifests[i].name).sort().join(", ");
      if (names(listed) !== names(expected)) {
        problem(
          `referrers of ${subject.name} in ${repo} are [${names(listed)}], the stored manifests ` +
            `with that subject are [${names(expected)}]`,
          [...new Set([...listed, ...expected])].map((i) => revKey(r, i)),
        );
      }
    }));
  }));
  for (const f of stateProblems(u, state)) findings.push({ ...f, message: `API: ${f.message}` });
  return { state, findings };
}

/** Lists a data root (with `checkStore`, and its referrers entries). */
async function listDataRoot(root: string, repos: readonly string[]): Promise<StoreListing> {
  const report = await checkStore(root);
  // Referrers entries: `_referrers/<alg>/<subject hex>/<alg>-<hex>`.
  const referrers = new Map<string, Set<string>>();
  for (const repo of repos) {
    const found = new Set<string>();
    const base = join(root, "repositories", repo, "_referrers");
    for (const alg of await names(base)) {
      for (const subject of await names(join(base, alg))) {
        for (const file of await names(join(base, alg, subject))) {
          if (file.startsWith(".tmp-")) continue;
          found.add(`${alg}:${subject} ${file.replace("-", ":")}`);
        }
      }
    }
    referrers.set(repo, found);
  }
  return { ...report, referrers };
}

/** The state a storage listing holds, checked (the referrers: exactly one per stored subject). */
function observeStore(
  what: string,
  report: StoreListing,
  u: Universe,
): { state: State; findings: Finding[] } {
  const state = emptyState(u);
  const findings: Finding[] = [];
  const problem = (message: string, keys: string[] = []) =>
    findings.push({ message: `${what}: ${message}`, keys });
  for (const p of report.problems) problem(p);
  if (report.uploads.length) problem(`upload sessions left: ${report.uploads.join(", ")}`);
  const split = (value: string, at: number) => [value.slice(0, at), value.slice(at + 1)];
  for (const entry of report.layers) {
    const [repo, digest] = split(entry, entry.lastIndexOf("@"));
    const r = u.repos.indexOf(repo);
    const b = u.blobs.findIndex((x) => x.digest === digest);
    if (r < 0 || b < 0) problem(`unexpected layer link ${entry}`);
    else state[r].links[b] = report.blobs.has(digest);
  }
  for (const entry of report.revisions) {
    const [repo, digest] = split(entry, entry.lastIndexOf("@"));
    const r = u.repos.indexOf(repo);
    const m = u.byDigest.get(digest);
    if (r < 0 || m === undefined) problem(`unexpected revision ${entry}`);
    else state[r].revs[m] = true;
  }
  for (const [entry, digest] of report.tags) {
    const [repo, tag] = split(entry, entry.lastIndexOf(":"));
    const r = u.repos.indexOf(repo);
    const t = u.tags.indexOf(tag);
    const m = u.byDigest.get(digest);
    if (r < 0 || t < 0 || m === undefined) problem(`unexpected tag ${entry} -> ${digest}`);
    else state[r].tags[t] = m;
  }
  for (const [r, repo] of u.repos.entries()) {
    const found = report.referrers.get(repo) ?? new Set<string>();
    const expected = new Set(
      u.manifests.flatMap((m, i) =>
        state[r].revs[i] && m.subject !== null
          ? [`${u.manifests[m.subject].digest} ${m.digest}`]
          : []
      ),
    );
    const label = (entry: string) => {
      const [subject, referrer] = entry.split(" ").map((d) => u.byDigest.get(d));
      const name = (m: number | undefined) => (m === undefined ? "?" : u.manifests[m].name);
      return `${name(referrer)} of ${name(subject)}`;
    };
    const keyOf = (entry: string) => {
      const m = u.byDigest.get(entry.split(" ")[1]);
      return m === undefined ? [] : [revKey(r, m)];
    };
    for (const entry of found) {
      if (!expected.has(entry)) {
        problem(
          `${repo}: referrers entry ${
            label(entry)
          } (${entry}) without a stored revision with that subject`,
          keyOf(entry),
        );
      }
    }
    for (const entry of expected) {
      if (!found.has(entry)) {
        problem(`${repo}: no referrers entry for stored ${label(entry)}`, keyOf(entry));
      }
    }
  }
  for (const f of stateProblems(u, state)) {
    findings.push({ ...f, message: `${what}: ${f.message}` });
  }
  return { state, findings };
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) out.push(entry.name);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return out.sort();
}

// ---------------------------------------------------------------------------------------------
// Reporting

function summarize(u: Universe, s: State): Record<string, unknown> {
  return Object.fromEntries(u.repos.map((repo, r) => [repo, {
    links: u.blobs.filter((_, b) => s[r].links[b]).map((b) => b.name),
    revisions: u.manifests.filter((_, m) => s[r].revs[m]).map((m) => m.name),
    tags: Object.fromEntries(
      u.tags.flatMap((tag, t) => {
        const m = s[r].tags[t];
        return m === null ? [] : [[tag, u.manifests[m].name]];
      }),
    ),
  }]));
}

function formatEntry(e: TraceEntry): string {
  const predicted = e.predicted ? ` (required ${e.predicted.join("|")})` : "";
  return `#${e.seq} client ${e.client} ${e.start}-${e.end} ms: ${e.op} -> ${e.status}${
    e.code ? ` ${e.code}` : ""
  }${predicted}`;
}

function formatFailure(
  u: Universe,
  batch: number,
  findings: readonly Finding[],
  entries: readonly TraceEntry[],
  before: State,
  trace: string,
  logs: readonly string[],
  replay: string,
): string {
  const lines = [
    `stress seed ${SEED}: ${findings.length} problem(s) at batch ${batch}`,
    `replay: ${replay}`,
    "(with STRESS_CLIENTS=1 the same operations run one at a time: what fails there is no race)",
    `trace: ${trace}`,
  ];
  for (const f of findings.slice(0, 25)) {
    lines.push(`- ${f.message}`);
    const keys = new Set(f.keys);
    if (keys.size === 0) continue;
    lines.push(`    about: ${[...keys].map((k) => describeKey(u, k)).join("; ")}`);
    // The operations of the batch that may have changed those facts, and the one that failed.
    const related = entries.filter((e) => e.seq === f.op || e.writes.some((k) => keys.has(k)));
    for (const e of related.slice(0, 12)) lines.push(`    ${formatEntry(e)}`);
    if (related.length > 12) lines.push(`    ... ${related.length - 12} more`);
  }
  if (findings.length > 25) lines.push(`... ${findings.length - 25} more problems`);
  if (logs.length) {
    lines.push(
      "registry log during the batch and the checks:",
      ...logs.slice(0, 10).map((l) => `  ${l}`),
    );
  }
  lines.push(`state before the batch: ${JSON.stringify(summarize(u, before))}`);
  lines.push("universe:", ...legend(u).map((l) => `  ${l}`));
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// The test

/** Registers the stress test against `suite`'s registry (its counts default to the variables'). */
export function stressSuite(suite: StressSuite): void {
  const label = suite.label ?? "";
  const OPS = suite.ops ?? OPS_DEFAULT;
  const BATCH = suite.batch ?? BATCH_DEFAULT;
  const CLIENTS = suite.clients ?? CLIENTS_DEFAULT;
  const replay = suite.ops === undefined && suite.batch === undefined && suite.clients === undefined
    ? REPLAY
    : `the same counts (seed ${SEED}, ${OPS} ops, batches of ${BATCH}, ${CLIENTS} clients)`;
  Deno.test({
    name: `${label}stress: seed ${SEED}, ${OPS} ops in batches of ${BATCH} over ${CLIENTS} ` +
      `clients; consistency after every batch${
        suite.collectionModel ?? true ? "" : " (collections not held to the model)"
      }`,
    ignore: suite.ignore ?? false,
    async fn() {
      const rng = new Rng(SEED);
      const u = await buildUniverse(rng);
      const ops = generateOps(rng, u, OPS);
      // Collections (an operation, and alone every GC_EVERY batches) with no grace window, and
      // untagged manifests dropped at once.
      await using reg = await suite.registry();
      const t0 = performance.now();
      const trace: string[] = [JSON.stringify({
        seed: SEED,
        ops: OPS,
        batch: BATCH,
        clients: CLIENTS,
        replay: REPLAY,
        keys: "L<repo>:<blob> link, R<repo>:<manifest> revision, T<repo>:<tag> tag (list indexes)",
        repos: u.repos,
        tags: u.tags,
        blobs: u.blobs.map((b) => b.name),
        manifests: u.manifests.map((m) => m.name),
        universe: legend(u),
      })];
      const failures: string[] = [];
      const seen = new Set<string>();
      let tracePath = TRACE;
      const writeTrace = async (): Promise<string> => {
        tracePath ??= await Deno.makeTempFile({
          prefix: `stress-trace-${SEED}-`,
          suffix: ".jsonl",
        });
        await Deno.writeTextFile(tracePath, trace.join("\n") + "\n");
        return tracePath;
      };
      let state = emptyState(u);
      for (let batch = 0; batch * BATCH < ops.length; batch++) {
        const slice = ops.slice(batch * BATCH, (batch + 1) * BATCH)
          .map((op, i) => ({ seq: batch * BATCH + i, op }));
        const logsBefore = reg.logs.length;
        const result = await runBatch(reg, u, batch, slice, state, t0, CLIENTS);
        for (const e of result.entries) trace.push(JSON.stringify(e));
        const api = await observeApi(reg, u);
        const disk = observeStore(suite.storeName, await suite.store(reg, u.repos), u);
        const logs = reg.logs.slice(logsBefore).filter((l) => !/^[A-Z]+ http/.test(l));
        // Every GC_EVERY batches, a collection alone must leave exactly what the model says.
        const gcFindings: Finding[] = [];
        let gcState: State | null = null;
        if (batch % GC_EVERY === GC_EVERY - 1) {
          const before = api.state;
          const answer = await call(reg, "POST", "/admin/gc?wait=true");
          const report = JSON.parse(text(answer)) as { error?: string };
          if (answer.status !== 200 || report.error !== undefined) {
            gcFindings.push({ message: `collection: ${answer.status} ${text(answer)}`, keys: [] });
          }
          const after = await observeApi(reg, u);
          const afterDisk = observeStore(suite.storeName, await suite.store(reg, u.repos), u);
          gcState = after.state;
          gcFindings.push(
            ...after.findings,
            ...afterDisk.findings,
            ...(suite.collectionModel ?? true
              ? stateDifferences(u, collected(u, before), after.state, [
                "the model of a collection",
                "the API after one",
              ])
              : []),
            ...stateDifferences(u, after.state, afterDisk.state, ["the API", suite.storeName]),
          );
        }
        const findings = [
          ...result.findings,
          ...gcFindings,
          ...hindsightFindings(u, state, result),
          ...api.findings,
          ...disk.findings,
          ...stateDifferences(u, api.state, disk.state, ["the API", suite.storeName]),
          ...historyProblems(u, state, api.state, result.answered).map((f) => ({
            ...f,
            message: `history: ${f.message}`,
          })),
        ].filter((f) => !KEEP_GOING || !seen.has(f.message));
        for (const f of findings) seen.add(f.message);
        trace.push(
          JSON.stringify({
            batch,
            state: summarize(u, api.state),
            problems: findings.map((f) => f.message),
          }),
        );
        if (findings.length) {
          const path = await writeTrace();
          const message = formatFailure(
            u,
            batch,
            findings,
            result.entries,
            state,
            path,
            logs,
            replay,
          );
          if (!KEEP_GOING) throw new Error(message);
          failures.push(message);
        }
        state = gcState ?? api.state;
      }
      if (TRACE || failures.length) await writeTrace();
      if (failures.length) throw new Error(failures.join("\n\n"));
    },
  });
}

if (Deno.mainModule === import.meta.url) {
  // Collections (an operation, and alone every GC_EVERY batches) with no grace window, and
  // untagged manifests dropped at once.
  stressSuite({
    registry: () =>
      tempRegistry({
        config: {
          gc: {
            intervalMs: 0,
            graceMs: 0,
            deleteOrphanReferrers: false,
            retention: [{
              repositories: ["**"],
              keepTags: null,
              keepTagPatterns: [],
              keepPulledWithinMs: null,
              untaggedAfterMs: 0,
            }],
          },
        },
      }),
    store: (reg, repos) => listDataRoot((reg as TempRegistry).dataDir, repos),
    storeName: "the disk",
  });
}

Deno.test("stress model: the checks catch what they must and spare what they may not judge", async () => {
  const rng = new Rng(7);
  const u = await buildUniverse(rng);
  assert.deepEqual(generateOps(new Rng(99), u, 50), generateOps(new Rng(99), u, 50));
  const idx = u.manifests.findIndex((m) => m.kind === "index");
  const child = u.manifests[idx].children[0];
  const blob = u.manifests[child].blobs[0];
  // Repository 0 holds the index, its children and their blobs; tag 0 names the index.
  const s = emptyState(u);
  for (const c of u.manifests[idx].children) {
    s[0].revs[c] = true;
    for (const b of u.manifests[c].blobs) s[0].links[b] = true;
  }
  s[0].revs[idx] = true;
  s[0].tags[0] = idx;
  assert.deepEqual(stateProblems(u, s), []);
  const known = { state: s, unknown: new Set<string>() };
  const deleteChild: Op = { kind: "deleteManifest", repo: 0, manifest: child };
  const deleteBlob: Op = { kind: "deleteBlob", repo: 0, blob };
  assert.deepEqual(predict(u, deleteChild, known)?.statuses, [409]);
  assert.ok(predict(u, deleteChild, known)?.names?.includes(u.manifests[idx].digest));
  assert.deepEqual(predict(u, deleteBlob, known)?.statuses, [405]);
  assert.deepEqual(
    predict(u, { kind: "putManifest", repo: 1, manifest: child, tag: null }, known)?.statuses,
    [400],
  );
  // Another client may delete the index: the child's DELETE is no longer judged.
  assert.equal(
    predict(u, deleteChild, { state: s, unknown: new Set([revKey(0, idx)]) }),
    null,
  );
  // Broken states are reported.
  const dangling = cloneState(s);
  dangling[0].revs[child] = false;
  dangling[0].revs[idx] = false;
  assert.equal(stateProblems(u, dangling).length, 1, "a tag naming a deleted revision");
  const orphan = cloneState(s);
  orphan[0].revs[child] = false;
  assert.ok(stateProblems(u, orphan).some((f) => f.message.includes("lists")));
  const unlinked = cloneState(s);
  unlinked[0].links[blob] = false;
  assert.ok(stateProblems(u, unlinked).some((f) => f.message.includes("not linked")));
  // In hindsight, a blob DELETE answered 202 while a manifest stored throughout needs it.
  const answer = (status: number): Outcome => ({ status, code: null, body: "" });
  const alone: Answered[] = [
    { op: deleteBlob, outcome: answer(202) },
    { op: { kind: "getBlob", repo: 0, blob, head: true }, outcome: answer(404) },
  ];
  const prediction = predict(u, deleteBlob, hindsightView(u, s, alone, 0));
  assert.deepEqual(prediction?.statuses, [405]);
  assert.notDeepEqual(checkOutcome(u, deleteBlob, answer(202), prediction), []);
  // ...but not when a DELETE of every manifest needing it may have come first.
  const raced: Answered[] = [
    ...alone,
    ...u.manifests.flatMap((m, i): Answered[] =>
      m.blobs.includes(blob)
        ? [{ op: { kind: "deleteManifest", repo: 0, manifest: i }, outcome: answer(202) }]
        : []
    ),
  ];
  assert.equal(predict(u, deleteBlob, hindsightView(u, s, raced, 0)), null);
  // A collection alone keeps the tagged index, its children and their links; it drops an
  // untagged image no index lists and the links only it needed, but keeps referrers.
  const loose = u.manifests.findIndex((m, i) =>
    m.kind === "image" && !u.manifests[idx].children.includes(i)
  );
  const referrer = u.manifests.findIndex((m) => m.kind === "referrer");
  const littered = cloneState(s);
  littered[0].revs[loose] = true;
  littered[0].revs[referrer] = true;
  for (const b of [...u.manifests[loose].blobs, ...u.manifests[referrer].blobs]) {
    littered[0].links[b] = true;
  }
  const swept = collected(u, littered);
  assert.equal(swept[0].revs[loose], false);
  assert.equal(swept[0].revs[referrer], true);
  assert.deepEqual(stateProblems(u, swept), []);
  const kept = cloneState(s);
  kept[0].revs[referrer] = true;
  for (const b of u.manifests[referrer].blobs) kept[0].links[b] = true;
  assert.deepEqual(swept, kept);
  // In a batch a collection may remove any revision or link: history does not blame it.
  const gone = cloneState(s);
  gone[0].links[blob] = false;
  assert.equal(historyProblems(u, s, gone, []).length, 1);
  assert.deepEqual(
    historyProblems(u, s, gone, [{ op: { kind: "gc", repo: 0 }, outcome: answer(200) }]),
    [],
  );
  // History: a tag vanishing without a DELETE; a link appearing without a push.
  const after = cloneState(s);
  after[0].tags[0] = null;
  after[1].links[blob] = true;
  const history = historyProblems(u, s, after, []).map((f) => f.message);
  assert.equal(history.length, 2, history.join("; "));
  assert.deepEqual(
    historyProblems(u, s, after, [
      { op: { kind: "deleteTag", repo: 0, tag: 0 }, outcome: answer(202) },
      { op: { kind: "mountBlob", repo: 1, blob }, outcome: answer(201) },
    ]),
    [],
  );
});
