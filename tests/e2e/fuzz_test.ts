/**
 * Hostile input: thousands of generated requests (fast-check, seeded) with adversarial names,
 * references, digests, upload ids, query parameters, headers and bodies against every route,
 * plus explicit path traversal requests sent raw (fetch would normalize them) and symbolic
 * links planted in the data root. After all of it: no 5xx, every error is an OCI error body,
 * no file appeared outside the data root, the stored content is unchanged and sound, and the
 * registry still answers.
 *
 * `FUZZ_RUNS` (default 4000) and `FUZZ_SEED` tune a run.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import fc from "fast-check";
import { portOf, rawRequest, type RawResponse } from "../helpers/raw_http.ts";
import {
  pushBlob,
  randomBytes,
  sha256Digest,
  type TempRegistry,
  tempRegistry,
} from "../helpers/registry.ts";
import { SPEC_ERROR_CODES } from "../helpers/error_codes.ts";
import { checkStore, listTree, storeFingerprint } from "../helpers/store_check.ts";
import { OCI_INDEX as INDEX_TYPE, OCI_MANIFEST as MANIFEST_TYPE } from "../helpers/media_types.ts";

const RUNS = Number(Deno.env.get("FUZZ_RUNS") ?? 4000);
const SEED = Number(Deno.env.get("FUZZ_SEED") ?? Math.floor(Math.random() * 2 ** 31));
const CODES = SPEC_ERROR_CODES;

/** A registry over `<private parent>/data`, with `<parent>/outside` holding a canary. */
interface Arena {
  readonly parent: string;
  readonly outside: string;
  readonly reg: TempRegistry;
  readonly base: { name: string; layer: string; config: string; manifest: string; tag: string };
  readonly session: string;
}

async function arena(): Promise<Arena & AsyncDisposable> {
  const parent = await Deno.makeTempDir({ prefix: "registry-fuzz-" });
  const outside = join(parent, "outside");
  await Deno.mkdir(join(outside, "target"), { recursive: true });
  await Deno.writeTextFile(join(outside, "secret"), "canary");
  const reg = await tempRegistry({ dataDir: join(parent, "data") });
  const name = "fuzz/base";
  const layerBytes = randomBytes(5000);
  const layer = await pushBlob(reg, name, layerBytes);
  const config = await pushBlob(reg, name, new TextEncoder().encode("{}"));
  const body = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: MANIFEST_TYPE,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: config, size: 2 },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: layer, size: 5000 }],
  }));
  const put = await reg.fetch(`/v2/${name}/manifests/v1`, {
    method: "PUT",
    headers: { "Content-Type": MANIFEST_TYPE },
    body,
  });
  assert.equal(put.status, 201);
  const start = await reg.fetch(`/v2/${name}/blobs/uploads/`, { method: "POST" });
  await start.body?.cancel();
  return {
    parent,
    outside,
    reg,
    base: { name, layer, config, manifest: await sha256Digest(body), tag: "v1" },
    session: start.headers.get("docker-upload-uuid")!,
    async [Symbol.asyncDispose]() {
      await reg[Symbol.asyncDispose]();
      await Deno.remove(parent, { recursive: true });
    },
  };
}

/** Everything under the parent except the data root: must never change. */
async function outsideListing(parent: string): Promise<string[]> {
  return (await listTree(parent)).filter((p) => !p.startsWith("data/"));
}

/**
 * Checks one answer: no 5xx; a 4xx from the registry has an OCI body whose codes are among the
 * spec's 14 (`UNKNOWN` is for 5xx alone); a refusal by the transport itself (a malformed
 * request, 408, 417, 431) is plain text.
 */
function checkAnswer(
  what: string,
  method: string,
  status: number,
  headers: { get(name: string): string | null },
  body: string,
): void {
  assert.ok(status < 500, `${what}: status ${status} ${body.slice(0, 300)}`);
  if (status < 400 || method === "HEAD") return;
  if (headers.get("docker-distribution-api-version") === null) {
    // Refused by the HTTP transport before the registry saw it (bad request line or header).
    assert.ok([400, 408, 417, 431].includes(status), `${what}: bare ${status}`);
    assert.match(headers.get("content-type") ?? "", /^text\/plain/, `${what}: transport refusal`);
    return;
  }
  assert.equal(headers.get("content-type"), "application/json", `${what}: content type`);
  let parsed: { errors?: { code?: unknown; message?: unknown }[] };
  try {
    parsed = JSON.parse(body);
  } catch {
    assert.fail(`${what}: error body is not JSON: ${body.slice(0, 200)}`);
  }
  assert.ok(Array.isArray(parsed.errors) && parsed.errors.length > 0, `${what}: no errors[]`);
  for (const error of parsed.errors) {
    assert.ok(CODES.has(error.code as string), `${what}: code ${error.code}`);
    assert.equal(typeof error.message, "string", `${what}: message`);
  }
}

// Generators.

const HEX = "0123456789abcdef";
const hex = (n: number) => fc.string({ unit: fc.constantFrom(...HEX), minLength: n, maxLength: n });
const nasty = fc.constantFrom(
  "..",
  ".",
  "%2e%2e",
  "%2E%2E",
  "..%2f..",
  "%2f",
  "%00",
  "%5c..%5c",
  "\\..\\",
  "a%2fb",
  "_layers",
  "_manifests",
  ".tmp-x",
  "%ff%fe",
  "é",
  "%20",
  "",
  "A",
  "a".repeat(300),
);
const component = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[a-z0-9]{1,8}([._-][a-z0-9]{1,4})?$/) },
  { weight: 2, arbitrary: nasty },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }).map(encodeURIComponent) },
);
const name = fc.oneof(
  { weight: 3, arbitrary: fc.constant("fuzz/base") },
  { weight: 2, arbitrary: fc.constant("fuzz/other") },
  {
    weight: 5,
    arbitrary: fc.array(component, { minLength: 1, maxLength: 4 }).map((c) => c.join("/")),
  },
);
const digest = fc.oneof(
  hex(64).map((h) => `sha256:${h}`),
  hex(128).map((h) => `sha512:${h}`),
  hex(64).map((h) => `sha256:${h.toUpperCase()}`),
  hex(63).map((h) => `sha256:${h}`),
  fc.constantFrom("sha256:", ":", "md5:abc", "sha256:..%2f..%2fx", "sha256%3Aab", "sha256:%00"),
  fc.string({ maxLength: 20 }).map(encodeURIComponent),
);
const reference = fc.oneof(
  fc.constantFrom("v1", "latest", "..", "%2e%2e", "-x", ".x", "a".repeat(129), "v1%00"),
  fc.stringMatching(/^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}$/),
  digest,
);
const uuid = fc.oneof(
  fc.uuid(),
  fc.constantFrom("..", "%2e%2e", "x", "../uploads"),
  fc.string({ maxLength: 40 }).map(encodeURIComponent),
);
const number = fc.oneof(
  fc.constantFrom("-1", "1e9", "0", "1", "999999999999", "", "abc", "0x10", "1.5", "%00"),
  fc.nat().map(String),
);
const query = fc.oneof(
  fc.constant(""),
  fc.tuple(number, fc.option(fc.constantFrom("a/b", "../..", "%2f", "zzz", "", "v1"))).map(
    ([n, last]) => `?n=${n}${last !== null ? `&last=${last}` : ""}`,
  ),
  digest.map((d) => `?digest=${d}`),
  fc.tuple(digest, name).map(([d, from]) => `?mount=${d}&from=${from}`),
  fc.constantFrom("?artifactType=%00", "?digest=", "?mount=&from=", "?n=1&n=2", "?%zz"),
);
/** A path of each route, with the methods that route answers. */
const routed = fc.oneof(
  fc.constantFrom("/v2/", "/v2", "/v2/_catalog", "/", "/v2/_catalog/x", "/v3/").map((p) => ({
    path: p,
    methods: ["GET", "HEAD"],
  })),
  name.map((n) => ({ path: `/v2/${n}/tags/list`, methods: ["GET", "HEAD"] })),
  fc.tuple(name, reference).map(([n, r]) => ({
    path: `/v2/${n}/manifests/${r}`,
    methods: ["GET", "HEAD", "PUT", "DELETE"],
  })),
  fc.tuple(name, digest).map(([n, d]) => ({
    path: `/v2/${n}/blobs/${d}`,
    methods: ["GET", "HEAD", "DELETE"],
  })),
  name.map((n) => ({ path: `/v2/${n}/blobs/uploads/`, methods: ["POST"] })),
  fc.tuple(name, uuid).map(([n, u]) => ({
    path: `/v2/${n}/blobs/uploads/${u}`,
    methods: ["GET", "PATCH", "PUT", "DELETE"],
  })),
  fc.tuple(name, digest).map(([n, d]) => ({
    path: `/v2/${n}/referrers/${d}`,
    methods: ["GET", "HEAD"],
  })),
);
const anyMethod = fc.constantFrom("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS");
const target = routed.chain(({ path, methods }) =>
  fc.record({
    path: fc.constant(path),
    method: fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom(...methods) },
      { weight: 1, arbitrary: anyMethod },
    ),
  })
);
const headerValue = fc.oneof(
  fc.constantFrom(
    "0-0",
    "0-99",
    "bytes 0-9/10",
    "5-1",
    "-1-5",
    "0-99999999999999999999",
    "bytes=0-",
    "bytes=-5",
    "bytes=5-1",
    "bytes=0-1,2-3",
    "bytes=99999999999-",
    "",
    "garbage",
  ),
  fc.tuple(fc.nat(1e6), fc.nat(1e6)).map(([a, b]) => `${a}-${b}`),
  fc.tuple(fc.nat(1e6), fc.nat(1e6)).map(([a, b]) => `bytes=${a}-${b}`),
);
const headers = fc.record({
  "Content-Range": fc.option(headerValue),
  "Range": fc.option(headerValue),
  "Content-Type": fc.option(
    fc.constantFrom(
      MANIFEST_TYPE,
      INDEX_TYPE,
      "application/json",
      "text/plain",
      "x/y; charset=utf-8",
      "",
    ),
  ),
  "X-Big": fc.oneof(
    { weight: 30, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.nat(40_000).map((n) => "h".repeat(n)) },
  ),
});

function deepJson(depth: number): string {
  return "[".repeat(depth) + "]".repeat(depth);
}

const body = fc.oneof(
  { weight: 3, arbitrary: fc.constant(null) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 3000 }) },
  { weight: 1, arbitrary: fc.constant(new Uint8Array([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1])) },
  { weight: 1, arbitrary: fc.nat(200_000).map((d) => new TextEncoder().encode(deepJson(d))) },
  { weight: 1, arbitrary: fc.constant(new TextEncoder().encode(`{"a":`.repeat(50_000))) },
  { weight: 1, arbitrary: fc.json().map((j) => new TextEncoder().encode(j)) },
  {
    weight: 2,
    arbitrary: fc.tuple(digest, fc.constantFrom(MANIFEST_TYPE, INDEX_TYPE, "x"), fc.nat(3)).map(
      ([d, mediaType, kind]) =>
        new TextEncoder().encode(JSON.stringify(
          kind === 0
            ? { schemaVersion: 2, mediaType, manifests: [{ mediaType, digest: d, size: 1 }] }
            : kind === 1
            ? {
              schemaVersion: 2,
              mediaType,
              config: { mediaType, digest: d, size: -1 },
              layers: [],
            }
            : kind === 2
            ? {
              schemaVersion: 2,
              mediaType,
              config: null,
              subject: { mediaType, digest: d, size: 1 },
            }
            : { schemaVersion: "2", mediaType, layers: "x", annotations: { a: 1 } },
        )),
    ),
  },
  { weight: 1, arbitrary: fc.constant(new Uint8Array(5 * 1024 * 1024)) },
);

const requestArb = fc.record({ target, query, headers, body }).map((r) => ({
  ...r,
  method: r.target.method,
  path: r.target.path,
}));

Deno.test({
  name:
    `generated hostile requests against every route: no 5xx, OCI errors, nothing outside, store unchanged (seed ${SEED})`,
  async fn() {
    await using a = await arena();
    const { reg, parent } = a;
    const outsideBefore = await outsideListing(parent);
    const fingerprint = await storeFingerprint(reg.dataDir);
    let sent = 0;
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(requestArb, async (r) => {
        // Deleting the seeded content is allowed, not hostile: keep it for the final checks.
        fc.pre(!(r.method === "DELETE" && r.path.startsWith("/v2/fuzz/base/")));
        const init: RequestInit = { method: r.method, headers: {} };
        const h = init.headers as Record<string, string>;
        for (const [k, v] of Object.entries(r.headers)) if (v !== null) h[k] = v;
        if (r.body !== null && r.method !== "GET" && r.method !== "HEAD") {
          init.body = r.body as Uint8Array<ArrayBuffer>;
        }
        let res: Response;
        try {
          res = await reg.fetch(`${r.path}${r.query}`, init);
        } catch (error) {
          // fetch refused to send it (an invalid URL or header); nothing reached the server.
          if (error instanceof TypeError) return;
          throw error;
        }
        sent++;
        const text = await res.text();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        checkAnswer(`${r.method} ${r.path}${r.query}`, r.method, res.status, res.headers, text);
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );
    console.log(`fuzz: ${sent} requests, statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    assert.ok(sent > RUNS * 0.8, "most requests were sent");
    await assertUnharmed(a, outsideBefore, fingerprint);
  },
});

/** The registry still answers, nothing changed outside, stored content unchanged and sound. */
async function assertUnharmed(
  a: Arena,
  outsideBefore: string[],
  fingerprint: Map<string, string>,
): Promise<void> {
  const { reg, parent, base } = a;
  assert.deepEqual(await outsideListing(parent), outsideBefore, "no file outside the data root");
  assert.equal(await Deno.readTextFile(join(a.outside, "secret")), "canary");
  const after = await storeFingerprint(reg.dataDir);
  for (const [file, print] of fingerprint) {
    assert.equal(after.get(file), print, `stored file ${file} changed or vanished`);
  }
  const report = await checkStore(reg.dataDir);
  assert.deepEqual(report.problems, []);
  const res = await reg.fetch(`/v2/${base.name}/manifests/${base.tag}`);
  assert.equal(res.status, 200);
  assert.equal(await sha256Digest(new Uint8Array(await res.arrayBuffer())), base.manifest);
  const unexpected = reg.logs.filter((l) => l.startsWith("unexpected"));
  assert.deepEqual(unexpected, [], "no unexpected errors logged");
}

/** Raw request lines that fetch would normalize or refuse. */
function traversalRequests(a: Arena): string[] {
  const { base, session } = a;
  const paths = [
    "/v2/../../../etc/passwd",
    "/v2/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/v2/fuzz/base/../../../outside/tags/list",
    "/v2/fuzz/%2e%2e/%2e%2e/outside/tags/list",
    "/v2/fuzz%2f..%2f..%2foutside/tags/list",
    `/v2/fuzz/base/blobs/..%2f..%2f..%2foutside%2fsecret`,
    `/v2/fuzz/base/blobs/sha256:..%2f..%2f..%2f..%2foutside`,
    `/v2/fuzz/base/manifests/..%2f..%2f..%2f..%2foutside%2fsecret`,
    `/v2/fuzz/base/manifests/..`,
    `/v2/fuzz/base/manifests/%2e%2e`,
    `/v2/fuzz/base/blobs/uploads/..%2f${session}`,
    `/v2/fuzz/base/blobs/uploads/${session}%2f..%2f..%2f..%2foutside`,
    "/v2/fuzz\\..\\..\\outside/tags/list",
    "/v2/fuzz/base%00/tags/list",
    "/v2/fuzz/base/tags/list%00",
    "/v2/fuzz/base/manifests/v1%00.json",
    "/v2//fuzz//base//tags/list",
    "/v2/./fuzz/./base/tags/list",
    "/v2/_catalog?n=1&last=../../outside",
    `/v2/fuzz/base/tags/list?n=-1&last=%2f..%2f`,
    `/v2/fuzz/base/tags/list?n=1e9`,
    `/v2/fuzz/base/referrers/${base.manifest}?artifactType=../../x`,
    "/v2/%2e%2e%2f%2e%2e%2foutside/blobs/uploads/",
  ];
  const out: string[] = [];
  for (const p of paths) {
    out.push(`GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    out.push(`DELETE ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    out.push(
      `PUT ${p} HTTP/1.1\r\nHost: x\r\nContent-Type: ${MANIFEST_TYPE}\r\n` +
        `Content-Length: 2\r\nConnection: close\r\n\r\n{}`,
    );
    out.push(
      `POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc`,
    );
  }
  // Raw control bytes and lying lengths.
  out.push("GET /v2/fuzz/base\x00/tags/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  out.push(
    "GET /v2/fuzz/base/tags/list HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n",
  );
  out.push(
    `PATCH /v2/fuzz/base/blobs/uploads/${session} HTTP/1.1\r\nHost: x\r\n` +
      "Content-Length: 10\r\nContent-Length: 20\r\nConnection: close\r\n\r\n0123456789",
  );
  out.push(
    `PATCH /v2/fuzz/base/blobs/uploads/${session} HTTP/1.1\r\nHost: x\r\n` +
      "Content-Length: -5\r\nConnection: close\r\n\r\n",
  );
  out.push(
    `PATCH /v2/fuzz/base/blobs/uploads/${session} HTTP/1.1\r\nHost: x\r\n` +
      "Transfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\nzz\r\n",
  );
  out.push(
    `PUT /v2/fuzz/base/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: ${MANIFEST_TYPE}\r\n` +
      'Content-Length: 100\r\nConnection: close\r\n\r\n{"schemaVersion":2',
  );
  // Normalized by the URL parser to a real path: only reads are sent.
  out.push(
    "GET /v2/outside/../fuzz/base/manifests/v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
  );
  out.push("GARBAGE\r\n\r\n");
  out.push("GET /v2/ HTTP/9.9\r\nHost: x\r\n\r\n");
  return out;
}

Deno.test("path traversal sent raw (.., %2e%2e, %2f, NUL, backslashes, lying lengths) never escapes or fails", async () => {
  await using a = await arena();
  const { reg, parent } = a;
  const outsideBefore = await outsideListing(parent);
  const fingerprint = await storeFingerprint(reg.dataDir);
  const port = portOf(reg.url);
  const answers: RawResponse[] = [];
  for (const request of traversalRequests(a)) {
    const res = await rawRequest(port, request, 3000);
    if (res === null) continue; // the connection was dropped (e.g. a body that never ends)
    answers.push(res);
    checkAnswer(JSON.stringify(request.slice(0, 120)), request.split(" ")[0], res.status, {
      get: (k) => res.headers.get(k) ?? null,
    }, res.body);
    assert.ok(!res.body.includes("canary"), "the canary outside the root never leaks");
  }
  assert.ok(answers.length > 90, `answers: ${answers.length}`);
  await assertUnharmed(a, outsideBefore, fingerprint);
  // Nothing was stored under a traversal name: the only repository is still the one pushed.
  const catalog = await reg.fetch("/v2/_catalog");
  assert.deepEqual((await catalog.json()).repositories, ["fuzz/base"]);
});

Deno.test("symbolic links planted in the data root are never followed out of it", async (t) => {
  await using a = await arena();
  const { reg, parent, outside, base } = a;
  const root = reg.dataDir;
  const secret = new TextEncoder().encode("canary");
  const secretDigest = await sha256Digest(secret);
  const secretHex = secretDigest.slice(7);
  const expectRefused = async (what: string, res: Response, allowed = [404, 500]) => {
    const text = await res.text();
    assert.ok(allowed.includes(res.status), `${what}: status ${res.status} ${text}`);
    assert.ok(!text.includes("canary"), `${what}: leaked the canary`);
    if (res.status >= 400 && text) {
      const code = JSON.parse(text).errors[0].code;
      // a planted link is the registry's trouble (5xx, which alone may say UNKNOWN)
      assert.ok(res.status >= 500 ? code === "UNKNOWN" : CODES.has(code), `${what}: code ${code}`);
    }
  };

  await t.step("a repository folder that is a link to a folder outside", async () => {
    await Deno.mkdir(join(root, "repositories", "evil"), { recursive: true }).catch(() => {});
    await Deno.remove(join(root, "repositories", "evil"), { recursive: true });
    await Deno.symlink(join(outside, "target"), join(root, "repositories", "evil"));
    const bytes = randomBytes(100);
    const digest = await sha256Digest(bytes);
    const push = await reg.fetch(`/v2/evil/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      body: bytes,
    });
    await expectRefused("push into a linked repository", push, [500]);
    const mount = await reg.fetch(
      `/v2/evil/blobs/uploads/?mount=${base.layer}&from=${base.name}`,
      { method: "POST" },
    );
    await expectRefused("mount into a linked repository", mount, [500]);
    const tag = await reg.fetch(`/v2/evil/manifests/x`, {
      method: "PUT",
      headers: { "Content-Type": MANIFEST_TYPE },
      body: "{}",
    });
    await expectRefused("manifest into a linked repository", tag, [400, 500]);
    await expectRefused("tags of a linked repository", await reg.fetch("/v2/evil/tags/list"));
    assert.deepEqual(await listTree(join(outside, "target")), [], "nothing written outside");
  });

  await t.step("a tag file that is a link to a file outside", async () => {
    await Deno.writeTextFile(join(outside, "tagged"), base.manifest);
    await Deno.symlink(
      join(outside, "tagged"),
      join(root, "repositories", base.name, "_manifests", "tags", "leak"),
    );
    await expectRefused(
      "manifest by a linked tag",
      await reg.fetch(`/v2/${base.name}/manifests/leak`),
    );
    const del = await reg.fetch(`/v2/${base.name}/manifests/leak`, { method: "DELETE" });
    await expectRefused("delete of a linked tag", del);
    assert.equal(await Deno.readTextFile(join(outside, "tagged")), base.manifest);
  });

  await t.step("a blob file that is a link to a file outside", async () => {
    const blobDir = join(root, "blobs", "sha256", secretHex.slice(0, 2));
    await Deno.mkdir(blobDir, { recursive: true });
    await Deno.symlink(join(outside, "secret"), join(blobDir, secretHex));
    const layers = join(root, "repositories", base.name, "_layers", "sha256");
    await Deno.writeTextFile(join(layers, secretHex), secretDigest);
    await expectRefused(
      "GET of a linked blob",
      await reg.fetch(`/v2/${base.name}/blobs/${secretDigest}`),
    );
    const head = await reg.fetch(`/v2/${base.name}/blobs/${secretDigest}`, { method: "HEAD" });
    assert.notEqual(head.status, 200, "HEAD of a linked blob");
    await Deno.remove(join(layers, secretHex));
    await Deno.remove(join(blobDir, secretHex));
  });

  await t.step("an upload session folder that is a link to a folder outside", async () => {
    const fake = join(outside, "session");
    await Deno.mkdir(fake);
    await Deno.writeTextFile(join(fake, "repository"), base.name);
    await Deno.writeTextFile(join(fake, "startedat"), new Date().toISOString());
    await Deno.writeFile(join(fake, "data"), new Uint8Array(0));
    const id = crypto.randomUUID();
    await Deno.symlink(fake, join(root, "uploads", id));
    const location = `/v2/${base.name}/blobs/uploads/${id}`;
    const patch = await reg.fetch(location, { method: "PATCH", body: "written outside" });
    await expectRefused("PATCH into a linked session", patch);
    await expectRefused("status of a linked session", await reg.fetch(location));
    const cancel = await reg.fetch(location, { method: "DELETE" });
    await expectRefused("cancel of a linked session", cancel);
    assert.equal((await Deno.stat(join(fake, "data"))).size, 0, "nothing written outside");
    assert.ok((await Deno.stat(join(fake, "repository"))).isFile, "nothing removed outside");
    await Deno.remove(join(root, "uploads", id));
  });

  await t.step("a tags folder that is a link to a folder outside", async () => {
    const tags = join(root, "repositories", base.name, "_manifests", "tags");
    await Deno.rename(tags, join(parent, "tags-saved"));
    await Deno.symlink(join(outside, "target"), tags);
    const again = await reg.fetch(`/v2/${base.name}/manifests/moved`, {
      method: "PUT",
      headers: { "Content-Type": MANIFEST_TYPE },
      body: await (await reg.fetch(`/v2/${base.name}/manifests/${base.manifest}`)).bytes(),
    });
    await expectRefused("tag written through a linked tags folder", again, [500]);
    assert.deepEqual(await listTree(join(outside, "target")), [], "nothing written outside");
    await Deno.remove(tags);
    await Deno.rename(join(parent, "tags-saved"), tags);
  });

  await t.step("the registry still serves the real content", async () => {
    const res = await reg.fetch(`/v2/${base.name}/manifests/${base.manifest}`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(await Deno.readTextFile(join(outside, "secret")), "canary");
    assert.deepEqual(reg.logs.filter((l) => l.startsWith("unexpected")), []);
  });
});
