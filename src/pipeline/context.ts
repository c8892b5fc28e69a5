/**
 * The request pipeline's shape: a context every step sees, steps as `(ctx, next)` functions
 * (hono's `compose` is the model), and their composition. The route is matched before the
 * steps run, so each step knows the route's name, the repository and the action.
 */

import type { RequestBody } from "../http/body.ts";
import type { IncomingRequest } from "../http/request.ts";
import type { Reply } from "../http/responses.ts";
import type { AdminRule } from "../maintenance/admin_access.ts";
import type { Match } from "../router.ts";

/** What a request does to a repository, as access control and events see it. */
export type Action = "pull" | "push" | "delete";

/** The matched route of a request, or why none matched. */
export interface RouteInfo {
  /** The route's name (`manifest`, `blob`, …), or `unknown` when no route matched. */
  readonly name: string;
  /** The repository named in the path, unvalidated; null for `/v2/` and the catalog. */
  readonly repository: string | null;
  /** The action, or null for routes that touch no repository. */
  readonly action: Action | null;
  /** The match, or null with `error` (404/405) when none. */
  readonly match: Match | null;
  readonly error: unknown;
}

/** Everything the steps know about one request. */
export interface RequestContext {
  /** The request id (also sent back as `X-Request-Id`). */
  readonly id: string;
  readonly request: IncomingRequest;
  /** The request body; the limits step wraps it. */
  body: RequestBody | null;
  /** `performance.now()` when the request reached the app. */
  readonly startedAt: number;
  /** The client's address: the peer, or what a trusted proxy says it is. */
  readonly client: string;
  /** `http` or `https`, as the client used it (a trusted proxy's `X-Forwarded-Proto`). */
  readonly scheme: string;
  readonly route: RouteInfo;
  /** The authenticated user, once access control knows it. */
  user: string | null;
  /** Whether the user may pull a repository (set by access control; absent: anyone may). */
  canPull?: (repository: string) => boolean;
  /** Who may use the admin endpoints (`src/maintenance/admin_access.ts`). */
  readonly admin: AdminRule;
  /**
   * Set on an admin-endpoint request carrying the data root's admin token (`gc/admin.ts`):
   * access control lets it through, and so does the admin rule.
   */
  adminToken?: boolean;
}

/** A pipeline step: does its part around `next`, which runs the rest. */
export type Step = (ctx: RequestContext, next: () => Promise<Reply>) => Promise<Reply>;

/** Composes steps around a final handler, in order: the first step runs outermost. */
export function compose(
  steps: readonly Step[],
  handler: (ctx: RequestContext) => Promise<Reply>,
): (ctx: RequestContext) => Promise<Reply> {
  return (ctx) => {
    const run = (i: number): Promise<Reply> =>
      i === steps.length ? handler(ctx) : steps[i](ctx, () => run(i + 1));
    return run(0);
  };
}

/**
 * The action of a method on a route (null where no repository is touched, and for the admin
 * routes, whose rule is the admin gate's).
 */
export function actionOf(routeName: string, method: string): Action | null {
  if (["base", "catalog", "unknown", "livez", "readyz", "token"].includes(routeName)) return null;
  if (routeName.startsWith("admin")) return null;
  if (method === "GET" || method === "HEAD") return "pull";
  if (method === "DELETE" && (routeName === "manifest" || routeName === "blob")) return "delete";
  return "push";
}
