/**
 * End to end with a real Prometheus (Debian's `prometheus` package): the registry serves its
 * metrics on a debug listener, Prometheus scrapes it every second, a known sequence of pushes
 * and pulls runs, and PromQL queries through Prometheus's HTTP API must give the exact counts.
 *
 * Without the `prometheus` binary the test fails under CI=true and is skipped (with a
 * warning) otherwise.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { startDebugServer } from "../../src/debug_server.ts";
import { ociManifest, pushImageBlobs, putManifest } from "../helpers/manifests.ts";
import { tempRegistry } from "../helpers/registry.ts";

const INSTALL = "apt-get install prometheus";

function which(command: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      if (Deno.statSync(join(dir, command)).isFile) return join(dir, command);
    } catch {
      // not here
    }
  }
  return null;
}

const binary = which("prometheus");
const required = Deno.env.get("CI") === "true";
if (binary === null && !required) {
  console.warn(`prometheus_test: skipped, the prometheus binary is missing (${INSTALL})`);
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Polls `check` every 100 ms until it returns a value, or throws after `ms`. */
async function until<T>(what: string, ms: number, check: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const value = await check();
      if (value !== null) return value;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((wake) => setTimeout(wake, 100));
  }
}

/** Collects what a stream carries (the tail), so that the pipe never fills. */
function collect(stream: ReadableStream<Uint8Array>): { text: () => string } {
  let text = "";
  (async () => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text = (text + chunk).slice(-8000);
    }
  })().catch(() => {});
  return { text: () => text };
}

Deno.test({
  name: "prometheus: scraped counters match a known push and pull sequence",
  ignore: binary === null && !required,
  fn: async () => {
    if (binary === null) {
      throw new Error(`The prometheus binary is missing and CI=true needs it (${INSTALL})`);
    }
    await using reg = await tempRegistry({
      config: {
        debugAddr: { host: "127.0.0.1", port: 0 },
        metrics: { enabled: true, path: "/metrics" },
      },
    });
    const debug = startDebugServer(reg.app, reg.app.services.config)!;
    const work = await Deno.makeTempDir({ prefix: "prometheus-test-" });
    const webPort = freePort();
    const api = `http://127.0.0.1:${webPort}`;
    await Deno.writeTextFile(
      join(work, "prometheus.yml"),
      [
        "global:",
        "  scrape_interval: 1s",
        "  scrape_timeout: 1s",
        "scrape_configs:",
        "  - job_name: registry",
        "    metrics_path: /metrics",
        "    static_configs:",
        `      - targets: ["127.0.0.1:${debug.addr.port}"]`,
        "",
      ].join("\n"),
    );
    const child = new Deno.Command(binary, {
      args: [
        `--config.file=${join(work, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(work, "data")}`,
        `--web.listen-address=127.0.0.1:${webPort}`,
        "--log.level=warn",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = collect(child.stdout);
    const err = collect(child.stderr);
    try {
      await until("Prometheus to be ready", 20_000, async () => {
        const res = await fetch(`${api}/-/ready`);
        await res.body?.cancel();
        return res.status === 200 ? true : null;
      }).catch((error) => {
        throw new Error(`${error.message}; its output:\n${out.text()}${err.text()}`);
      });

      // The sequence: 3 blob pushes, 2 manifest pushes, 4 manifest pulls, 5 blob pulls.
      const { config, layers } = await pushImageBlobs(reg, "e2e/app", { layers: 2 });
      const manifests = [
        await ociManifest({ config, layers: [layers[0]] }),
        await ociManifest({ config, layers: [layers[1]] }),
      ];
      for (const [i, m] of manifests.entries()) {
        const res = await putManifest(reg, "e2e/app", `v${i}`, m.bytes);
        await res.body?.cancel();
        assert.equal(res.status, 201);
      }
      for (const path of ["v0", "v1", "v0", manifests[1].digest]) {
        const res = await reg.fetch(`/v2/e2e/app/manifests/${path}`);
        assert.equal(res.status, 200);
        await res.arrayBuffer();
      }
      const head = await reg.fetch("/v2/e2e/app/manifests/v0", { method: "HEAD" });
      await head.body?.cancel();
      for (const blob of [config, ...layers, layers[0], layers[1]]) {
        const res = await reg.fetch(`/v2/e2e/app/blobs/${blob.digest}`);
        assert.equal(res.status, 200);
        await res.arrayBuffer();
      }
      const after = Date.now();

      // A scrape that started after the sequence.
      await until("a scrape after the sequence", 15_000, async () => {
        const res = await fetch(`${api}/api/v1/targets`);
        const body = await res.json();
        const target = body.data.activeTargets[0];
        const scraped = Date.parse(target?.lastScrape ?? "");
        return target?.health === "up" && scraped > after ? true : null;
      });

      const query = async (promql: string): Promise<number> => {
        const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(promql)}`);
        const body = await res.json();
        assert.equal(body.status, "success", JSON.stringify(body));
        const result = body.data.result as { value: [number, string] }[];
        assert.equal(result.length, 1, `${promql}: ${JSON.stringify(result)}`);
        return Number(result[0].value[1]);
      };
      const stored = config.size + layers[0].size + layers[1].size +
        manifests[0].bytes.length + manifests[1].bytes.length;
      const expected: [string, number][] = [
        ['up{job="registry"}', 1],
        ["sum(registry_blobs_pushed_total)", 3],
        ["sum(registry_manifests_pushed_total)", 2],
        ["sum(registry_manifests_pulled_total)", 4],
        ["sum(registry_blobs_pulled_total)", 5],
        ["sum(registry_blobs_mounted_total)", 0],
        ['sum(registry_http_requests_total{handler="manifest",method="get",code="200"})', 4],
        ['sum(registry_http_requests_total{handler="manifest",method="head"})', 1],
        ['sum(registry_http_requests_total{handler="blob_upload_chunk",code="201"})', 3],
        ['sum(registry_http_request_duration_seconds_count{handler="blob"})', 5],
        ["sum(registry_http_in_flight_requests)", 0],
        ["registry_storage_bytes", stored],
        ["registry_upload_sessions_open", 0],
      ];
      for (const [promql, value] of expected) assert.equal(await query(promql), value, promql);
      assert.ok(await query('sum(registry_storage_action_seconds_count{action="put"})') > 0);
      assert.ok(await query("process_resident_memory_bytes") > 0);
    } finally {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
      await debug.shutdown();
      await Deno.remove(work, { recursive: true });
    }
  },
});
