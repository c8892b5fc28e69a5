import assert from "node:assert/strict";
import { createHash, randomFillSync } from "node:crypto";
import {
  createSha256,
  decodeSha256State,
  encodeSha256State,
  nativeSha256Available,
  type Sha256,
  type Sha256State,
} from "../../src/digest/sha256.ts";

type Backend = "native" | "portable";
const NATIVE = nativeSha256Available();
const BACKENDS: Backend[] = ["native", "portable"];
const SIZES = [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 1000];
const LARGE = [64 * 1024 + 3, 1024 * 1024 + 17];

function ref(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function random(n: number): Uint8Array {
  return randomFillSync(new Uint8Array(n));
}

function hashParts(backend: Backend, parts: Uint8Array[]): string {
  const h = createSha256(undefined, { backend });
  for (const p of parts) h.update(p);
  return h.digestHex();
}

/** Split points: all of them for small inputs, boundaries and a sample otherwise. */
function splitPoints(n: number): number[] {
  if (n <= 1000) return Array.from({ length: n + 1 }, (_, i) => i);
  const pts = new Set([0, 1, 55, 56, 63, 64, 65, 4096, n >> 1, n - 64, n]);
  for (let i = 0; i < 24; i++) pts.add(Math.floor(Math.random() * (n + 1)));
  return [...pts].filter((p) => p >= 0 && p <= n);
}

const VECTORS: [string, string][] = [
  ["", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
  ["abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
  [
    "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  ],
  [
    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
    "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
  ],
  [
    "a".repeat(1_000_000),
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
  ],
];

for (const backend of BACKENDS) {
  const ignore = backend === "native" && !NATIVE;

  Deno.test({
    name: `${backend}: known NIST vectors match published and node:crypto digests`,
    ignore,
    fn() {
      for (const [msg, want] of VECTORS) {
        const bytes = new TextEncoder().encode(msg);
        assert.equal(ref(bytes), want);
        assert.equal(hashParts(backend, [bytes]), want);
      }
    },
  });

  Deno.test({
    name: `${backend}: digest is independent of how the input is split`,
    ignore,
    fn() {
      for (const n of [...SIZES, ...LARGE]) {
        const data = random(n);
        const want = ref(data);
        for (const p of splitPoints(n)) {
          const got = hashParts(backend, [
            data.subarray(0, p),
            data.subarray(p),
          ]);
          assert.equal(got, want, `size ${n} split at ${p}`);
        }
        // Many small irregular pieces, including empty ones.
        const parts: Uint8Array[] = [];
        for (let off = 0, k = 0; off < n; k++) {
          const len = (k * 37) % 151;
          parts.push(data.subarray(off, off + len));
          off += len;
        }
        assert.equal(hashParts(backend, parts), want, `size ${n} in pieces`);
      }
    },
  });

  Deno.test({
    name: `${backend}: length, backend name, empty updates and use after digest`,
    ignore,
    fn() {
      const h = createSha256(undefined, { backend });
      assert.equal(h.backend, backend);
      assert.equal(h.length, 0);
      h.update(new Uint8Array(0));
      h.update(new TextEncoder().encode("ab"));
      h.update(new Uint8Array(0));
      h.update(new TextEncoder().encode("c"));
      assert.equal(h.length, 3);
      assert.equal(
        h.digestHex(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      );
      assert.throws(() => h.update(new Uint8Array(1)), Error);
      assert.throws(() => h.digestHex(), Error);
    },
  });

  Deno.test({
    name: `${backend}: exportState does not disturb continued hashing`,
    ignore,
    fn() {
      const data = random(5000);
      const h = createSha256(undefined, { backend });
      for (let off = 0; off < data.length; off += 97) {
        const before = h.exportState();
        const again = h.exportState();
        assert.deepEqual(again, before);
        before.pending.fill(0xff); // Exported bytes must be a copy.
        assert.equal(h.length, off);
        h.update(data.subarray(off, off + 97));
      }
      assert.equal(h.digestHex(), ref(data));
    },
  });
}

/** Hashes data[0..k) with `from`, round-trips the state as text, finishes with `to`. */
function resumeAt(data: Uint8Array, k: number, from: Backend, to: Backend) {
  const a = createSha256(undefined, { backend: from });
  a.update(data.subarray(0, k >> 1));
  a.update(data.subarray(k >> 1, k));
  const text = encodeSha256State(a.exportState());
  assert.ok(!text.includes("\n"));
  const b = createSha256(decodeSha256State(text), { backend: to });
  assert.equal(b.backend, to);
  assert.equal(b.length, k);
  b.update(data.subarray(k));
  assert.equal(b.digestHex(), ref(data), `${from}->${to} at ${k}`);
  return text;
}

for (const from of BACKENDS) {
  for (const to of BACKENDS) {
    Deno.test({
      name: `state exported by ${from} at any offset resumes in a new ${to} hasher`,
      ignore: (from === "native" || to === "native") && !NATIVE,
      fn() {
        const small = random(300);
        for (let k = 0; k <= small.length; k++) resumeAt(small, k, from, to);
        const big = random(200_003);
        for (const k of [4096, 65536, 65537, 100_000, 131_071, 200_000]) {
          resumeAt(big, k, from, to);
        }
      },
    });
  }
}

Deno.test({
  name: "native and portable export byte-identical encoded states",
  ignore: !NATIVE,
  fn() {
    const data = random(1000);
    for (const k of [0, 1, 63, 64, 65, 128, 500, 1000]) {
      assert.equal(
        resumeAt(data, k, "native", "portable"),
        resumeAt(data, k, "portable", "native"),
      );
    }
  },
});

Deno.test({
  name: "native and portable agree when resuming at lengths beyond 2^32 bits",
  ignore: !NATIVE,
  fn() {
    const tail = random(200);
    for (
      const length of [
        2 ** 29 - 1,
        2 ** 29 + 3,
        2 ** 32 + 7,
        2 ** 45 + 64,
        Number.MAX_SAFE_INTEGER,
      ]
    ) {
      const state: Sha256State = {
        words: [1, 2, 3, 0xffffffff, 5, 6, 7, 0x80000000],
        length,
        pending: random(length % 64),
      };
      const digests = BACKENDS.map((backend) => {
        const h: Sha256 = createSha256(state, { backend });
        const out = encodeSha256State(h.exportState());
        assert.equal(out, encodeSha256State(state));
        h.update(tail.subarray(0, length % 7));
        return h.digestHex();
      });
      assert.equal(digests[0], digests[1], `length ${length}`);
    }
  },
});

Deno.test("createSha256 prefers native when available and accepts a forced portable backend", () => {
  assert.equal(createSha256().backend, NATIVE ? "native" : "portable");
  assert.equal(
    createSha256(undefined, { backend: "portable" }).backend,
    "portable",
  );
  if (!NATIVE) {
    assert.throws(() => createSha256(undefined, { backend: "native" }));
  }
});

Deno.test("encodeSha256State writes the documented single-line JSON", () => {
  const h = createSha256(undefined, { backend: "portable" });
  h.update(new TextEncoder().encode("abc"));
  assert.equal(
    encodeSha256State(h.exportState()),
    '{"algorithm":"sha256","length":3,"words":["6a09e667","bb67ae85",' +
      '"3c6ef372","a54ff53a","510e527f","9b05688c","1f83d9ab","5be0cd19"],' +
      '"pending":"616263"}',
  );
});

const WORDS =
  '["6a09e667","bb67ae85","3c6ef372","a54ff53a","510e527f","9b05688c","1f83d9ab","5be0cd19"]';
const SEVEN = WORDS.replace(',"5be0cd19"', "");
const ok = (over: Record<string, string>) => {
  const f = {
    algorithm: '"sha256"',
    length: "3",
    words: WORDS,
    pending: '"616263"',
    ...over,
  };
  return `{${Object.entries(f).map(([k, v]) => `"${k}":${v}`).join(",")}}`;
};

Deno.test("decodeSha256State accepts a well-formed state", () => {
  const s = decodeSha256State(ok({}));
  assert.equal(s.length, 3);
  assert.deepEqual(s.pending, new Uint8Array([0x61, 0x62, 0x63]));
  assert.equal(s.words[0], 0x6a09e667);
});

Deno.test("decodeSha256State rejects malformed texts with a plain Error", () => {
  const bad: [string, string][] = [
    ["bad JSON", '{"algorithm":"sha256",'],
    ["empty text", ""],
    ["JSON array", "[]"],
    ["JSON null", "null"],
    ["wrong algorithm", ok({ algorithm: '"sha512"' })],
    ["missing algorithm", ok({}).replace('"algorithm":"sha256",', "")],
    ["7 words", ok({ words: SEVEN })],
    ["9 words", ok({ words: WORDS.replace("]", ',"00000000"]') })],
    ["non-hex word", ok({ words: WORDS.replace("6a09e667", "6a09e66g") })],
    ["short word", ok({ words: WORDS.replace("6a09e667", "6a09e66") })],
    ["uppercase word", ok({ words: WORDS.replace("bb67ae85", "BB67AE85") })],
    ["numeric word", ok({ words: WORDS.replace('"6a09e667"', "1") })],
    ["pending length mismatch", ok({ pending: '"6162"' })],
    ["odd pending", ok({ pending: '"61626"' })],
    ["non-hex pending", ok({ pending: '"61626z"' })],
    ["negative length", ok({ length: "-3" })],
    ["fractional length", ok({ length: "3.5" })],
    ["string length", ok({ length: '"3"' })],
    ["unsafe length", ok({ length: "9007199254740995" })],
    ["unknown key", ok({ extra: "1" })],
  ];
  for (const [why, text] of bad) {
    assert.throws(
      () => decodeSha256State(text),
      (e: unknown) =>
        e instanceof Error && e.constructor === Error &&
        /hashstate/.test(e.message),
      why,
    );
  }
});

Deno.test("createSha256 throws TypeError on a malformed state object", () => {
  const good: Sha256State = {
    words: [0, 1, 2, 3, 4, 5, 6, 7],
    length: 2,
    pending: new Uint8Array(2),
  };
  const bad: Sha256State[] = [
    { ...good, words: [0, 1, 2, 3, 4, 5, 6] },
    { ...good, words: [0, 1, 2, 3, 4, 5, 6, 2 ** 32] },
    { ...good, words: [0, 1, 2, 3, 4, 5, 6, -1] },
    { ...good, length: -1 },
    { ...good, length: 2.5 },
    { ...good, pending: new Uint8Array(3) },
  ];
  for (
    const backend of [
      "portable",
      ...(NATIVE ? ["native" as const] : []),
    ] as Backend[]
  ) {
    createSha256(good, { backend });
    for (const s of bad) {
      assert.throws(() => createSha256(s, { backend }), TypeError);
      assert.throws(() => encodeSha256State(s), TypeError);
    }
  }
});
