/**
 * Random `Authorization` headers (Basic with random or near-valid credentials, other schemes,
 * garbage) on random routes, against htpasswd (Basic) and against the built-in token server
 * (Bearer): only 401 or 403 (or a success for the real password), never a 5xx. The test suite
 * sends 2,000 per mode; `deno task test:auth-fuzz` sends 10,000 (`AUTH_FUZZ_RUNS`).
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { authRegistry, basic, htpasswdFile, USERS } from "./helpers.ts";
import { tokenRegistry } from "./token_helpers.ts";

const RUNS = Number(Deno.env.get("AUTH_FUZZ_RUNS") ?? 2000);

const PATHS = [
  "/v2/",
  "/v2/_catalog",
  "/v2/team/app/tags/list",
  "/v2/team/app/manifests/latest",
  "/v2/secret/x/blobs/uploads/",
  `/v2/team/app/blobs/sha256:${"b".repeat(64)}`,
];

const header = fc.oneof(
  fc.tuple(fc.string(), fc.string()).map(([u, p]) => basic(u.replace(/:/g, ""), p)),
  fc.tuple(fc.constantFrom("alice", "bob", "carol"), fc.string()).map(([u, p]) => basic(u, p)),
  fc.string().map((s) => `Basic ${s}`),
  fc.uint8Array({ maxLength: 64 }).map((b) => `Basic ${btoa(String.fromCharCode(...b))}`),
  fc.string().map((s) => `Bearer ${s}`),
  fc.string({ unit: "grapheme-ascii" }),
);

for (const mode of ["htpasswd", "token"] as const) {
  Deno.test(`random Authorization headers answer 401 or 403, never 5xx (${mode})`, async () => {
    await using file = await htpasswdFile();
    await using reg = mode === "htpasswd"
      ? await authRegistry(file.path)
      : await tokenRegistry(file.path);
    const passwords = new Set<string>(Object.values(USERS));
    await fc.assert(
      fc.asyncProperty(
        header,
        fc.constantFrom(...PATHS),
        fc.constantFrom("GET", "HEAD", "POST", "DELETE"),
        async (authorization, path, method) => {
          let response: Response;
          try {
            response = await reg.fetch(path, { method, headers: { authorization } });
          } catch {
            return; // a header the Fetch API refuses never reaches the registry
          }
          await response.body?.cancel();
          const real = [...passwords].some((p) => authorization.endsWith(btoa(`:${p}`).slice(2)));
          if (!real) assert.ok([401, 403].includes(response.status), `${response.status} ${path}`);
          assert.ok(response.status < 500, `${response.status} for ${method} ${path}`);
        },
      ),
      { numRuns: RUNS },
    );
  });
}
