/**
 * The metrics step: counts each request on its route's and method's series (count by status
 * code, duration until the reply's head, bytes in and out, requests in flight) and feeds the
 * push and pull counters. Labels are the route name and the method, never the repository or
 * the digest. A no-op when metrics are disabled.
 */

import type { RegistryMetrics } from "../metrics/registry_metrics.ts";
import { bytesSent } from "./access_log.ts";
import type { Step } from "./context.ts";
import { bytesReceived } from "./limits.ts";

/** Routes that are not registry requests (the health probes); never counted. */
const UNCOUNTED: ReadonlySet<string> = new Set(["livez", "readyz"]);

/** The metrics step over a registry's metrics (null: disabled, a no-op). */
export function metricsStep(metrics: RegistryMetrics | null): Step {
  if (metrics === null) return (_ctx, next) => next();
  return async (ctx, next) => {
    const { route, request } = ctx;
    if (UNCOUNTED.has(route.name)) return next();
    const series = metrics.route(route.name).method(request.method);
    const inFlight = series.route.inFlight;
    inFlight.value++;
    let status = 500;
    let bytesOut = 0;
    try {
      const reply = await next();
      status = reply.status;
      bytesOut = bytesSent(reply, request.method);
      return reply;
    } finally {
      inFlight.value--;
      metrics.finish(series, {
        status,
        seconds: (performance.now() - ctx.startedAt) / 1000,
        bytesIn: bytesReceived(ctx),
        bytesOut,
        url: request.url,
      });
    }
  };
}
