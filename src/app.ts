/**
 * `createApp(config)`: the registry as a value. The route table and the request pipeline, in
 * one fixed order (request id → access log → catch → limits and drain → write policy →
 * handler), with the route matched first so that every step knows the route, the repository
 * and the action. The catch step is the one place an error becomes a reply.
 */

import type { Config } from "./config.ts";
import { BodyReader, type RequestBody } from "./http/body.ts";
import type { IncomingRequest } from "./http/request.ts";
import { type Reply, toResponse } from "./http/responses.ts";
import { createLogger, type Logger } from "./log.ts";
import { accessLog } from "./pipeline/access_log.ts";
import { clientOf, trustedMatcher } from "./pipeline/client.ts";
import { actionOf, compose, type RequestContext, type RouteInfo } from "./pipeline/context.ts";
import { catchErrors } from "./pipeline/errors.ts";
import { Limits } from "./pipeline/limits.ts";
import { responseHeaders } from "./pipeline/response_headers.ts";
import { writePolicy } from "./pipeline/write_policy.ts";
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
  (request: Request, info?: Deno.ServeHandlerInfo): Promise<Response>;
  /** Answers a request whose body (null: none) is read from `body`. */
  handle(request: IncomingRequest, body: RequestBody | null): Promise<Reply>;
  /** The services behind the handler. */
  readonly services: Services;
  /** The logger every part of the app writes to. */
  readonly log: Logger;
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
  /** Where finished log lines go, one call per line (default: standard error). */
  readonly log?: (line: string) => void;
}

/**
 * Builds the registry over `config.dataDir`: opens the storage, recovers or purges upload
 * sessions left by an earlier run, and schedules the stale-session purge. Throws
 * StartupError when the data root is held by another process or of a newer format.
 */
export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const log = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    ...(options.log ? { sink: options.log } : {}),
  });
  const services = await createServices(config, options);
  const recovered = await services.uploads.recover();
  log.info("upload sessions recovered", {
    resumable: recovered.resumed,
    purged: recovered.purged,
  });
  const routes: Route[] = [
    ...listingRoutes(services),
    ...blobRoutes(services),
    ...manifestRoutes(services),
  ];
  const timer = config.uploadPurging
    ? setInterval(async () => {
      try {
        const purged = await services.uploads.purgeStale();
        if (purged > 0) log.info("stale upload sessions purged", { purged });
      } catch (error) {
        log.error("upload purge failed", { error: String(error) });
      }
    }, config.purgeIntervalMs)
    : null;
  if (timer !== null) Deno.unrefTimer(timer);

  const trusted = trustedMatcher(config.trustedProxies);
  const limits = new Limits(config);
  const pipeline = compose([
    responseHeaders(config, trusted),
    accessLog(log, config.logRequests),
    catchErrors(log),
    limits.step,
    writePolicy(config),
  ], dispatch);

  const handle = (request: IncomingRequest, body: RequestBody | null): Promise<Reply> => {
    const { client, scheme } = clientOf(request, trusted);
    const ctx: RequestContext = {
      id: crypto.randomUUID(),
      request,
      body,
      startedAt: performance.now(),
      client,
      scheme,
      route: routeOf(routes, request),
      user: null,
    };
    return pipeline(ctx);
  };
  const serveHandler = async (request: Request, info?: Deno.ServeHandlerInfo) => {
    const remote = (info?.remoteAddr as Deno.NetAddr | undefined)?.hostname;
    const incoming: IncomingRequest = {
      method: request.method,
      url: request.url,
      headers: request.headers,
      ...(remote ? { remoteAddress: remote } : {}),
    };
    return toResponse(
      await handle(incoming, request.body === null ? null : new BodyReader(request.body)),
    );
  };
  return Object.assign(serveHandler, {
    handle,
    services,
    log,
    close: () => {
      if (timer !== null) clearInterval(timer);
      services.close();
      log.flush();
    },
    drain: (graceMs: number) => limits.drain(graceMs),
  });
}

/** Matches the request's route; a miss is kept as the error the handler will throw. */
function routeOf(routes: readonly Route[], request: IncomingRequest): RouteInfo {
  try {
    const match = matchRoute(routes, request.method, rawPath(request.url));
    const name = match.route.name;
    return {
      name,
      repository: match.params.name ?? null,
      action: actionOf(name, request.method),
      match,
      error: null,
    };
  } catch (error) {
    return { name: "unknown", repository: null, action: null, match: null, error };
  }
}

/** The final step: runs the matched handler (or throws why none matched). */
function dispatch(ctx: RequestContext): Promise<Reply> {
  const { match, error } = ctx.route;
  if (match === null) throw error;
  const { request } = ctx;
  const query = request.url.includes("?")
    ? new URL(request.url).searchParams
    : new URLSearchParams();
  return match.handler({ request, body: ctx.body, query, params: match.params });
}
