/**
 * `GET /livez` and `GET /readyz` on the main address, and the step that answers them ahead
 * of the rest of the pipeline: no access log line, no metrics, no authentication, no drain
 * refusal (so that `/readyz` itself says it is draining). They are not repository requests.
 *
 * `/livez`: 200 `ok` while the process serves. `/readyz`: 200 `{}` when ready (upload
 * recovery is over before the app exists; not draining; the storage check passes; free space
 * at least `readyMinFreeBytes`), else 503 with the failing checks by name, e.g.
 * `{"draining":"The registry is shutting down"}`.
 */

import { content, type Reply } from "../http/responses.ts";
import type { Step } from "../pipeline/context.ts";
import type { Route } from "../router.ts";
import type { CheckFailures, Health } from "./health.ts";

/** The names of the health routes in the route table. */
export const HEALTH_ROUTES: ReadonlySet<string> = new Set(["livez", "readyz"]);

const encoder = new TextEncoder();

function text(status: number, body: string, type: string): Reply {
  const bytes = encoder.encode(body);
  return content(status, bytes, {
    "Content-Type": type,
    "Content-Length": String(bytes.length),
    "Cache-Control": "no-store",
  });
}

/** A health report as a reply: 200 `{}`, or 503 with the failures (Distribution's shape). */
export function healthReply(failures: CheckFailures): Reply {
  const failing = Object.keys(failures).length > 0;
  return text(failing ? 503 : 200, JSON.stringify(failures), "application/json");
}

/** The health routes over a registry's checks and its drain state. */
export function healthRoutes(health: Health, draining: () => boolean): Route[] {
  return [
    {
      name: "livez",
      path: "/livez",
      exact: ["/livez"],
      methods: {
        GET: () => Promise.resolve(text(200, "ok\n", "text/plain; charset=utf-8")),
      },
    },
    {
      name: "readyz",
      path: "/readyz",
      exact: ["/readyz"],
      methods: {
        GET: async () => healthReply(await health.readiness(draining())),
      },
    },
  ];
}

/** The step answering the health routes before every later step (see the module notes). */
export function healthStep(): Step {
  return (ctx, next) => {
    const { match } = ctx.route;
    if (match === null || !HEALTH_ROUTES.has(match.route.name)) return next();
    ctx.body?.close();
    return match.handler({
      request: ctx.request,
      body: null,
      query: new URLSearchParams(),
      params: match.params,
    });
  };
}
