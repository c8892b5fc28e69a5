/**
 * Test helpers for token authentication: registries with the built-in issuer on (the TEST_AUTH
 * policy), token requests, fetchers sending a `Bearer` token, and the registry's own signing key
 * (read from the memory driver) for forging tokens in attack tests.
 */

import type { AuthConfig, Config, TokenAuthConfig } from "../../src/config/mod.ts";
import { DEFAULTS } from "../../src/config/mod.ts";
import { keyOf, type SigningKey } from "../../src/auth/jwt.ts";
import { TOKEN_SIGNING_KEY } from "../../src/storage/keys.ts";
import {
  type MemoryRegistry,
  memoryRegistry,
  type TempRegistry,
  tempRegistry,
} from "../helpers/registry.ts";
import { basic, TEST_AUTH, USERS } from "./helpers.ts";

/** The service and issuer of the test registries. */
export const SERVICE = "test-registry";
export const ISSUER = "test-issuer";

function authOf(
  path: string,
  token: Partial<TokenAuthConfig>,
  auth: Partial<AuthConfig>,
): AuthConfig {
  return {
    ...DEFAULTS.auth,
    ...TEST_AUTH,
    htpasswdPath: path,
    ...auth,
    token: {
      ...DEFAULTS.auth.token,
      builtin: true,
      service: SERVICE,
      issuer: ISSUER,
      ...token,
    },
  };
}

/** A memory registry issuing tokens itself over the htpasswd file at `path`. */
export function tokenRegistry(
  path: string,
  token: Partial<TokenAuthConfig> = {},
  auth: Partial<AuthConfig> = {},
  config: Partial<Config> = {},
): Promise<MemoryRegistry> {
  return memoryRegistry({
    config: { ...config, auth: authOf(path, token, auth) },
    auth: { checkIntervalMs: 0 },
  });
}

/** A registry on a socket issuing tokens itself (for raw requests). */
export function tokenTempRegistry(path: string): Promise<TempRegistry> {
  return tempRegistry({ config: { auth: authOf(path, {}, {}) }, auth: { checkIntervalMs: 0 } });
}

/** The body of a token answer. */
export interface TokenBody {
  token: string;
  access_token: string;
  expires_in: number;
  issued_at: string;
  refresh_token?: string;
}

/** `GET /token` with `scopes`, as `user` (null: anonymous); the raw response. */
export function tokenRequest(
  reg: { fetch: MemoryRegistry["fetch"] },
  user: keyof typeof USERS | null,
  scopes: string[],
  extra: Record<string, string> = {},
  password?: string,
): Promise<Response> {
  const query = new URLSearchParams({ service: SERVICE, ...extra });
  for (const scope of scopes) query.append("scope", scope);
  const headers: Record<string, string> = {};
  if (user !== null) headers.authorization = basic(user, password ?? USERS[user]);
  return reg.fetch(`/token?${query}`, { headers });
}

/** A token for `user` and `scopes` (the request must succeed). */
export async function tokenFor(
  reg: { fetch: MemoryRegistry["fetch"] },
  user: keyof typeof USERS | null,
  scopes: string[],
): Promise<string> {
  const response = await tokenRequest(reg, user, scopes);
  if (response.status !== 200) throw new Error(`token request: ${response.status}`);
  return ((await response.json()) as TokenBody).token;
}

/** A fetcher sending `Authorization: Bearer <token>`. */
export function withToken(
  reg: { fetch: MemoryRegistry["fetch"] },
  token: string,
): { fetch: MemoryRegistry["fetch"] } {
  return {
    fetch: (path, init = {}) => {
      const headers = new Headers(init.headers);
      headers.set("authorization", `Bearer ${token}`);
      return reg.fetch(path, { ...init, headers });
    },
  };
}

/** The registry's own signing key, read from its memory driver. */
export async function registryKey(reg: MemoryRegistry): Promise<SigningKey> {
  const bytes = await reg.driver.get(TOKEN_SIGNING_KEY);
  if (bytes === null) throw new Error("no signing key in the data root");
  return await keyOf(JSON.parse(new TextDecoder().decode(bytes)));
}

/** The parameters of a `WWW-Authenticate: Bearer` challenge. */
export function challengeOf(response: Response): Record<string, string> | null {
  const header = response.headers.get("www-authenticate");
  if (header === null || !header.startsWith("Bearer ")) return null;
  const params: Record<string, string> = {};
  for (const m of header.slice(7).matchAll(/([a-z_]+)="([^"]*)"/g)) params[m[1]] = m[2];
  return params;
}
