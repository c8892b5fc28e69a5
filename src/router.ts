/**
 * The route table as data. Repository names contain `/`, so each pattern is anchored at the
 * end of the path and the name is whatever precedes the fixed suffix. A known path with an
 * unknown method answers 405 with `Allow`; an unknown path answers 404.
 */

import { RegistryError } from "./errors.ts";

/** What a handler receives: the request, its query, and the raw path captures. */
export interface RouteContext {
  readonly request: Request;
  readonly query: URLSearchParams;
  readonly params: Readonly<Record<string, string>>;
}

/** A request handler for one route and method. */
export type Handler = (ctx: RouteContext) => Promise<Response>;

/** One entry of the route table. */
export interface Route {
  /** A readable form of the path, e.g. `/v2/<name>/blobs/<digest>`. */
  readonly path: string;
  /** The pattern over the raw (undecoded) path; named groups become params. */
  readonly pattern: RegExp;
  readonly methods: Readonly<Partial<Record<string, Handler>>>;
}

/** A matched route: the handler and its params. */
export interface Match {
  readonly handler: Handler;
  readonly params: Record<string, string>;
}

/** The raw path of a request URL, without query or fragment, not decoded or normalized. */
export function rawPath(url: string): string {
  const afterScheme = url.indexOf("://");
  const start = url.indexOf("/", afterScheme < 0 ? 0 : afterScheme + 3);
  if (start < 0) return "/";
  const end = url.slice(start).search(/[?#]/);
  return end < 0 ? url.slice(start) : url.slice(start, start + end);
}

/** Finds the handler for a method and raw path; throws a 404 or a 405 RegistryError. */
export function matchRoute(routes: readonly Route[], method: string, path: string): Match {
  for (const route of routes) {
    const m = route.pattern.exec(path);
    if (!m) continue;
    const verb = method === "HEAD" && !route.methods.HEAD ? "" : method;
    const handler = route.methods[verb];
    if (!handler) {
      const allow = Object.keys(route.methods).join(", ");
      throw new RegistryError(
        "UNSUPPORTED",
        `Method ${method} is not allowed on ${route.path}`,
        { status: 405, headers: { Allow: allow } },
      );
    }
    return { handler, params: { ...m.groups } };
  }
  throw new RegistryError("UNSUPPORTED", `No route for ${JSON.stringify(path.slice(0, 200))}`, {
    status: 404,
  });
}
