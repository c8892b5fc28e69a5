/**
 * The parallel-push breakdown (bench/parallel_parts.ts) and its receivers (bench/intake.ts):
 * what each receiver answers and stores, how rounds are summarized, and a short run of the
 * whole tool.
 */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Http1 } from "../../bench/http1.ts";
import { intakeHandler, type IntakeMode } from "../../bench/intake.ts";
import {
  dataPathBound,
  partsTable,
  pushRounds,
  roundOrder,
  type Sample,
  summarize,
} from "../../bench/parallel_parts.ts";
import { type Receiver, startOurs } from "../../bench/servers.ts";
import { makeData, pushStream, sha256 } from "../../bench/workloads.ts";
import { decodeSha256State } from "../../src/digest/sha256.ts";
import { serveHttp1 } from "../../src/server/mod.ts";

const MiB = 1024 * 1024;
const REPO_ROOT = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

/** Runs `fn` against an in-process receiver in `mode`, its files in a temporary folder. */
async function withIntake(
  mode: IntakeMode,
  fn: (base: string, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "intake-test-" });
  const server = serveHttp1({ hostname: "127.0.0.1", port: 0 }, intakeHandler(mode, dir));
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, dir);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A blob of a few batches and a bit, so that the last batch is a short one. */
function blob(seed: number): { bytes: Uint8Array; digest: string } {
  const bytes = makeData(3 * MiB + 12_345);
  new DataView(bytes.buffer).setUint32(8, seed);
  return { bytes, digest: sha256(bytes) };
}

async function filesIn(dir: string): Promise<Uint8Array[]> {
  const names = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
  return await Promise.all(names.map((name) => Deno.readFile(join(dir, name))));
}

Deno.test("intake both: two parallel pushes in 32 KiB frames are hashed and stored byte for byte", async () => {
  await withIntake("both", async (base, dir) => {
    const blobs = [blob(1), blob(2)];
    const conns = await Promise.all(blobs.map(() => Http1.connect(base)));
    try {
      // pushStream checks the PATCH's Range and the PUT's 201 with the digest
      await Promise.all(blobs.map((b, i) => pushStream(conns[i]!, base, `t/r${i}`, b, 32 * 1024)));
    } finally {
      for (const c of conns) c.close();
    }
    const stored = await filesIn(dir);
    assert.equal(stored.length, 2);
    assert.deepEqual(stored.map(sha256).sort(), blobs.map((b) => b.digest).sort());
  });
});

Deno.test("intake hash: a PUT with another digest is refused with 400", async () => {
  await withIntake("hash", async (base) => {
    const b = blob(3);
    const conn = await Http1.connect(base);
    try {
      const posted = await conn.request("POST", "/v2/t/blobs/uploads/");
      assert.equal(posted.status, 202);
      const location = posted.headers.get("location")!;
      const patched = await conn.request("PATCH", location, { body: b.bytes });
      assert.equal(patched.status, 202);
      assert.equal(patched.headers.get("range"), `0-${b.bytes.length - 1}`);
      const wrong = sha256(b.bytes.subarray(1));
      const put = await conn.request("PUT", `${location}?digest=${encodeURIComponent(wrong)}`);
      assert.equal(put.status, 400);
      assert.match(new TextDecoder().decode(put.body), new RegExp(b.digest.slice(7)));
    } finally {
      conn.close();
    }
  });
});

Deno.test("intake drop and write: the Range counts every byte; only write stores them", async () => {
  for (const mode of ["drop", "write"] as const) {
    await withIntake(mode, async (base, dir) => {
      const b = blob(4);
      const conn = await Http1.connect(base);
      try {
        await pushStream(conn, base, "t/one", b, 32 * 1024);
      } finally {
        conn.close();
      }
      const stored = await filesIn(dir);
      if (mode === "drop") assert.equal(stored.length, 0);
      else assert.deepEqual(stored.map(sha256), [b.digest]);
    });
  }
});

/** Every file under `dir`, as paths relative to it, sorted. */
async function walk(dir: string, under = ""): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(join(dir, under))) {
    const path = under === "" ? entry.name : `${under}/${entry.name}`;
    if (entry.isDirectory) found.push(...await walk(dir, path));
    else found.push(path);
  }
  return found.sort();
}

Deno.test("intake durable: sessions kept as the registry keeps them; blobs committed and linked", async () => {
  await withIntake("durable", async (base, dir) => {
    const blobs = [blob(5), blob(6)];
    const conns = await Promise.all(blobs.map(() => Http1.connect(base)));
    try {
      // a PATCH acknowledged: the session holds its bytes and the state covering them
      const posted = await conns[0]!.request("POST", "/v2/t/mid/blobs/uploads/");
      assert.equal(posted.status, 202);
      const location = posted.headers.get("location")!;
      const id = location.split("/").pop()!;
      const patched = await conns[0]!.request("PATCH", location, { body: blobs[0]!.bytes });
      assert.equal(patched.status, 202);
      assert.deepEqual(await walk(join(dir, "uploads", id)), [
        "data",
        "hashstate",
        "repository",
        "startedat",
      ]);
      assert.equal(sha256(await Deno.readFile(join(dir, "uploads", id, "data"))), blobs[0]!.digest);
      const state = await Deno.readTextFile(join(dir, "uploads", id, "hashstate"));
      assert.equal(decodeSha256State(state)?.length, blobs[0]!.bytes.length);
      // a wrong digest: 400, the session gone, nothing committed
      const wrong = sha256(blobs[0]!.bytes.subarray(1));
      const put = await conns[0]!.request("PUT", `${location}?digest=${encodeURIComponent(wrong)}`);
      assert.equal(put.status, 400);
      assert.deepEqual(await walk(dir), []);

      await Promise.all(blobs.map((b, i) => pushStream(conns[i]!, base, `t/r${i}`, b, 32 * 1024)));
    } finally {
      for (const c of conns) c.close();
    }
    const expected = blobs.flatMap((b, i) => {
      const hex = b.digest.slice("sha256:".length);
      return [
        `blobs/sha256/${hex.slice(0, 2)}/${hex}`,
        `repositories/t/r${i}/_layers/sha256/${hex}`,
      ];
    });
    assert.deepEqual(await walk(dir), expected.sort());
    for (const b of blobs) {
      const hex = b.digest.slice("sha256:".length);
      assert.equal(
        sha256(await Deno.readFile(join(dir, "blobs/sha256", hex.slice(0, 2), hex))),
        b.digest,
      );
    }
    assert.equal(
      await Deno.readTextFile(
        join(dir, `repositories/t/r1/_layers/sha256/${blobs[1]!.digest.slice(7)}`),
      ),
      blobs[1]!.digest,
    );
  });
});

Deno.test("intake durable: PATCHes appended one after another, and a PUT's own body, as the curl rows send them", async () => {
  await withIntake("durable", async (base, dir) => {
    const chunked = blob(7);
    const mono = blob(8);
    const conn = await Http1.connect(base);
    try {
      // three PATCHes with Content-Range, then a PUT without a body
      let location = (await conn.request("POST", "/v2/t/chunked/blobs/uploads/")).headers.get(
        "location",
      )!;
      const cuts = [0, MiB, 2 * MiB + 5, chunked.bytes.length];
      for (let i = 0; i + 1 < cuts.length; i++) {
        const patched = await conn.request("PATCH", location, {
          body: chunked.bytes.subarray(cuts[i], cuts[i + 1]),
          headers: { "Content-Range": `${cuts[i]}-${cuts[i + 1]! - 1}` },
        });
        assert.equal(patched.status, 202);
        assert.equal(patched.headers.get("range"), `0-${cuts[i + 1]! - 1}`);
        location = patched.headers.get("location")!;
      }
      const closed = await conn.request(
        "PUT",
        `${location}?digest=${encodeURIComponent(chunked.digest)}`,
      );
      assert.equal(closed.status, 201);
      assert.equal(closed.headers.get("docker-content-digest"), chunked.digest);
      // a monolithic push: the POST, then the whole blob as the PUT's body
      const posted = await conn.request("POST", "/v2/t/mono/blobs/uploads/");
      const put = await conn.request(
        "PUT",
        `${posted.headers.get("location")}?digest=${encodeURIComponent(mono.digest)}`,
        { body: mono.bytes },
      );
      assert.equal(put.status, 201);
      assert.equal(put.headers.get("docker-content-digest"), mono.digest);
    } finally {
      conn.close();
    }
    for (const b of [chunked, mono]) {
      const hex = b.digest.slice("sha256:".length);
      assert.equal(
        sha256(await Deno.readFile(join(dir, "blobs/sha256", hex.slice(0, 2), hex))),
        b.digest,
      );
    }
    assert.deepEqual(await walk(join(dir, "uploads")), []);
  });
});

Deno.test("summarize: the first round left out, rates against the baseline in the same round", () => {
  // The machine runs half as fast in round 2: the in-round ratio stays 2.
  const s = (receiver: string, round: number, seconds: number, cpu: number): Sample => ({
    receiver,
    round,
    mib: 1024,
    seconds,
    receiverCpu: cpu,
    machineCpu: 2 * cpu,
  });
  const rows = summarize(
    [
      s("ours", 0, 100, 9),
      s("distribution", 0, 1, 9),
      s("ours", 1, 1, 1.5),
      s("distribution", 1, 2, 3),
      s("ours", 2, 2, 1.5),
      s("distribution", 2, 4, 3),
    ],
    1,
    "distribution",
  );
  assert.deepEqual(rows.map((r) => r.receiver), ["ours", "distribution"]);
  const ours = rows[0]!;
  assert.deepEqual(ours.rate, { median: 768, min: 512, max: 1024 });
  assert.equal(ours.ratio, 2);
  assert.equal(ours.receiverCpuPerGiB, 1.5);
  assert.equal(ours.machineCpuPerGiB, 3);
  assert.equal(ours.machineCores, 2.25);
  assert.equal(rows[1]!.ratio, 1);
  assert.match(
    partsTable(rows),
    /\| ours \| 768 \(512–1,024\) \| 2\.00 \| 1\.50 \| 2\.25 \| 3\.00 \|/,
  );
  assert.equal(summarize([s("ours", 1, 1, 1)], 1, "distribution")[0]!.ratio, null);
});

Deno.test("roundOrder: every receiver once a round, none always after the same one, the same in every run", () => {
  for (const n of [1, 2, 6, 7]) {
    for (let round = 0; round < 10; round++) {
      assert.deepEqual([...roundOrder(n, round)].sort((a, b) => a - b), [...Array(n).keys()]);
      assert.deepEqual(roundOrder(n, round), roundOrder(n, round));
    }
  }
  // over n rounds of a run of n receivers (six without Distribution, seven with it), each one
  // follows at least three others
  for (const n of [6, 7]) {
    for (let receiver = 0; receiver < n; receiver++) {
      const before = new Set<number>();
      for (let round = 0; round < n; round++) {
        const order = roundOrder(n, round);
        const at = order.indexOf(receiver);
        if (at > 0) before.add(order[at - 1]!);
      }
      assert.ok(before.size >= 3, `of ${n}, receiver ${receiver} follows ${[...before]}`);
    }
  }
});

Deno.test("bench:parallel: a short run pushes into our registry and every intake, and leaves no data", async () => {
  const dir = await Deno.makeTempDir({ prefix: "parts-run-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        join(REPO_ROOT, "bench", "parallel_parts.ts"),
        ...["--mib", "1", "--rounds", "2", "--no-distribution", "--dir", dir],
      ],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
    for (
      const name of [
        "ours",
        "intake-drop",
        "intake-hash",
        "intake-write",
        "intake-both",
        "intake-durable",
      ]
    ) {
      assert.match(text, new RegExp(`^\\| ${name} \\| [\\d,]+ \\(`, "m"), name);
    }
    // the run's folder keeps its logs only
    const [run] = await Array.fromAsync(Deno.readDir(dir));
    const left = await Array.fromAsync(Deno.readDir(join(dir, run!.name)));
    assert.ok(left.length > 0 && left.every((e) => e.isFile && e.name.endsWith(".log")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dataPathBound: rounds against a baseline, the first not counted; nothing left stored", async () => {
  const root = await Deno.makeTempDir({ prefix: "parts-bound-" });
  const ours = await startOurs(join(root, "ours"), root, {
    repoRoot: REPO_ROOT,
    env: { REGISTRY_LOG_REQUESTS: "0" },
  });
  try {
    const blobs = Array.from({ length: 8 }, (_, i) => blob(100 + i));
    const bound = await dataPathBound({
      repoRoot: REPO_ROOT,
      dir: join(root, "intake-durable"),
      logDir: root,
      baseline: ours,
      blobs,
      frame: 32 * 1024,
      rounds: 3,
    });
    assert.equal(bound.baseline, "ours");
    assert.equal(bound.dataPathMiBs.length, 2);
    assert.equal(bound.baselineMiBs.length, 2);
    assert.equal(bound.ratios.length, 2);
    for (const rate of [...bound.dataPathMiBs, ...bound.baselineMiBs]) assert.ok(rate > 0);
    // the ratios are taken round by round (the order of the rounds, for both)
    bound.ratios.forEach((ratio, i) =>
      assert.ok(Math.abs(ratio - bound.dataPathMiBs[i]! / bound.baselineMiBs[i]!) < 1e-9)
    );
    // the intake's files are gone, and so are the blobs the baseline stored
    await assert.rejects(Deno.stat(join(root, "intake-durable")), Deno.errors.NotFound);
    for (const b of blobs) {
      await assert.rejects(Deno.stat(ours.blobPath(b.digest.slice(7))), Deno.errors.NotFound);
    }
    // the intake pushed into is stopped: its log says it listened, and nothing listens there now
    const log = await Deno.readTextFile(join(root, "intake-durable.log"));
    const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(log)![1]);
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }));
  } finally {
    await ours.stop();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("pushRounds: each receiver once a round; its cleanup right after its own push, with that round's blobs", async () => {
  const dirs: string[] = [];
  const servers: ReturnType<typeof serveHttp1>[] = [];
  const receivers: Receiver[] = [];
  try {
    for (const name of ["a", "b"]) {
      const dir = await Deno.makeTempDir({ prefix: "rounds-test-" });
      dirs.push(dir);
      const server = serveHttp1({ hostname: "127.0.0.1", port: 0 }, intakeHandler("write", dir));
      servers.push(server);
      receivers.push({
        name,
        base: `http://127.0.0.1:${server.addr.port}`,
        pid: Deno.pid,
        stop: () => server.shutdown(),
      } as Receiver);
    }
    const made = [0, 1, 2].map((r) => [blob(200 + r), blob(300 + r)]);
    const blobsOf = (round: number) => made[round]!;
    const cleanups: { receiver: string; round: number; stored: number }[] = [];
    let round = -1;
    const samples = await pushRounds({
      receivers,
      rounds: 3,
      frame: 32 * 1024,
      blobsOf: (r) => {
        round = r;
        return blobsOf(r);
      },
      cleanup: async (receiver, blobs) => {
        assert.deepEqual(blobs.map((b) => b.digest), blobsOf(round).map((b) => b.digest));
        // what this receiver stored of this round is there when its cleanup runs
        const dir = dirs[receivers.indexOf(receiver)]!;
        const stored = (await filesIn(dir)).length;
        cleanups.push({ receiver: receiver.name, round, stored });
        for await (const entry of Deno.readDir(dir)) await Deno.remove(join(dir, entry.name));
      },
    });
    assert.equal(samples.length, 6);
    // one cleanup per push, in the same order, each after its own receiver's push
    assert.deepEqual(
      cleanups.map((c) => [c.receiver, c.round]),
      samples.map((s) => [s.receiver, s.round]),
    );
    for (const c of cleanups) assert.equal(c.stored, 2, JSON.stringify(c));
    for (let r = 0; r < 3; r++) {
      assert.deepEqual(samples.filter((s) => s.round === r).map((s) => s.receiver).sort(), [
        "a",
        "b",
      ]);
    }
  } finally {
    for (const server of servers) await server.shutdown();
    for (const dir of dirs) await Deno.remove(dir, { recursive: true });
  }
});
