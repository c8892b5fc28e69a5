/**
 * CORS (src/pipeline/cors.ts): preflights from allowed origins answered 204 without reaching
 * the routes, allowed and disallowed origins on ordinary requests, the exposed headers, and
 * `X-Registry-UI` renaming `Basic` challenges to `X-Basic`.
 */

import assert from "node:assert/strict";
import { DEFAULTS } from "../../src/config/mod.ts";
import type { Reply } from "../../src/http/responses.ts";
import type { RequestContext } from "../../src/pipeline/context.ts";
import { cors, UI_HEADER } from "../../src/pipeline/cors.ts";
import { memoryRegistry } from "../helpers/registry.ts";

const UI = "https://ui.example.com";
const config = { cors: { ...DEFAULTS.cors, origins: [UI] } };

Deno.test("a preflight from an allowed origin is answered 204 with the CORS headers", async () => {
  await using reg = await memoryRegistry({ config });
  const response = await reg.fetch("/v2/library/alpine/manifests/latest", {
    method: "OPTIONS",
    headers: {
      Origin: UI,
      "Access-Control-Request-Method": "PUT",
      "Access-Control-Request-Headers": "authorization, content-type",
    },
  });
  assert.equal(response.status, 204);
  assert.equal(response.headers.get("access-control-allow-origin"), UI);
  assert.match(response.headers.get("access-control-allow-methods")!, /\bPUT\b.*\bDELETE\b/);
  const allowed = response.headers.get("access-control-allow-headers")!;
  for (const h of ["Authorization", "Content-Type", "Range", "Docker-Content-Digest"]) {
    assert.ok(allowed.includes(h), h);
  }
  assert.equal(response.headers.get("access-control-max-age"), "600");
  assert.equal(await response.text(), "");
});

Deno.test("allowed origins get Allow-Origin and the exposed headers; others nothing", async () => {
  await using reg = await memoryRegistry({ config });
  const allowed = await reg.fetch("/v2/", { headers: { Origin: UI } });
  await allowed.body?.cancel();
  assert.equal(allowed.status, 200);
  assert.equal(allowed.headers.get("access-control-allow-origin"), UI);
  assert.match(allowed.headers.get("vary")!, /Origin/);
  const exposed = allowed.headers.get("access-control-expose-headers")!;
  for (const h of ["Docker-Content-Digest", "Location", "Range", "Docker-Upload-UUID", "Link"]) {
    assert.ok(exposed.includes(h), h);
  }
  for (const h of ["OCI-Subject", "X-Request-Id", "WWW-Authenticate"]) {
    assert.ok(exposed.includes(h));
  }
  const other = await reg.fetch("/v2/", { headers: { Origin: "https://evil.example.com" } });
  await other.body?.cancel();
  assert.equal(other.headers.get("access-control-allow-origin"), null);
  assert.equal(other.headers.get("access-control-expose-headers"), null);
  const preflight = await reg.fetch("/v2/", {
    method: "OPTIONS",
    headers: { Origin: "https://evil.example.com", "Access-Control-Request-Method": "GET" },
  });
  await preflight.body?.cancel();
  assert.notEqual(preflight.status, 204);
  assert.equal(preflight.headers.get("access-control-allow-origin"), null);
});

Deno.test("CORS is off without origins; errors to allowed origins carry the headers", async () => {
  await using off = await memoryRegistry();
  const r = await off.fetch("/v2/", { headers: { Origin: UI } });
  await r.body?.cancel();
  assert.equal(r.headers.get("access-control-allow-origin"), null);
  await using reg = await memoryRegistry({ config });
  const missing = await reg.fetch("/v2/a/manifests/nope", { headers: { Origin: UI } });
  await missing.body?.cancel();
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get("access-control-allow-origin"), UI);
});

function ctxWith(headers: Record<string, string>): RequestContext {
  return {
    request: { method: "GET", url: "http://r/v2/", headers: new Headers(headers) },
  } as unknown as RequestContext;
}

const challenge = (): Promise<Reply> =>
  Promise.resolve({
    status: 401,
    headers: [["WWW-Authenticate", 'Basic realm="Registry Realm"'], ["Content-Length", "0"]],
    body: null,
  } as Reply);

Deno.test("X-Registry-UI renames a Basic challenge to X-Basic; without it Basic stays", async () => {
  const step = cors({ ...DEFAULTS.cors, origins: [UI] });
  const ui = await step(ctxWith({ [UI_HEADER]: "1", Origin: UI }), challenge);
  const values = ui.headers.filter(([n]) => n.toLowerCase() === "www-authenticate");
  assert.deepEqual(values.map(([, v]) => v), ['X-Basic realm="Registry Realm"']);
  assert.ok(ui.headers.some(([n, v]) => n === "Access-Control-Allow-Origin" && v === UI));
  const sameOrigin = await step(ctxWith({ [UI_HEADER]: "1" }), challenge);
  assert.ok(sameOrigin.headers.some(([, v]) => v.startsWith("X-Basic ")));
  const plain = await step(ctxWith({}), challenge);
  assert.ok(plain.headers.some(([, v]) => v === 'Basic realm="Registry Realm"'));
});
