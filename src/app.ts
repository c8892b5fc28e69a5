/**
 * `createApp(config)`: the registry as a plain request handler. The single place that turns
 * errors into responses.
 */

import type { Config } from "./config.ts";
import { errorBody, RegistryError } from "./errors.ts";
import { API_VERSION_HEADER, headerList, type HeaderValues } from "./http/responses.ts";
import { matchRoute, rawPath, type Route } from "./router.ts";
import { blobRoutes } from "./routes/blobs.ts";
import { listingRoutes } from "./routes/listings.ts";
import { manifestRoutes } from "./routes/manifests.ts";
import { createServices, type ServiceOptions, type Services } from "./services/registry.ts";

/** The registry: a request handler with a way to stop its background work. */
export interface App {
  (request: Request): Promise<Response>;
  /** The services behind the handler. */
  readonly services: Services;
  /** Stops background timers. */
  close(): void;
}

/** Options of `createApp` beyond the configuration. */
export interface AppOptions extends ServiceOptions {
  /** Where unexpected errors and request lines go (default: console.error). */
  readonly log?: (line: string) => void;
}

/**
 * Builds the registry over `config.dataDir`: creates the folders, recovers or purges upload
 * sessions left by an earlier run, and schedules the stale-session purge.
 */
export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const log = options.log ?? ((line: string) => console.error(line));
  const services = await createServices(config, options);
  const recovered = await services.uploads.recover();
  if (recovered.resumed + recovered.purged > 0) {
    log(`upload sessions: ${recovered.resumed} resumable, ${recovered.purged} purged`);
  }
  const routes: Route[] = [
    ...listingRoutes(services),
    ...blobRoutes(services),
    ...manifestRoutes(services),
  ];
  const timer = setInterval(() => {
    services.uploads.purgeStale().catch((e) => log(`purge failed: ${e}`));
  }, config.purgeIntervalMs);
  Deno.unrefTimer(timer);

  const handle = async (request: Request): Promise<Response> => {
    let response: Response;
    try {
      const path = rawPath(request.url);
      const { handler, params } = matchRoute(routes, request.method, path);
      const query = request.url.includes("?")
        ? new URL(request.url).searchParams
        : new URLSearchParams();
      response = await handler({ request, query, params });
    } catch (error) {
      response = errorResponse(error, request, log);
    }
    if (!response.headers.has(API_VERSION_HEADER)) {
      response.headers.set(API_VERSION_HEADER, "registry/2.0");
    }
    if (config.logRequests) log(`${request.method} ${request.url} ${response.status}`);
    return response;
  };
  return Object.assign(handle, {
    services,
    close: () => clearInterval(timer),
  });
}

function errorResponse(error: unknown, request: Request, log: (line: string) => void): Response {
  let status = 500;
  let body: string;
  let extra: HeaderValues = {};
  if (error instanceof RegistryError) {
    status = error.status;
    body = errorBody(error.code, error.message, error.detail);
    extra = error.headers;
  } else {
    log(
      `unexpected error on ${request.method} ${request.url}: ${
        error instanceof Error ? error.stack : String(error)
      }`,
    );
    body = errorBody("UNKNOWN", "Internal error; see the registry log");
  }
  const bytes = new TextEncoder().encode(body);
  // A HEAD response carries the headers of the error but no body.
  const headers = headerList({
    "Content-Type": "application/json",
    "Content-Length": request.method === "HEAD" ? "0" : String(bytes.length),
    ...extra,
  });
  return new Response(request.method === "HEAD" ? null : bytes, { status, headers });
}
