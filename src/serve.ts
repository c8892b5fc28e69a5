/**
 * `serve(app, config)`: the app on the configured HTTP server, the built-in HTTP/1.1 server
 * on `Deno.listen` (src/server/, the default) or `Deno.serve`, over HTTPS when `http.tls` names
 * a certificate and key. Used by main.ts and the tests.
 */

import type { App } from "./app.ts";
import type { Config } from "./config/mod.ts";
import type { Logger } from "./log.ts";
import { serveHttp1 } from "./server/mod.ts";
import { readTlsFiles, tlsFailure, type TlsFiles } from "./startup.ts";

/** A listening server. */
export interface Serving {
  readonly addr: Deno.NetAddr;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
  /** Stops listening and resolves once requests in flight are answered. */
  shutdown(): Promise<void>;
  /** Whether it serves HTTPS. */
  readonly secure: boolean;
  /**
   * Serves new connections with this certificate and key; established ones keep theirs.
   * Throws, keeping the old pair, when the new one is unusable or the server cannot reload.
   */
  reloadTls(tls: TlsFiles): Promise<void>;
}

/**
 * Serves `app` on `config.host`:`config.port` with `config.server`; `tls` is the certificate
 * and key read from `config.tls` (`readTlsFiles`), or null for plain HTTP.
 */
export function serve(
  app: App,
  config: Config,
  onListen: (addr: Deno.NetAddr) => void = () => {},
  tls: TlsFiles | null = null,
): Serving {
  if (config.server === "deno") {
    const server = Deno.serve({
      hostname: config.host,
      port: config.port,
      ...(tls ?? {}),
      onListen: (addr) => onListen(addr as Deno.NetAddr),
    }, app);
    return {
      addr: server.addr,
      finished: server.finished,
      shutdown: () => server.shutdown(),
      secure: tls !== null,
      reloadTls: () =>
        Promise.reject(new Error("Reloading the certificate needs the built-in server")),
    };
  }
  const server = serveHttp1({
    hostname: config.host,
    port: config.port,
    ...(tls ? { tls } : {}),
    // The app answers heads over `maxHeaderBytes` with 431 and an OCI error; the server's
    // own cap (answered with a plain-text 431) only bounds what it buffers.
    maxHeadBytes: config.maxHeaderBytes + 16 * 1024,
    // a request head is small: it gets at most 30 s (less when bodies get less)
    headTimeoutMs: Math.min(config.bodyIdleTimeoutMs, 30_000),
    writeTimeoutMs: config.bodyIdleTimeoutMs,
    maxConnections: connectionLimit(config.maxConnections),
    log: (line) => app.log.warn(line),
    onListen,
  }, (request, body) => app.handle(request, body));
  return {
    addr: server.addr,
    finished: server.finished,
    shutdown: () => server.shutdown(),
    secure: tls !== null,
    reloadTls: (pair) => server.reloadTls(pair),
  };
}

/**
 * What SIGHUP does: re-reads `http.tls.certificate` and `http.tls.key` and serves new
 * connections with them; on a bad pair logs an error and keeps the old one. True when the new
 * pair is in use.
 */
export async function reloadTls(serving: Serving, config: Config, log: Logger): Promise<boolean> {
  if (config.tls === null || !serving.secure) {
    log.info("SIGHUP: nothing to reload (no http.tls)");
    return false;
  }
  try {
    await serving.reloadTls(await readTlsFiles(config.tls));
  } catch (error) {
    const line = tlsFailure(error, config.tls) ?? String(error);
    log.error(`TLS reload failed, keeping the previous certificate: ${line}`);
    log.flush();
    return false;
  }
  log.info("TLS certificate reloaded", { certificate: config.tls.certificate });
  log.flush();
  return true;
}

/** Where the open-file limit is read, and what is assumed when it cannot be. */
const LIMITS_FILE = "/proc/self/limits";
const ASSUMED_OPEN_FILES = 1024;
/** The default limit's ceiling. */
const MOST_CONNECTIONS = 1024;

/**
 * The soft limit on open files in the text of `/proc/self/limits`, or null when it has none
 * (`unlimited`, or no such line).
 */
export function openFileLimit(limits: string): number | null {
  const soft = /^Max open files\s+(\S+)/m.exec(limits)?.[1];
  const n = Number(soft);
  return soft !== undefined && Number.isSafeInteger(n) && n > 0 ? n : null;
}

/**
 * The built-in server's connection limit: `configured`, or for 0 a quarter of the process's
 * open-file limit (Deno raises the soft limit to the hard one as it starts), between 64 and
 * 1024. Every connection is a descriptor; the rest stay for the files that uploads, pulls and
 * the metadata open (an upload holds up to three), which would otherwise fail with EMFILE once
 * clients had taken them all; and the memory of connections stays bounded (tens of KiB each).
 */
export function connectionLimit(configured: number, limits?: string): number {
  if (configured > 0) return configured;
  let text = limits;
  if (text === undefined) {
    try {
      text = Deno.readTextFileSync(LIMITS_FILE);
    } catch {
      text = "";
    }
  }
  const quarter = Math.floor((openFileLimit(text) ?? ASSUMED_OPEN_FILES) / 4);
  return Math.min(MOST_CONNECTIONS, Math.max(64, quarter));
}
