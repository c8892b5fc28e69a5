/**
 * The access-control step (on when `auth.htpasswd.path` is set): reads `Basic` credentials,
 * checks them against the htpasswd file, sets `ctx.user`, and checks the route's action on its
 * repository against the policies. No or bad credentials where they are needed: 401
 * `UNAUTHORIZED` with a `Basic` challenge; good credentials without the permission: 403
 * `DENIED`. `/v2/` (like the catalog and unknown paths) answers 401 to a request without
 * credentials even when anonymous pulls are allowed (Docker sends its stored credentials only after a 401 there). The catalog needs
 * credentials and lists only what the user may pull; a mount's `from` needs pull (both through
 * `ctx.canPull`). A failed check waits the address's failure delay before answering.
 * With token authentication on (the built-in issuer: `registry.auth.token.builtin`, or
 * `auth.token.realm` naming our own endpoint; an external issuer: `auth.token.rootcertbundle` or
 * `auth.token.jwks`) the step is token_auth.ts's: the token endpoint (built-in issuer only), and
 * `Bearer` tokens only. An external issuer alone needs no htpasswd file.
 */

import type { Config } from "../config/mod.ts";
import { RegistryError, StartupError } from "../errors.ts";
import { credentialsOf } from "../auth/credentials.ts";
import { FailDelay, sleep } from "../auth/fail_delay.ts";
import { HtpasswdFile, type HtpasswdOptions } from "../auth/htpasswd.ts";
import { loadSigningKey } from "../auth/jwt.ts";
import { ExternalIssuer } from "../auth/external_issuer.ts";
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
  /** Re-reads the external issuer's key files (SIGHUP); null when there is none. */
  readonly reload: (() => Promise<void>) | null;
}

/** Which token issuers are trusted: the built-in one, an external one, both or neither. */
export interface TokenModes {
  readonly builtin: boolean;
  readonly external: boolean;
}

/**
 * The token issuers of `config`: an external one when `auth.token.rootcertbundle` or
 * `auth.token.jwks` is set; the built-in one with `registry.auth.token.builtin`, or when
 * `auth.token.realm` is set without external keys (it then names our own endpoint).
 */
export function tokenModes(config: Config): TokenModes {
  const token = config.auth.token;
  const external = token.rootCertBundle !== null || token.jwks !== null;
  return { builtin: token.builtin || (!external && token.realm !== null), external };
}

/** Whether token authentication is configured (built-in or external). */
export function tokenAuthOn(config: Config): boolean {
  const { builtin, external } = tokenModes(config);
  return builtin || external;
}

/**
 * Builds the access-control step; a pass-through when authentication is off. Throws when the
 * htpasswd file, the token signing key or an external issuer's key files cannot be read, or
 * token authentication is misconfigured (the signing key is generated in the data root through
 * `driver` on first start).
 */
export async function accessControl(
  config: Config,
  log: Logger,
  options: AccessControlOptions,
  driver: StorageDriver,
): Promise<AccessControl> {
  const { auth } = config;
  const policies = new AccessPolicies(auth);
  const modes = tokenModes(config);
  if (modes.builtin || modes.external) checkTokenConfig(config, modes);
  const policiesSet = auth.policies.length > 0 || auth.admins.length > 0;
  if (auth.htpasswdPath === null && !modes.external) {
    if (policiesSet) log.warn("access policies are not enforced: auth.htpasswd.path is not set");
    return { step: (_ctx, next) => next(), routes: [], reload: null };
  }
  let external: ExternalIssuer | null = null;
  if (modes.external) {
    external = await startup(() => ExternalIssuer.open(auth.token));
    log.info("external token issuer trusted", {
      issuer: auth.token.issuer,
      realm: auth.token.realm,
      ...external.counts,
    });
    if (!modes.builtin) {
      if (auth.htpasswdPath !== null) {
        log.warn(
          "auth.htpasswd.path is not used: the external issuer's tokens decide " +
            "(set registry.auth.token.builtin to issue tokens to its users too)",
        );
      }
      if (policiesSet) {
        log.warn("access policies are not enforced: the external issuer's tokens decide");
      }
    }
  }
  const delays = new FailDelay(auth.failDelayMs);
  if (external !== null && !modes.builtin) {
    return {
      step: tokenAuth({ config, issuer: null, external, file: null, policies, delays }),
      routes: [],
      reload: () => external.reload(),
    };
  }
  for (const group of policies.undefinedGroups()) {
    log.warn("access policy names an undefined group", { group });
  }
  const path = auth.htpasswdPath!; // checked above and by checkTokenConfig
  const file = await startup(() => HtpasswdFile.open(path, log, options));
  if (file.size === 0) {
    log.warn("the htpasswd file has no usable entry", { path });
  }
  if (modes.builtin) {
    const key = await startup(() => loadSigningKey(driver, auth.token.signingKey));
    const issuer = new TokenIssuer(key, auth.token);
    log.info("token authentication on", { path: auth.token.path, kid: issuer.kid });
    return {
      step: tokenAuth({ config, issuer, external, file, policies, delays }),
      routes: [tokenRoute(auth.token.path)],
      reload: external === null ? null : () => external.reload(),
    };
  }
  const challenge = `Basic realm="${auth.realm}"`;
  const unauthorized = (message: string) =>
    new RegistryError("UNAUTHORIZED", message, { headers: { "WWW-Authenticate": challenge } });

  const step: Step = async (ctx, next) => {
    if (ctx.adminToken) return await next(); // the data root's admin token (gc/admin.ts)
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
  return { step, routes: [], reload: null };
}

/** Runs `open`, turning what it throws into a StartupError (one line, exit code 2). */
async function startup<T>(open: () => Promise<T>): Promise<T> {
  try {
    return await open();
  } catch (error) {
    throw new StartupError(error instanceof Error ? error.message : String(error));
  }
}

/**
 * The built-in issuer needs the htpasswd users, and a realm alone must name its endpoint; an
 * external issuer needs the realm of its token server.
 */
function checkTokenConfig(config: Config, modes: TokenModes): void {
  const { htpasswdPath, token } = config.auth;
  if (modes.builtin && htpasswdPath === null) {
    throw new StartupError(
      "Token authentication needs auth.htpasswd.path: the token endpoint authenticates its users",
    );
  }
  if (modes.external && token.realm === null) {
    throw new StartupError(
      "auth.token.realm is needed with auth.token.rootcertbundle or auth.token.jwks: the URL " +
        "of the token server clients are sent to",
    );
  }
  if (
    !modes.external && token.realm !== null && new URL(token.realm).pathname !== token.path
  ) {
    throw new StartupError(
      `auth.token.realm ${token.realm} is not this registry's token endpoint ` +
        `(registry.auth.token.path ${token.path}): to trust an external token server, set ` +
        "auth.token.rootcertbundle or auth.token.jwks to its keys",
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
