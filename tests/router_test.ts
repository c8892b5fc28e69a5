/**
 * The router: `rawPath` (the path as sent: no decoding, no normalization, query and fragment
 * cut), route matching from the end of the path over the registry's real route table (names
 * with slashes and with words the routes use), 404 for an unknown path against 405 with
 * `Allow` for a known path and an unknown method, and HEAD answered from GET without the body
 * where a route has no HEAD of its own.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { RegistryError } from "../src/errors.ts";
import { content, headerOf, jsonText } from "../src/http/responses.ts";
import { type Handler, matchRoute, rawPath, type Route } from "../src/router.ts";
import { blobRoutes } from "../src/routes/blobs.ts";
import { listingRoutes } from "../src/routes/listings.ts";
import { manifestRoutes } from "../src/routes/manifests.ts";
import { memoryRegistry } from "./helpers/registry.ts";

const DIGEST = `sha256:${"ab".repeat(32)}`;
const UUID = "0f0e0d0c-0b0a-4098-8776-655443322110";

/** The registry's route table, over a memory registry's services. */
async function withRoutes(fn: (routes: Route[]) => Promise<void> | void): Promise<void> {
  await using reg = await memoryRegistry();
  const services = reg.app.services;
  await fn([...listingRoutes(services), ...blobRoutes(services), ...manifestRoutes(services)]);
}

/** The route path a request matches and its params. */
function routeOf(routes: Route[], method: string, path: string) {
  const match = matchRoute(routes, method, path);
  const route = routes.find((r) => Object.values(r.methods).includes(match.handler));
  return { path: route?.path, params: match.params };
}

function isStatus(status: number, allow?: string) {
  return (error: unknown) => {
    assert.ok(error instanceof RegistryError, String(error));
    assert.equal(error.code, "UNSUPPORTED");
    assert.equal(error.status, status);
    assert.equal(error.headers.Allow, allow);
    return true;
  };
}

Deno.test("rawPath keeps the path as sent and cuts query and fragment", () => {
  assert.equal(rawPath("http://h:5000/v2/a/tags/list?n=1"), "/v2/a/tags/list");
  assert.equal(rawPath("http://h/v2/a#frag?x"), "/v2/a");
  assert.equal(rawPath("http://h/v2/a?x#y"), "/v2/a");
  assert.equal(rawPath("http://h/v2/a/../b/%2e%2e/c%2Fd"), "/v2/a/../b/%2e%2e/c%2Fd");
  assert.equal(rawPath("http://h//v2//x"), "//v2//x");
  assert.equal(rawPath("http://h"), "/");
  assert.equal(rawPath("http://h?x=1"), "/");
  assert.equal(rawPath("/v2/x?y=1"), "/v2/x");
});

Deno.test("property: rawPath gives back any path joined to a URL with a query", () => {
  fc.assert(
    fc.property(
      fc.stringMatching(/^(\/[A-Za-z0-9._~%:@!$&'()*+,;=-]{0,12}){1,6}$/),
      fc.stringMatching(/^[A-Za-z0-9=&%]{0,12}$/),
      (path, query) => {
        assert.equal(rawPath(`http://registry.test:5000${path}?${query}`), path);
        assert.equal(rawPath(`http://registry.test${path}`), path);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("the fixed paths match exactly: /v2/, /v2 and /v2/_catalog", async () => {
  await withRoutes((routes) => {
    assert.equal(routeOf(routes, "GET", "/v2/").path, "/v2/");
    assert.equal(routeOf(routes, "GET", "/v2").path, "/v2/");
    assert.deepEqual(routeOf(routes, "GET", "/v2/_catalog"), {
      path: "/v2/_catalog",
      params: {},
    });
  });
});

Deno.test("a route is matched from the end: the name is everything before the marker", async () => {
  await withRoutes((routes) => {
    assert.deepEqual(routeOf(routes, "GET", `/v2/a/b/c/blobs/${DIGEST}`), {
      path: "/v2/<name>/blobs/<digest>",
      params: { name: "a/b/c", digest: DIGEST },
    });
    assert.deepEqual(routeOf(routes, "PUT", "/v2/org/app/manifests/v1.0"), {
      path: "/v2/<name>/manifests/<reference>",
      params: { name: "org/app", reference: "v1.0" },
    });
    assert.deepEqual(routeOf(routes, "GET", "/v2/org/app/tags/list"), {
      path: "/v2/<name>/tags/list",
      params: { name: "org/app" },
    });
    assert.deepEqual(routeOf(routes, "GET", `/v2/app/referrers/${DIGEST}`), {
      path: "/v2/<name>/referrers/<digest>",
      params: { name: "app", digest: DIGEST },
    });
  });
});

Deno.test("upload routes: the trailing slash starts a session, a uuid names one", async () => {
  await withRoutes((routes) => {
    assert.deepEqual(routeOf(routes, "POST", "/v2/org/app/blobs/uploads/"), {
      path: "/v2/<name>/blobs/uploads/",
      params: { name: "org/app" },
    });
    assert.deepEqual(routeOf(routes, "PATCH", `/v2/org/app/blobs/uploads/${UUID}`), {
      path: "/v2/<name>/blobs/uploads/<uuid>",
      params: { name: "org/app", uuid: UUID },
    });
  });
});

Deno.test("names containing the routes' words are matched from the end", async () => {
  await withRoutes((routes) => {
    assert.deepEqual(routeOf(routes, "GET", "/v2/a/manifests/b/manifests/latest").params, {
      name: "a/manifests/b",
      reference: "latest",
    });
    assert.deepEqual(routeOf(routes, "GET", `/v2/blobs/blobs/${DIGEST}`).params, {
      name: "blobs",
      digest: DIGEST,
    });
    assert.deepEqual(routeOf(routes, "GET", "/v2/tags/list/tags/list").params, {
      name: "tags/list",
    });
    // `uploads` as the last segment of a blob path is a digest parameter, not the upload route.
    assert.deepEqual(routeOf(routes, "GET", "/v2/a/blobs/uploads"), {
      path: "/v2/<name>/blobs/<digest>",
      params: { name: "a", digest: "uploads" },
    });
  });
});

Deno.test("the path is matched raw: encoded and dot segments reach the handler as sent", async () => {
  await withRoutes((routes) => {
    assert.deepEqual(routeOf(routes, "GET", "/v2/a/../b/tags/list").params, { name: "a/../b" });
    assert.deepEqual(routeOf(routes, "GET", "/v2/a%2Fb/tags/list").params, { name: "a%2Fb" });
  });
});

Deno.test("an unknown path is 404", async () => {
  await withRoutes((routes) => {
    for (
      const path of [
        "/",
        "/v1/",
        "/v2/_catalog/",
        "/v2/app/unknown/thing",
        "/v2/app/blobs/",
        "/v2/app/manifests/",
        "/v2/app/referrers/",
        "/v2/app/tags/list/",
        "/v2/app/tags/lists",
        "/v2/tags/list",
        "/v2/blobs/x",
        "/v2//blobs/x",
        "/x/v2/app/tags/list",
      ]
    ) {
      assert.throws(() => matchRoute(routes, "GET", path), isStatus(404), path);
    }
  });
});

Deno.test("a known path with an unknown method is 405 with Allow", async () => {
  await withRoutes((routes) => {
    // HEAD is answered from GET, so it is allowed too
    assert.throws(() => matchRoute(routes, "DELETE", "/v2/_catalog"), isStatus(405, "GET, HEAD"));
    assert.throws(
      () => matchRoute(routes, "POST", "/v2/app/tags/list"),
      isStatus(405, "GET, HEAD"),
    );
    assert.throws(
      () => matchRoute(routes, "PUT", `/v2/app/blobs/${DIGEST}`),
      isStatus(405, "HEAD, GET, DELETE"),
    );
    assert.throws(
      () => matchRoute(routes, "PATCH", "/v2/app/manifests/latest"),
      isStatus(405, "PUT, GET, HEAD, DELETE"),
    );
    assert.throws(
      () => matchRoute(routes, "GET", "/v2/app/blobs/uploads/"),
      isStatus(405, "POST"),
    );
    assert.throws(
      () => matchRoute(routes, "get", "/v2/"),
      isStatus(405, "GET, HEAD"),
      "case matters",
    );
  });
});

Deno.test("404 and 405 come back from the app as OCI errors", async () => {
  await using reg = await memoryRegistry();
  const missing = await reg.fetch("/v2/app/nothing/here");
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).errors[0].code, "UNSUPPORTED");
  const wrong = await reg.fetch("/v2/_catalog", { method: "DELETE" });
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.get("allow"), "GET, HEAD");
  await wrong.body?.cancel();
});

Deno.test("a raw path is never decoded on its way to the name parser", async () => {
  await using reg = await memoryRegistry();
  for (const path of ["/v2/a%2Fb/tags/list", "/v2/a/../b/tags/list", "/v2/a/%2e%2e/tags/list"]) {
    const reply = await reg.app.handle(
      { method: "GET", url: `http://registry.test${path}`, headers: new Headers() },
      null,
    );
    assert.equal(reply.status, 400, path);
    assert.match(new TextDecoder().decode(reply.body as Uint8Array), /NAME_INVALID/);
  }
});

Deno.test("HEAD is answered from GET without the body where a route has no HEAD", async () => {
  let cancelled = false;
  const get: Handler = () =>
    Promise.resolve(
      content(
        200,
        new ReadableStream<Uint8Array>({
          pull(controller) {
            controller.enqueue(new Uint8Array(5));
          },
          cancel() {
            cancelled = true;
          },
        }),
        { "Content-Length": "5", "X-From": "get" },
      ),
    );
  const routes: Route[] = [{
    name: "test",
    path: "/v2/x",
    exact: ["/v2/x"],
    methods: { GET: get },
  }];
  const { handler } = matchRoute(routes, "HEAD", "/v2/x");
  const reply = await handler({
    request: { method: "HEAD", url: "http://h/v2/x", headers: new Headers() },
    body: null,
    query: new URLSearchParams(),
    params: {},
  });
  assert.equal(reply.status, 200);
  assert.equal(reply.body, null);
  assert.equal(headerOf(reply, "content-length"), "5");
  assert.equal(headerOf(reply, "x-from"), "get");
  assert.ok(cancelled, "the GET's stream was released");
});

Deno.test("a route's own HEAD is used over its GET", () => {
  const head: Handler = () => Promise.resolve(jsonText(204, ""));
  const get: Handler = () => Promise.resolve(jsonText(200, "{}"));
  const routes: Route[] = [{
    name: "test",
    path: "/v2/x",
    exact: ["/v2/x"],
    methods: { GET: get, HEAD: head },
  }];
  assert.equal(matchRoute(routes, "HEAD", "/v2/x").handler, head);
  assert.equal(matchRoute(routes, "GET", "/v2/x").handler, get);
});

Deno.test("HEAD on the registry's listing routes gives GET's headers and no body", async () => {
  await using reg = await memoryRegistry();
  for (const path of ["/v2/", "/v2/_catalog"]) {
    const get = await reg.fetch(path);
    const head = await reg.fetch(path, { method: "HEAD" });
    assert.equal(head.status, 200, path);
    assert.equal(head.headers.get("content-length"), get.headers.get("content-length"));
    assert.equal(head.headers.get("content-type"), get.headers.get("content-type"));
    assert.equal((await head.arrayBuffer()).byteLength, 0);
    await get.body?.cancel();
  }
});

Deno.test("the first matching route wins", () => {
  const first: Handler = () => Promise.resolve(jsonText(200, "1"));
  const second: Handler = () => Promise.resolve(jsonText(200, "2"));
  const routes: Route[] = [
    { name: "test", path: "a", marker: "/things", param: "id", methods: { GET: first } },
    {
      name: "test",
      path: "b",
      marker: "/things",
      param: "id",
      methods: { GET: second, POST: second },
    },
  ];
  assert.equal(matchRoute(routes, "GET", "/v2/n/things/1").handler, first);
  // The first match decides even when it lacks the method.
  assert.throws(() => matchRoute(routes, "POST", "/v2/n/things/1"), isStatus(405, "GET, HEAD"));
});
