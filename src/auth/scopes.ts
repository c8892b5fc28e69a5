/**
 * Token scopes (`type:name:actions`, Docker's token protocol) and the `access` claim of a
 * token. A scope is split on its first and its last colon, so a name may contain `host:port`.
 * `repository` scopes name a repository as the spec's grammar has it (after a host, if any) and
 * take `pull`, `push`, `delete` and `*` (all three); `registry:catalog:*`
 * lists every repository in the catalog. Unknown types and malformed scopes are ignored. What
 * is granted is the intersection of what was asked and what the policies allow.
 */

import type { Action } from "../pipeline/context.ts";
import { isRepositoryName, MAX_NAME_LENGTH } from "../types/names.ts";
import type { AccessPolicies } from "./policy.ts";

/** One entry of a token's `access` claim. */
export interface AccessEntry {
  readonly type: string;
  readonly name: string;
  readonly actions: readonly string[];
}

const ACTIONS: readonly Action[] = ["pull", "push", "delete"];
/** A registry host in front of a name (`localhost:5000/team/app`), as some clients send it. */
const HOST = /^[a-zA-Z0-9.-]+(?::[0-9]{1,5})?$/;
/** The most scopes one token request may ask for (more are ignored). */
const MAX_SCOPES = 64;

/**
 * Whether a scope names a repository: a valid repository name, optionally after a host. Names
 * no repository can have (`bob/x/../../team/app`) are not granted anything, whatever a policy's
 * pattern would match: a service trusting the tokens may read names otherwise.
 */
function isScopeName(name: string): boolean {
  if (name.length > MAX_NAME_LENGTH) return false;
  if (isRepositoryName(name)) return true;
  const slash = name.indexOf("/");
  return slash > 0 && HOST.test(name.slice(0, slash)) && isRepositoryName(name.slice(slash + 1));
}

/** Parses the scopes of a token request (each value may hold several, space-separated). */
export function parseScopes(values: readonly string[]): AccessEntry[] {
  const wanted = new Map<string, Set<string>>();
  const scopes = values.flatMap((v) => v.split(" ")).filter((s) => s !== "").slice(0, MAX_SCOPES);
  for (const scope of scopes) {
    const first = scope.indexOf(":");
    const last = scope.lastIndexOf(":");
    if (first <= 0 || last === first) continue;
    const type = scope.slice(0, first);
    const name = scope.slice(first + 1, last);
    const actions = scope.slice(last + 1).split(",").filter((a) => a !== "");
    let known: string[];
    if (type === "repository" && isScopeName(name)) {
      known = actions.includes("*") ? [...ACTIONS] : ACTIONS.filter((a) => actions.includes(a));
    } else if (type === "registry" && name === "catalog" && actions.includes("*")) {
      known = ["*"];
    } else {
      continue;
    }
    const key = `${type}:${name}`;
    const set = wanted.get(key) ?? new Set<string>();
    for (const action of known) set.add(action);
    wanted.set(key, set);
  }
  return [...wanted].map(([key, actions]) => {
    const colon = key.indexOf(":");
    return { type: key.slice(0, colon), name: key.slice(colon + 1), actions: [...actions] };
  });
}

/**
 * What `user` (null: anonymous) is granted of `wanted`: repository actions the policies allow,
 * and `registry:catalog:*` for admins. Entries left with no action are dropped.
 */
export function grant(
  wanted: readonly AccessEntry[],
  user: string | null,
  policies: AccessPolicies,
): AccessEntry[] {
  const granted: AccessEntry[] = [];
  for (const entry of wanted) {
    const actions = entry.type === "repository"
      ? entry.actions.filter((a) => policies.allows(user, entry.name, a as Action))
      : entry.actions.filter(() => user !== null && policies.isAdmin(user));
    if (actions.length > 0) granted.push({ ...entry, actions });
  }
  return granted;
}

/** The `access` claim of a verified token, or null when it is malformed. */
export function accessOf(claim: unknown): AccessEntry[] | null {
  if (claim === undefined) return [];
  if (!Array.isArray(claim)) return null;
  const entries: AccessEntry[] = [];
  for (const item of claim) {
    if (typeof item !== "object" || item === null) return null;
    const { type, name, actions } = item as Record<string, unknown>;
    if (typeof type !== "string" || typeof name !== "string" || !Array.isArray(actions)) {
      return null;
    }
    if (!actions.every((a) => typeof a === "string")) return null;
    entries.push({ type, name, actions: actions as string[] });
  }
  return entries;
}

/** Whether the `access` entries allow `action` on `repository`. */
export function allowsAction(
  access: readonly AccessEntry[],
  repository: string,
  action: Action,
): boolean {
  return access.some((e) =>
    e.type === "repository" && e.name === repository &&
    (e.actions.includes(action) || e.actions.includes("*"))
  );
}

/** Whether the `access` entries hold `registry:catalog:*`. */
export function allowsCatalog(access: readonly AccessEntry[]): boolean {
  return access.some((e) =>
    e.type === "registry" && e.name === "catalog" && e.actions.includes("*")
  );
}
