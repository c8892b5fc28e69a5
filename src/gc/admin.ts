/**
 * The admin endpoint of garbage collection, on the main address:
 *
 * - `POST /admin/gc` starts a collection (202 `{"started":true,"dryRun":…}`; 409 while one
 *   runs); `?dryRun=true` decides without deleting; `?wait=true` answers 200 with the report
 *   once it is done (joining a run under way).
 * - `GET /admin/gc` answers the status: whether a run is under way, the schedule, the grace
 *   window and the last report.
 *
 * Who may call it is the admin endpoints' rule (`maintenance/admin_access.ts`): with access
 * control on, an admin (`registry.auth.admins`); with it off, clients on this machine; and in
 * both cases a request carrying the data root's admin token (`X-Registry-Admin-Token`, written
 * by the running registry to `<root>/.admin.json`, readable only by the user owning the data):
 * that is how `deno task gc` reaches the running registry.
 */

import { timingSafeEqual } from "node:crypto";
import type { Config } from "../config/mod.ts";
import { RegistryError } from "../errors.ts";
import { jsonText } from "../http/responses.ts";
import { isAdminRoute } from "../maintenance/admin_access.ts";
import type { Step } from "../pipeline/context.ts";
import type { Route } from "../router.ts";
import type { Collector } from "./collector.ts";

/** The route name of the admin endpoint (an `admin` route: the admin rule applies). */
export const GC_ROUTE = "admin-gc";
/** The path of the admin endpoint. */
export const GC_PATH = "/admin/gc";
/** The header carrying the data root's admin token. */
export const ADMIN_TOKEN_HEADER = "x-registry-admin-token";

/** The admin endpoint's route. */
export function gcRoutes(collector: Collector, config: Config): Route[] {
  return [{
    name: GC_ROUTE,
    path: GC_PATH,
    exact: [GC_PATH],
    methods: {
      GET: () =>
        Promise.resolve(jsonText(
          200,
          JSON.stringify({
            running: collector.running,
            intervalMs: config.gc.intervalMs,
            graceMs: config.gc.graceMs,
            last: collector.last,
          }),
        )),
      async POST({ query }) {
        const dryRun = flag(query.get("dryRun"));
        const wait = flag(query.get("wait"));
        if (config.readOnly && !dryRun) {
          throw new RegistryError(
            "UNSUPPORTED",
            "The registry is in read-only mode (storage.maintenance.readonly): only a dry run " +
              "(?dryRun=true) may run",
            { detail: { reason: "read-only" }, headers: { Allow: "GET, HEAD" } },
          );
        }
        const { started, report } = collector.run({ dryRun });
        if (wait) return jsonText(200, JSON.stringify(await report));
        if (!started) {
          throw new RegistryError("DENIED", "A garbage collection is under way", {
            status: 409,
            detail: { running: collector.running },
          });
        }
        return jsonText(202, JSON.stringify({ started: true, dryRun }));
      },
    },
  }];
}

function flag(value: string | null): boolean {
  return value !== null && ["true", "1", "yes", "on", ""].includes(value.toLowerCase());
}

/**
 * The step before access control that marks a request to an admin endpoint carrying the data
 * root's admin token (`X-Registry-Admin-Token`): access control and the admin rule
 * (`maintenance/admin_access.ts`) then let it through.
 */
export function adminTokenMarker(token: string): Step {
  const expected = new TextEncoder().encode(token);
  return (ctx, next) => {
    if (isAdminRoute(ctx.route.name)) {
      const given = new TextEncoder().encode(ctx.request.headers.get(ADMIN_TOKEN_HEADER) ?? "");
      ctx.adminToken = given.length === expected.length && timingSafeEqual(given, expected);
    }
    return next();
  };
}
