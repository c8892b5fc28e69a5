/**
 * The debug listener (`http.debug.addr`), on its own port through the built-in HTTP server:
 * `GET <metrics.path>` (Prometheus text format 0.0.4, when `metrics.enabled`) and
 * `GET /debug/health` (Distribution's: 200 `{}` when healthy, else 503 with the failing
 * checks, e.g. `{"storagedriver_filesystem":"Cannot write to the storage: …"}`). Anything else
 * is 404. Meant for a private network: it has no authentication.
 */

import type { App } from "./app.ts";
import type { Config } from "./config/mod.ts";
import { healthReply } from "./health/routes.ts";
import { EXPOSITION_CONTENT_TYPE } from "./metrics/exposition.ts";
import { rawPath } from "./router.ts";
import { type Reply, serveHttp1 } from "./server/mod.ts";

/** A running debug listener. */
export interface DebugServer {
  /** The address it listens on (the real port when the configured one is 0). */
  readonly addr: Deno.NetAddr;
  /** Stops listening; resolves once every connection is closed. */
  shutdown(): Promise<void>;
}

const encoder = new TextEncoder();

function reply(status: number, type: string, body: string, head: boolean): Reply {
  const bytes = encoder.encode(body);
  return {
    status,
    headers: [["Content-Type", type], ["Cache-Control", "no-store"]],
    body: head ? null : bytes,
  };
}

/**
 * Starts the debug listener on `config.debugAddr`; null when none is configured. Throws
 * what `Deno.listen` throws (e.g. the port is taken).
 */
export function startDebugServer(app: App, config: Config): DebugServer | null {
  if (config.debugAddr === null) return null;
  const metricsPath = config.metrics.enabled && app.metrics !== null ? config.metrics.path : null;
  const server = serveHttp1({
    hostname: config.debugAddr.host,
    port: config.debugAddr.port,
    headTimeoutMs: 10_000,
    keepAliveTimeoutMs: 120_000,
    log: (line) => app.log.warn("debug server failure", { error: line }),
  }, async (request, body) => {
    body?.close();
    const path = rawPath(request.url);
    const head = request.method === "HEAD";
    if (request.method !== "GET" && !head) {
      return reply(404, "text/plain; charset=utf-8", "Not found\n", head);
    }
    if (path === metricsPath) {
      const text = await app.metrics!.render((metric, error) => {
        app.log.warn("metric not collected", { metric, error: String(error) });
      });
      return reply(200, EXPOSITION_CONTENT_TYPE, text, head);
    }
    if (path === "/debug/health") {
      const health = healthReply(app.health.debugStatus());
      return head ? { ...health, body: null } : health;
    }
    return reply(404, "text/plain; charset=utf-8", "Not found\n", head);
  });
  return { addr: server.addr, shutdown: () => server.shutdown() };
}
