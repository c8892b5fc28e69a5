/**
 * Token authentication: the token endpoint of the built-in issuer (on with
 * `registry.auth.token.builtin` or an `auth.token.realm` naming our own endpoint) and the
 * `Bearer` check of registry routes, which accepts tokens of the built-in issuer and of an
 * external one (`auth.token.rootcertbundle`, `auth.token.jwks`), whichever are configured.
 *
 * The endpoint (`GET` or `POST` at `registry.auth.token.path`, answered before any credential
 * is required) authenticates htpasswd users: `GET` with optional `Basic` credentials and
 * `service`, `scope` (repeatable), `offline_token`; `POST` with a form body
 * (`grant_type=password` with `username` and `password`, or `grant_type=refresh_token` with
 * `refresh_token`), as containerd and Docker send. It grants what was asked as far as the
 * policies allow. Wrong credentials: 401 with a `Basic` challenge, after the failure delay.
 *
 * Registry routes need a `Bearer` token of a trusted issuer (Basic is refused there): none, or
 * a bad or expired one, gets 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` (and
 * `error="invalid_token"`); a valid token without the route's action gets 401 with
 * `error="insufficient_scope"`, as Distribution answers. A token's `access` claim decides; only
 * the catalog falls back to the policies, for a user of a built-in issuer's token.
 */

import type { Config } from "../config/mod.ts";
import { RegistryError } from "../errors.ts";
import { readAll } from "../http/body.ts";
import { requestHost } from "../http/request.ts";
import { jsonText, type Reply } from "../http/responses.ts";
import { bearerOf, credentialsOf } from "../auth/credentials.ts";
import { type FailDelay, sleep } from "../auth/fail_delay.ts";
import type { ExternalIssuer } from "../auth/external_issuer.ts";
import type { HtpasswdFile } from "../auth/htpasswd.ts";
import type { AccessPolicies } from "../auth/policy.ts";
import { allowsAction, allowsCatalog, grant, parseScopes } from "../auth/scopes.ts";
import type { TokenGrant, TokenIssuer } from "../auth/tokens.ts";
import type { Action, RequestContext, Step } from "./context.ts";

/** The most bytes of a `POST` token request's form body. */
const MAX_FORM_BYTES = 16 * 1024;
const HOST = /^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/;
const SCOPE_NAME = /^[a-z0-9][a-z0-9._/-]{0,254}$/;

/** A token's grant, and whether the built-in issuer made it. */
type Granted = TokenGrant & { readonly builtin: boolean };

/** What the token step needs. */
export interface TokenAuthDeps {
  readonly config: Config;
  /** The built-in issuer; null when only an external one is trusted. */
  readonly issuer: TokenIssuer | null;
  /** The external issuer; null when there is none. */
  readonly external: ExternalIssuer | null;
  /** The htpasswd users (null without the built-in issuer). */
  readonly file: HtpasswdFile | null;
  readonly policies: AccessPolicies;
  readonly delays: FailDelay;
}

/** The token step: answers the token endpoint, and checks `Bearer` tokens everywhere else. */
export function tokenAuth(deps: TokenAuthDeps): Step {
  const { issuer, external, file, policies } = deps;
  /** A token's grant, and whether the built-in issuer made it; null for an invalid token. */
  const verify = async (token: string): Promise<Granted | null> => {
    const own = issuer === null ? null : await issuer.verifyAccess(token);
    if (own !== null) return { ...own, builtin: true };
    const foreign = external === null ? null : await external.verifyAccess(token);
    return foreign === null ? null : { ...foreign, builtin: false };
  };
  /**
   * `verify`'s answer without waiting, when an issuer remembers the token (clients send one
   * token for many requests); null otherwise. As in `verify`, the built-in issuer answers
   * first: the external one is asked from memory only when there is no built-in one.
   */
  const remembered = (token: string): Granted | null => {
    const own = issuer === null ? null : issuer.knownAccess(token);
    if (own !== null) return { ...own, builtin: true };
    const foreign = issuer === null && external !== null ? external.knownAccess(token) : null;
    return foreign === null ? null : { ...foreign, builtin: false };
  };
  return async (ctx, next) => {
    if (ctx.route.name === "token") {
      if (issuer === null || file === null) throw new Error("No built-in token issuer");
      return await tokenEndpoint(ctx, deps, issuer, file);
    }
    if (ctx.adminToken) return await next(); // the data root's admin token (gc/admin.ts)
    const header = ctx.request.headers.get("authorization");
    const token = bearerOf(header);
    const scope = scopeOf(ctx);
    if (token === null) {
      const message = header === null || header.trim() === ""
        ? "Authentication required: get a token at the realm"
        : "Only Bearer tokens are accepted: get a token at the realm";
      throw bearerError(deps, ctx, scope, null, message);
    }
    const granted = remembered(token) ?? await verify(token);
    if (granted === null) {
      throw bearerError(deps, ctx, scope, "invalid_token", "Invalid or expired token");
    }
    const { user, access, builtin } = granted;
    ctx.user = user;
    ctx.canPull = (repository) => allowsAction(access, repository, "pull");
    const { repository, action } = ctx.route;
    if (ctx.route.name === "catalog") {
      if (allowsCatalog(access)) ctx.canPull = () => true;
      else if (builtin && user !== null) ctx.canPull = (r) => policies.allows(user, r, "pull");
      else throw bearerError(deps, ctx, scope, "insufficient_scope", "Insufficient scope");
    } else if (repository !== null && action !== null) {
      if (!allowsAction(access, repository, action)) {
        throw bearerError(
          deps,
          ctx,
          scope,
          "insufficient_scope",
          `The token does not allow to ${action} "${repository}"`,
        );
      }
    }
    return await next();
  };
}

/** The scope a route needs, as the challenge names it; null for `/v2/` and unknown paths. */
function scopeOf(ctx: RequestContext): string | null {
  const { name, repository, action } = ctx.route;
  if (name === "catalog") return "registry:catalog:*";
  if (repository === null || action === null || !SCOPE_NAME.test(repository)) return null;
  const actions: Record<Action, string> = { pull: "pull", push: "pull,push", delete: "delete" };
  return `repository:${repository}:${actions[action]}`;
}

/** The token endpoint's URL: `auth.token.realm`, or the request's origin and the path. */
export function realmOf(config: Config, ctx: RequestContext): string {
  const token = config.auth.token;
  if (token.realm !== null) return token.realm;
  let origin = config.publicUrl;
  if (origin === null) {
    const host = requestHost(ctx.request);
    origin = `${ctx.scheme}://${HOST.test(host) ? host : "localhost"}`;
  }
  return `${origin.replace(/\/+$/, "")}${token.path}`;
}

function bearerError(
  deps: TokenAuthDeps,
  ctx: RequestContext,
  scope: string | null,
  error: "invalid_token" | "insufficient_scope" | null,
  message: string,
): RegistryError {
  const parts = [
    `realm="${realmOf(deps.config, ctx)}"`,
    `service="${deps.config.auth.token.service}"`,
  ];
  if (scope !== null) parts.push(`scope="${scope}"`);
  if (error !== null) parts.push(`error="${error}"`);
  return new RegistryError("UNAUTHORIZED", message, {
    headers: { "WWW-Authenticate": `Bearer ${parts.join(",")}` },
  });
}

/** Answers `GET` or `POST` at the built-in issuer's token endpoint. */
async function tokenEndpoint(
  ctx: RequestContext,
  deps: TokenAuthDeps,
  issuer: TokenIssuer,
  file: HtpasswdFile,
): Promise<Reply> {
  const { config, policies, delays } = deps;
  const basicChallenge = { "WWW-Authenticate": `Basic realm="${config.auth.realm}"` };
  const fail = async (message: string): Promise<never> => {
    await sleep(delays.fail(ctx.client));
    throw new RegistryError("UNAUTHORIZED", message, { headers: basicChallenge });
  };
  const post = ctx.request.method === "POST";
  const params = post ? await formOf(ctx) : new URL(ctx.request.url).searchParams;
  const service = params.get("service");
  if (service !== null && service !== config.auth.token.service) {
    throw new RegistryError("UNSUPPORTED", `Unknown service "${service.slice(0, 100)}"`, {
      status: 400,
    });
  }
  const scopes = parseScopes(params.getAll("scope"));
  let user: string | null = null;
  let refresh: string | boolean = false;
  if (post) {
    const grantType = params.get("grant_type");
    if (grantType === "password") {
      const name = params.get("username") ?? "";
      const password = params.get("password") ?? "";
      if (name === "" || !await file.verify(name, password)) {
        return await fail("Authentication failed: unknown user or wrong password");
      }
      user = name;
      refresh = true;
    } else if (grantType === "refresh_token") {
      const token = params.get("refresh_token") ?? "";
      const name = await issuer.verifyRefresh(token);
      if (name === null || !await file.has(name)) {
        return await fail("Invalid or expired refresh token");
      }
      user = name;
      refresh = token;
    } else {
      throw new RegistryError(
        "UNSUPPORTED",
        "Unsupported grant_type: expected password or refresh_token",
        { status: 400 },
      );
    }
  } else {
    const credentials = credentialsOf(ctx.request.headers.get("authorization"));
    if (credentials.kind === "invalid") {
      return await fail("Authentication failed: unknown user or wrong password");
    }
    if (credentials.kind === "basic") {
      if (!await file.verify(credentials.user, credentials.password)) {
        return await fail("Authentication failed: unknown user or wrong password");
      }
      user = credentials.user;
      refresh = params.get("offline_token") === "true";
    } else if (params.getAll("scope").length === 0) {
      return await fail("Authentication required");
    }
  }
  delays.succeed(ctx.client);
  ctx.user = user;
  const body = await issuer.issue(user, grant(scopes, user, policies), refresh);
  return jsonText(200, JSON.stringify(body), { "Cache-Control": "no-store" });
}

/** The parameters of a `POST` token request's form body. */
async function formOf(ctx: RequestContext): Promise<URLSearchParams> {
  const type = ctx.request.headers.get("content-type") ?? "";
  if (!/^application\/x-www-form-urlencoded\s*(?:;|$)/i.test(type) || ctx.body === null) {
    throw new RegistryError(
      "UNSUPPORTED",
      "Expected a form body (application/x-www-form-urlencoded)",
      { status: 400 },
    );
  }
  const bytes = await readAll(
    ctx.body,
    MAX_FORM_BYTES,
    () => new RegistryError("UNSUPPORTED", "The form body is too large", { status: 413 }),
  );
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new RegistryError("UNSUPPORTED", "The form body is not UTF-8", { status: 400 });
  }
  return new URLSearchParams(text);
}
