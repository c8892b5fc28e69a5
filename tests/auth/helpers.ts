/**
 * Test helpers for access control: an htpasswd file written with our bcrypt module (cost 4),
 * a memory registry with authentication on, and fetchers that send Basic credentials.
 */

import { join } from "node:path";
import { hashPassword } from "../../src/auth/bcrypt.ts";
import { type AuthConfig, type Config, DEFAULTS } from "../../src/config/mod.ts";
import { type MemoryRegistry, memoryRegistry } from "../helpers/registry.ts";

/** The users of the test registries, and their passwords. */
export const USERS = { alice: "alice-secret", bob: "bob-secret", carol: "carol-secret" } as const;

/** htpasswd lines for `users` at cost 4. */
export async function htpasswdLines(users: Record<string, string>): Promise<string> {
  const lines = [];
  for (const [user, password] of Object.entries(users)) {
    lines.push(`${user}:${await hashPassword(password, 4)}`);
  }
  return lines.join("\n") + "\n";
}

/** A temporary htpasswd file of `users`; disposing removes it. */
export async function htpasswdFile(
  users: Record<string, string> = USERS,
): Promise<{ path: string; dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "registry-auth-" });
  const path = join(dir, "htpasswd");
  await Deno.writeTextFile(path, await htpasswdLines(users));
  return {
    path,
    dir,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/**
 * The test policy: alice admin; bob pushes to `team/*` and pulls `team/**`; carol (group
 * `readers`) pulls `team/**`; everyone pulls `public/**`.
 */
export const TEST_AUTH: Omit<AuthConfig, "htpasswdPath" | "token"> = {
  realm: "Test Realm",
  admins: ["alice"],
  groups: { readers: ["carol"] },
  policies: [
    { repositories: ["team/*"], users: ["bob"], groups: [], anonymous: false, actions: ["push"] },
    {
      repositories: ["team/**"],
      users: ["bob"],
      groups: ["readers"],
      anonymous: false,
      actions: ["pull"],
    },
    { repositories: ["public/**"], users: [], groups: [], anonymous: true, actions: ["pull"] },
  ],
  failDelayMs: 0,
};

/** A memory registry with authentication on over `path` (the TEST_AUTH policy by default). */
export function authRegistry(
  path: string,
  auth: Partial<AuthConfig> = {},
  config: Partial<Config> = {},
): Promise<MemoryRegistry> {
  return memoryRegistry({
    config: { ...config, auth: { ...DEFAULTS.auth, ...TEST_AUTH, htpasswdPath: path, ...auth } },
    auth: { checkIntervalMs: 0 },
  });
}

/** The value of an `Authorization: Basic` header. */
export function basic(user: string, password: string): string {
  return `Basic ${btoa(`${user}:${password}`)}`;
}

/** A fetcher sending `user`'s Basic credentials (none when `user` is null). */
export function as(
  reg: { fetch: MemoryRegistry["fetch"] },
  user: keyof typeof USERS | null,
  password?: string,
): { fetch: MemoryRegistry["fetch"] } {
  return {
    fetch: (path, init = {}) => {
      const headers = new Headers(init.headers);
      if (user !== null) headers.set("authorization", basic(user, password ?? USERS[user]));
      return reg.fetch(path, { ...init, headers });
    },
  };
}
