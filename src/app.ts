/**
 * `createApp(config)`: the registry as a plain request handler. The single place that turns
 * errors into responses.
 */

import type { Config } from "./config.ts";
import { errorBody, RegistryError } from "./errors.ts";
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

const API_VERSION = "registry/2.0";

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
      const query = new URL(request.url).searchParams;
      response = await handler({ request, query, params });
    } catch (error) {
      response = errorResponse(error, request, log);
    }
    response.headers.set("Docker-Distribution-API-Version", API_VERSION);
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
  const headers = new Headers({ "Content-Type": "application/json" });
  if (error instanceof RegistryError) {
    status = error.status;
    body = errorBody(error.code, error.message, error.detail);
    for (const [k, v] of Object.entries(error.headers)) headers.set(k, v);
  } else {
    log(
      `unexpected error on ${request.method} ${request.url}: ${
        error instanceof Error ? error.stack : String(error)
      }`,
    );
    body = errorBody("UNKNOWN", "Internal error; see the registry log");
  }
  // A HEAD response carries the headers of the error but no body.
  if (request.method === "HEAD") {
    headers.set("Content-Length", "0");
    return new Response(null, { status, headers });
  }
  const bytes = new TextEncoder().encode(body);
  headers.set("Content-Length", String(bytes.length));
  return new Response(bytes, { status, headers });
}
