/**
 * Who may use the admin endpoints (`/admin/…`: repository deletion, storage usage, and the
 * collector's): one rule, in `adminAllowed`, that every admin route shares.
 *
 * - Access control on (`auth.htpasswd.path`, with or without tokens, or an external token
 *   issuer alone): the authenticated user (a token's subject) must be an admin
 *   (`registry.auth.admins`, which names them even where the external issuer's tokens decide
 *   everything else). Access control has already answered 401 to a request without (valid)
 *   credentials; a user who is not an admin gets 403 `DENIED`.
 * - Access control off: only clients on this machine (a loopback address: 127.0.0.0/8, ::1)
 *   unless `registry.adminendpoints.allowremote` is on; others get 403 `DENIED`. The client is the
 *   peer, or what a trusted proxy (`registry.http.trustedproxies`) says it is, so a reverse
 *   proxy on the same machine must be listed there; a request carrying `X-Forwarded-For` or
 *   `Forwarded` that no trusted proxy vouched for is not taken as local.
 * - Either way, a request carrying the data root's admin token (`X-Registry-Admin-Token`, which
 *   the running registry writes to `<root>/.admin.json` for the commands) may use them.
 *
 * Admin routes are the routes whose name starts with `admin`; the `adminGate` step applies
 * the rule to all of them, after access control, so a route of that name needs nothing more.
 * The routes touch no single repository as far as access control is concerned (no `name`
 * parameter, no action), so repository policies never grant them.
 */

import type { Config } from "../config/mod.ts";
import { RegistryError } from "../errors.ts";
import { tokenAuthOn } from "../pipeline/access_control.ts";
import { parseIp, trustedMatcher } from "../pipeline/client.ts";
import type { RequestContext, Step } from "../pipeline/context.ts";

/** The admin rule's inputs from the configuration, made once (`adminRule`). */
export interface AdminRule {
  /** Whether access control is on: then the admin role decides. */
  readonly authenticated: boolean;
  /** Whether a user has the admin role (`registry.auth.admins`). */
  readonly isAdmin: (user: string) => boolean;
  /** With access control off: whether clients other than loopback ones are accepted. */
  readonly allowRemote: boolean;
  /** Whether a peer is a trusted proxy (`registry.http.trustedproxies`). */
  readonly trusted: (address: string) => boolean;
}

/** The admin rule of a configuration. */
export function adminRule(config: Config): AdminRule {
  const admins = new Set(config.auth.admins);
  return {
    authenticated: config.auth.htpasswdPath !== null || tokenAuthOn(config),
    isAdmin: (user) => admins.has(user),
    allowRemote: config.adminAllowRemote,
    trusted: trustedMatcher(config.trustedProxies),
  };
}

/** Whether a route is an admin route (its name starts with `admin`). */
export function isAdminRoute(routeName: string): boolean {
  return routeName.startsWith("admin");
}

/**
 * Returns when the request may use an admin endpoint; throws 401 `UNAUTHORIZED` (no user
 * while access control is on) or 403 `DENIED` (not an admin; not a loopback client while
 * access control is off) otherwise. Call after access control set `ctx.user`.
 */
export function adminAllowed(
  ctx: Pick<RequestContext, "client" | "user" | "admin" | "adminToken" | "request">,
): void {
  if (ctx.adminToken) return; // the data root's admin token (`deno task gc`, gc/admin.ts)
  const rule = ctx.admin;
  if (rule.authenticated) {
    if (ctx.user === null) {
      throw new RegistryError("UNAUTHORIZED", "Authentication required: admin endpoint");
    }
    if (!rule.isAdmin(ctx.user)) {
      throw new RegistryError(
        "DENIED",
        `User "${ctx.user}" is not an admin (registry.auth.admins): admin endpoint`,
      );
    }
    return;
  }
  if (rule.allowRemote) return;
  // A forwarded request that no trusted proxy vouched for (the client is still the peer) may
  // come from anywhere through a proxy on this machine: not local.
  const headers = ctx.request.headers;
  const forwarded = headers.get("x-forwarded-for") !== null || headers.get("forwarded") !== null;
  const vouched = rule.trusted(ctx.request.remoteAddress ?? "");
  if (isLoopbackAddress(ctx.client) && (!forwarded || vouched)) return;
  throw new RegistryError(
    "DENIED",
    "Admin endpoints answer only clients on this machine while access control is off " +
      "(registry.adminendpoints.allowremote)",
  );
}

/** The pipeline step applying `adminAllowed` to every admin route (after access control). */
export function adminGate(): Step {
  return (ctx, next) => {
    if (isAdminRoute(ctx.route.name)) adminAllowed(ctx);
    return next();
  };
}

/** Whether an address is a loopback one (127.0.0.0/8, ::1, or IPv4-mapped 127.x). */
export function isLoopbackAddress(address: string): boolean {
  const ip = parseIp(address);
  if (ip === null) return false;
  if (ip.bytes.length === 4) return ip.bytes[0] === 127;
  return ip.bytes.every((byte, i) => byte === (i === 15 ? 1 : 0));
}
