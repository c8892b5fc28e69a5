/**
 * The route table as data. Repository names contain `/`, so routes are matched from the end
 * of the path: the last segment is the route's parameter (or a fixed word), the segments
 * before it must end with the route's marker (`/blobs`, `/manifests`, ...), and whatever
 * precedes the marker after `/v2/` is the name. So `/v2/a/b/blobs/<digest>` has name `a/b`.
 * Routes outside `/v2/` match an exact path or a fixed prefix. A known path with an unknown
 * method answers 405 with `Allow`; an unknown path 404.
 */

import { RegistryError } from "./errors.ts";
import type { IncomingRequest } from "./http/request.ts";
import { headersOnly, type Reply } from "./http/responses.ts";
import type { ByteSource } from "./storage/byte_source.ts";

/** What a handler receives: the request, its body, its query, and the raw path captures. */
export interface RouteContext {
  readonly request: IncomingRequest;
  /** The request body, read into caller buffers; null when there is none. */
  readonly body: ByteSource | null;
  readonly query: URLSearchParams;
  readonly params: Readonly<Record<string, string>>;
  /** Whether the user may pull a repository (access control's; absent: anyone may). */
  readonly canPull?: (repository: string) => boolean;
}

/** A request handler for one route and method. */
export type Handler = (ctx: RouteContext) => Promise<Reply>;

/** One entry of the route table. */
export interface Route {
  /** The route's name in logs and metrics (Distribution's names: `blob`, `manifest`, …). */
  readonly name: string;
  /** A readable form of the path, e.g. `/v2/<name>/blobs/<digest>`. */
  readonly path: string;
  /** Routes without a name: the exact paths they answer. */
  readonly exact?: readonly string[];
  /**
   * Routes outside `/v2/` (the admin routes): the fixed start of the path; the rest, not
   * empty, is the route's `param`.
   */
  readonly prefix?: string;
  /** Routes with a name: what the path ends with before its last segment, e.g. `/blobs`. */
  readonly marker?: string;
  /** The name of the last segment's parameter, e.g. `digest`... */
  readonly param?: string;
  /** ...or the fixed last segment, e.g. `list` (`""` for a trailing slash). */
  readonly last?: string;
  readonly methods: Readonly<Partial<Record<string, Handler>>>;
}

/** A matched route: the route, the handler and its params. */
export interface Match {
  readonly route: Route;
  readonly handler: Handler;
  readonly params: Record<string, string>;
}

const PREFIX = "/v2/";

/** The raw path of a request URL, without query or fragment, not decoded or normalized. */
export function rawPath(url: string): string {
  const afterScheme = url.indexOf("://");
  const start = url.indexOf("/", afterScheme < 0 ? 0 : afterScheme + 3);
  if (start < 0) return "/";
  let end = url.indexOf("?", start);
  const hash = url.indexOf("#", start);
  if (end < 0 || (hash >= 0 && hash < end)) end = hash;
  return end < 0 ? url.slice(start) : url.slice(start, end);
}

/** A path split once: everything before its last segment, and that segment. */
interface SplitPath {
  readonly path: string;
  readonly head: string;
  readonly tail: string;
}

function matchOne(route: Route, { path, head, tail }: SplitPath): Record<string, string> | null {
  if (route.exact) return route.exact.includes(path) ? {} : null;
  if (route.prefix !== undefined) {
    if (!path.startsWith(route.prefix) || path.length === route.prefix.length) return null;
    return { [route.param ?? "rest"]: path.slice(route.prefix.length) };
  }
  const marker = route.marker;
  if (!marker || !head.endsWith(marker) || head.length <= PREFIX.length + marker.length) {
    return null;
  }
  if (route.param !== undefined ? tail === "" : tail !== route.last) return null;
  const params: Record<string, string> = {
    name: head.slice(PREFIX.length, head.length - marker.length),
  };
  if (route.param !== undefined) params[route.param] = tail;
  return params;
}

function withoutBody(get: Handler): Handler {
  return async (ctx) => {
    const reply = await get(ctx);
    if (reply.body instanceof ReadableStream) await reply.body.cancel();
    return headersOnly(reply);
  };
}

/** The methods a route answers: its own, and HEAD from GET where it has no HEAD of its own. */
export function methodsOf(route: Route): string[] {
  const methods = Object.keys(route.methods);
  if (route.methods.GET && !route.methods.HEAD) methods.push("HEAD");
  return methods;
}

/** Finds the handler for a method and raw path; throws a 404 or a 405 RegistryError. */
export function matchRoute(routes: readonly Route[], method: string, path: string): Match {
  const slash = path.startsWith(PREFIX) ? path.lastIndexOf("/") : -1;
  const split = slash < 0
    ? { path, head: "", tail: "" }
    : { path, head: path.slice(0, slash), tail: path.slice(slash + 1) };
  for (const route of routes) {
    const params = matchOne(route, split);
    if (params === null) continue;
    // A route without its own HEAD answers HEAD from GET, without the body.
    const fromGet = method === "HEAD" && !route.methods.HEAD ? route.methods.GET : undefined;
    const handler = fromGet ? withoutBody(fromGet) : route.methods[method];
    if (!handler) {
      const allow = methodsOf(route).join(", ");
      throw new RegistryError(
        "UNSUPPORTED",
        `Method ${method} is not allowed on ${route.path}`,
        { status: 405, headers: { Allow: allow } },
      );
    }
    return { route, handler, params };
  }
  throw new RegistryError("UNSUPPORTED", `No route for ${JSON.stringify(path.slice(0, 200))}`, {
    status: 404,
  });
}
