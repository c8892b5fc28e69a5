/**
 * The access-control step (on when `auth.htpasswd.path` is set): reads `Basic` credentials,
 * checks them against the htpasswd file, sets `ctx.user`, and checks the route's action on its
 * repository against the policies. No or bad credentials where they are needed: 401
 * `UNAUTHORIZED` with a `Basic` challenge; good credentials without the permission: 403
 * `DENIED`. `/v2/` (like the catalog and unknown paths) answers 401 to a request without
 * credentials even when anonymous pulls are allowed (Docker sends its stored credentials only after a 401 there). The catalog needs
 * credentials and lists only what the user may pull; a mount's `from` needs pull (both through
 * `ctx.canPull`). A failed check waits the address's failure delay before answering.
 * With token authentication on (`registry.auth.token.builtin`, or `auth.token.realm` naming our
 * own endpoint) the step is token_auth.ts's: the token endpoint, and `Bearer` tokens only.
 */

import type { Config } from "../config/mod.ts";
import { RegistryError, StartupError } from "../errors.ts";
import { credentialsOf } from "../auth/credentials.ts";
import { FailDelay, sleep } from "../auth/fail_delay.ts";
import { HtpasswdFile, type HtpasswdOptions } from "../auth/htpasswd.ts";
import { loadSigningKey } from "../auth/jwt.ts";
import { AccessPolicies } from "../auth/policy.ts";
import { TokenIssuer } from "../auth/tokens.ts";
import type { Logger } from "../log.ts";
import type { Route } from "../router.ts";
import type { StorageDriver } from "../storage/driver.ts";
import type { RequestContext, Step } from "./context.ts";
import { tokenAuth } from "./token_auth.ts";

export { type Credentials, credentialsOf } from "../auth/credentials.ts";

/** Options of the access-control step (tests shorten the file check and the cache). */
export type AccessControlOptions = HtpasswdOptions;

/** The access-control step, and the routes it answers itself (the token endpoint). */
export interface AccessControl {
  readonly step: Step;
  readonly routes: readonly Route[];
}

/** Whether token authentication is configured. */
export function tokenAuthOn(config: Config): boolean {
  return config.auth.token.builtin || config.auth.token.realm !== null;
}

/**
 * Builds the access-control step; a pass-through when authentication is off. Throws when the
 * htpasswd file or the token signing key cannot be read, or token authentication is
 * misconfigured (the key is generated in the data root through `driver` on first start).
 */
export async function accessControl(
  config: Config,
  log: Logger,
  options: AccessControlOptions,
  driver: StorageDriver,
): Promise<AccessControl> {
  const { auth } = config;
  const policies = new AccessPolicies(auth);
  const tokens = tokenAuthOn(config);
  if (tokens) checkTokenConfig(config);
  if (auth.htpasswdPath === null) {
    if (auth.policies.length > 0 || auth.admins.length > 0) {
      log.warn("access policies are not enforced: auth.htpasswd.path is not set");
    }
    return { step: (_ctx, next) => next(), routes: [] };
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
  if (tokens) {
    let key;
    try {
      key = await loadSigningKey(driver, auth.token.signingKey);
    } catch (error) {
      throw new StartupError(error instanceof Error ? error.message : String(error));
    }
    const issuer = new TokenIssuer(key, auth.token);
    log.info("token authentication on", { path: auth.token.path, kid: issuer.kid });
    return {
      step: tokenAuth({ config, issuer, file, policies, delays }),
      routes: [tokenRoute(auth.token.path)],
    };
  }
  const challenge = `Basic realm="${auth.realm}"`;
  const unauthorized = (message: string) =>
    new RegistryError("UNAUTHORIZED", message, { headers: { "WWW-Authenticate": challenge } });

  const step: Step = async (ctx, next) => {
    if (ctx.admin) return await next(); // the data root's admin token (gc/admin.ts)
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
  return { step, routes: [] };
}

/** Token authentication needs the htpasswd users, and only our own endpoint is supported. */
function checkTokenConfig(config: Config): void {
  const { htpasswdPath, token } = config.auth;
  if (htpasswdPath === null) {
    throw new StartupError(
      "Token authentication needs auth.htpasswd.path: the token endpoint authenticates its users",
    );
  }
  if (token.realm !== null && new URL(token.realm).pathname !== token.path) {
    throw new StartupError(
      `auth.token.realm ${token.realm} is not this registry's token endpoint ` +
        `(registry.auth.token.path ${token.path}): verifying tokens of an external issuer is ` +
        "not implemented yet",
    );
  }
}

/** The token endpoint's route; the access-control step answers it before any handler. */
function tokenRoute(path: string): Route {
  const handler = () =>
    Promise.reject(new Error("The token endpoint is answered by access control"));
  return { name: "token", path, exact: [path], methods: { GET: handler, POST: handler } };
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
