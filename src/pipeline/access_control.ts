/**
 * The access-control step (on when `auth.htpasswd.path` is set): reads `Basic` credentials,
 * checks them against the htpasswd file, sets `ctx.user`, and checks the route's action on its
 * repository against the policies. No or bad credentials where they are needed: 401
 * `UNAUTHORIZED` with a `Basic` challenge; good credentials without the permission: 403
 * `DENIED`. `/v2/` (like the catalog and unknown paths) answers 401 to a request without
 * credentials even when anonymous pulls are allowed (Docker sends its stored credentials only after a 401 there). The catalog needs
 * credentials and lists only what the user may pull; a mount's `from` needs pull (both through
 * `ctx.canPull`). A failed check waits the address's failure delay before answering.
 */

import type { Config } from "../config/mod.ts";
import { RegistryError, StartupError } from "../errors.ts";
import { FailDelay, sleep } from "../auth/fail_delay.ts";
import { HtpasswdFile, type HtpasswdOptions } from "../auth/htpasswd.ts";
import { AccessPolicies } from "../auth/policy.ts";
import type { Logger } from "../log.ts";
import type { RequestContext, Step } from "./context.ts";

/** Credentials from an `Authorization` header: none, unusable, or a user and password. */
export type Credentials =
  | { readonly kind: "none" }
  | { readonly kind: "invalid" }
  | { readonly kind: "basic"; readonly user: string; readonly password: string };

/** Reads the `Authorization` header (only `Basic` is understood; anything else is invalid). */
export function credentialsOf(header: string | null): Credentials {
  if (header === null || header.trim() === "") return { kind: "none" };
  const m = /^basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i.exec(header);
  if (!m) return { kind: "invalid" };
  let decoded: string;
  try {
    const bytes = Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0));
    decoded = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { kind: "invalid" };
  }
  const colon = decoded.indexOf(":");
  if (colon <= 0) return { kind: "invalid" };
  return { kind: "basic", user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Options of the access-control step (tests shorten the file check and the cache). */
export type AccessControlOptions = HtpasswdOptions;

/**
 * Builds the access-control step; a pass-through when authentication is off. Throws when the
 * htpasswd file cannot be read.
 */
export async function accessControl(
  config: Config,
  log: Logger,
  options: AccessControlOptions = {},
): Promise<Step> {
  const { auth } = config;
  const policies = new AccessPolicies(auth);
  if (auth.htpasswdPath === null) {
    if (auth.policies.length > 0 || auth.admins.length > 0) {
      log.warn("access policies are not enforced: auth.htpasswd.path is not set");
    }
    return (_ctx, next) => next();
  }
  for (const group of policies.undefinedGroups()) {
    log.warn("access policy names an undefined group", { group });
  }
  let file: HtpasswdFile;
  try {
    file = await HtpasswdFile.open(auth.htpasswdPath, log, options);
  } catch (error) {
    throw new StartupError(error instanceof Error ? error.message : String(error));
  }
  if (file.size === 0) {
    log.warn("the htpasswd file has no usable entry", { path: auth.htpasswdPath });
  }
  const delays = new FailDelay(auth.failDelayMs);
  const challenge = `Basic realm="${auth.realm}"`;
  const unauthorized = (message: string) =>
    new RegistryError("UNAUTHORIZED", message, { headers: { "WWW-Authenticate": challenge } });

  return async (ctx, next) => {
    const credentials = credentialsOf(ctx.request.headers.get("authorization"));
    if (credentials.kind !== "none") {
      const ok = credentials.kind === "basic" &&
        await file.verify(credentials.user, credentials.password);
      if (!ok) {
        await sleep(delays.fail(ctx.client));
        throw unauthorized("Authentication failed: unknown user or wrong password");
      }
      delays.succeed(ctx.client);
      ctx.user = credentials.user;
    }
    const user = ctx.user;
    ctx.canPull = (repository) => policies.allows(user, repository, "pull");
    check(ctx, policies, unauthorized);
    return await next();
  };
}

function check(
  ctx: RequestContext,
  policies: AccessPolicies,
  unauthorized: (message: string) => RegistryError,
): void {
  const { repository, action } = ctx.route;
  const user = ctx.user;
  if (action === null || repository === null) {
    // `/v2/`, the catalog, and paths no route matches (their 404/405 follow for users).
    if (user === null) throw unauthorized("Authentication required");
    return;
  }
  if (policies.allows(user, repository, action)) return;
  if (user === null) throw unauthorized(`Authentication required to ${action} "${repository}"`);
  throw new RegistryError(
    "DENIED",
    `User "${user}" may not ${action} "${repository}"`,
    { detail: { repository, action } },
  );
}
