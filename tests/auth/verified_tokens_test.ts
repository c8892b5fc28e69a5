import assert from "node:assert/strict";
import { type Verified, VerifiedTokens } from "../../src/auth/verified_tokens.ts";

/** A verifier accepting tokens that start with "ok", valid until `untilS`; counts its calls. */
function verifier(untilS: number) {
  const calls: string[] = [];
  const verify = (token: string): Promise<Verified<string> | null> => {
    calls.push(token);
    return Promise.resolve(
      token.startsWith("ok") ? { value: `user of ${token}`, validUntilS: untilS } : null,
    );
  };
  return { calls, verify };
}

Deno.test("a valid token is verified once, then answered from memory until it expires", async () => {
  let nowMs = 1_000_000;
  const tokens = new VerifiedTokens<string>({ now: () => nowMs });
  const { calls, verify } = verifier(1_100);
  assert.equal(await tokens.get("ok-a", verify), "user of ok-a");
  assert.equal(await tokens.get("ok-a", verify), "user of ok-a");
  assert.deepEqual(calls, ["ok-a"]);
  nowMs = 1_099_999;
  assert.equal(await tokens.get("ok-a", verify), "user of ok-a");
  assert.deepEqual(calls, ["ok-a"]);
  // From its last valid second on, the token is checked again (and the verifier decides).
  nowMs = 1_100_000;
  const expired = verifier(1_000);
  assert.equal(await tokens.get("ok-a", expired.verify), "user of ok-a");
  assert.deepEqual(expired.calls, ["ok-a"]);
  assert.equal(tokens.size, 0, "a token verified as already expired is not remembered");
});

Deno.test("a token differing in one byte is verified in full", async () => {
  const tokens = new VerifiedTokens<string>({ now: () => 0 });
  const { calls, verify } = verifier(100);
  await tokens.get("ok-token", verify);
  assert.equal(await tokens.get("ok-tokeN", verify), "user of ok-tokeN");
  assert.equal(await tokens.get("bad-token", verify), null);
  assert.deepEqual(calls, ["ok-token", "ok-tokeN", "bad-token"]);
});

Deno.test("invalid tokens are never remembered", async () => {
  const tokens = new VerifiedTokens<string>({ now: () => 0 });
  const { calls, verify } = verifier(100);
  for (let i = 0; i < 3; i++) assert.equal(await tokens.get("forged", verify), null);
  assert.equal(calls.length, 3);
  assert.equal(tokens.size, 0);
  assert.equal(tokens.bytes, 0);
});

Deno.test("memory is bounded by bytes of token text; the least recently used go first", async () => {
  const tokens = new VerifiedTokens<string>({ now: () => 0, maxBytes: 30 });
  const { calls, verify } = verifier(100);
  await tokens.get("ok-aaaaaa", verify); // 9 bytes each
  await tokens.get("ok-bbbbbb", verify);
  await tokens.get("ok-cccccc", verify);
  assert.equal(tokens.bytes, 27);
  await tokens.get("ok-aaaaaa", verify); // a hit: now the most recent
  await tokens.get("ok-dddddd", verify); // 36 bytes: the oldest (b) goes
  assert.equal(tokens.bytes, 27);
  assert.equal(tokens.size, 3);
  calls.length = 0;
  await tokens.get("ok-aaaaaa", verify);
  await tokens.get("ok-cccccc", verify);
  await tokens.get("ok-dddddd", verify);
  assert.deepEqual(calls, []);
  await tokens.get("ok-bbbbbb", verify);
  assert.deepEqual(calls, ["ok-bbbbbb"]);
  // A token longer than the whole budget is answered but not kept.
  const long = `ok-${"x".repeat(40)}`;
  assert.equal(await tokens.get(long, verify), `user of ${long}`);
  assert.ok(tokens.bytes <= 30);
});

Deno.test("clear forgets every token", async () => {
  const tokens = new VerifiedTokens<string>({ now: () => 0 });
  const { calls, verify } = verifier(100);
  await tokens.get("ok-a", verify);
  tokens.clear();
  assert.equal(tokens.size, 0);
  await tokens.get("ok-a", verify);
  assert.deepEqual(calls, ["ok-a", "ok-a"]);
});

Deno.test("a check under way when the memory is cleared is answered but not remembered", async () => {
  const tokens = new VerifiedTokens<string>({ now: () => 0 });
  let release = () => {};
  const held = new Promise<void>((resolve) => release = resolve);
  let calls = 0;
  const slow = async (token: string): Promise<Verified<string>> => {
    calls++;
    await held;
    return { value: `user of ${token}`, validUntilS: 100 };
  };
  const pending = tokens.get("ok-a", slow);
  tokens.clear(); // the trusted keys changed while the old ones were checking "ok-a"
  release();
  assert.equal(await pending, "user of ok-a");
  assert.equal(tokens.size, 0);
  await tokens.get("ok-a", slow);
  assert.equal(calls, 2);
});

Deno.test("known answers remembered, still valid tokens without a check, and forgets expired ones", async () => {
  let nowMs = 0;
  const tokens = new VerifiedTokens<string>({ now: () => nowMs });
  const { calls, verify } = verifier(100);
  assert.equal(tokens.known("ok-a"), undefined, "never verified");
  assert.equal(await tokens.get("ok-a", verify), "user of ok-a");
  assert.equal(await tokens.get("bad", verify), null);
  assert.equal(tokens.known("ok-a"), "user of ok-a");
  assert.equal(tokens.known("ok-A"), undefined, "one byte differs");
  assert.equal(tokens.known("bad"), undefined, "invalid tokens are not remembered");
  assert.deepEqual(calls, ["ok-a", "bad"]);
  nowMs = 99_999;
  assert.equal(tokens.known("ok-a"), "user of ok-a");
  nowMs = 100_000; // its last valid second is over
  assert.equal(tokens.known("ok-a"), undefined);
  assert.equal(tokens.size, 0);
  assert.equal(tokens.bytes, 0);
  assert.equal(await tokens.get("ok-a", verify), "user of ok-a", "checked again in full");
  assert.deepEqual(calls, ["ok-a", "bad", "ok-a"]);
});

Deno.test("a token answered by known is the most recently used", async () => {
  const tokens = new VerifiedTokens<string>({ now: () => 0, maxBytes: 30 });
  const { calls, verify } = verifier(100);
  for (const token of ["ok-aaaaaa", "ok-bbbbbb", "ok-cccccc"]) await tokens.get(token, verify);
  assert.equal(tokens.known("ok-aaaaaa"), "user of ok-aaaaaa");
  assert.equal(tokens.known("ok-cccccc"), "user of ok-cccccc");
  assert.equal(tokens.known("ok-aaaaaa"), "user of ok-aaaaaa");
  await tokens.get("ok-dddddd", verify); // over the budget: b, used least recently, goes
  assert.equal(tokens.known("ok-bbbbbb"), undefined);
  await tokens.get("ok-eeeeee", verify); // then c
  assert.equal(tokens.known("ok-cccccc"), undefined);
  for (const token of ["ok-aaaaaa", "ok-dddddd", "ok-eeeeee"]) {
    assert.equal(tokens.known(token), `user of ${token}`);
  }
  assert.equal(tokens.bytes, 27);
  assert.equal(calls.length, 5);
});
