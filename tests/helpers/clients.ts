/**
 * Test helpers for the real-client end-to-end tests: find the tools (skopeo, podman, buildah,
 * umoci), run them with private storage and configuration in a temporary workspace, build
 * multi-layer images offline with buildah, and read the registry's request log.
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";

/** The command-line clients (and containerd, the daemon `ctr` drives) the end-to-end tests run. */
export type Tool = "skopeo" | "podman" | "buildah" | "umoci" | "containerd" | "ctr";

const found = new Map<Tool, boolean>();

/** Whether a tool can be started (`<tool> --version` exits 0). */
export async function hasTool(tool: Tool): Promise<boolean> {
  let ok = found.get(tool);
  if (ok === undefined) {
    try {
      const out = await new Deno.Command(tool, {
        args: ["--version"],
        stdout: "null",
        stderr: "null",
      }).output();
      ok = out.success;
    } catch {
      ok = false;
    }
    found.set(tool, ok);
  }
  return ok;
}

/** Whether the tests run in CI (`CI` set), where a missing tool is a failure, not a skip. */
export const IN_CI = Boolean(Deno.env.get("CI"));

/**
 * Registers a test that needs `tools`. Outside CI a missing tool ignores the test; in CI the
 * test runs and fails at once, naming the missing tools.
 */
export async function clientTest(
  name: string,
  tools: readonly Tool[],
  fn: (t: Deno.TestContext) => Promise<void>,
): Promise<void> {
  Deno.test({ name, ...await gated(tools, fn) });
}

/** The `ignore` and `fn` of a test or step needing `tools` (see `clientTest`). */
async function gated(
  tools: readonly Tool[],
  fn: (t: Deno.TestContext) => Promise<void>,
): Promise<{ ignore: boolean; fn: (t: Deno.TestContext) => Promise<void> }> {
  const missing: Tool[] = [];
  for (const tool of tools) if (!(await hasTool(tool))) missing.push(tool);
  return {
    ignore: missing.length > 0 && !IN_CI,
    async fn(t) {
      if (missing.length > 0) {
        throw new Error(`Missing tools in CI: ${missing.join(", ")} (.ci/run installs them)`);
      }
      await fn(t);
    },
  };
}

/**
 * Runs a step that needs `tools`, as `clientTest` does a test: outside CI a missing tool
 * ignores the step; in CI the step runs and fails at once, naming the missing tools.
 */
export async function clientStep(
  t: Deno.TestContext,
  name: string,
  tools: readonly Tool[],
  fn: (t: Deno.TestContext) => Promise<void>,
): Promise<boolean> {
  return await t.step({ name, ...await gated(tools, fn) });
}

/** The captured outcome of a command. */
export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of `run`. */
export interface RunOptions {
  readonly env?: Record<string, string>;
  /** Do not throw on a non-zero exit. */
  readonly allowFailure?: boolean;
}

/** Runs a command to completion; throws with its output when it fails (unless allowed). */
export async function run(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const out = await new Deno.Command(command, {
    args: [...args],
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const result = {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
  if (result.code !== 0 && !options.allowFailure) {
    throw new Error(
      `${command} ${args.join(" ")} exited ${result.code}\nstdout: ${result.stdout.slice(-4000)}` +
        `\nstderr: ${result.stderr.slice(-4000)}`,
    );
  }
  return result;
}

/** A private container store (vfs) for podman, buildah and skopeo's containers-storage. */
export interface Store {
  readonly root: string;
  readonly runroot: string;
  /** A `containers-storage:` reference to an image in this store. */
  ref(image: string): string;
  /** Runs podman on this store; returns stdout. */
  podman(...args: string[]): Promise<string>;
  /** Runs buildah on this store; returns stdout. */
  buildah(...args: string[]): Promise<string>;
  /** Runs podman on this store; its outcome (a failure throws only if not allowed). */
  podmanRun(args: readonly string[], options?: { allowFailure?: boolean }): Promise<RunResult>;
  /** Runs buildah on this store; its outcome (a failure throws only if not allowed). */
  buildahRun(args: readonly string[], options?: { allowFailure?: boolean }): Promise<RunResult>;
}

/**
 * A temporary workspace: private registries.conf, containers.conf, storage.conf, auth file
 * and TMPDIR for every tool it runs, and any number of private stores. Disposing removes it.
 */
export class Workspace implements AsyncDisposable {
  readonly dir: string;
  readonly env: Record<string, string>;
  #stores = 0;

  private constructor(dir: string) {
    this.dir = dir;
    this.env = {
      CONTAINERS_REGISTRIES_CONF: join(dir, "registries.conf"),
      CONTAINERS_CONF: join(dir, "containers.conf"),
      CONTAINERS_STORAGE_CONF: join(dir, "storage.conf"),
      REGISTRY_AUTH_FILE: join(dir, "auth.json"),
      TMPDIR: join(dir, "tmp"),
    };
  }

  /** Makes a workspace under a new temporary folder. */
  static async create(): Promise<Workspace> {
    const ws = new Workspace(await Deno.makeTempDir({ prefix: "registry-clients-" }));
    await Deno.mkdir(join(ws.dir, "tmp"));
    await Deno.writeTextFile(
      ws.env.CONTAINERS_REGISTRIES_CONF,
      "unqualified-search-registries = []\n",
    );
    await Deno.writeTextFile(ws.env.CONTAINERS_CONF, "");
    await Deno.writeTextFile(
      ws.env.CONTAINERS_STORAGE_CONF,
      `[storage]\ndriver = "vfs"\ngraphroot = "${join(ws.dir, "default-store", "root")}"\n` +
        `runroot = "${join(ws.dir, "default-store", "run")}"\n`,
    );
    await Deno.writeTextFile(ws.env.REGISTRY_AUTH_FILE, '{"auths":{}}\n');
    return ws;
  }

  /** A folder path inside the workspace (created). */
  async path(...parts: string[]): Promise<string> {
    const path = join(this.dir, ...parts);
    await Deno.mkdir(path, { recursive: true });
    return path;
  }

  /** Runs a tool with the workspace's environment; returns stdout. */
  async run(tool: string, ...args: string[]): Promise<string> {
    return (await run(tool, args, { env: this.env })).stdout;
  }

  /** Runs skopeo; returns stdout. */
  skopeo(...args: string[]): Promise<string> {
    return this.run("skopeo", ...args);
  }

  /** A new empty private store. */
  async store(): Promise<Store> {
    const base = await this.path(`store-${++this.#stores}`);
    const root = join(base, "root");
    const runroot = join(base, "run");
    const tmpdir = join(base, "libpod-tmp");
    const common = ["--root", root, "--runroot", runroot, "--storage-driver", "vfs"];
    const podmanRun = (args: readonly string[], options: { allowFailure?: boolean } = {}) =>
      run("podman", [...common, "--events-backend", "none", "--tmpdir", tmpdir, ...args], {
        ...options,
        env: this.env,
      });
    const buildahRun = (args: readonly string[], options: { allowFailure?: boolean } = {}) =>
      run("buildah", [...common, ...args], { ...options, env: this.env });
    return {
      root,
      runroot,
      ref: (image) => `containers-storage:[vfs@${root}+${runroot}]${image}`,
      podman: async (...args) => (await podmanRun(args)).stdout,
      buildah: async (...args) => (await buildahRun(args)).stdout,
      podmanRun,
      buildahRun,
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** A file to put in an image: exact bytes, or this many random bytes. */
export type FileSpec = Uint8Array | { readonly random: number };

/** What a built image should contain: per path, the SHA-256 hex and size of the file. */
export type ExpectedFiles = Record<string, { readonly sha256: string; readonly size: number }>;

/** Options of `buildImage`. */
export interface BuildOptions {
  /** One record per layer: image path -> content. */
  readonly layers: readonly Record<string, FileSpec>[];
  readonly arch?: string;
  readonly os?: string;
  /** Extra `buildah config` arguments, e.g. `["--env", "A=b"]`. */
  readonly config?: readonly string[];
}

/** A locally built image. */
export interface BuiltImage {
  /** The image name in the store, fully qualified (`localhost/<name>`). */
  readonly name: string;
  /** The config digest (`sha256:…`), i.e. the image id. */
  readonly configDigest: string;
  /** rootfs.diff_ids of the config. */
  readonly diffIds: string[];
  readonly files: ExpectedFiles;
}

/**
 * Builds an image offline with buildah (`from scratch`, `copy` of generated files, one
 * commit per layer, `config`, final `commit`) and returns what it should contain.
 */
export async function buildImage(
  ws: Workspace,
  store: Store,
  name: string,
  options: BuildOptions,
): Promise<BuiltImage> {
  const src = await ws.path("build-src", name.replaceAll(/[^a-z0-9]/g, "_"));
  const files: ExpectedFiles = {};
  let base = "scratch";
  for (const [i, layer] of options.layers.entries()) {
    const container = (await store.buildah("from", "--quiet", base)).trim();
    for (const [path, spec] of Object.entries(layer)) {
      const host = join(src, `layer${i}`, path);
      await Deno.mkdir(dirname(host), { recursive: true });
      files[path] = await writeSpec(host, spec);
      await store.buildah("copy", "--quiet", container, host, path);
    }
    const last = i === options.layers.length - 1;
    if (last) {
      const args = [
        ...(options.arch ? ["--arch", options.arch] : []),
        ...(options.os ? ["--os", options.os] : []),
        ...(options.config ?? []),
      ];
      if (args.length > 0) await store.buildah("config", ...args, container);
    }
    const image = last ? name : `${name}-layer${i}`;
    await store.buildah("commit", "--quiet", "--format", "oci", container, image);
    await store.buildah("rm", container);
    base = image;
  }
  await Deno.remove(src, { recursive: true });
  const info = await inspectImage(store, name);
  return {
    name: `localhost/${name}`,
    configDigest: info.configDigest,
    diffIds: info.diffIds,
    files,
  };
}

/** What podman reports about an image in a store. */
export interface ImageInfo {
  readonly configDigest: string;
  readonly manifestDigest: string;
  readonly diffIds: string[];
  readonly architecture: string;
  readonly os: string;
}

/** `podman image inspect` of an image: config digest, diff_ids, platform. */
export async function inspectImage(store: Store, image: string): Promise<ImageInfo> {
  const [info] = JSON.parse(await store.podman("image", "inspect", image)) as {
    Id: string;
    Digest: string;
    Architecture: string;
    Os: string;
    RootFS: { Layers: string[] };
  }[];
  return {
    configDigest: `sha256:${info.Id}`,
    manifestDigest: info.Digest,
    diffIds: info.RootFS.Layers,
    architecture: info.Architecture,
    os: info.Os,
  };
}

async function writeSpec(path: string, spec: FileSpec): Promise<ExpectedFiles[string]> {
  const hash = createHash("sha256");
  if (spec instanceof Uint8Array) {
    await Deno.writeFile(path, spec);
    return { sha256: hash.update(spec).digest("hex"), size: spec.length };
  }
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(1024 * 1024);
  for (let left = spec.random; left > 0;) {
    const n = Math.min(left, chunk.length);
    const part = chunk.subarray(0, n);
    for (let at = 0; at < n; at += 65536) {
      crypto.getRandomValues(part.subarray(at, Math.min(n, at + 65536)));
    }
    hash.update(part);
    for (let done = 0; done < n;) done += await file.write(part.subarray(done));
    left -= n;
  }
  return { sha256: hash.digest("hex"), size: spec.random };
}

/** SHA-256 hex and size of a file, streamed. */
export async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  using file = await Deno.open(path);
  for await (const chunk of file.readable) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest("hex"), size };
}

/** The SHA-256 hex and size of each of the paths of `files`, read under `rootfs`. */
export async function filesUnder(rootfs: string, files: ExpectedFiles): Promise<ExpectedFiles> {
  const out: Record<string, { sha256: string; size: number }> = {};
  for (const path of Object.keys(files)) out[path] = await hashFile(join(rootfs, path));
  return out;
}

/** The files of an image in podman's `store`, mounted for the look and unmounted after. */
export async function imageFiles(
  store: Store,
  ref: string,
  files: ExpectedFiles,
): Promise<ExpectedFiles> {
  const rootfs = (await store.podman("image", "mount", ref)).trim();
  try {
    return await filesUnder(rootfs, files);
  } finally {
    await store.podman("image", "unmount", ref);
  }
}

/** The SHA-256 digest of a (possibly gzip-compressed) layer's uncompressed tar: its diff_id. */
export async function diffIdOf(path: string, mediaType: string): Promise<string> {
  using file = await Deno.open(path);
  let stream: ReadableStream<Uint8Array> = file.readable;
  if (mediaType.endsWith("gzip")) {
    stream = stream.pipeThrough(new DecompressionStream("gzip") as TransformStream);
  } else if (!mediaType.endsWith(".tar") && !mediaType.endsWith("tar")) {
    throw new Error(`Cannot compute the diff_id of a layer of type "${mediaType}"`);
  }
  const hash = createHash("sha256");
  for await (const chunk of stream) hash.update(chunk);
  return `sha256:${hash.digest("hex")}`;
}

/** A descriptor in a manifest. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly platform?: { readonly architecture: string; readonly os: string };
}

/** An image manifest (OCI or Docker schema2) as JSON. */
export interface ImageManifest {
  readonly mediaType?: string;
  readonly config: Descriptor;
  readonly layers: Descriptor[];
}

/** An image config as JSON (the fields the tests look at). */
export interface ImageConfig {
  readonly architecture: string;
  readonly os: string;
  readonly rootfs: { readonly diff_ids: string[] };
  readonly config?: { readonly Env?: string[]; readonly Labels?: Record<string, string> };
}

/** The single image of an `oci:` layout folder. */
export interface OciImage {
  readonly manifestDigest: string;
  readonly manifest: ImageManifest;
  readonly configDigest: string;
  readonly config: ImageConfig;
  /** The file holding a blob of the layout. */
  blobPath(digest: string): string;
}

/** Reads the one image of an `oci:` layout folder (as `skopeo copy … oci:DIR` writes it). */
export async function readOciImage(dir: string): Promise<OciImage> {
  const blobPath = (digest: string) => join(dir, "blobs", ...digest.split(":"));
  const index = JSON.parse(await Deno.readTextFile(join(dir, "index.json"))) as {
    manifests: Descriptor[];
  };
  if (index.manifests.length !== 1) {
    throw new Error(`Expected one manifest in ${dir}, found ${index.manifests.length}`);
  }
  const manifestDigest = index.manifests[0].digest;
  const manifest = JSON.parse(await Deno.readTextFile(blobPath(manifestDigest))) as ImageManifest;
  const config = JSON.parse(await Deno.readTextFile(blobPath(manifest.config.digest)));
  return { manifestDigest, manifest, configDigest: manifest.config.digest, config, blobPath };
}

/** Extracts the layers of an `oci:` image, in order, into `rootfs` with GNU tar. */
export async function extractLayers(image: OciImage, rootfs: string): Promise<void> {
  await Deno.mkdir(rootfs, { recursive: true });
  for (const layer of image.manifest.layers) {
    await run("tar", ["--no-same-owner", "-xf", image.blobPath(layer.digest), "-C", rootfs]);
  }
}

/** One request line of the registry's log (`METHOD URL STATUS`). */
export interface LoggedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly status: number;
}

/** Parses the request lines of a registry log (other lines are skipped). */
export function parseLog(lines: readonly string[]): LoggedRequest[] {
  const out: LoggedRequest[] = [];
  for (const entry of accessEntries(lines)) {
    const url = new URL(entry.path, "http://registry");
    out.push({
      method: entry.method,
      path: url.pathname,
      query: url.searchParams,
      status: entry.status,
    });
  }
  return out;
}

/** The access log entries among text-format log lines: method, path with query, status. */
export function accessEntries(
  lines: readonly string[],
): { method: string; path: string; status: number }[] {
  const out: { method: string; path: string; status: number }[] = [];
  for (const line of lines) {
    const fields = logFields(line);
    if (fields.msg !== "request") continue;
    out.push({ method: fields.method, path: fields.path, status: Number(fields.status) });
  }
  return out;
}

/** The `key=value` fields of a text-format log line (quoted values unquoted). */
export function logFields(line: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const m of line.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)) {
    fields[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2]) : m[2];
  }
  return fields;
}

/** The registry's host:port for image references. */
export function hostOf(url: string): string {
  return new URL(url).host;
}
