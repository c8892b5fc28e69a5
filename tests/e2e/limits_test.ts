/**
 * Resource limits: the manifest body cap (413), the request header cap (431, and Deno's own
 * 400 above 64 KiB), the idle timeout that frees a session held by a stalled client, and a
 * full disk (a real tmpfs when this machine allows mounting one, and an injected ENOSPC).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { AppendWriter } from "../../src/storage/driver.ts";
import { connectionLimit, openFileLimit } from "../../src/serve.ts";
import { FsDriver } from "../../src/storage/drivers/fs.ts";
import { canonicalRoot } from "../../src/storage/drivers/fs_files.ts";
import { portOf, rawRequest, readResponse, writeAllTo } from "../helpers/raw_http.ts";
import {
  pushBlob,
  randomBytes,
  sha256Digest,
  type TempRegistry,
  tempRegistry,
} from "../helpers/registry.ts";
import { checkStore, listTree } from "../helpers/store_check.ts";
import { OCI_MANIFEST as MANIFEST_TYPE } from "../helpers/media_types.ts";

interface ErrorBody {
  errors: { code: string; message: string }[];
}

async function ociError(res: Response): Promise<ErrorBody["errors"][0]> {
  assert.equal(res.headers.get("content-type"), "application/json");
  const body = await res.json() as ErrorBody;
  assert.equal(body.errors.length, 1);
  assert.equal(typeof body.errors[0].message, "string");
  return body.errors[0];
}

async function manifestOfSize(reg: TempRegistry, size: number): Promise<Uint8Array<ArrayBuffer>> {
  const config = await pushBlob(reg, "limits/m", new TextEncoder().encode("{}"));
  const base = {
    schemaVersion: 2,
    mediaType: MANIFEST_TYPE,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: config, size: 2 },
    layers: [],
    annotations: { pad: "" },
  };
  const empty = JSON.stringify(base).length;
  base.annotations.pad = "x".repeat(size - empty);
  const bytes = new TextEncoder().encode(JSON.stringify(base));
  assert.equal(bytes.length, size);
  return bytes;
}

Deno.test("a manifest above maxManifestBytes is 413 with an OCI error; at the cap it is stored", async () => {
  await using reg = await tempRegistry({ config: { maxManifestBytes: 2000 } });
  const atCap = await manifestOfSize(reg, 2000);
  const over = await manifestOfSize(reg, 2001);
  const put = (body: BodyInit) =>
    reg.fetch("/v2/limits/m/manifests/latest", {
      method: "PUT",
      headers: { "Content-Type": MANIFEST_TYPE },
      body,
    });
  const declared = await put(over);
  assert.equal(declared.status, 413);
  assert.equal((await ociError(declared)).code, "SIZE_INVALID");
  // Without Content-Length (chunked): the cap is enforced while reading.
  const streamed = await put(ReadableStream.from([over.slice(0, 1000), over.slice(1000)]));
  assert.equal(streamed.status, 413);
  assert.equal((await ociError(streamed)).code, "SIZE_INVALID");
  const ok = await put(atCap);
  await ok.body?.cancel();
  assert.equal(ok.status, 201);
  const tags = await reg.fetch("/v2/limits/m/tags/list");
  assert.deepEqual((await tags.json()).tags, ["latest"]);
});

Deno.test("request headers: above maxHeaderBytes 431 with an OCI error; above the server's head cap or 100 fields 431; the server survives", async () => {
  await using reg = await tempRegistry({ config: { maxHeaderBytes: 8192 } });
  const port = portOf(reg.url);
  const big = await reg.fetch("/v2/", { headers: { "X-Big": "a".repeat(10_000) } });
  assert.equal(big.status, 431);
  assert.equal((await ociError(big)).code, "SIZE_INVALID");
  const fits = await reg.fetch("/v2/", { headers: { "X-Fits": "a".repeat(7000) } });
  await fits.body?.cancel();
  assert.equal(fits.status, 200);
  for (
    const head of [
      `X-Huge: ${"a".repeat(1024 * 1024)}\r\n`,
      Array.from({ length: 200 }, (_, i) => `X-H${i}: v\r\n`).join(""),
      Array.from({ length: 40 }, (_, i) => `X-H${i}: ${"b".repeat(2000)}\r\n`).join(""),
    ]
  ) {
    const res = await rawRequest(
      port,
      `GET /v2/ HTTP/1.1\r\nHost: x\r\n${head}Connection: close\r\n\r\n`,
    );
    assert.ok(res !== null, "an answer, not a dropped connection");
    assert.ok(res.status === 400 || res.status === 431, `status ${res.status}`);
  }
  const after = await reg.fetch("/v2/");
  await after.body?.cancel();
  assert.equal(after.status, 200);
});

Deno.test("a stalled PATCH is cut after the idle timeout; the session stays at its last acknowledged offset", async (t) => {
  await using reg = await tempRegistry({ config: { bodyIdleTimeoutMs: 400 } });
  const port = portOf(reg.url);
  const start = await reg.fetch("/v2/limits/idle/blobs/uploads/", { method: "POST" });
  const location = start.headers.get("location")!;
  const first = randomBytes(500);
  const rest = randomBytes(100_000);
  const ack = await reg.fetch(location, {
    method: "PATCH",
    headers: { "Content-Range": "0-499" },
    body: first,
  });
  await ack.body?.cancel();
  assert.equal(ack.status, 202);

  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const began = Date.now();
  await writeAllTo(
    conn,
    `PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Range: 500-100499\r\n` +
      `Content-Length: 100000\r\n\r\n`,
  );
  await writeAllTo(conn, rest.subarray(0, 30_000)); // ...and then nothing more
  let waiter: Promise<Response> | null = null;
  await t.step("a second client's PATCH waits, and runs once the stalled one is cut", async () => {
    await new Promise((resolve) => setTimeout(resolve, 100));
    waiter = reg.fetch(location, {
      method: "PATCH",
      headers: { "Content-Range": "500-100499" },
      body: rest,
    });
    const cut = await readResponse(conn, 5000);
    conn.close();
    const elapsed = Date.now() - began;
    assert.ok(cut !== null, "the stalled client gets an answer");
    assert.equal(cut.status, 408);
    assert.equal(JSON.parse(cut.body).errors[0].code, "BLOB_UPLOAD_INVALID");
    assert.ok(elapsed >= 350 && elapsed < 3000, `cut after ${elapsed} ms`);
    const second = await waiter;
    await second.body?.cancel();
    assert.equal(second.status, 202);
    assert.equal(second.headers.get("range"), "0-100499");
  });
  await t.step("the upload completes with the right bytes", async () => {
    const whole = new Uint8Array(100_500);
    whole.set(first);
    whole.set(rest, 500);
    const digest = await sha256Digest(whole);
    const put = await reg.fetch(`${location}?digest=${digest}`, { method: "PUT" });
    await put.body?.cancel();
    assert.equal(put.status, 201);
  });
  await t.step("a stalled manifest PUT is cut too", async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAllTo(
      c,
      "PUT /v2/limits/idle/manifests/x HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{",
    );
    const res = await readResponse(c, 5000);
    c.close();
    assert.equal(res?.status, 408);
  });
  await t.step("a stalled session-less POST ?digest= leaves no session behind", async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    const digest = await sha256Digest(rest);
    await writeAllTo(
      c,
      `POST /v2/limits/idle/blobs/uploads/?digest=${digest} HTTP/1.1\r\nHost: x\r\n` +
        "Content-Length: 100000\r\n\r\n",
    );
    await writeAllTo(c, rest.subarray(0, 1000));
    const res = await readResponse(c, 5000);
    c.close();
    assert.equal(res?.status, 408);
    assert.deepEqual((await checkStore(reg.dataDir)).uploads, []);
  });
});

/** Fills a filesystem with a file until fewer than `leave` bytes are free. */
async function fill(path: string, leave: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true });
  const block = new Uint8Array(256 * 1024);
  for (;;) {
    const free = freeBytes(path);
    if (free <= leave) return;
    const piece = Math.min(block.length, free - leave);
    try {
      await file.write(block.subarray(0, piece));
    } catch {
      return;
    }
  }
}

function freeBytes(path: string): number {
  const out = new Deno.Command("df", { args: ["-B1", "--output=avail", path] }).outputSync();
  return Number(new TextDecoder().decode(out.stdout).trim().split("\n").pop());
}

function tryMount(dir: string, size: string): boolean {
  try {
    return new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir],
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
  } catch {
    return false;
  }
}

/** Checks the answers and the store around a full disk, and that freeing space heals it. */
async function fullDiskScenario(
  t: Deno.TestContext,
  reg: TempRegistry,
  makeFull: () => Promise<void>,
  makeRoom: () => Promise<void>,
) {
  const name = "limits/full";
  const small = await pushBlob(reg, name, randomBytes(1000));
  const big = randomBytes(4 * 1024 * 1024);
  const digest = await sha256Digest(big);
  const start = await reg.fetch(`/v2/${name}/blobs/uploads/`, { method: "POST" });
  const location = start.headers.get("location")!;
  const ack = await reg.fetch(location, {
    method: "PATCH",
    headers: { "Content-Range": "0-999" },
    body: big.slice(0, 1000),
  });
  await ack.body?.cancel();
  assert.equal(ack.status, 202);
  const before = await listTree(join(reg.dataDir, "blobs"));
  await makeFull();

  await t.step("a monolithic push answers 507 with an OCI error and stores nothing", async () => {
    const res = await reg.fetch(`/v2/${name}/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      body: big,
    });
    assert.equal(res.status, 507);
    const error = await ociError(res);
    assert.equal(error.code, "UNKNOWN");
    assert.match(error.message, /full/);
    assert.deepEqual(await listTree(join(reg.dataDir, "blobs")), before, "no partial blob");
  });
  await t.step("a PATCH answers 507 and the session stays at its acknowledged offset", async () => {
    const res = await reg.fetch(location, {
      method: "PATCH",
      headers: { "Content-Range": `1000-${big.length - 1}` },
      body: big.slice(1000),
    });
    assert.equal(res.status, 507);
    assert.equal((await ociError(res)).code, "UNKNOWN");
    const status = await reg.fetch(location);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get("range"), "0-999");
  });
  await t.step("reads still work on a full disk", async () => {
    const res = await reg.fetch(`/v2/${name}/blobs/${small}`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
  });
  await t.step("no unexpected-error log, store sound, no temporary files left", async () => {
    assert.deepEqual(reg.logs.filter((l) => l.startsWith("unexpected")), []);
    const report = await checkStore(reg.dataDir);
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.temporaries, []);
  });
  await makeRoom();
  await t.step("once space is freed, the session resumes and the push completes", async () => {
    const res = await reg.fetch(location, {
      method: "PATCH",
      headers: { "Content-Range": `1000-${big.length - 1}` },
      body: big.slice(1000),
    });
    await res.body?.cancel();
    assert.equal(res.status, 202);
    const put = await reg.fetch(`${location}?digest=${digest}`, { method: "PUT" });
    await put.body?.cancel();
    assert.equal(put.status, 201);
    const again = await reg.fetch(`/v2/${name}/blobs/${digest}`, { method: "HEAD" });
    assert.equal(again.status, 200);
    assert.deepEqual((await checkStore(reg.dataDir)).problems, []);
  });
}

const canMount = (() => {
  if (Deno.build.os !== "linux") return false;
  const dir = Deno.makeTempDirSync({ prefix: "registry-mount-probe-" });
  try {
    if (!tryMount(dir, "1m")) return false;
    new Deno.Command("umount", { args: [dir] }).outputSync();
    return true;
  } finally {
    Deno.removeSync(dir);
  }
})();

Deno.test("a body slower than 240 bytes/s is cut with 408 once its reads waited the grace; a slow steady one completes", async (t) => {
  // the grace is the idle timeout when shorter than 10 s: 1 s here
  await using reg = await tempRegistry({ config: { bodyIdleTimeoutMs: 1000 } });
  const port = portOf(reg.url);
  const session = async () => {
    const start = await reg.fetch("/v2/limits/rate/blobs/uploads/", { method: "POST" });
    await start.body?.cancel();
    return start.headers.get("location")!;
  };
  /** Sends `pieces` of `size` bytes every 100 ms after a PATCH head; the answer. */
  const drip = async (location: string, size: number, pieces: number) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAllTo(
      conn,
      `PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Length: ${size * pieces}\r\n\r\n`,
    );
    let answered = false;
    const answer = readResponse(conn, 15_000).finally(() => answered = true);
    const began = Date.now();
    for (let i = 0; i < pieces && !answered; i++) {
      if (!(await writeAllTo(conn, randomBytes(size)))) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const res = await answer;
    conn.close();
    return { res, ms: Date.now() - began };
  };

  await t.step("a byte every 100 ms (10 bytes/s): 408 after about a second", async () => {
    const location = await session();
    const { res, ms } = await drip(location, 1, 100);
    assert.equal(res?.status, 408);
    const error = JSON.parse(res!.body).errors[0];
    assert.equal(error.code, "BLOB_UPLOAD_INVALID");
    assert.match(error.message, /too slow/);
    assert.ok(ms >= 900 && ms < 8000, `cut after ${ms} ms`);
    const status = await reg.fetch(location);
    await status.body?.cancel();
    assert.equal(status.status, 204);
    assert.equal(status.headers.get("range"), "0-0", "nothing of it stored");
  });
  await t.step("8 KiB every 100 ms (80 KiB/s) for 2 s: 202", async () => {
    const { res } = await drip(await session(), 8192, 20);
    assert.equal(res?.status, 202);
    assert.equal(res?.headers.get("range"), `0-${8192 * 20 - 1}`);
  });
});

Deno.test("at maxConnections a new connection waits while the others are idle less than 5 s, and is served once one closes", async () => {
  await using reg = await tempRegistry({ config: { maxConnections: 2 } });
  const port = portOf(reg.url);
  const ask = "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n";
  const [a, b] = await Promise.all([1, 2].map(() => Deno.connect({ hostname: "127.0.0.1", port })));
  for (const conn of [a, b]) {
    await writeAllTo(conn, ask);
    assert.equal((await readResponse(conn))?.status, 200); // both are served connections now
  }
  const c = await Deno.connect({ hostname: "127.0.0.1", port }); // the kernel's queue takes it
  await writeAllTo(c, ask);
  const buffer = new Uint8Array(4096);
  const reading = c.read(buffer);
  // the registry still answers its two connections; the third gets nothing meanwhile
  await writeAllTo(a, ask);
  assert.equal((await readResponse(a))?.status, 200);
  const early = await Promise.race([
    reading.then(() => "answered"),
    new Promise((resolve) => setTimeout(() => resolve("waiting"), 300)),
  ]);
  assert.equal(early, "waiting");
  a.close();
  const n = await reading;
  assert.ok(n !== null && n > 0);
  assert.match(new TextDecoder().decode(buffer.subarray(0, n)), /^HTTP\/1\.1 200 /);
  b.close();
  c.close();
});

Deno.test("the default connection limit is a quarter of the open-file limit, 64 to 1024", () => {
  const limits = (soft: string) =>
    `Limit                     Soft Limit           Hard Limit           Units     \n` +
    `Max processes             94000                94000                processes \n` +
    `Max open files            ${soft}                20000                files     \n`;
  assert.equal(openFileLimit(limits("20000")), 20000);
  assert.equal(connectionLimit(0, limits("20000")), 1024);
  assert.equal(connectionLimit(0, limits("2048")), 512);
  assert.equal(connectionLimit(0, limits("1024")), 256);
  assert.equal(connectionLimit(0, limits("100")), 64);
  assert.equal(connectionLimit(0, limits("unlimited")), 256); // as for 1024
  assert.equal(connectionLimit(0, ""), 256);
  assert.equal(connectionLimit(10, limits("20000")), 10);
  // this process's own
  const own = openFileLimit(Deno.readTextFileSync("/proc/self/limits"));
  assert.ok(own !== null && own > 0);
  assert.equal(connectionLimit(0), Math.min(1024, Math.max(64, Math.floor(own / 4))));
});

Deno.test("a PATCH whose chunked framing breaks midway: 400, logged as the client's error with the bytes read; the session keeps none of them", async () => {
  await using reg = await tempRegistry({ config: { logFormat: "json" } });
  const start = await reg.fetch("/v2/limits/framing/blobs/uploads/", { method: "POST" });
  await start.body?.cancel();
  const location = start.headers.get("location")!;
  const before = await reg.fetch(location);
  await before.body?.cancel();

  // 600 KiB of good chunks, more than the server reads at once, then a size that is not hex
  const good = 600 * 1024;
  const frames = `8000\r\n${"a".repeat(0x8000)}\r\n`.repeat(good / 0x8000);
  const res = await rawRequest(
    portOf(reg.url),
    `PATCH ${location} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n` +
      `${frames}zz\r\nefgh\r\n0\r\n\r\n`,
  );
  assert.equal(res?.status, 400);
  assert.match(res!.body, /chunk size is not hex/);

  const patchLine = async () => {
    for (let i = 0; i < 100; i++) {
      const line = reg.logs.map((l) => JSON.parse(l)).find((e) =>
        e.msg === "request" && e.method === "PATCH"
      );
      if (line) return line;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`no access log line for the PATCH: ${reg.logs.join("\n")}`);
  };
  const logged = await patchLine();
  assert.equal(logged.status, 400);
  assert.ok(logged.bytes_in > 0 && logged.bytes_in <= good, `bytes_in ${logged.bytes_in}`);
  assert.deepEqual(reg.logs.filter((l) => l.includes("unexpected error")), []);

  const after = await reg.fetch(location);
  await after.body?.cancel();
  assert.equal(after.status, 204);
  assert.equal(after.headers.get("range"), before.headers.get("range"));
});

Deno.test({
  name: "a full disk (a 24 MiB tmpfs) gives 507, no partial blob, and heals when space is freed",
  ignore: !canMount,
  async fn(t) {
    const parent = await Deno.makeTempDir({ prefix: "registry-tmpfs-" });
    const mountPoint = join(parent, "mnt");
    await Deno.mkdir(mountPoint);
    assert.ok(tryMount(mountPoint, "24m"), "mount tmpfs");
    try {
      const dataDir = join(mountPoint, "data");
      await using reg = await tempRegistry({ dataDir });
      const filler = join(mountPoint, "filler");
      await fullDiskScenario(
        t,
        reg,
        () => fill(filler, 64 * 1024),
        () => Deno.remove(filler),
      );
    } finally {
      new Deno.Command("umount", { args: ["-l", mountPoint] }).outputSync();
      await Deno.remove(parent, { recursive: true });
    }
  },
});

/** A filesystem driver whose upload writes fail with ENOSPC while `full` is set (a fault). */
class FullDiskDriver extends FsDriver {
  full = false;

  override async append(key: string, offset: number): Promise<AppendWriter> {
    const writer = await super.append(key, offset);
    if (!this.full) return writer;
    let total = 0;
    return {
      sync: () => writer.sync(),
      close: () => writer.close(),
      writesBack: writer.writesBack,
      idle: () => writer.idle?.() ?? Promise.resolve(),
      write(bytes) {
        total += bytes.length;
        if (total > 64 * 1024) {
          return Promise.reject(
            Object.assign(new Error("No space left on device (os error 28)"), {
              code: "ENOSPC",
            }),
          );
        }
        return writer.write(bytes);
      },
    };
  }
}

Deno.test("an injected ENOSPC from the storage driver gives the same clean 507 and heals", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "registry-enospc-" });
  try {
    const driver = new FullDiskDriver(await canonicalRoot(dataDir));
    await using reg = await tempRegistry({ dataDir, driver });
    await fullDiskScenario(t, reg, () => {
      driver.full = true;
      return Promise.resolve();
    }, () => {
      driver.full = false;
      return Promise.resolve();
    });
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
