/**
 * Properties of the server's request parsing (head parser, length and chunked bodies), fed
 * from memory in pieces: (a) a valid request stream (pipelined requests, `Content-Length` or
 * chunked bodies) parses the same however it is split into reads; (b) every framing the
 * server refuses (README, "The HTTP server") is refused at any split, with the same status,
 * and nothing after it is parsed.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { HttpError } from "../../src/server/errors.ts";
import { concat } from "../helpers/uploads.ts";
import { type Parsed, parseRequests, splitAt } from "./wire_helpers.ts";

/** A string of one character per byte as those bytes. */
function latin1(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

const RESERVED = new Set(["host", "content-length", "transfer-encoding", "connection", "expect"]);
const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}$/);
const fieldName = token.filter((name) => !RESERVED.has(name.toLowerCase()));
/** A field value: visible ASCII, spaces and tabs inside, obs-text bytes; no outer whitespace. */
const fieldValue = fc.array(
  fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 0x21, max: 0x7e }) },
    { weight: 2, arbitrary: fc.constantFrom(0x20, 0x09) },
    { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }) },
  ),
  { maxLength: 30 },
).map((codes) => String.fromCharCode(...codes).replace(/^[ \t]+|[ \t]+$/g, ""));
const method = fc.oneof(fc.constantFrom("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"), token);
const path = fc.stringMatching(/^\/[A-Za-z0-9\/._~%!$&'()*+,;=:@?-]{0,40}$/);
const host = fc.constantFrom("reg.test", "127.0.0.1:5000", "[::1]:80", "a-b.example");

/** How a generated body is framed on the wire. */
type BodySpec =
  | { kind: "none"; zeroLength: boolean }
  | { kind: "length"; body: Uint8Array }
  | {
    kind: "chunked";
    body: Uint8Array;
    sizes: number[];
    upper: boolean;
    zeros: number;
    extension: string;
    trailers: [string, string][];
  };

const bodySpec: fc.Arbitrary<BodySpec> = fc.oneof(
  fc.record({ kind: fc.constant("none" as const), zeroLength: fc.boolean() }),
  fc.record({
    kind: fc.constant("length" as const),
    body: fc.uint8Array({ minLength: 1, maxLength: 3000 }),
  }),
  fc.record({
    kind: fc.constant("chunked" as const),
    body: fc.uint8Array({ maxLength: 3000 }),
    sizes: fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 8 }),
    upper: fc.boolean(),
    zeros: fc.integer({ min: 0, max: 2 }),
    extension: fc.constantFrom("", ";a=b", ' ; q="x y"', ";n"),
    trailers: fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 2 }),
  }),
);

/** A generated request: its head parts and body framing. */
interface RequestSpec {
  readonly method: string;
  readonly path: string;
  readonly host: string;
  readonly fields: [string, string][];
  readonly http10: boolean;
  readonly blankLines: number;
  readonly body: BodySpec;
}

const requestSpec: fc.Arbitrary<RequestSpec> = fc.record({
  method,
  path,
  host,
  fields: fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 6 }),
  http10: fc.boolean(),
  blankLines: fc.integer({ min: 0, max: 2 }),
  body: bodySpec,
}).map((spec) => (spec.body.kind === "chunked" ? { ...spec, http10: false } : spec));

/** The chunked framing of a body spec. */
function frameChunked(spec: Extract<BodySpec, { kind: "chunked" }>): Uint8Array {
  const parts: Uint8Array[] = [];
  const { body } = spec;
  let at = 0;
  for (let i = 0; at < body.length; i++) {
    const size = Math.min(spec.sizes[i % spec.sizes.length], body.length - at);
    let hex = size.toString(16);
    if (spec.upper) hex = hex.toUpperCase();
    parts.push(latin1(`${"0".repeat(spec.zeros)}${hex}${spec.extension}\r\n`));
    parts.push(body.subarray(at, at + size), latin1("\r\n"));
    at += size;
  }
  const trailers = spec.trailers.map(([name, value]) => `${name}: ${value}\r\n`).join("");
  parts.push(latin1(`0${spec.extension}\r\n${trailers}\r\n`));
  return concat(...parts);
}

/** A request spec on the wire. */
function wire(spec: RequestSpec): Uint8Array {
  let head = `${"\r\n".repeat(spec.blankLines)}${spec.method} ${spec.path} ` +
    `HTTP/1.${spec.http10 ? 0 : 1}\r\nHost: ${spec.host}\r\n`;
  for (const [name, value] of spec.fields) head += `${name}: ${value}\r\n`;
  const body = spec.body;
  if (body.kind === "none") {
    if (body.zeroLength) head += "Content-Length: 0\r\n";
    return latin1(`${head}\r\n`);
  }
  if (body.kind === "length") {
    return concat(latin1(`${head}Content-Length: ${body.body.length}\r\n\r\n`), body.body);
  }
  return concat(latin1(`${head}Transfer-Encoding: chunked\r\n\r\n`), frameChunked(body));
}

/** What the server must make of a request spec. */
function expected(spec: RequestSpec): Parsed {
  const fields = new Map<string, string>([["host", spec.host]]);
  const add = (name: string, value: string) => {
    const known = fields.get(name.toLowerCase());
    fields.set(name.toLowerCase(), known === undefined ? value : `${known}, ${value}`);
  };
  for (const [name, value] of spec.fields) add(name, value);
  const body = spec.body;
  if (body.kind === "none" && body.zeroLength) add("content-length", "0");
  if (body.kind === "length") add("content-length", String(body.body.length));
  if (body.kind === "chunked") add("transfer-encoding", "chunked");
  return {
    method: spec.method,
    url: `http://${spec.host}${spec.path}`,
    fields: [...fields],
    http10: spec.http10,
    keepAlive: !spec.http10,
    expectContinue: false,
    framing: body.kind,
    body: body.kind === "none" ? new Uint8Array(0) : body.body,
  };
}

/** Cut points for a stream of `length` bytes: random ones, or every byte. */
const cuts = fc.oneof(
  { weight: 5, arbitrary: fc.array(fc.nat(), { maxLength: 40 }) },
  { weight: 1, arbitrary: fc.constant(null) },
);

function cutsFor(bytes: Uint8Array, points: number[] | null): Uint8Array[] {
  if (points === null) return splitAt(bytes, Array.from({ length: bytes.length }, (_, i) => i));
  return splitAt(bytes, points.map((p) => p % (bytes.length + 1)));
}

Deno.test("(a) any split of a valid request stream into reads parses identically", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(requestSpec, { minLength: 1, maxLength: 3 }),
      cuts,
      fc.integer({ min: 1, max: 5000 }),
      async (specs, points, readSize) => {
        const bytes = concat(...specs.map(wire));
        const whole = await parseRequests([bytes]);
        assert.deepEqual(whole, specs.map(expected));
        const split = await parseRequests(cutsFor(bytes, points), { readSize });
        assert.deepEqual(split, whole);
      },
    ),
    { numRuns: 300 },
  );
});

/** A refused request: how it looks, given a body, and the status it gets. */
type Refused = [what: string, make: (body: Uint8Array) => Uint8Array, status: number];

const POST = "POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n";
const withHead = (fields: string) => (body: Uint8Array) =>
  concat(latin1(`${POST}${fields}\r\n`), body);
const chunkedWith = (framing: (body: Uint8Array) => Uint8Array) => (body: Uint8Array) =>
  concat(latin1(`${POST}Transfer-Encoding: chunked\r\n\r\n`), framing(body));
const framed = (before: string, after: string) => (body: Uint8Array) =>
  concat(latin1(before), body, latin1(after));
const hex = (body: Uint8Array) => body.length.toString(16);

const REFUSED: Refused[] = [
  [
    "CL then TE",
    (b) => withHead(`Content-Length: ${b.length}\r\nTransfer-Encoding: chunked\r\n`)(b),
    400,
  ],
  [
    "TE then CL",
    (b) => withHead(`Transfer-Encoding: chunked\r\nContent-Length: ${b.length}\r\n`)(b),
    400,
  ],
  ["TE chunked, identity", withHead("Transfer-Encoding: chunked, identity\r\n"), 400],
  ["TE gzip, chunked", withHead("Transfer-Encoding: gzip, chunked\r\n"), 400],
  ["TE identity", withHead("Transfer-Encoding: identity\r\n"), 400],
  ["TE xchunked", withHead("Transfer-Encoding: xchunked\r\n"), 400],
  ["TE twice", withHead("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400],
  [
    "TE in HTTP/1.0",
    (b) => concat(latin1("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), b),
    400,
  ],
  [
    "CL twice, different",
    (b) => withHead(`Content-Length: ${b.length}\r\nContent-Length: 0\r\n`)(b),
    400,
  ],
  [
    "CL twice, same",
    (b) => withHead(`Content-Length: ${b.length}\r\nContent-Length: ${b.length}\r\n`)(b),
    400,
  ],
  ["CL list", (b) => withHead(`Content-Length: ${b.length}, ${b.length}\r\n`)(b), 400],
  ["CL signed +", (b) => withHead(`Content-Length: +${b.length}\r\n`)(b), 400],
  ["CL signed -", (b) => withHead(`Content-Length: -${b.length}\r\n`)(b), 400],
  ["CL hex", (b) => withHead(`Content-Length: 0x${hex(b)}\r\n`)(b), 400],
  ["CL space before colon", (b) => withHead(`Content-Length : ${b.length}\r\n`)(b), 400],
  ["CL folded in", (b) => withHead(`X-F: a\r\n Content-Length: ${b.length}\r\n`)(b), 400],
  ["CL tab-folded in", (b) => withHead(`X-F: a\r\n\tContent-Length: ${b.length}\r\n`)(b), 400],
  ["NUL then CL", (b) => withHead(`X-N: a\0b\r\nContent-Length: ${b.length}\r\n`)(b), 400],
  ["bare CR in a value", (b) => withHead(`X-N: a\rContent-Length: ${b.length}\r\n`)(b), 400],
  ["bare LF ending a field", (b) => withHead(`X-L: a\nContent-Length: ${b.length}\r\n`)(b), 400],
  [
    "bare LF ending the head",
    (b) => concat(latin1(`${POST}Content-Length: ${b.length}\r\n\n`), b),
    400,
  ],
  [
    "bare LF ending the request line",
    (b) => concat(latin1(`POST / HTTP/1.1\nHost: x\r\nContent-Length: ${b.length}\r\n\r\n`), b),
    400,
  ],
  [
    "two Host fields",
    (b) => concat(latin1(`${POST}Host: y\r\nContent-Length: ${b.length}\r\n\r\n`), b),
    400,
  ],
  ["chunk size not hex", chunkedWith(framed("zz\r\n", "\r\n0\r\n\r\n")), 400],
  ["chunk size 0x", chunkedWith((b) => framed(`0x${hex(b)}\r\n`, "\r\n0\r\n\r\n")(b)), 400],
  ["chunk size signed", chunkedWith((b) => framed(`+${hex(b)}\r\n`, "\r\n0\r\n\r\n")(b)), 400],
  ["chunk size padded", chunkedWith((b) => framed(`${hex(b)} \r\n`, "\r\n0\r\n\r\n")(b)), 400],
  ["chunk size huge", chunkedWith(framed("fffffffffffffff\r\n", "\r\n0\r\n\r\n")), 400],
  ["chunk size bare LF", chunkedWith((b) => framed(`${hex(b)}\n`, "\r\n0\r\n\r\n")(b)), 400],
  ["chunk data bare LF", chunkedWith((b) => framed(`${hex(b)}\r\n`, "\n0\r\n\r\n")(b)), 400],
  ["last chunk bare LF", chunkedWith((b) => framed(`${hex(b)}\r\n`, "\r\n0\n\r\n")(b)), 400],
  ["trailer bare LF", chunkedWith((b) => framed(`${hex(b)}\r\n`, "\r\n0\r\nX: y\n\r\n")(b)), 400],
  [
    "chunk longer than its size",
    chunkedWith((b) => framed(`${(b.length - 1).toString(16)}\r\n`, "\r\n0\r\n\r\n")(b)),
    400,
  ],
  [
    "chunk shorter than its size",
    chunkedWith((b) => framed(`${(b.length + 3).toString(16)}\r\n`, "\r\n0\r\n\r\n")(b)),
    400,
  ],
];

Deno.test("(b) every refused framing is refused at any split, with its status, and nothing after it runs", async () => {
  const smuggled = latin1(
    "DELETE /v2/a/manifests/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
  );
  await fc.assert(
    fc.asyncProperty(
      fc.option(requestSpec, { nil: null }),
      fc.constantFrom(...REFUSED),
      fc.uint8Array({ minLength: 2, maxLength: 200 }).map((body) =>
        // a body that itself looks like a request, or random bytes
        body[0] % 2 === 0 ? smuggled : body
      ),
      cuts,
      async (before, [what, make, status], body, points) => {
        const bytes = concat(before ? wire(before) : new Uint8Array(0), make(body), smuggled);
        let refusedWith: unknown = null;
        try {
          await parseRequests(cutsFor(bytes, points), { readSize: 1 + (body[1] % 64) });
        } catch (error) {
          refusedWith = error;
        }
        assert.ok(refusedWith instanceof HttpError, `${what}: ${refusedWith}`);
        assert.equal(refusedWith.status, status, what);
      },
    ),
    { numRuns: 600 },
  );
});
