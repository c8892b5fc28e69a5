/**
 * Authorization: who may do what to which repository, from `registry.auth.policies`,
 * `registry.auth.groups` and `registry.auth.admins`. Admins may do everything; otherwise the
 * first policy that names the repository (a glob), the action, and the user (directly, by a
 * group, or `anonymous: true` for everyone) allows it; nothing else is allowed. Also the
 * immutable-tag patterns (`registry.immutabletags`).
 */

import type { AccessPolicy, AuthConfig } from "../config/mod.ts";
import type { Action } from "../pipeline/context.ts";

/**
 * A repository glob as a regular expression: `**` matches across path components (any
 * characters), `*` within one component (no `/`), everything else itself.
 */
export function repositoryGlob(glob: string): RegExp {
  const source = glob.split("**").map((part) => part.split("*").map(escape).join("[^/]*")).join(
    ".*",
  );
  return new RegExp(`^${source}$`);
}

/** A tag pattern as a regular expression: `*` matches any characters. */
export function tagGlob(pattern: string): RegExp {
  return new RegExp(`^${pattern.split("*").map(escape).join(".*")}$`);
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

interface CompiledPolicy {
  readonly repositories: readonly RegExp[];
  readonly users: ReadonlySet<string>;
  readonly groups: readonly string[];
  readonly anonymous: boolean;
  readonly actions: ReadonlySet<Action>;
}

/** The policies, compiled once. */
export class AccessPolicies {
  readonly #policies: readonly CompiledPolicy[];
  readonly #groups: ReadonlyMap<string, ReadonlySet<string>>;
  readonly #admins: ReadonlySet<string>;

  /** Compiles the policies of `auth`. */
  constructor(auth: Pick<AuthConfig, "policies" | "groups" | "admins">) {
    this.#policies = auth.policies.map((p: AccessPolicy) => ({
      repositories: p.repositories.map(repositoryGlob),
      users: new Set(p.users),
      groups: p.groups,
      anonymous: p.anonymous,
      actions: new Set(p.actions),
    }));
    this.#groups = new Map(
      Object.entries(auth.groups).map(([name, users]) => [name, new Set(users)]),
    );
    this.#admins = new Set(auth.admins);
  }

  /** Group names that policies use but `registry.auth.groups` does not define. */
  undefinedGroups(): string[] {
    const used = new Set(this.#policies.flatMap((p) => p.groups));
    return [...used].filter((g) => !this.#groups.has(g)).sort();
  }

  /** Whether `user` is an admin (allowed everything, and the whole catalog). */
  isAdmin(user: string): boolean {
    return this.#admins.has(user);
  }

  /** Whether `user` (null: anonymous) may do `action` to `repository`. */
  allows(user: string | null, repository: string, action: Action): boolean {
    if (user !== null && this.#admins.has(user)) return true;
    return this.#policies.some((p) =>
      p.actions.has(action) &&
      p.repositories.some((glob) => glob.test(repository)) &&
      (p.anonymous ||
        (user !== null &&
          (p.users.has(user) || p.groups.some((g) => this.#groups.get(g)?.has(user)))))
    );
  }
}

/** Whether a tag matches one of the immutable-tag patterns. */
export function immutableMatcher(patterns: readonly string[]): (tag: string) => boolean {
  const globs = patterns.map(tagGlob);
  return (tag) => globs.some((glob) => glob.test(tag));
}
