/**
 * Rows of the benchmark that measure what users see: real clients (curl, skopeo, podman,
 * containerd's ctr) and a Go-style chunked sender (bench/go_sender.ts), against both servers
 * in the same run as the in-process rows of bench/workloads.ts (which stay as the "ideal
 * client"). Each timed part is the client's whole command, process start included.
 *
 * Checks: every push is checked by hashing the blob files the registry stored (its data root
 * on disk) against the pushed digests, and the manifest it serves against the digest the
 * client reports; every pull by the pulled bytes' digests (curl's file, skopeo's `oci:`
 * layout, containerd's content store) or, for podman, by the pulled image's manifest digest
 * and diff_ids as podman reports them (podman verified each blob itself while pulling).
 *
 * A client missing here, or one that cannot do something on this machine (containerd not
 * starting, say), skips its row with the reason in the table instead of failing the bench.
 */

import { join } from "node:path";
import { syncAll } from "./ceilings.ts";
import { goStyleRequest } from "./go_sender.ts";
import { Http1, parseHead } from "./http1.ts";
import { fileDigest, type LayoutImage, pushLayoutImage, writeLayoutImage } from "./images.ts";
import { type Server, which } from "./servers.ts";
import {
  type Blob,
  type Metric,
  pushMono,
  type RunOutput,
  sha256,
  timed,
  type Timing,
  warmBlobs,
  type Workload,
} from "./workloads.ts";

const MiB = 1024 * 1024;
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
const THROUGHPUT: readonly Metric[] = [{ key: "MiB/s", unit: "MiB/s", higherIsBetter: true }];

/** The names of the rows (for `--only`). */
export const CLIENT_ROWS: readonly string[] = [
  "curl-put",
  "curl-stream",
  "curl-chunked",
  "curl-pull",
  "go-stream",
  "skopeo-push",
  "skopeo-pull",
  "podman-push",
  "podman-pull",
  "ctr-push",
  "ctr-pull",
];

/** Thrown by a row that cannot run here: the row is reported as skipped, with the reason. */
export class SkipRow extends Error {
  /** A skip with its reason. */
  constructor(reason: string) {
    super(reason);
    this.name = "SkipRow";
  }
}

/** What the rows need from the benchmark. */
export interface ClientOptions {
  /** The blob of the curl and Go-style rows (the in-process push rows' blob). */
  readonly blob: Blob;
  /** Chunk size of the Go-style sender. */
  readonly frame: number;
  /** PATCHes of curl-chunked. */
  readonly chunkedParts: number;
  /** Total bytes of the multi-layer image of the skopeo, podman and ctr rows. */
  readonly imageBytes: number;
  /** Its number of layers. */
  readonly imageLayers: number;
  /** A scratch folder (files, layouts, client configuration, containerd's root). */
  readonly workDir: string;
  /** A client command running longer than this is stopped and its row skipped. */
  readonly toolTimeoutSeconds: number;
}

/** The rows and a clean-up for what they started (containerd). */
export interface ClientRows {
  readonly workloads: Workload[];
  dispose(): Promise<void>;
}

/** CPU seconds of this process and its waited-for children (/proc/self/stat). */
function cpuWithChildren(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3; utime, stime, cutime, cstime are fields 14-17.
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
}

/** `timed`, with the CPU of the client programs this process runs and waits for counted. */
function timedClients(fn: () => Promise<void>): Promise<Timing> {
  return timed(fn, cpuWithChildren);
}

function throughput(bytes: number, t: Timing, note?: string) {
  const out: RunOutput = { metrics: { "MiB/s": bytes / MiB / t.seconds }, ...t };
  return note ? { ...out, note } : out;
}

/** The file holding a committed blob in a server's data root. */
async function storedFile(server: Server, digest: string): Promise<string> {
  const path = server.blobPath(digest.slice("sha256:".length));
  const info = await Deno.stat(path);
  return info.isDirectory ? join(path, "data") : path; // Distribution: …/<hex>/data
}

/** Hashes the files a server stored for these digests; throws on a mismatch. */
async function verifyStored(server: Server, digests: readonly string[]): Promise<void> {
  for (const digest of digests) {
    const got = await fileDigest(await storedFile(server, digest));
    if (got !== digest) {
      throw new Error(`${server.name} stored bytes hashing to ${got} as ${digest}`);
    }
  }
}

/** Removes committed blobs so that the next run uploads them again (as workloads.ts does). */
async function dropStored(server: Server, digests: readonly string[]): Promise<void> {
  for (const digest of digests) {
    await Deno.remove(server.blobPath(digest.slice("sha256:".length)), { recursive: true })
      .catch(() => {});
  }
  await syncAll();
}

/** A registry's manifest of repo:tag: bytes, digest and the blobs it names. */
async function fetchManifest(server: Server, repo: string, tag: string) {
  const conn = await Http1.connect(server.base);
  try {
    const res = await conn.request("GET", `/v2/${repo}/manifests/${tag}`, {
      headers: { Accept: `${OCI_MANIFEST}, ${DOCKER_MANIFEST}` },
    });
    if (res.status !== 200) throw new Error(`GET manifest ${repo}:${tag}: HTTP ${res.status}`);
    const json = JSON.parse(new TextDecoder().decode(res.body)) as {
      config: { digest: string; size: number };
      layers: { digest: string; size: number; mediaType: string }[];
    };
    return {
      bytes: res.body,
      digest: sha256(res.body),
      blobs: [json.config, ...json.layers],
      layers: json.layers,
    };
  } finally {
    conn.close();
  }
}

/** Runs a command; throws SkipRow on a timeout and Error (with stderr) on failure. */
async function tool(
  cmd: string,
  args: readonly string[],
  opts: { env?: Record<string, string>; timeoutSeconds: number },
): Promise<string> {
  const signal = AbortSignal.timeout(opts.timeoutSeconds * 1000);
  const out = await new Deno.Command(cmd, {
    args: [...args],
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal,
  }).output();
  const dec = new TextDecoder();
  if (signal.aborted) {
    throw new SkipRow(`${cmd} ${args.slice(0, 3).join(" ")} … ran over ${opts.timeoutSeconds} s`);
  }
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited ${out.code}:\n${dec.decode(out.stderr).slice(-2000)}`,
    );
  }
  return dec.decode(out.stdout);
}

/** The last response head of `curl -D -` output (after any `100 Continue`). */
function lastHead(text: string) {
  const blocks = text.split("\r\n\r\n").filter((b) => b.startsWith("HTTP/"));
  const last = blocks[blocks.length - 1];
  if (last === undefined) throw new Error(`curl printed no response head: ${text.slice(0, 300)}`);
  return { ...parseHead(new TextEncoder().encode(last)), interim: blocks.length - 1 };
}

function withDigest(url: string, digest: string): string {
  return `${url}${url.includes("?") ? "&" : "?"}digest=${encodeURIComponent(digest)}`;
}

/** Builds the client rows. */
export function clientWorkloads(opts: ClientOptions): ClientRows {
  const { blob, workDir } = opts;
  const size = blob.bytes.length;
  const timeoutSeconds = opts.toolTimeoutSeconds;
  const clientsDir = join(workDir, "clients");
  const env: Record<string, string> = {
    CONTAINERS_REGISTRIES_CONF: join(clientsDir, "registries.conf"),
    CONTAINERS_CONF: join(clientsDir, "containers.conf"),
    CONTAINERS_STORAGE_CONF: join(clientsDir, "storage.conf"),
    REGISTRY_AUTH_FILE: join(clientsDir, "auth.json"),
    TMPDIR: join(clientsDir, "tmp"),
  };
  const policy = join(clientsDir, "policy.json");
  let clientsReady: Promise<void> | null = null;
  const ensureClientsDir = () =>
    clientsReady ??= (async () => {
      await Deno.mkdir(env.TMPDIR!, { recursive: true });
      await Deno.writeTextFile(
        env.CONTAINERS_REGISTRIES_CONF!,
        "unqualified-search-registries = []\n",
      );
      await Deno.writeTextFile(env.CONTAINERS_CONF!, "");
      await Deno.writeTextFile(
        env.CONTAINERS_STORAGE_CONF!,
        `[storage]\ndriver = "vfs"\ngraphroot = "${join(clientsDir, "storage", "root")}"\n` +
          `runroot = "${join(clientsDir, "storage", "run")}"\n`,
      );
      await Deno.writeTextFile(env.REGISTRY_AUTH_FILE!, '{"auths":{}}\n');
      await Deno.writeTextFile(policy, '{"default":[{"type":"insecureAcceptAnything"}]}\n');
    })();
  const run = (cmd: string, args: readonly string[]) => tool(cmd, args, { env, timeoutSeconds });
  const host = (server: Server) => new URL(server.base).host;
  const requireTools = (...cmds: string[]) => {
    const missing = cmds.filter((c) => which(c) === null);
    if (missing.length > 0) throw new SkipRow(`${missing.join(", ")} not installed`);
  };

  // ---- curl and the Go-style sender: the push rows' blob, from a file --------------------

  const blobFile = join(workDir, "client-blob.bin");
  const partsDir = join(workDir, "client-parts");
  let blobFileReady: Promise<void> | null = null;
  const ensureBlobFile = () => blobFileReady ??= Deno.writeFile(blobFile, blob.bytes);
  const partSize = Math.ceil(size / opts.chunkedParts);
  let partsReady: Promise<void> | null = null;
  const ensureParts = () =>
    partsReady ??= (async () => {
      await Deno.mkdir(partsDir, { recursive: true });
      for (let i = 0, start = 0; start < size; i++, start += partSize) {
        await Deno.writeFile(
          join(partsDir, `part-${String(i).padStart(2, "0")}`),
          blob.bytes.subarray(start, Math.min(size, start + partSize)),
        );
      }
    })();

  /** One curl request: status, last response head, interim (100) responses seen. */
  const curl = async (args: string[], pipeFrom?: string) => {
    const base = ["-sS", "-D", "-", "-o", join(workDir, "curl-body")];
    const out = pipeFrom === undefined ? await run("curl", [...base, ...args]) : await run("bash", [
      "-c",
      'set -o pipefail; f="$1"; shift; cat "$f" | curl "$@"',
      "bash",
      pipeFrom,
      ...base,
      ...args,
    ]);
    return lastHead(out);
  };
  const curlStart = async (server: Server, repo: string): Promise<string> => {
    const res = await curl(["-X", "POST", `${server.base}/v2/${repo}/blobs/uploads/`]);
    const loc = res.headers.get("location");
    if (res.status !== 202 || !loc) throw new Error(`curl POST upload: HTTP ${res.status}`);
    return new URL(loc, server.base).href;
  };
  const expectCreated = (what: string, res: { status: number; headers: Map<string, string> }) => {
    const got = res.headers.get("docker-content-digest");
    if (res.status !== 201 || got !== blob.digest) {
      throw new Error(`${what}: HTTP ${res.status}, Docker-Content-Digest ${got}`);
    }
  };
  const OCTET = ["-H", "Content-Type: application/octet-stream"];

  const blobPushRow = (
    name: string,
    push: (server: Server, repo: string) => Promise<string | undefined>,
    setup: () => Promise<void>,
    tools: string[],
  ): Workload => ({
    name,
    metrics: THROUGHPUT,
    transfer: true,
    async setup() {
      requireTools(...tools);
      await setup();
    },
    async run(server, r) {
      let note: string | undefined;
      const t = await timedClients(async () => {
        note = await push(server, `bench/${name}-r${r}`);
      });
      await verifyStored(server, [blob.digest]);
      return throughput(size, t, note);
    },
    after: (server) => dropStored(server, [blob.digest]),
  });

  const curlPut = blobPushRow(
    "curl-put",
    async (server, repo) => {
      const loc = await curlStart(server, repo);
      const res = await curl(["-T", blobFile, ...OCTET, withDigest(loc, blob.digest)]);
      expectCreated("curl -T PUT", res);
      return res.interim > 0 ? "curl sent Expect: 100-continue" : undefined;
    },
    ensureBlobFile,
    ["curl"],
  );

  const curlStream = blobPushRow(
    "curl-stream",
    async (server, repo) => {
      const loc = await curlStart(server, repo);
      const patched = await curl(
        ["-X", "PATCH", "-T", "-", "-H", "Transfer-Encoding: chunked", ...OCTET, loc],
        blobFile,
      );
      const range = patched.headers.get("range");
      if (patched.status !== 202 || range !== `0-${size - 1}`) {
        throw new Error(`curl chunked PATCH: HTTP ${patched.status}, Range ${range}`);
      }
      const next = new URL(patched.headers.get("location") ?? loc, server.base).href;
      expectCreated(
        "curl PUT after PATCH",
        await curl(["-X", "PUT", withDigest(next, blob.digest)]),
      );
      return undefined;
    },
    ensureBlobFile,
    ["curl", "bash", "cat"],
  );

  const curlChunked = blobPushRow(
    "curl-chunked",
    async (server, repo) => {
      let loc = await curlStart(server, repo);
      for (let i = 0, start = 0; start < size; i++, start += partSize) {
        const end = Math.min(size, start + partSize) - 1;
        const res = await curl([
          "-X",
          "PATCH",
          "-T",
          join(partsDir, `part-${String(i).padStart(2, "0")}`),
          "-H",
          `Content-Range: ${start}-${end}`,
          ...OCTET,
          loc,
        ]);
        if (res.status !== 202) throw new Error(`curl PATCH ${start}-${end}: HTTP ${res.status}`);
        loc = new URL(res.headers.get("location") ?? loc, server.base).href;
      }
      expectCreated(
        "curl PUT after chunks",
        await curl(["-X", "PUT", withDigest(loc, blob.digest)]),
      );
      return `${opts.chunkedParts} curl PATCHes of ${(partSize / MiB).toFixed(0)} MiB`;
    },
    ensureParts,
    ["curl"],
  );

  const goStream = blobPushRow(
    "go-stream",
    async (server, repo) => {
      const conn = await Http1.connect(server.base);
      try {
        const posted = await conn.request("POST", `/v2/${repo}/blobs/uploads/`);
        const loc = posted.headers.get("location");
        if (posted.status !== 202 || !loc) throw new Error(`POST upload: HTTP ${posted.status}`);
        const target = new URL(loc, server.base);
        const patched = await goStyleRequest(
          server.base,
          "PATCH",
          target.pathname + target.search,
          blob.bytes,
          { frame: opts.frame, headers: { "Content-Type": "application/octet-stream" } },
        );
        const range = patched.headers.get("range");
        if (patched.status !== 202 || range !== `0-${size - 1}`) {
          throw new Error(`Go-style PATCH: HTTP ${patched.status}, Range ${range}`);
        }
        const next = new URL(patched.headers.get("location") ?? loc, server.base);
        const put = await conn.request("PUT", withDigest(next.pathname + next.search, blob.digest));
        expectCreated("PUT after Go-style PATCH", put);
        return `${patched.writes} socket writes for ${Math.ceil(size / opts.frame)} chunks of ${
          opts.frame / 1024
        } KiB`;
      } finally {
        conn.close();
      }
    },
    async () => {},
    [],
  );

  // curl pull: a blob of its own (the push blob with its second byte flipped), so that the
  // push rows' clean-up never deletes it.
  let pullBlobDigest: string | null = null;
  const withPullBytes = async <T>(fn: (b: Blob) => Promise<T>): Promise<T> => {
    blob.bytes[1] = blob.bytes[1]! ^ 0xff;
    try {
      pullBlobDigest ??= sha256(blob.bytes);
      return await fn({ bytes: blob.bytes, digest: pullBlobDigest });
    } finally {
      blob.bytes[1] = blob.bytes[1]! ^ 0xff;
    }
  };
  const curlPullFile = join(workDir, "curl-pull.bin");
  const curlPull: Workload = {
    name: "curl-pull",
    metrics: THROUGHPUT,
    transfer: true,
    async setup(server) {
      requireTools("curl");
      await withPullBytes(async (b) => {
        const conn = await Http1.connect(server.base);
        try {
          await pushMono(conn, server.base, "bench/curl-pull", b);
        } finally {
          conn.close();
        }
        await warmBlobs(server, [b.digest]);
      });
    },
    async run(server) {
      await Deno.remove(curlPullFile).catch(() => {});
      let status = 0;
      const t = await timedClients(async () => {
        status = Number(
          await run("curl", [
            "-sS",
            "-o",
            curlPullFile,
            "-w",
            "%{http_code}",
            `${server.base}/v2/bench/curl-pull/blobs/${pullBlobDigest}`,
          ]),
        );
      });
      const got = await fileDigest(curlPullFile);
      if (status !== 200 || got !== pullBlobDigest) {
        throw new Error(`curl pull from ${server.name}: HTTP ${status}, bytes hash to ${got}`);
      }
      await Deno.remove(curlPullFile);
      return throughput(size, t);
    },
  };

  // ---- multi-layer images: skopeo, podman, ctr ---------------------------------------------

  /** One new image per (row, run), removed once both servers have pushed it. */
  const images = new Map<string, { image: Promise<LayoutImage>; uses: number }>();
  const imageFor = (row: string, r: number): Promise<LayoutImage> => {
    const key = `${row}-r${r}`;
    let entry = images.get(key);
    if (!entry) {
      entry = {
        image: writeLayoutImage(join(workDir, "images", key), {
          layers: opts.imageLayers,
          totalBytes: opts.imageBytes,
          name: `bench.local/${key}:latest`,
        }),
        uses: 0,
      };
      images.set(key, entry);
    }
    entry.uses++;
    return entry.image;
  };
  /** Called after a server's run; true when both have used the image (it can go). */
  const doneWith = async (row: string, r: number): Promise<LayoutImage | null> => {
    const key = `${row}-r${r}`;
    const entry = images.get(key);
    if (!entry || entry.uses < 2) return null;
    images.delete(key);
    const image = await entry.image;
    await image.remove();
    return image;
  };

  // The image every pull row pulls, pushed to both servers (untimed) by the first pull row.
  let pullImage: Promise<LayoutImage> | null = null;
  const pulled = new Set<string>();
  const ensurePullImage = async (server: Server): Promise<LayoutImage> => {
    pullImage ??= writeLayoutImage(join(workDir, "images", "pull"), {
      layers: opts.imageLayers,
      totalBytes: opts.imageBytes,
      name: "bench.local/pull:latest",
    });
    const image = await pullImage;
    if (!pulled.has(server.name)) {
      await pushLayoutImage(server, "bench/image-pull", "latest", image);
      await warmBlobs(server, [...image.layers, image.config].map((ref) => ref.digest));
      pulled.add(server.name);
    }
    return image;
  };
  const imageNote = (image: LayoutImage) =>
    `${image.layers.length} layers, ${(image.totalBytes / MiB).toFixed(0)} MiB`;

  /** After a push: the stored manifest is the one the client reports, and every blob's bytes. */
  const checkPushed = async (server: Server, repo: string, clientDigest: string) => {
    const m = await fetchManifest(server, repo, "latest");
    if (m.digest !== clientDigest) {
      throw new Error(
        `${server.name} serves ${repo} as ${m.digest}; the client pushed ${clientDigest}`,
      );
    }
    await verifyStored(server, m.blobs.map((b) => b.digest));
    return m;
  };
  const pushedDigests = new Map<string, string[]>();

  const skopeoPush: Workload = {
    name: "skopeo-push",
    metrics: THROUGHPUT,
    transfer: true,
    async setup() {
      requireTools("skopeo");
      await ensureClientsDir();
    },
    async run(server, r) {
      const image = await imageFor("skopeo-push", r);
      const repo = `bench/skopeo-push-r${r}`;
      const digestFile = join(clientsDir, "digest");
      const t = await timedClients(async () => {
        await run("skopeo", [
          "--policy",
          policy,
          "copy",
          "--quiet",
          "--dest-tls-verify=false",
          "--digestfile",
          digestFile,
          `oci:${image.dir}:latest`,
          `docker://${host(server)}/${repo}:latest`,
        ]);
      });
      const m = await checkPushed(server, repo, (await Deno.readTextFile(digestFile)).trim());
      if (m.digest !== image.manifest.digest) throw new Error("skopeo changed the manifest");
      pushedDigests.set(server.name, m.blobs.map((b) => b.digest));
      await doneWith("skopeo-push", r);
      return throughput(image.totalBytes, t, imageNote(image));
    },
    after: (server) => dropStored(server, pushedDigests.get(server.name) ?? []),
  };

  const skopeoPull: Workload = {
    name: "skopeo-pull",
    metrics: THROUGHPUT,
    transfer: true,
    async setup(server) {
      requireTools("skopeo");
      await ensureClientsDir();
      await ensurePullImage(server);
    },
    async run(server) {
      const image = await ensurePullImage(server);
      const dest = join(workDir, "skopeo-pulled");
      await Deno.remove(dest, { recursive: true }).catch(() => {});
      const t = await timedClients(async () => {
        await run("skopeo", [
          "--policy",
          policy,
          "copy",
          "--quiet",
          "--src-tls-verify=false",
          `docker://${host(server)}/bench/image-pull:latest`,
          `oci:${dest}:latest`,
        ]);
      });
      const index = JSON.parse(await Deno.readTextFile(join(dest, "index.json")));
      const got = index.manifests?.[0]?.digest;
      if (got !== image.manifest.digest) {
        throw new Error(`skopeo pulled manifest ${got} from ${server.name}`);
      }
      for (const ref of [...image.layers, image.config]) {
        const d = await fileDigest(join(dest, "blobs", "sha256", ref.digest.slice(7)));
        if (d !== ref.digest) {
          throw new Error(`skopeo pulled ${ref.digest} as bytes hashing to ${d}`);
        }
      }
      await Deno.remove(dest, { recursive: true });
      return throughput(image.totalBytes, t, imageNote(image));
    },
  };

  // podman: its own vfs stores; pushes from a store loaded (untimed) from the layout. podman
  // refuses a runroot path longer than 50 characters, so the runroots live in a short /tmp
  // folder of their own.
  let runroots: Promise<string> | null = null;
  const runrootOf = new Map<string, string>();
  const podman = async (root: string, ...args: string[]) => {
    runroots ??= Deno.makeTempDir({ dir: "/tmp", prefix: "bench-podman-" });
    let runroot = runrootOf.get(root);
    if (runroot === undefined) {
      runroot = join(await runroots, String(runrootOf.size));
      runrootOf.set(root, runroot);
    }
    return await run("podman", [
      "--root",
      join(root, "root"),
      "--runroot",
      runroot,
      "--storage-driver",
      "vfs",
      "--events-backend",
      "none",
      "--tmpdir",
      join(root, "tmp"),
      ...args,
    ]);
  };
  const pushStore = join(clientsDir, "podman-push-store");
  const loaded = new Map<number, string>();
  const podmanPush: Workload = {
    name: "podman-push",
    metrics: THROUGHPUT,
    transfer: true,
    async setup() {
      requireTools("podman");
      await ensureClientsDir();
    },
    async run(server, r) {
      const image = await imageFor("podman-push", r);
      let id = loaded.get(r);
      if (id === undefined) {
        const out = await podman(
          pushStore,
          "pull",
          "--quiet",
          "--signature-policy",
          policy,
          `oci:${image.dir}:latest`,
        );
        id = out.trim().split("\n").pop()!;
        loaded.set(r, id);
      }
      const repo = `bench/podman-push-r${r}`;
      const digestFile = join(clientsDir, "digest");
      const t = await timedClients(async () => {
        await podman(
          pushStore,
          "push",
          "--quiet",
          "--tls-verify=false",
          "--signature-policy",
          policy,
          "--digestfile",
          digestFile,
          id!,
          `${host(server)}/${repo}:latest`,
        );
      });
      const m = await checkPushed(server, repo, (await Deno.readTextFile(digestFile)).trim());
      if (m.layers.length !== image.layers.length) {
        throw new Error(`podman pushed ${m.layers.length} layers, not ${image.layers.length}`);
      }
      const pushed = m.blobs.reduce((a, b) => a + b.size, 0) + m.bytes.length;
      pushedDigests.set(server.name, m.blobs.map((b) => b.digest));
      if (await doneWith("podman-push", r)) {
        await podman(pushStore, "rmi", "--force", id);
        loaded.delete(r);
      }
      const types = [...new Set(m.layers.map((l) => l.mediaType.split(".").pop()))].join(", ");
      return throughput(
        pushed,
        t,
        `${imageNote(image)} loaded; podman pushed ${
          (pushed / MiB).toFixed(0)
        } MiB (layers ${types})`,
      );
    },
    after: (server) => dropStored(server, pushedDigests.get(server.name) ?? []),
  };

  const podmanPull: Workload = {
    name: "podman-pull",
    metrics: THROUGHPUT,
    transfer: true,
    async setup(server) {
      requireTools("podman");
      await ensureClientsDir();
      await ensurePullImage(server);
    },
    async run(server, r) {
      const image = await ensurePullImage(server);
      const store = join(clientsDir, `podman-pull-${server.name}-r${r}`);
      const ref = `${host(server)}/bench/image-pull:latest`;
      const t = await timedClients(async () => {
        await podman(
          store,
          "pull",
          "--quiet",
          "--tls-verify=false",
          "--signature-policy",
          policy,
          ref,
        );
      });
      const [info] = JSON.parse(await podman(store, "image", "inspect", ref)) as {
        Digest: string;
        RootFS: { Layers: string[] };
      }[];
      const diffIds = image.diffIds.join(",");
      if (info?.Digest !== image.manifest.digest || info.RootFS.Layers.join(",") !== diffIds) {
        throw new Error(`podman pulled ${info?.Digest} from ${server.name}`);
      }
      await podman(store, "rmi", "--all", "--force");
      await Deno.remove(store, { recursive: true });
      return throughput(image.totalBytes, t, `${imageNote(image)}, into a vfs store`);
    },
  };

  // containerd: a daemon of our own (private root, state and socket), started on first use.
  const ctdDir = join(workDir, "containerd");
  const socket = join(ctdDir, "containerd.sock");
  let daemon: Deno.ChildProcess | null = null;
  let daemonReady: Promise<void> | null = null;
  const ctr = (...args: string[]) => run("ctr", ["-a", socket, ...args]);
  const ensureContainerd = () =>
    daemonReady ??= (async () => {
      requireTools("containerd", "ctr", "tar", "bash");
      await Deno.mkdir(ctdDir, { recursive: true });
      const config = join(ctdDir, "config.toml");
      await Deno.writeTextFile(
        config,
        [
          "version = 2",
          `root = "${join(ctdDir, "root")}"`,
          `state = "${join(ctdDir, "state")}"`,
          'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
          "[grpc]",
          `  address = "${socket}"`,
          "[ttrpc]",
          `  address = "${join(ctdDir, "ttrpc.sock")}"`,
          "[debug]",
          '  address = ""',
          "[metrics]",
          '  address = ""',
          // Content pulled in one namespace is not visible in another, so each pull run
          // (its own namespace) downloads every blob.
          '[plugins."io.containerd.metadata.v1.bolt"]',
          '  content_sharing_policy = "isolated"',
          "",
        ].join("\n"),
      );
      const log = await Deno.open(join(ctdDir, "containerd.log"), { write: true, create: true });
      daemon = new Deno.Command("containerd", {
        args: ["--config", config],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      daemon.stderr.pipeTo(log.writable).catch(() => {});
      for (let i = 0; i < 100; i++) {
        const ok = await new Deno.Command("ctr", {
          args: ["-a", socket, "version"],
          stdout: "null",
          stderr: "null",
        })
          .output().then((o) => o.success).catch(() => false);
        if (ok) return;
        await new Promise((wake) => setTimeout(wake, 100));
      }
      throw new SkipRow(`containerd did not start (log: ${join(ctdDir, "containerd.log")})`);
    })();
  const imported = new Set<number>();
  const ctrPush: Workload = {
    name: "ctr-push",
    metrics: THROUGHPUT,
    transfer: true,
    setup: () => ensureContainerd(),
    async run(server, r) {
      const image = await imageFor("ctr-push", r);
      if (!imported.has(r)) {
        await run("bash", [
          "-c",
          'set -o pipefail; tar -C "$1" -cf - . | ctr -a "$2" -n push images import --no-unpack -',
          "bash",
          image.dir,
          socket,
        ]);
        imported.add(r);
      }
      const repo = `bench/ctr-push-r${r}`;
      const t = await timedClients(async () => {
        await ctr(
          "-n",
          "push",
          "images",
          "push",
          "--plain-http",
          `${host(server)}/${repo}:latest`,
          image.name,
        );
      });
      const m = await checkPushed(server, repo, image.manifest.digest);
      pushedDigests.set(server.name, m.blobs.map((b) => b.digest));
      if (await doneWith("ctr-push", r)) {
        await ctr("-n", "push", "images", "rm", "--sync", image.name);
      }
      return throughput(image.totalBytes, t, imageNote(image));
    },
    after: (server) => dropStored(server, pushedDigests.get(server.name) ?? []),
  };

  const ctrPull: Workload = {
    name: "ctr-pull",
    metrics: THROUGHPUT,
    transfer: true,
    async setup(server) {
      await ensureContainerd();
      await ensurePullImage(server);
    },
    async run(server, r) {
      const image = await ensurePullImage(server);
      const ns = `pull-${server.name}-r${r}`;
      const ref = `${host(server)}/bench/image-pull:latest`;
      const t = await timedClients(async () => {
        await ctr("-n", ns, "images", "pull", "--plain-http", ref);
      });
      const listed = await ctr("-n", ns, "images", "ls");
      if (!listed.includes(image.manifest.digest)) {
        throw new Error(`ctr pulled another image from ${server.name}:\n${listed}`);
      }
      const blobs = join(ctdDir, "root", "io.containerd.content.v1.content", "blobs", "sha256");
      for (const ref of [...image.layers, image.config]) {
        const d = await fileDigest(join(blobs, ref.digest.slice(7)));
        if (d !== ref.digest) throw new Error(`ctr stored ${ref.digest} as bytes hashing to ${d}`);
      }
      await ctr("-n", ns, "images", "rm", "--sync", ref);
      return throughput(image.totalBytes, t, `${imageNote(image)}, unpacked (overlayfs)`);
    },
  };

  return {
    workloads: [
      curlPut,
      curlStream,
      curlChunked,
      curlPull,
      goStream,
      skopeoPush,
      skopeoPull,
      podmanPush,
      podmanPull,
      ctrPush,
      ctrPull,
    ],
    async dispose() {
      if (runroots) await Deno.remove(await runroots, { recursive: true }).catch(() => {});
      const d = daemon as Deno.ChildProcess | null;
      if (d) {
        try {
          d.kill("SIGTERM");
        } catch {
          // gone
        }
        await d.status;
      }
    },
  };
}
