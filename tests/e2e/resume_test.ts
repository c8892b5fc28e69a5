/**
 * Resume after a crash: the registry runs as its own process, is killed with SIGKILL (between
 * PATCHes, in the middle of a PATCH body, with a broken `hashstate`) and restarted on the same
 * data root; the client continues from what GET status reports and the PUT gives the right
 * digest.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { createSha256, encodeSha256State } from "../../src/digest/sha256.ts";
import {
  randomBytes,
  type RegistryProcess,
  sha256Digest,
  spawnRegistry,
} from "../helpers/registry.ts";
import {
  concat,
  ControlledBody,
  dataSizeOf,
  fetcher,
  hashStateOf,
  patch,
  sessionFile,
  startUpload,
  waitFor,
} from "../helpers/uploads.ts";

const MiB = 1024 * 1024;

/** A data root removed at the end, and the registry process currently serving it. */
async function crashableRegistry() {
  const dataDir = await Deno.makeTempDir({ prefix: "registry-resume-" });
  let server: RegistryProcess = await spawnRegistry(dataDir);
  return {
    dataDir,
    get reg() {
      return fetcher(server.url);
    },
    /** SIGKILLs the process (no graceful shutdown); resolves once it is gone. */
    async kill() {
      const status = await server.kill("SIGKILL");
      assert.equal(status.signal, "SIGKILL");
    },
    /** Starts a new process on the same data root. */
    async restart() {
      server = await spawnRegistry(dataDir);
    },
    async [Symbol.asyncDispose]() {
      await server.kill("SIGKILL");
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

async function statusRange(reg: ReturnType<typeof fetcher>, location: string): Promise<string> {
  const res = await reg.fetch(location);
  await res.body?.cancel();
  assert.equal(res.status, 204);
  return res.headers.get("range") ?? "";
}

async function putDigest(
  reg: ReturnType<typeof fetcher>,
  location: string,
  digest: string,
  body?: Uint8Array<ArrayBuffer>,
): Promise<void> {
  const res = await reg.fetch(`${location}?digest=${digest}`, { method: "PUT", body });
  await res.body?.cancel();
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("docker-content-digest"), digest);
}

async function blobBytes(dataDir: string, digest: string): Promise<Uint8Array> {
  const hex = digest.slice("sha256:".length);
  return await Deno.readFile(join(dataDir, "blobs", "sha256", hex.slice(0, 2), hex));
}

Deno.test("SIGKILL between two PATCHes: after restart the client continues and PUT gives the right digest", async (t) => {
  await using crash = await crashableRegistry();
  // past 8 MiB the registry starts the write-back of what it wrote: the second chunk starts
  // at an odd offset there
  const a = randomBytes(9 * MiB + 17);
  const b = randomBytes(5 * MiB + 5);
  const c = randomBytes(1000);
  const all = concat(a, b, c);
  const { location, uuid } = await startUpload(crash.reg, "team/app");
  await t.step("first chunk acknowledged, then the process is killed", async () => {
    const res = await patch(crash.reg, location, a, `0-${a.length - 1}`);
    assert.equal(res.status, 202);
    assert.equal(res.headers.get("range"), `0-${a.length - 1}`);
    await crash.kill();
    assert.equal((await hashStateOf(crash.dataDir, uuid)).length, a.length);
  });
  await t.step("after restart GET status reports the stored bytes", async () => {
    await crash.restart();
    assert.equal(await statusRange(crash.reg, location), `0-${a.length - 1}`);
  });
  await t.step(
    "the client continues; PUT with the final chunk gives the right digest",
    async () => {
      const res = await patch(crash.reg, location, b, `${a.length}-${a.length + b.length - 1}`);
      assert.equal(res.status, 202);
      assert.equal(res.headers.get("range"), `0-${a.length + b.length - 1}`);
      const digest = await sha256Digest(all);
      await putDigest(crash.reg, location, digest, c);
      assert.deepEqual(await blobBytes(crash.dataDir, digest), all);
      const get = await crash.reg.fetch(`/v2/team/app/blobs/${digest}`);
      assert.deepEqual(new Uint8Array(await get.arrayBuffer()), all);
    },
  );
});

Deno.test("SIGKILL in the middle of a PATCH body: after restart only acknowledged bytes count", async (t) => {
  await using crash = await crashableRegistry();
  const a = randomBytes(3 * MiB + 33);
  const b = randomBytes(16 * MiB + 3);
  const all = concat(a, b);
  const { location, uuid } = await startUpload(crash.reg, "app");
  assert.equal((await patch(crash.reg, location, a, `0-${a.length - 1}`)).status, 202);

  await t.step("the second PATCH is streaming when the process is killed", async () => {
    const body = new ControlledBody();
    const range = `${a.length}-${a.length + b.length - 1}`;
    const inFlight = patch(crash.reg, location, body.stream, range).then(
      (res) => `answered ${res.status}`,
      () => "failed",
    );
    for (let at = 0; at < 10 * MiB; at += MiB) await body.push(b.slice(at, at + MiB));
    await waitFor(
      async () => (await dataSizeOf(crash.dataDir, uuid)) > a.length,
      "the second chunk to reach the data file",
    );
    await crash.kill();
    assert.equal(await inFlight, "failed");
  });
  await t.step(
    "on disk: data holds unacknowledged bytes, hashstate the acknowledged offset",
    async () => {
      assert.ok((await dataSizeOf(crash.dataDir, uuid)) > a.length);
      assert.equal((await hashStateOf(crash.dataDir, uuid)).length, a.length);
    },
  );
  await t.step("after restart GET status reports exactly the acknowledged bytes", async () => {
    await crash.restart();
    assert.equal(await statusRange(crash.reg, location), `0-${a.length - 1}`);
    assert.equal(await dataSizeOf(crash.dataDir, uuid), a.length);
  });
  await t.step("resending from there completes with the right digest", async () => {
    const res = await patch(crash.reg, location, b, `${a.length}-${a.length + b.length - 1}`);
    assert.equal(res.status, 202);
    assert.equal(res.headers.get("range"), `0-${all.length - 1}`);
    const digest = await sha256Digest(all);
    await putDigest(crash.reg, location, digest);
    assert.deepEqual(await blobBytes(crash.dataDir, digest), all);
  });
});

Deno.test("a missing or corrupt hashstate is recovered from data on disk after a restart", async (t) => {
  await using crash = await crashableRegistry();
  // Each session gets a first chunk (not block aligned), then its hashstate is damaged.
  const damages: [string, (path: string, size: number) => Promise<void>][] = [
    ["missing", (path) => Deno.remove(path)],
    ["empty", (path) => Deno.writeTextFile(path, "")],
    ["torn JSON", async (path) => {
      const text = await Deno.readTextFile(path);
      await Deno.writeTextFile(path, text.slice(0, text.length / 2));
    }],
    ["binary garbage", (path) => Deno.writeFile(path, randomBytes(200))],
    ["well formed but ahead of data", (path, size) => {
      const hasher = createSha256();
      hasher.update(randomBytes(size + 1000));
      return Deno.writeTextFile(path, encodeSha256State(hasher.exportState()));
    }],
    ["wrong algorithm", async (path) => {
      const text = await Deno.readTextFile(path);
      await Deno.writeTextFile(path, text.replace('"sha256"', '"sha512"'));
    }],
  ];
  const sessions = [];
  for (const [what] of damages) {
    const first = randomBytes(MiB + 1 + Math.floor(Math.random() * 63));
    const { location, uuid } = await startUpload(crash.reg, "app");
    assert.equal((await patch(crash.reg, location, first, `0-${first.length - 1}`)).status, 202);
    sessions.push({ what, location, uuid, first });
  }
  await crash.kill();
  for (const [i, [, damage]] of damages.entries()) {
    const { uuid, first } = sessions[i];
    await damage(sessionFile(crash.dataDir, uuid, "hashstate"), first.length);
  }
  await crash.restart();
  for (const { what, location, uuid, first } of sessions) {
    await t.step(`${what}: GET reports all of data, and the upload completes`, async () => {
      assert.equal(await statusRange(crash.reg, location), `0-${first.length - 1}`);
      assert.equal((await hashStateOf(crash.dataDir, uuid)).length, first.length);
      const rest = randomBytes(5000);
      const res = await patch(crash.reg, location, rest, `${first.length}-${first.length + 4999}`);
      assert.equal(res.status, 202);
      const digest = await sha256Digest(concat(first, rest));
      await putDigest(crash.reg, location, digest);
      assert.deepEqual(await blobBytes(crash.dataDir, digest), concat(first, rest));
    });
  }
});

Deno.test("an older hashstate than data (crash before the state was saved): the tail is dropped", async () => {
  await using crash = await crashableRegistry();
  const a = randomBytes(100_000);
  const b = randomBytes(50_000);
  const { location, uuid } = await startUpload(crash.reg, "app");
  assert.equal((await patch(crash.reg, location, a)).status, 202);
  const older = await Deno.readTextFile(sessionFile(crash.dataDir, uuid, "hashstate"));
  assert.equal((await patch(crash.reg, location, b)).status, 202);
  await crash.kill();
  // As if the process died after appending b but before replacing hashstate.
  await Deno.writeTextFile(sessionFile(crash.dataDir, uuid, "hashstate"), older);
  await crash.restart();
  assert.equal(await statusRange(crash.reg, location), `0-${a.length - 1}`);
  assert.equal(await dataSizeOf(crash.dataDir, uuid), a.length);
  const res = await patch(crash.reg, location, b, `${a.length}-${a.length + b.length - 1}`);
  assert.equal(res.status, 202);
  await putDigest(crash.reg, location, await sha256Digest(concat(a, b)));
});
