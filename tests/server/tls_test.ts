/**
 * HTTPS on the built-in server (`http.tls.certificate`, `http.tls.key`): certificates made
 * with `openssl` for 127.0.0.1, a client trusting the CA is served and one that does not is
 * refused, SIGHUP's reload (established connections keep working, new ones get the new
 * certificate, a bad pair keeps the old one), `--server deno`, the token realm of a Bearer
 * challenge is https on either server, and main.ts: a bad certificate at start is one line and
 * exit 2, a real SIGHUP reloads.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULTS } from "../../src/config/mod.ts";
import { createLogger } from "../../src/log.ts";
import { reloadTls, serve } from "../../src/serve.ts";
import { serveHttp1 } from "../../src/server/mod.ts";
import { memoryRegistry, PROJECT_ROOT } from "../helpers/registry.ts";
import { makeCertificates } from "../helpers/tls_ca.ts";
import { htpasswdFile } from "../auth/helpers.ts";
import { challengeOf, tokenRegistry } from "../auth/token_helpers.ts";

const dir = await Deno.makeTempDir({ prefix: "registry-tls-" });
const first = await makeCertificates(dir, "first");
const second = await makeCertificates(dir, "second");
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const quiet = createLogger({ level: "error", sink: () => {} });

/** Two requests on one TLS connection, the second after `between`; the status lines. */
async function keepAlive(port: number, ca: string, between: () => Promise<void>) {
  const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [ca] });
  const statusLine = async () => {
    const request = "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    await conn.write(new TextEncoder().encode(request));
    const buffer = new Uint8Array(64 * 1024);
    let text = "";
    while (!/\r\n\r\n[\s\S]*\}/.test(text)) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error(`connection closed after ${JSON.stringify(text)}`);
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    return text.split("\r\n")[0];
  };
  try {
    const before = await statusLine();
    await between();
    return [before, await statusLine()];
  } finally {
    conn.close();
  }
}

async function get(url: string, ca: string): Promise<number> {
  using client = Deno.createHttpClient({ caCerts: [ca] });
  const response = await fetch(url, { client });
  await response.body?.cancel();
  return response.status;
}

Deno.test("the built-in server serves HTTPS and reloads its certificate", async () => {
  await using reg = await memoryRegistry();
  const config = { ...DEFAULTS, port: 0, dataDir: "memory", tls: first };
  const server = serve(reg.app, config, () => {}, { cert: first.cert, key: first.keyPem });
  try {
    assert.equal(server.secure, true);
    const url = `https://127.0.0.1:${server.addr.port}/v2/`;
    assert.equal(await get(url, first.ca), 200);
    await assert.rejects(() => fetch(url), "a client without the CA is refused");
    await assert.rejects(() => get(url, second.ca), "the second CA does not sign it yet");

    // a bad pair keeps the old one
    const bad = join(dir, "bad.crt");
    await Deno.writeTextFile(bad, "not a certificate\n");
    const logs: string[] = [];
    const log = createLogger({ level: "info", format: "text", sink: (l) => logs.push(l) });
    assert.equal(
      await reloadTls(server, { ...config, tls: { ...first, certificate: bad } }, log),
      false,
    );
    assert.match(logs.join("\n"), /TLS reload failed, keeping the previous certificate/);
    assert.equal(await get(url, first.ca), 200);

    const lines = await keepAlive(server.addr.port, first.ca, async () => {
      assert.equal(await reloadTls(server, { ...config, tls: second }, quiet), true);
    });
    assert.deepEqual(lines, ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK"], "established connection kept");
    assert.equal(await get(url, second.ca), 200, "new connections get the new certificate");
    await assert.rejects(() => get(url, first.ca));
  } finally {
    await server.shutdown();
  }
});

Deno.test("a certificate reload does not wait for a place when a connection waits at the limit", async () => {
  const lines: string[] = [];
  const server = serveHttp1(
    {
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: first.cert, key: first.keyPem },
      maxConnections: 1,
      evictIdleMs: 60_000, // the keep-alive connection keeps its place between its requests
      log: (line) => lines.push(line),
    },
    () => Promise.resolve({ status: 200, headers: [], body: new TextEncoder().encode("{}") }),
  );
  const port = server.addr.port;
  try {
    const statuses = await keepAlive(port, first.ca, async () => {
      // the one place is taken: a second connection is accepted and held
      const held = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        for (let i = 0; i < 250 && !lines.some((l) => l.includes("limit reached")); i++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.ok(lines.some((l) => l.includes("limit reached")), lines.join("\n"));
        let timer: ReturnType<typeof setTimeout> | undefined;
        const outcome = await Promise.race([
          server.reloadTls({ cert: second.cert, key: second.keyPem }).then(() => "reloaded"),
          // not once a place frees (none does here)
          new Promise((resolve) => timer = setTimeout(() => resolve("still waiting"), 2000)),
        ]);
        clearTimeout(timer);
        assert.equal(outcome, "reloaded");
      } finally {
        held.close();
      }
    });
    assert.deepEqual(statuses, ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK"]);
    assert.equal(await get(`https://127.0.0.1:${port}/v2/`, second.ca), 200);
  } finally {
    await server.shutdown();
  }
});

Deno.test("--server deno serves HTTPS too (without reloading)", async () => {
  await using reg = await memoryRegistry();
  const config = { ...DEFAULTS, port: 0, dataDir: "memory", server: "deno" as const, tls: first };
  const server = serve(reg.app, config, () => {}, { cert: first.cert, key: first.keyPem });
  try {
    assert.equal(await get(`https://127.0.0.1:${server.addr.port}/v2/`, first.ca), 200);
    assert.equal(await reloadTls(server, config, quiet), false);
  } finally {
    await server.shutdown();
  }
});

Deno.test("over TLS a Bearer challenge sends clients to an https realm, on either server", async () => {
  await using file = await htpasswdFile();
  await using reg = await tokenRegistry(file.path);
  for (const server of ["builtin", "deno"] as const) {
    const config = { ...DEFAULTS, port: 0, dataDir: "memory", server, tls: first };
    const serving = serve(reg.app, config, () => {}, { cert: first.cert, key: first.keyPem });
    try {
      const origin = `https://127.0.0.1:${serving.addr.port}`;
      using client = Deno.createHttpClient({ caCerts: [first.ca] });
      const response = await fetch(`${origin}/v2/team/app/manifests/v1`, { client });
      await response.body?.cancel();
      assert.equal(response.status, 401, server);
      assert.equal(challengeOf(response)?.realm, `${origin}/token`, server);
    } finally {
      await serving.shutdown();
    }
  }
});

Deno.test("a TLS client gone without close_notify is a disconnect, not a logged failure", async () => {
  // containerd's ctr (Go) ends its connections so: the server used to log each one.
  const logs: string[] = [];
  const server = serveHttp1(
    {
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: first.cert, key: first.keyPem },
      log: (line) => logs.push(line),
    },
    (request) =>
      Promise.resolve({ status: 200, headers: [], body: new TextEncoder().encode(request.url) }),
  );
  try {
    // The client's TLS runs through a relay that then half-closes the server's socket: the
    // server sees the TCP stream end with no TLS close_notify before it.
    using relay = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepted = relay.accept();
    using conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: relay.addr.port,
      caCerts: [first.ca],
    });
    using down = await accepted;
    using up = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    const pump = async (from: Deno.Conn, to: Deno.Conn) => {
      const buffer = new Uint8Array(16 * 1024);
      try {
        for (let n = await from.read(buffer); n !== null; n = await from.read(buffer)) {
          await to.write(buffer.subarray(0, n));
        }
      } catch { /* closed */ }
    };
    const toServer = pump(down, up);
    const fromServer = pump(up, down);
    await conn.write(new TextEncoder().encode("GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    const buffer = new Uint8Array(4096);
    let text = "";
    while (!text.endsWith("https://127.0.0.1/v2/")) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error(`closed after ${JSON.stringify(text)}`);
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    await up.closeWrite();
    await fromServer; // the server closed the connection: it has seen the end
    assert.deepEqual(logs, []);
    up.close();
    down.close();
    await toServer;
  } finally {
    await server.shutdown();
  }
});

function registryCommand(config: string, data: string) {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join(PROJECT_ROOT, "main.ts"),
      "--config",
      config,
      "--port",
      "0",
      "--data",
      data,
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
}

Deno.test("main.ts: a bad certificate is one line and exit 2", async () => {
  const data = await Deno.makeTempDir({ prefix: "registry-tls-data-" });
  const config = join(dir, "bad.yml");
  await Deno.writeTextFile(join(dir, "junk.crt"), "junk\n");
  await Deno.writeTextFile(
    config,
    `http:\n  tls:\n    certificate: ${join(dir, "junk.crt")}\n    key: ${first.key}\n`,
  );
  const out = await registryCommand(config, data).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assert.equal(out.code, 2, stderr);
  assert.equal(stderr.split("\n").length, 1, stderr);
  assert.match(stderr, /^TLS certificate or key unusable .*No certificates found/);
  const missing = join(dir, "missing.yml");
  await Deno.writeTextFile(
    missing,
    `http:\n  tls:\n    certificate: ${join(dir, "nope.crt")}\n    key: ${first.key}\n`,
  );
  const out2 = await registryCommand(missing, data).output();
  assert.equal(out2.code, 2);
  assert.match(new TextDecoder().decode(out2.stderr), /^TLS certificate or key not found/);
  await Deno.remove(data, { recursive: true });
});

Deno.test("main.ts: https in the start line, and a real SIGHUP reloads the certificate", async () => {
  const data = await Deno.makeTempDir({ prefix: "registry-tls-data-" });
  const live = join(dir, "live");
  await Deno.mkdir(live, { recursive: true });
  await Deno.copyFile(first.certificate, join(live, "tls.crt"));
  await Deno.copyFile(first.key, join(live, "tls.key"));
  const config = join(dir, "live.yml");
  await Deno.writeTextFile(
    config,
    `http:\n  tls:\n    certificate: ${join(live, "tls.crt")}\n    key: ${join(live, "tls.key")}\n`,
  );
  const child = registryCommand(config, data).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const waitFor = async (pattern: RegExp) => {
    while (!pattern.test(seen)) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`registry exited; output: ${seen}`);
      seen += value;
    }
    return seen.match(pattern)!;
  };
  try {
    const [, port] = await waitFor(/listening on https:\/\/127\.0\.0\.1:(\d+)\/v2\//);
    const url = `https://127.0.0.1:${port}/v2/`;
    assert.equal(await get(url, first.ca), 200);
    await Deno.copyFile(second.certificate, join(live, "tls.crt"));
    await Deno.copyFile(second.key, join(live, "tls.key"));
    child.kill("SIGHUP");
    await waitFor(/TLS certificate reloaded/);
    assert.equal(await get(url, second.ca), 200);
  } finally {
    child.kill("SIGTERM");
    await lines.cancel();
    await child.stderr.cancel();
    await child.status;
    await Deno.remove(data, { recursive: true });
  }
});
