/**
 * The parallel-push breakdown's receivers (bench/parallel_parts.ts), and in `durable` mode the
 * bound `deno task bench` runs the single pushes of curl and the Go-style sender against
 * (bench/rows.ts) and push-parallel's (bench/parallel_parts.ts): the registry's own HTTP/1.1
 * server and upload data path (`BatchWriter` in 1 MiB batches, SHA-256 on a pool thread, the
 * filesystem driver's appender), with nothing else of the registry around them: no routing,
 * access control, metadata, state files or blob moves (but `durable`'s layer links, session
 * files and commits). Each mode keeps one more part:
 *
 * - `drop`: the bodies are read into the batch buffers and dropped;
 * - `hash`: and hashed, as uploads are hashed;
 * - `write`: written to a file and synced at the end of the PATCH, not hashed;
 * - `both`: hashed and written, as the registry does;
 * - `durable`: and kept as the registry keeps an upload, through its storage layer (the
 *   filesystem driver, `DriverUploadStore`, `DriverBlobStore`): the POST makes the session's
 *   files durably, each PATCH saves the hash state once its bytes are flushed, the PUT moves the
 *   data to its blob's key and links the layer into the repository, then removes the session.
 *   What it leaves out of the registry: routing and the request pipeline, locks, reading a
 *   session back from its files (its state stays in memory), metadata caches, events and the
 *   activity journal.
 *
 * Upload sessions as a client sees them: `POST /v2/NAME/blobs/uploads/` (202 with a Location),
 * one streamed `PATCH` (202 with `Range: 0-LAST`; `durable` takes several, each appended after
 * the last, and a PUT's body too, as a monolithic push sends it), then `PUT ?digest=` (201 with
 * `Docker-Content-Digest`; 400 when a hashing mode computed another digest). The file of a
 * writing mode stays, as a registry keeps a pushed blob (`durable`: at its blob's key under
 * `blobs/`): whoever runs the receiver removes it.
 * `GET /v2/` answers 200 (readiness).
 *
 * Usage: deno run --allow-net --allow-read --allow-write --allow-env --allow-ffi
 *   bench/intake.ts --mode drop|hash|write|both|durable [--port 0] [--dir DIR]; prints
 *   `intake listening on http://127.0.0.1:PORT/v2/`.
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { createSha256, encodeSha256State, type Sha256 } from "../src/digest/sha256.ts";
import { serveHttp1 } from "../src/server/mod.ts";
import type { Handler, Reply, RequestBody } from "../src/server/mod.ts";
import { BatchWriter } from "../src/storage/batch_writer.ts";
import type { AppendWriter } from "../src/storage/driver.ts";
import { FsDriver } from "../src/storage/drivers/fs.ts";
import { fileAppender, writebackFor } from "../src/storage/drivers/fs_append.ts";
import { DriverBlobStore } from "../src/storage/blobs.ts";
import { LocalMetadataStore } from "../src/storage/metadata/local.ts";
import { DriverUploadStore, WRITE_BATCH } from "../src/storage/uploads.ts";
import type { Digest, RepositoryName, UploadId } from "../src/types/oci.ts";

/** What a receiver keeps of the registry's data path. */
export const INTAKE_MODES = ["drop", "hash", "write", "both", "durable"] as const;
/** One of `INTAKE_MODES`. */
export type IntakeMode = typeof INTAKE_MODES[number];

/** An upload session. */
interface Session {
  received: number;
  hasher: Sha256 | null;
  path: string | null;
}

/** An append writer that drops what it is given. */
const DROP: AppendWriter = {
  write: () => Promise.resolve(),
  sync: () => Promise.resolve(),
  close: () => {},
};

const encoder = new TextEncoder();

function reply(status: number, headers: [string, string][] = [], text = ""): Reply {
  return { status, headers, body: text === "" ? null : encoder.encode(text) };
}

/** The receiver's handler for `mode`, writing its files into `dir` (which must exist). */
export function intakeHandler(mode: IntakeMode, dir: string): Handler {
  if (mode === "durable") return durableHandler(dir);
  const hashes = mode === "hash" || mode === "both";
  const writes = mode === "write" || mode === "both";
  const sessions = new Map<string, Session>();
  let next = 0;

  async function patch(session: Session, body: RequestBody): Promise<void> {
    let appender = DROP;
    if (session.path !== null) {
      const file = await Deno.open(session.path, { write: true, create: true });
      await file.seek(session.received, Deno.SeekMode.Start);
      appender = fileAppender(session.path, file, session.received, writebackFor(dir));
    }
    try {
      const hasher = session.hasher;
      const writer = new BatchWriter(
        appender,
        WRITE_BATCH,
        hasher ? (batch) => hasher.updateAsync(batch) : null,
      );
      await writer.writeFrom(body);
      session.received += writer.written;
      await appender.sync();
    } finally {
      appender.close();
    }
  }

  return async (request, body) => {
    const url = new URL(request.url);
    const path = url.pathname;
    if (request.method === "GET" && path === "/v2/") return reply(200, [], "{}");
    if (request.method === "POST" && /^\/v2\/.+\/blobs\/uploads\/$/.test(path)) {
      const id = String(next++);
      sessions.set(id, {
        received: 0,
        hasher: hashes ? createSha256() : null,
        path: writes ? join(dir, `upload-${id}`) : null,
      });
      return reply(202, [["Location", `/intake/${id}`]]);
    }
    const id = /^\/intake\/(\d+)$/.exec(path)?.[1];
    const session = id === undefined ? undefined : sessions.get(id);
    if (id === undefined || session === undefined) return reply(404, [], "no such session\n");
    if (request.method === "PATCH" && body !== null) {
      await patch(session, body);
      const last = session.received - 1;
      return reply(202, [["Location", path], ["Range", `0-${Math.max(0, last)}`]]);
    }
    if (request.method === "PUT") {
      sessions.delete(id);
      const given = url.searchParams.get("digest") ?? "";
      if (session.hasher !== null) {
        const computed = `sha256:${session.hasher.digestHex()}`;
        if (computed !== given) return reply(400, [], `digest ${computed}, not ${given}\n`);
      }
      return reply(201, [["Docker-Content-Digest", given]]);
    }
    return reply(405, [], "not here\n");
  };
}

/** A session of the `durable` mode: its state in memory, its files in the upload store. */
interface DurableSession {
  readonly id: UploadId;
  readonly repository: RepositoryName;
  readonly hasher: Sha256;
}

const EMPTY_STATE = encodeSha256State(createSha256().exportState());

/** The `durable` mode's handler: the registry's storage layer over the data root `dir`. */
function durableHandler(dir: string): Handler {
  const driver = new FsDriver(Deno.realPathSync(dir));
  const uploads = new DriverUploadStore(driver);
  const blobs = new DriverBlobStore(driver);
  const metadata = new LocalMetadataStore(driver);
  const sessions = new Map<string, DurableSession>();

  return async (request, body) => {
    const url = new URL(request.url);
    const path = url.pathname;
    if (request.method === "GET" && path === "/v2/") return reply(200, [], "{}");
    const name = /^\/v2\/(.+)\/blobs\/uploads\/$/.exec(path)?.[1];
    if (request.method === "POST" && name !== undefined) {
      const id = crypto.randomUUID() as UploadId;
      const repository = name as RepositoryName;
      await uploads.create(id, repository, new Date(), EMPTY_STATE);
      sessions.set(id, { id, repository, hasher: createSha256() });
      return reply(202, [["Location", `/intake/${id}`]]);
    }
    const key = /^\/intake\/([0-9a-f-]+)$/.exec(path)?.[1];
    const session = key === undefined ? undefined : sessions.get(key);
    if (session === undefined) return reply(404, [], "no such session\n");
    const { id, hasher } = session;
    /** Appends a body to the session, as a PATCH (or a PUT's closing bytes) does. */
    const receive = async (body: RequestBody) => {
      const { flushed } = await uploads.append(
        id,
        hasher.length,
        body,
        (batch) => hasher.updateAsync(batch),
      );
      // the state is renamed into place once the data it covers is on disk
      await uploads.saveHashState(id, encodeSha256State(hasher.exportState()), flushed);
    };
    if (request.method === "PATCH" && body !== null) {
      await receive(body);
      const last = hasher.length - 1;
      return reply(202, [["Location", path], ["Range", `0-${Math.max(0, last)}`]]);
    }
    if (request.method === "PUT") {
      if (body !== null) await receive(body);
      sessions.delete(id);
      const given = url.searchParams.get("digest") ?? "";
      const computed = `sha256:${hasher.digestHex()}`;
      if (computed !== given) {
        await uploads.remove(id);
        return reply(400, [], `digest ${computed}, not ${given}\n`);
      }
      const digest = computed as Digest;
      await blobs.commitUpload(id, digest);
      await metadata.linkLayer(session.repository, digest);
      await uploads.remove(id);
      return reply(201, [["Docker-Content-Digest", digest]]);
    }
    return reply(405, [], "not here\n");
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      mode: { type: "string" },
      port: { type: "string", default: "0" },
      dir: { type: "string", default: "." },
    },
  });
  const mode = values.mode as IntakeMode;
  if (!INTAKE_MODES.includes(mode)) {
    console.error(`--mode must be one of ${INTAKE_MODES.join(", ")}`);
    Deno.exit(2);
  }
  await Deno.mkdir(values.dir, { recursive: true });
  const server = serveHttp1({
    hostname: "127.0.0.1",
    port: Number(values.port),
    onListen: ({ port }) => console.log(`intake listening on http://127.0.0.1:${port}/v2/`),
  }, intakeHandler(mode, values.dir));
  Deno.addSignalListener("SIGTERM", () => server.shutdown());
  await server.finished;
}
