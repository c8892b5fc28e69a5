/**
 * Crash safety: the registry runs as its own process over one data root; several clients push
 * concurrently (monolithic and chunked blobs, manifests with subjects, tag moves and deletes);
 * the process is killed with SIGKILL at a random moment and restarted on the same root, again
 * and again. After every restart the store must be sound (tests/helpers/store_check.ts), every
 * blob and manifest acknowledged with 201 must still be there, every tag must hold its last
 * acknowledged value (or the value of a write cut by the kill), and every upload session whose
 * POST was acknowledged must be resumable from at least its last acknowledged offset.
 *
 * `CRASH_ITERATIONS` (default 30) and `CRASH_SEED` tune a run; `deno task test:crash` runs more.
 */

import { mulberry32 } from "../helpers/stress_model.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { checkStore } from "../helpers/store_check.ts";
import { type RegistryProcess, sha256Digest, spawnRegistry } from "../helpers/registry.ts";
import { OCI_MANIFEST as MANIFEST_TYPE } from "../helpers/media_types.ts";

const ITERATIONS = Number(Deno.env.get("CRASH_ITERATIONS") ?? 30);
const SEED = Number(Deno.env.get("CRASH_SEED") ?? Math.floor(Math.random() * 2 ** 31));
const WORKERS = 4;

const random = mulberry32(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));

function bytesOf(length: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 4) {
    const word = (random() * 2 ** 32) >>> 0;
    out[i] = word;
    if (i + 1 < length) out[i + 1] = word >>> 8;
    if (i + 2 < length) out[i + 2] = word >>> 16;
    if (i + 3 < length) out[i + 3] = word >>> 24;
  }
  return out;
}

/** A few contents pushed by every worker, so the same blob is committed many times. */
const SHARED = Array.from({ length: 4 }, (_, i) => bytesOf(1000 + i * 5000));

interface TrackedSession {
  readonly repo: string;
  readonly uuid: string;
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly digest: string;
  /** Bytes the registry acknowledged (the last 202 Range end + 1). */
  acked: number;
  /** Whether a PUT completing the session was sent and not answered. */
  completing: boolean;
  /** Whether a request on the session is in flight (owned by a worker). */
  busy: boolean;
}

interface TagState {
  /** Last acknowledged value: a digest, or null for "absent". */
  acked: string | null;
  /** A write sent and not answered: a digest, "absent" for a delete, null when none. */
  inflight: string | "absent" | null;
}

/** What the clients know the registry acknowledged, across every run. */
class Ledger {
  /** `repo@digest` of blobs whose upload got 201. */
  readonly blobs = new Set<string>();
  /** `repo@digest` -> size, for manifests whose PUT got 201. */
  readonly manifests = new Map<string, number>();
  /** Manifest digests acknowledged per repository, for building subjects. */
  readonly manifestsByRepo = new Map<string, { digest: string; size: number }[]>();
  /** Digests of blobs per repository, for building manifests. */
  readonly blobsByRepo = new Map<string, { digest: string; size: number }[]>();
  readonly tags = new Map<string, TagState>();
  readonly sessions = new Map<string, TrackedSession>();
  readonly failures: string[] = [];
  counts = { blobs: 0, manifests: 0, chunks: 0, tagMoves: 0, deletes: 0, driven: 0, cutCommits: 0 };

  blobAcked(repo: string, digest: string, size: number) {
    this.blobs.add(`${repo}@${digest}`);
    const list = this.blobsByRepo.get(repo) ?? [];
    if (!list.some((b) => b.digest === digest)) list.push({ digest, size });
    this.blobsByRepo.set(repo, list);
    this.counts.blobs++;
  }

  manifestAcked(repo: string, digest: string, size: number) {
    this.manifests.set(`${repo}@${digest}`, size);
    const list = this.manifestsByRepo.get(repo) ?? [];
    if (!list.some((m) => m.digest === digest)) list.push({ digest, size });
    this.manifestsByRepo.set(repo, list);
    this.counts.manifests++;
  }
}

/** A fetch that gives up after a while; throws on connection errors (the kill). */
async function request(
  base: string,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(15_000) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

function rangeEnd(headers: Headers): number {
  const m = /^0-([0-9]+)$/.exec(headers.get("range") ?? "");
  if (!m) throw new Error(`bad Range header ${headers.get("range")}`);
  return Number(m[1]);
}

/** One client: runs random operations until the server dies or `alive()` says stop. */
async function worker(
  id: number,
  base: string,
  ledger: Ledger,
  alive: () => boolean,
): Promise<void> {
  const repo = `crash/w${id}`;
  const expect = (what: string, got: number, ...want: number[]) => {
    if (!want.includes(got)) ledger.failures.push(`${what}: status ${got}, expected ${want}`);
    return want.includes(got);
  };

  const pushWhole = async () => {
    const bytes = random() < 0.3 ? pick(SHARED) : bytesOf(between(0, 200_000));
    const digest = await sha256Digest(bytes);
    if (random() < 0.5) {
      const res = await request(base, `/v2/${repo}/blobs/uploads/?digest=${digest}`, {
        method: "POST",
        body: bytes,
      });
      if (expect(`POST ?digest ${digest}`, res.status, 201)) {
        ledger.blobAcked(repo, digest, bytes.length);
      }
      return;
    }
    const start = await request(base, `/v2/${repo}/blobs/uploads/`, { method: "POST" });
    if (!expect("POST", start.status, 202)) return;
    const location = start.headers.get("location")!;
    const put = await request(base, `${location}?digest=${digest}`, { method: "PUT", body: bytes });
    if (expect(`PUT ${digest}`, put.status, 201)) ledger.blobAcked(repo, digest, bytes.length);
  };

  /** Sends chunks of a session until done, abandoned, or the server dies. */
  const drive = async (session: TrackedSession) => {
    const location = `/v2/${session.repo}/blobs/uploads/${session.uuid}`;
    while (session.acked < session.bytes.length) {
      if (!alive() || random() < 0.1) return; // abandon: a later run resumes it
      const end = Math.min(session.bytes.length, session.acked + between(1, 400_000)) - 1;
      const res = await request(base, location, {
        method: "PATCH",
        headers: { "Content-Range": `${session.acked}-${end}` },
        body: session.bytes.slice(session.acked, end + 1),
      });
      if (!expect(`PATCH ${session.uuid} ${session.acked}-${end}`, res.status, 202)) return;
      session.acked = rangeEnd(res.headers) + 1;
      ledger.counts.chunks++;
    }
    session.completing = true;
    const put = await request(base, `${location}?digest=${session.digest}`, { method: "PUT" });
    if (expect(`PUT ${session.uuid}`, put.status, 201)) {
      ledger.sessions.delete(session.uuid);
      ledger.blobAcked(session.repo, session.digest, session.bytes.length);
    }
  };

  const chunked = async () => {
    const bytes = bytesOf(between(1, 1_500_000));
    const digest = await sha256Digest(bytes);
    const start = await request(base, `/v2/${repo}/blobs/uploads/`, { method: "POST" });
    if (!expect("POST", start.status, 202)) return;
    const uuid = start.headers.get("docker-upload-uuid")!;
    const session: TrackedSession = {
      repo,
      uuid,
      bytes,
      digest,
      acked: 0,
      completing: false,
      busy: true,
    };
    ledger.sessions.set(uuid, session);
    try {
      await drive(session);
    } finally {
      session.busy = false;
    }
  };

  const resume = async (session: TrackedSession) => {
    session.busy = true;
    try {
      await drive(session);
      ledger.counts.driven++;
    } finally {
      session.busy = false;
    }
  };

  const pushManifest = async () => {
    const blobs = ledger.blobsByRepo.get(repo) ?? [];
    if (blobs.length === 0) return await pushWhole();
    const config = pick(blobs);
    const layers = Array.from({ length: between(0, 3) }, () => pick(blobs));
    const body: Record<string, unknown> = {
      schemaVersion: 2,
      mediaType: MANIFEST_TYPE,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar", ...l })),
      annotations: { nonce: String(random()) },
    };
    const earlier = ledger.manifestsByRepo.get(repo) ?? [];
    if (earlier.length > 0 && random() < 0.3) {
      body.subject = { mediaType: MANIFEST_TYPE, ...pick(earlier) };
      body.artifactType = "application/vnd.example.sbom";
    }
    const bytes = new TextEncoder().encode(JSON.stringify(body));
    const digest = await sha256Digest(bytes);
    const byTag = random() < 0.7;
    const tag = `t${between(0, 2)}`;
    const state = ledger.tags.get(`${repo}:${tag}`) ?? { acked: null, inflight: null };
    ledger.tags.set(`${repo}:${tag}`, state);
    if (byTag) state.inflight = digest;
    const res = await request(base, `/v2/${repo}/manifests/${byTag ? tag : digest}`, {
      method: "PUT",
      headers: { "Content-Type": MANIFEST_TYPE },
      body: bytes,
    });
    if (expect(`PUT manifest ${byTag ? tag : digest}`, res.status, 201)) {
      ledger.manifestAcked(repo, digest, bytes.length);
      if (byTag) {
        state.acked = digest;
        state.inflight = null;
        ledger.counts.tagMoves++;
      }
    }
  };

  const deleteTag = async () => {
    const tag = `t${between(0, 2)}`;
    const state = ledger.tags.get(`${repo}:${tag}`);
    if (!state || state.acked === null || state.inflight !== null) return;
    state.inflight = "absent";
    const res = await request(base, `/v2/${repo}/manifests/${tag}`, { method: "DELETE" });
    if (expect(`DELETE ${repo}:${tag}`, res.status, 202)) {
      state.acked = null;
      state.inflight = null;
      ledger.counts.deletes++;
    }
  };

  while (alive()) {
    const waiting = [...ledger.sessions.values()].find((s) => !s.busy && s.repo === repo);
    const r = random();
    try {
      if (waiting) await resume(waiting);
      else if (r < 0.3) await pushWhole();
      else if (r < 0.5) await chunked();
      else if (r < 0.9) await pushManifest();
      else await deleteTag();
    } catch (error) {
      if (alive()) ledger.failures.push(`worker ${id}: ${error}`);
      return;
    }
  }
}

/** Checks the store and the running registry against the ledger after a restart. */
async function verify(root: string, base: string, ledger: Ledger, run: number): Promise<void> {
  const report = await checkStore(root);
  assert.deepEqual(report.problems, [], `run ${run}: store problems`);
  for (const key of ledger.blobs) {
    assert.ok(report.layers.has(key), `run ${run}: acknowledged blob ${key} lost`);
    assert.ok(report.blobs.has(key.slice(key.indexOf("@") + 1)), `run ${run}: bytes of ${key}`);
  }
  for (const key of ledger.manifests.keys()) {
    assert.ok(report.revisions.has(key), `run ${run}: acknowledged manifest ${key} lost`);
  }
  for (const [key, state] of ledger.tags) {
    const now = report.tags.get(key) ?? null;
    const allowed = [state.acked];
    if (state.inflight !== null) allowed.push(state.inflight === "absent" ? null : state.inflight);
    assert.ok(allowed.includes(now), `run ${run}: tag ${key} is ${now}, expected ${allowed}`);
    // Settle the ledger on what the store now holds.
    state.acked = now;
    if (now !== null) ledger.manifests.set(`${key.split(":")[0]}@${now}`, 0);
    state.inflight = null;
  }
  // A tag is only readable through the registry if the revision is: ask it for one of them.
  for (const [key, digest] of report.tags) {
    const [repo, tag] = key.split(":");
    const res = await request(base, `/v2/${repo}/manifests/${tag}`, { method: "HEAD" });
    assert.equal(res.status, 200, `run ${run}: HEAD ${key}`);
    assert.equal(res.headers.get("docker-content-digest"), digest);
    break;
  }
  // Every session whose POST was acknowledged is resumable from at least its acknowledged
  // offset (or was completed by a PUT the kill cut), and holds a prefix of its bytes.
  for (const session of [...ledger.sessions.values()]) {
    const location = `/v2/${session.repo}/blobs/uploads/${session.uuid}`;
    const res = await request(base, location);
    const key = `${session.repo}@${session.digest}`;
    if (res.status === 404 && session.completing) {
      // The kill cut the completing PUT: either the blob was committed and linked, or the
      // commit was cut between the rename and the link and the session was purged (the
      // client never saw a 201, so it uploads again).
      ledger.sessions.delete(session.uuid);
      if (report.layers.has(key)) {
        ledger.blobAcked(session.repo, session.digest, session.bytes.length);
      } else ledger.counts.cutCommits++;
      continue;
    }
    assert.equal(res.status, 204, `run ${run}: session ${session.uuid} status: ${res.text}`);
    const onDisk = await Deno.readFile(join(root, "uploads", session.uuid, "data"));
    const range = onDisk.length === 0 ? "0-0" : `0-${onDisk.length - 1}`;
    assert.equal(res.headers.get("range"), range, `run ${run}: status matches the data`);
    assert.ok(onDisk.length >= session.acked, `run ${run}: session ${session.uuid} lost bytes`);
    assert.ok(onDisk.length <= session.bytes.length, `run ${run}: session ${session.uuid} grew`);
    assert.deepEqual(onDisk, session.bytes.subarray(0, onDisk.length), "session data is a prefix");
    session.acked = onDisk.length;
    session.completing = false;
    session.busy = false;
  }
  // Sessions nobody acknowledged (a POST cut by the kill) are resumable or already purged.
  for (const uuid of report.uploads) {
    if (ledger.sessions.has(uuid)) continue;
    const repo = await Deno.readTextFile(join(root, "uploads", uuid, "repository")).catch(() => "");
    if (!repo) continue;
    const res = await request(base, `/v2/${repo}/blobs/uploads/${uuid}`);
    assert.ok([204, 404].includes(res.status), `run ${run}: orphan session ${uuid}: ${res.status}`);
  }
}

Deno.test({
  name:
    `SIGKILL at random moments during concurrent pushes loses nothing acknowledged (seed ${SEED})`,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "registry-crash-" });
    const ledger = new Ledger();
    let proc: RegistryProcess | null = null;
    try {
      for (let run = 0; run < ITERATIONS; run++) {
        proc = await spawnRegistry(root);
        await verify(root, proc.url, ledger, run);
        let killed = false;
        const alive = () => !killed;
        const workers = Array.from(
          { length: WORKERS },
          (_, i) => worker(i, proc!.url, ledger, alive),
        );
        await new Promise((resolve) => setTimeout(resolve, between(30, 700)));
        killed = true;
        await proc.kill("SIGKILL");
        await Promise.all(workers);
        assert.deepEqual(ledger.failures, [], `run ${run}: unexpected answers`);
      }
      proc = await spawnRegistry(root);
      await verify(root, proc.url, ledger, ITERATIONS);
      const c = ledger.counts;
      console.log(
        `crash: ${ITERATIONS} kills, seed ${SEED}: ${c.blobs} blobs, ${c.chunks} chunks, ` +
          `${c.manifests} manifests, ${c.tagMoves} tag moves, ${c.deletes} tag deletes, ` +
          `${c.driven} sessions taken up again, ${c.cutCommits} commits cut`,
      );
      assert.ok(c.blobs > 0 && c.manifests > 0, "the workload ran");
    } finally {
      await proc?.kill("SIGKILL");
      await Deno.remove(root, { recursive: true });
    }
  },
});

/** Whether `strace` can run here (it is not installed on every machine). */
function straceAvailable(): boolean {
  try {
    return new Deno.Command("strace", { args: ["-V"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/**
 * Reads an `strace -f -y` log in order and reports every acknowledgement (an HTTP 201/202
 * written to a socket) sent while a write under `root` was not yet flushed: a written file
 * not fsync'd, a rename or a new folder whose parent folder was not fsync'd, or a rename of
 * a file that was not fsync'd first.
 */
export function unflushedAcks(
  log: string,
  root: string,
): { problems: string[]; acks: number; flushes: number } {
  const problems: string[] = [];
  const pending = new Set<string>();
  const partial = new Map<string, string>();
  // Garbage collection's activity journal (`gc/`) is written in the background, durably, and
  // no acknowledgement depends on it.
  const inRoot = (path: string) => path.startsWith(`${root}/`) && !path.startsWith(`${root}/gc/`);
  const parent = (path: string) => path.slice(0, path.lastIndexOf("/"));
  let acks = 0;
  let flushes = 0;
  for (let line of log.split("\n")) {
    const tid = line.split(" ")[0];
    if (line.includes("<unfinished ...>")) {
      partial.set(tid, line.replace(/\s*<unfinished \.\.\.>\s*$/, ""));
      continue;
    }
    const resumed = /^\S+\s+<\.\.\. \w+ resumed>(.*)$/.exec(line);
    if (resumed) {
      // strace pads a resumed call's result: `<... fdatasync resumed>)          = 0`.
      line = (partial.get(tid) ?? "") + resumed[1].replace(/^\s*\)\s+=/, ") =");
      partial.delete(tid);
    }
    let m;
    if ((m = /^\S+\s+(?:f|fdata)sync\(\d+<([^>]+)>\) = 0/.exec(line))) {
      pending.delete(`write ${m[1]}`);
      pending.delete(`entry ${m[1]}`);
      if (inRoot(m[1]) || m[1] === root) flushes++;
    } else if ((m = /^\S+\s+(?:write|pwrite64|writev)\(\d+<([^>]+)>.* = [1-9]/.exec(line))) {
      if (inRoot(m[1])) pending.add(`write ${m[1]}`);
    } else if (
      (m = /^\S+\s+rename(?:at2?)?\((?:AT_FDCWD, )?"([^"]+)", (?:AT_FDCWD, )?"([^"]+)".*\) = 0/
        .exec(
          line,
        ))
    ) {
      if (pending.has(`write ${m[1]}`)) problems.push(`renamed before its flush: ${m[1]}`);
      if (inRoot(m[2])) pending.add(`entry ${parent(m[2])}`);
    } else if ((m = /^\S+\s+mkdir(?:at)?\((?:AT_FDCWD, )?"([^"]+)".*\) = 0/.exec(line))) {
      if (inRoot(m[1])) pending.add(`entry ${parent(m[1])}`);
    } else if (
      /(?:sendto|sendmsg|write|writev)\(\d+<(?:socket|TCP)[^>]*>, .*HTTP\/1\.1 20[12]/.test(line)
    ) {
      acks++;
      if (pending.size > 0) {
        problems.push(`${/HTTP\/1\.1 20[12]/.exec(line)![0]} sent before: ${[...pending]}`);
        pending.clear();
      }
    }
  }
  return { problems, acks, flushes };
}

Deno.test({
  name: "every 201/202 is sent only after its data, renames and new folders are fsync'd (strace)",
  ignore: !straceAvailable(),
  async fn() {
    const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "registry-fsync-" }));
    const log = `${root}.strace`;
    const { PROJECT_ROOT } = await import("../helpers/registry.ts");
    const child = new Deno.Command("strace", {
      args: [
        "-f",
        "-y",
        "-s",
        "4096",
        "-e",
        "trace=execve,fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat,write,pwrite64,writev,sendto,sendmsg",
        "-o",
        log,
        Deno.execPath(),
        "run",
        "-A",
        `${PROJECT_ROOT}main.ts`,
        "--port",
        "0",
        "--data",
        root,
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let seen = "";
      let m: RegExpExecArray | null = null;
      while (!(m = /listening on (http:\/\/[0-9.]+:[0-9]+)/.exec(seen))) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`registry under strace did not start: ${seen}`);
        seen += value;
      }
      reader.releaseLock();
      const base = m[1];
      const expectStatus = async (path: string, init: RequestInit, status: number) => {
        const res = await request(base, path, init);
        assert.equal(res.status, status, `${init.method} ${path}: ${res.text}`);
        return res;
      };
      // A monolithic push into a new repository (new folders all the way down).
      const layer = bytesOf(70_000);
      const layerDigest = await sha256Digest(layer);
      await expectStatus(`/v2/fsync/a/blobs/uploads/?digest=${layerDigest}`, {
        method: "POST",
        body: layer,
      }, 201);
      // A chunked push: two PATCHes (each acknowledged with 202) and an empty PUT.
      const config = new TextEncoder().encode('{"architecture":"amd64","os":"linux"}');
      const configDigest = await sha256Digest(config);
      const start = await expectStatus("/v2/fsync/a/blobs/uploads/", { method: "POST" }, 202);
      const location = start.headers.get("location")!;
      await expectStatus(location, {
        method: "PATCH",
        headers: { "Content-Range": "0-9" },
        body: config.slice(0, 10),
      }, 202);
      await expectStatus(location, {
        method: "PATCH",
        headers: { "Content-Range": `10-${config.length - 1}` },
        body: config.slice(10),
      }, 202);
      await expectStatus(`${location}?digest=${configDigest}`, { method: "PUT" }, 201);
      // A manifest by tag, then a tag move, then a referrer.
      const manifest = (n: number, extra = {}) =>
        new TextEncoder().encode(JSON.stringify({
          schemaVersion: 2,
          mediaType: MANIFEST_TYPE,
          config: {
            mediaType: "application/vnd.oci.image.config.v1+json",
            digest: configDigest,
            size: config.length,
          },
          layers: [{
            mediaType: "application/vnd.oci.image.layer.v1.tar",
            digest: layerDigest,
            size: layer.length,
          }],
          annotations: { n: String(n) },
          ...extra,
        }));
      const put = (ref: string, body: Uint8Array<ArrayBuffer>) =>
        expectStatus(`/v2/fsync/a/manifests/${ref}`, {
          method: "PUT",
          headers: { "Content-Type": MANIFEST_TYPE },
          body,
        }, 201);
      const first = manifest(1);
      await put("v1", first);
      await put("v1", manifest(2));
      await put(
        "sbom",
        manifest(3, {
          artifactType: "application/vnd.example.sbom",
          subject: {
            mediaType: MANIFEST_TYPE,
            digest: await sha256Digest(first),
            size: first.length,
          },
        }),
      );
      // The registry is strace's child: its pid opens the log (the traced execve).
      const pid = Number(/^(\d+) +execve\(/.exec(await Deno.readTextFile(log))?.[1]);
      assert.ok(pid > 0, "the registry's pid is in the trace");
      Deno.kill(pid, "SIGKILL");
      await child.status;
      const { problems, acks, flushes } = unflushedAcks(await Deno.readTextFile(log), root);
      assert.deepEqual(problems, []);
      assert.equal(acks, 8, "every acknowledgement was seen in the trace");
      assert.ok(flushes > 20, `the flushes were seen in the trace (${flushes})`);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      await child.stdout.cancel().catch(() => {});
      await Deno.remove(root, { recursive: true });
      await Deno.remove(log).catch(() => {});
    }
  },
});
