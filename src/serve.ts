/**
 * `serve(app, config)`: the app on the configured HTTP server, the built-in HTTP/1.1 server
 * on `Deno.listen` (src/server/, the default) or `Deno.serve`. Used by main.ts and the tests.
 */

import type { App } from "./app.ts";
import type { Config } from "./config/mod.ts";
import { TransportBody } from "./http/body.ts";
import { serveHttp1 } from "./server/mod.ts";

/** A listening server. */
export interface Serving {
  readonly addr: Deno.NetAddr;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
  /** Stops listening and resolves once requests in flight are answered. */
  shutdown(): Promise<void>;
}

/** Serves `app` on `config.host`:`config.port` with `config.server`. */
export function serve(
  app: App,
  config: Config,
  onListen: (addr: Deno.NetAddr) => void = () => {},
): Serving {
  if (config.server === "deno") {
    const server = Deno.serve({
      hostname: config.host,
      port: config.port,
      onListen: (addr) => onListen(addr as Deno.NetAddr),
    }, app);
    return { addr: server.addr, finished: server.finished, shutdown: () => server.shutdown() };
  }
  return serveHttp1({
    hostname: config.host,
    port: config.port,
    // The app answers heads over `maxHeaderBytes` with 431 and an OCI error; the server's
    // own cap (answered with a plain-text 431) only bounds what it buffers.
    maxHeadBytes: config.maxHeaderBytes + 16 * 1024,
    // a request head is small: it gets at most 30 s (less when bodies get less)
    headTimeoutMs: Math.min(config.bodyIdleTimeoutMs, 30_000),
    writeTimeoutMs: config.bodyIdleTimeoutMs,
    onListen,
  }, (request, body) => app.handle(request, body === null ? null : new TransportBody(body)));
}
