/**
 * The admin endpoint of garbage collection, on the main address:
 *
 * - `POST /admin/gc` starts a collection (202 `{"started":true,"dryRun":…}`; 409 while one
 *   runs); `?dryRun=true` decides without deleting; `?wait=true` answers 200 with the report
 *   once it is done (joining a run under way).
 * - `GET /admin/gc` answers the status: whether a run is under way, the schedule, the grace
 *   window and the last report.
 *
 * Who may call it: with access control on, an admin (`registry.auth.admins`; with token
 * authentication, built-in or an external issuer's, a Bearer token whose subject is an admin);
 * with it off, only a client on a loopback
 * address whose request carries no `X-Forwarded-For` or `Forwarded` header (a proxy on the
 * same host would otherwise make every client look local). In both cases a request carrying
 * the data root's admin token (`X-Registry-Admin-Token`, written by the running registry to
 * `<root>/.admin.json`, readable only by the user owning the data) may call it: that is how
 * `deno task gc` reaches the running registry.
 */

import { timingSafeEqual } from "node:crypto";
import type { Config } from "../config/mod.ts";
import { RegistryError } from "../errors.ts";
import { jsonText } from "../http/responses.ts";
import { AccessPolicies } from "../auth/policy.ts";
import { tokenAuthOn } from "../pipeline/access_control.ts";
import type { Step } from "../pipeline/context.ts";
import type { Route } from "../router.ts";
import type { Collector } from "./collector.ts";

/** The route name of the admin endpoint (no repository, no action: see `actionOf`). */
export const GC_ROUTE = "gc";
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
            { detail: { reason: "read-only" } },
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
 * The steps around access control: `before` marks a request carrying the admin token (access
 * control then lets it through), `after` allows the admin endpoint only to whom it should.
 */
export function adminSteps(config: Config, token: string): { before: Step; after: Step } {
  const expected = new TextEncoder().encode(token);
  const policies = new AccessPolicies(config.auth);
  const authOn = config.auth.htpasswdPath !== null || tokenAuthOn(config);
  const before: Step = (ctx, next) => {
    if (ctx.route.name === GC_ROUTE) {
      const given = new TextEncoder().encode(ctx.request.headers.get(ADMIN_TOKEN_HEADER) ?? "");
      ctx.admin = given.length === expected.length && timingSafeEqual(given, expected);
    }
    return next();
  };
  const after: Step = (ctx, next) => {
    if (ctx.route.name !== GC_ROUTE || ctx.admin) return next();
    if (authOn) {
      if (ctx.user !== null && policies.isAdmin(ctx.user)) return next();
      throw new RegistryError("DENIED", "Only admins may run garbage collection", {
        detail: { user: ctx.user },
      });
    }
    const headers = ctx.request.headers;
    const local = isLoopbackAddress(ctx.request.remoteAddress ?? "") &&
      headers.get("x-forwarded-for") === null && headers.get("forwarded") === null;
    if (local) return next();
    throw new RegistryError(
      "DENIED",
      "Without access control, garbage collection may only be started from a loopback address",
      {},
    );
  };
  return { before, after };
}

function isLoopbackAddress(address: string): boolean {
  const plain = address.replace(/^::ffff:/i, "");
  return plain === "::1" || /^127\.\d+\.\d+\.\d+$/.test(plain);
}
