/**
 * The registry's metrics through the app: push and pull counters from a known sequence, the
 * HTTP series by route, method and status, stored bytes and open upload sessions, unknown
 * methods, and series that stay bounded whatever the number of repositories.
 */

import assert from "node:assert/strict";
import type { Config } from "../../src/config/mod.ts";
import { InstrumentedDriver } from "../../src/storage/drivers/instrumented.ts";
import { seriesCount } from "../../src/metrics/families.ts";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from "../helpers/media_types.ts";
import {
  type MemoryRegistry,
  memoryRegistry,
  pushBlob,
  randomBytes,
  sha256Digest,
} from "../helpers/registry.ts";
import { assertValidExposition, samples } from "./exposition_check.ts";

const METRICS: Partial<Config> = {
  metrics: { enabled: true, path: "/metrics" },
  debugAddr: { host: "127.0.0.1", port: 0 },
};

async function scrape(reg: MemoryRegistry): Promise<Map<string, number>> {
  const text = await reg.app.metrics!.render();
  assertValidExposition(text);
  return samples(text);
}

async function send(reg: MemoryRegistry, path: string, init?: RequestInit): Promise<Response> {
  const res = await reg.fetch(path, init);
  await res.body?.cancel();
  return res;
}

/** Pushes a config and a layer and an image manifest naming them; returns the sizes. */
async function pushImage(reg: MemoryRegistry, name: string, tag: string) {
  const configBytes = new TextEncoder().encode(JSON.stringify({ os: "linux", tag, name }));
  const layerBytes = randomBytes(3000);
  const config = { mediaType: OCI_CONFIG, digest: "", size: configBytes.length };
  const layer = { mediaType: OCI_LAYER, digest: "", size: layerBytes.length };
  config.digest = await pushBlob(reg, name, configBytes);
  layer.digest = await pushBlob(reg, name, layerBytes);
  const manifest = new TextEncoder().encode(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] }),
  );
  const res = await send(reg, `/v2/${name}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: manifest,
  });
  assert.equal(res.status, 201);
  return { layer, bytes: configBytes.length + layerBytes.length + manifest.length };
}

Deno.test("metrics: a known push and pull sequence gives exact counters", async () => {
  await using reg = await memoryRegistry({ config: METRICS });
  const one = await pushImage(reg, "team/one", "v1"); // 2 blobs, 1 manifest
  const two = await pushImage(reg, "team/two", "v1"); // 2 blobs, 1 manifest
  // A monolithic upload (POST with digest) is a push; a mount is not.
  const mono = randomBytes(500);
  const monoDigest = await sha256Digest(mono);
  assert.equal(
    (await send(reg, `/v2/team/one/blobs/uploads/?digest=${monoDigest}`, {
      method: "POST",
      body: mono,
    })).status,
    201,
  );
  const mounted = await send(
    reg,
    `/v2/team/three/blobs/uploads/?mount=${one.layer.digest}&from=team/one`,
    { method: "POST" },
  );
  assert.equal(mounted.status, 201);
  const fallback = await send(
    reg,
    `/v2/team/three/blobs/uploads/?mount=sha256:${"1".repeat(64)}&from=team/one`,
    { method: "POST" },
  );
  assert.equal(fallback.status, 202, "a failed mount opens a session");
  // Bad manifest: not a push.
  assert.equal(
    (await send(reg, "/v2/team/one/manifests/bad", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: "{",
    })).status,
    400,
  );
  for (let i = 0; i < 3; i++) await send(reg, "/v2/team/one/manifests/v1");
  await send(reg, "/v2/team/two/manifests/v1", { method: "HEAD" });
  assert.equal((await send(reg, "/v2/team/two/manifests/missing")).status, 404);
  const blob = `/v2/team/one/blobs/${one.layer.digest}`;
  assert.equal((await send(reg, blob)).status, 200);
  assert.equal((await send(reg, blob, { headers: { range: "bytes=0-9" } })).status, 206);
  await send(reg, blob, { method: "HEAD" });
  assert.equal((await send(reg, "/v2/", { method: "BREW" })).status, 405);

  const m = await scrape(reg);
  assert.equal(m.get("registry_blobs_pushed_total"), 5);
  assert.equal(m.get("registry_blobs_mounted_total"), 1);
  assert.equal(m.get("registry_manifests_pushed_total"), 2);
  assert.equal(m.get("registry_manifests_pulled_total"), 3);
  assert.equal(m.get("registry_blobs_pulled_total"), 2);
  assert.equal(
    m.get('registry_http_requests_total{handler="manifest",method="put",code="201"}'),
    2,
  );
  assert.equal(
    m.get('registry_http_requests_total{handler="manifest",method="put",code="400"}'),
    1,
  );
  assert.equal(
    m.get('registry_http_requests_total{handler="manifest",method="get",code="404"}'),
    1,
  );
  assert.equal(m.get('registry_http_requests_total{handler="blob",method="get",code="206"}'), 1);
  assert.equal(
    m.get('registry_http_requests_total{handler="unknown",method="other",code="405"}'),
    1,
  );
  assert.equal(
    m.get('registry_http_request_duration_seconds_count{handler="manifest",method="get"}'),
    4,
  );
  assert.equal(m.get('registry_http_in_flight_requests{handler="manifest"}'), 0);
  assert.equal(m.get('registry_http_request_bytes_total{handler="blob_upload"}'), 500);
  assert.ok(m.get('registry_http_response_bytes_total{handler="blob"}')! >= 3000 + 10);
  assert.equal(m.get("registry_storage_bytes"), one.bytes + two.bytes + 500);
  assert.equal(m.get("registry_upload_sessions_open"), 1);
  assert.ok(m.get('registry_storage_action_seconds_count{driver="memory",action="put"}')! > 0);
  assert.ok(m.get("process_resident_memory_bytes")! > 0);
  assert.ok(m.get("process_start_time_seconds")! <= Date.now() / 1000);
  assert.ok(m.get("process_cpu_seconds_total")! > 0);
});

Deno.test("metrics: request series stay bounded over 10,000 repositories", async () => {
  await using reg = await memoryRegistry({ config: METRICS });
  const image = await pushImage(reg, "base/image", "v1");
  // Straight to the app's handler (no Request/Response objects): 40,000 requests in ~2 s.
  // (No writes: the memory driver lists by scanning every key.)
  const handle = async (method: string, path: string) => {
    const reply = await reg.app.handle(
      { method, url: `http://registry.test${path}`, headers: new Headers() },
      null,
    );
    if (reply.body instanceof ReadableStream) await reply.body.cancel();
  };
  const round = async (name: string) => {
    await handle("GET", `/v2/${name}/manifests/v1`);
    await handle("HEAD", `/v2/${name}/blobs/${image.layer.digest}`);
    await handle("GET", `/v2/${name}/tags/list`);
    await handle("PATCH", `/v2/${name}/blobs/uploads/${crypto.randomUUID()}`);
  };
  for (let i = 0; i < 10; i++) await round(`warm/r${i}`);
  const before = await reg.app.metrics!.render();
  for (let i = 0; i < 10_000; i++) await round(`org${i % 100}/repo${i}`);
  const after = await reg.app.metrics!.render();
  const series = (text: string) =>
    seriesCount(text.split("\n").filter((l) => l.startsWith("registry_http")).join("\n"));
  assert.equal(series(after), series(before));
  assert.equal(seriesCount(after), seriesCount(before));
  assert.ok(!after.includes("repo1"), "no repository name in any series");
  const count = samples(after).get(
    'registry_http_requests_total{handler="manifest",method="get",code="404"}',
  );
  assert.equal(count, 10_010);
});

Deno.test("metrics: off, the app has none and the driver is not wrapped", async () => {
  await using reg = await memoryRegistry();
  assert.equal(reg.app.metrics, null);
  assert.ok(!(reg.app.services.driver instanceof InstrumentedDriver));
});

Deno.test("metrics: health probes are neither counted nor access-logged", async () => {
  await using reg = await memoryRegistry({ config: { ...METRICS, logRequests: true } });
  assert.equal((await send(reg, "/livez")).status, 200);
  assert.equal((await send(reg, "/readyz")).status, 200);
  assert.equal((await send(reg, "/readyz", { method: "HEAD" })).status, 200);
  await send(reg, "/v2/");
  const text = await reg.app.metrics!.render();
  assert.ok(!/livez|readyz/.test(text));
  assert.match(text, /registry_http_requests_total\{handler="base",method="get",code="200"\} 1/);
  const lines = reg.logs.filter((l) => l.includes("request_id") || l.includes("msg=request"));
  assert.equal(lines.length, 1, lines.join("\n"));
});
