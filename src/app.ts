/**
 * `createApp(config)`: the registry as a plain request handler. The single place that turns
 * errors into responses.
 */

import type { Config } from "./config.ts";
import { errorBody, RegistryError } from "./errors.ts";
import { storageFailure } from "./http/failures.ts";
import { BodyReader, type RequestBody } from "./http/body.ts";
import { BodyGuard, checkHeaderSize } from "./http/limits.ts";
import type { IncomingRequest } from "./http/request.ts";
import { content, type HeaderValues, type Reply, toResponse } from "./http/responses.ts";
import { matchRoute, rawPath, type Route } from "./router.ts";
import { blobRoutes } from "./routes/blobs.ts";
import { listingRoutes } from "./routes/listings.ts";
import { manifestRoutes } from "./routes/manifests.ts";
import { createServices, type ServiceOptions, type Services } from "./services/registry.ts";

/**
 * The registry: a request handler with a way to stop its background work. Called with a
 * `Request` it is a `Deno.serve` handler; `handle` takes a request whose body comes apart
 * (our HTTP/1.1 server's).
 */
export interface App {
  (request: Request): Promise<Response>;
  /** Answers a request whose body (null: none) is read from `body`. */
  handle(request: IncomingRequest, body: RequestBody | null): Promise<Reply>;
  /** The services behind the handler. */
  readonly services: Services;
  /** Stops background timers and releases the data root. */
  close(): void;
  /**
   * Starts a graceful stop: new requests get 503 at once; requests in flight get `graceMs`
   * to finish, then the bodies still being read are cut (503; uploads stay at their last
   * acknowledged offset). Resolves when no handler runs any more (or 1 s after the cut).
   */
  drain(graceMs: number): Promise<void>;
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

  const bodies = new BodyGuard(config.bodyIdleTimeoutMs);
  let inFlight = 0;
  let draining = false;
  const settled: (() => void)[] = [];

  const handle = async (
    request: IncomingRequest,
    source: RequestBody | null,
  ): Promise<Reply> => {
    let response: Reply;
    const body = bodies.open(source, request.method);
    inFlight++;
    try {
      if (draining) throw shuttingDown();
      checkHeaderSize(request, config.maxHeaderBytes);
      const path = rawPath(request.url);
      const { handler, params } = matchRoute(routes, request.method, path);
      const query = request.url.includes("?")
        ? new URL(request.url).searchParams
        : new URLSearchParams();
      response = await handler({ request, body, query, params });
    } catch (error) {
      response = errorResponse(error, request, log);
    } finally {
      bodies.release(body);
      if (--inFlight === 0) settled.splice(0).forEach((wake) => wake());
    }
    if (config.logRequests) log(`${request.method} ${request.url} ${response.status}`);
    return response;
  };
  const serveHandler = async (request: Request) =>
    toResponse(
      await handle(request, request.body === null ? null : new BodyReader(request.body)),
    );
  return Object.assign(serveHandler, {
    handle,
    services,
    close: () => {
      clearInterval(timer);
      services.close();
    },
    async drain(graceMs: number) {
      draining = true;
      const idle = async (ms: number) => {
        if (inFlight === 0) return;
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          new Promise<void>((wake) => settled.push(wake)),
          new Promise<void>((wake) => (timer = setTimeout(wake, ms))),
        ]);
        clearTimeout(timer);
      };
      await idle(graceMs);
      if (inFlight === 0) return;
      bodies.abortAll(shuttingDown());
      await idle(1000);
    },
  });
}

function shuttingDown(): RegistryError {
  return new RegistryError("UNKNOWN", "The registry is shutting down; retry the request", {
    status: 503,
    headers: { "Retry-After": "1", Connection: "close" },
  });
}

function errorResponse(
  failure: unknown,
  request: IncomingRequest,
  log: (line: string) => void,
): Reply {
  let error = failure;
  const storage = storageFailure(error);
  if (storage) {
    log(`storage failure on ${request.method} ${request.url}: ${failure}`);
    error = storage;
  }
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
  return content(status, request.method === "HEAD" ? null : bytes, {
    "Content-Type": "application/json",
    "Content-Length": request.method === "HEAD" ? "0" : String(bytes.length),
    ...extra,
  });
}
