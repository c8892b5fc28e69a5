/**
 * Starts the registry: reads the configuration (src/config/: a config.yml, the environment,
 * the flags), builds the app, serves it (src/serve.ts), and shuts down gracefully on
 * SIGINT/SIGTERM; SIGHUP re-reads the TLS certificate and key, and an external token issuer's
 * key files. A bad setting (or certificate, or key file) prints one line and exits with code 2.
 */

import { createApp } from "./src/app.ts";
import { startDebugServer } from "./src/debug_server.ts";
import { ConfigError, type Invocation, parseCommandLine } from "./src/config/mod.ts";
import { localUrl, removeAdminFile, writeAdminFile } from "./src/gc/admin_file.ts";
import { createLogger } from "./src/log.ts";
import { fixMmapThreshold, startTrimming } from "./src/malloc.ts";
import { isOrphanSocketError } from "./src/storage/postgres/client.ts";
import { reloadTls, serve, type Serving } from "./src/serve.ts";
import { startSweeping } from "./src/spares.ts";
import {
  dataRootFailure,
  hostPort,
  isLoopback,
  listenFailure,
  readTlsFiles,
  scaleOutFailure,
  tlsFailure,
  type TlsFiles,
} from "./src/startup.ts";

/** A second SIGINT/SIGTERM this soon after the first is the same stop (see `stop`). */
const REPEAT_MS = 1000;

async function main(): Promise<number> {
  let invocation: Invocation;
  try {
    invocation = parseCommandLine(Deno.args, Deno.env.toObject());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`${error.message} (see --help)`);
    return 2;
  }
  if (invocation.action === "help" || invocation.action === "version") {
    console.log(invocation.text.trimEnd());
    return 0;
  }
  const config = invocation.config;
  if (invocation.warnings.length > 0) {
    const log = createLogger({ level: config.logLevel, format: config.logFormat });
    for (const warning of invocation.warnings) log.warn(warning);
    log.flush();
  }
  if (invocation.action === "print-config") {
    console.log(invocation.text.trimEnd());
    return 0;
  }
  let tls: TlsFiles | null = null;
  if (config.tls !== null) {
    if (config.tls.certificate === "" || config.tls.key === "") {
      const missing = config.tls.key === "" ? "http.tls.key" : "http.tls.certificate";
      console.error(`Missing ${missing}: http.tls.certificate and http.tls.key go together`);
      return 2;
    }
    try {
      tls = await readTlsFiles(config.tls);
      // a throwaway listener checks the pair (and that key and certificate match)
      Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...tls }).close();
    } catch (error) {
      const line = tlsFailure(error, config.tls);
      if (line === null) throw error;
      console.error(line);
      return 2;
    }
  }
  // Freed upload parts go back to the system at once, and the free pages inside glibc's heap
  // every few seconds (src/malloc.ts); both no-ops off glibc. Spare upload and reply buffers
  // left unused for a few seconds are freed (src/spares.ts).
  fixMmapThreshold();
  const trimmer = startTrimming();
  const stopSweeping = startSweeping();
  let app;
  try {
    app = await createApp(config);
  } catch (error) {
    const line = config.s3 === null
      ? dataRootFailure(error, config.dataDir)
      : scaleOutFailure(error, config);
    if (line === null) throw error;
    console.error(line);
    return 2;
  }
  const log = app.log;
  if (config.s3 !== null) {
    // The database client's sockets may report a reset after the client let go of them
    // (isOrphanSocketError): logged, not fatal. Any other unhandled rejection still is.
    globalThis.addEventListener("unhandledrejection", (event) => {
      if (!isOrphanSocketError(event.reason)) return;
      event.preventDefault();
      log.warn("database connection reset after it was closed", {
        error: String(event.reason),
      });
    });
  }
  let debug;
  try {
    debug = startDebugServer(app, config); // null when http.debug.addr is not set
  } catch (error) {
    const line = listenFailure(error, config.debugAddr!.host, config.debugAddr!.port);
    if (line === null) throw error;
    app.close();
    console.error(`debug listener: ${line}`);
    return 2;
  }
  if (debug) {
    const paths = `${config.metrics.enabled ? `${config.metrics.path}, ` : ""}/debug/health`;
    log.info(
      `debug listener on http://${hostPort(debug.addr.hostname, debug.addr.port)} (${paths})`,
    );
  }
  let server: Serving;
  try {
    server = serve(app, config, ({ hostname, port }) => {
      const announce = () => {
        log.info(
          `registry listening on ${tls ? "https" : "http"}://${
            hostPort(hostname, port)
          }/v2/, storing in ${app.services.where}${
            config.s3 === null ? "" : " with metadata and locks in PostgreSQL"
          }`,
        );
        if (!tls && !isLoopback(config.host)) {
          log.warn(
            `serving plain HTTP on ${config.host}: credentials and images cross the network ` +
              "unencrypted (set http.tls.certificate and http.tls.key, or use a TLS proxy)",
          );
        }
        log.flush();
      };
      // For `deno task gc`: where this registry answers and its admin token, written before
      // the start line (so whoever waits for that line finds it). Not in the scale-out mode:
      // a replica keeps nothing on its own disk.
      if (config.s3 !== null) return announce();
      writeAdminFile(config.dataDir, {
        pid: Deno.pid,
        url: localUrl(tls ? "https" : "http", hostname, port),
        token: app.adminToken,
      }).catch((error) => log.warn("admin file not written", { error: String(error) }))
        .finally(announce);
    }, tls);
  } catch (error) {
    const line = listenFailure(error, config.host, config.port);
    if (line === null) throw error;
    await debug?.shutdown();
    app.close();
    console.error(line);
    return 2;
  }
  // The app drains first (new requests get 503, requests in flight get the grace period),
  // and only then does the server stop listening: Deno.serve's shutdown() makes the bodies
  // of requests in flight unreadable (denoland/deno#36809).
  let stoppingSince: number | null = null;
  const stop = async () => {
    if (stoppingSince !== null) {
      // A signal to a process group reaches the registry twice under `deno task start` (once
      // from the sender, once passed on by the task runner), and Ctrl+C is one: a repeat
      // within REPEAT_MS is the same stop. A later one means: stop waiting.
      if (performance.now() - stoppingSince < REPEAT_MS) {
        log.info("stop signal repeated within a second: the same stop");
        return;
      }
      log.warn("stop signal repeated: exiting without waiting for the requests in flight");
      log.flush();
      Deno.exit(0);
    }
    stoppingSince = performance.now();
    const grace = config.shutdownGraceMs;
    log.info("shutting down: finishing in-flight requests", { grace_s: grace / 1000 });
    const hard = setTimeout(() => {
      log.warn("shutdown: grace period over, exiting");
      log.flush();
      Deno.exit(0);
    }, grace + 3000);
    Deno.unrefTimer(hard);
    await app.drain(grace);
    await server.shutdown();
    await debug?.shutdown();
    await app.quiesce(); // a collection under way stops; the activity journal is written
    if (config.s3 === null) await removeAdminFile(config.dataDir);
    app.close(); // releases the data root only once no request runs
    stopSweeping();
    await trimmer?.stop();
    log.info("stopped");
    log.flush();
  };
  let stopped: Promise<void> | null = null;
  const onSignal = () => {
    const stopping = stop();
    stopped ??= stopping;
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const reloadTokenKeys = app.reloadTokenKeys;
  if (tls || reloadTokenKeys) {
    Deno.addSignalListener("SIGHUP", () => {
      if (tls) void reloadTls(server, config, log);
      if (reloadTokenKeys) void reloadTokenKeys();
    });
  }
  await server.finished;
  await stopped; // the drain's last steps: release the data root, flush the log
  return 0;
}

if (import.meta.main) Deno.exit(await main());
