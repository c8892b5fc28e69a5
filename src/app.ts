/**
 * `createApp(config)`: the registry as a value. The route table and the request pipeline, in
 * one fixed order (response headers with the request id → health probes → access log →
 * metrics → CORS → the catch → limits and drain → access control → admin gate → write policy → event scope →
 * handler), with the route matched first so that every step knows the route, the repository and the action. The
 * catch step is the one place an error becomes a reply. Access control sits between the
 * limits and the write policy.
 */

import type { Config } from "./config/mod.ts";
import { Notifications } from "./events/notifications.ts";
import { BodyReader, type RequestBody } from "./http/body.ts";
import type { IncomingRequest } from "./http/request.ts";
import { type Reply, toResponse } from "./http/responses.ts";
import { adminTokenMarker, gcRoutes } from "./gc/admin.ts";
import type { GcReport } from "./gc/collector.ts";
import { Health } from "./health/health.ts";
import { healthRoutes, healthStep } from "./health/routes.ts";
import { createLogger, type Logger } from "./log.ts";
import { adminGate, adminRule } from "./maintenance/admin_access.ts";
import { adminRoutes } from "./maintenance/routes.ts";
import { RegistryMetrics } from "./metrics/registry_metrics.ts";
import {
  type AccessControl,
  accessControl,
  type AccessControlOptions,
} from "./pipeline/access_control.ts";
import { accessLog } from "./pipeline/access_log.ts";
import { clientOf, trustedMatcher } from "./pipeline/client.ts";
import { cors } from "./pipeline/cors.ts";
import { actionOf, compose, type RequestContext, type RouteInfo } from "./pipeline/context.ts";
import { catchErrors } from "./pipeline/errors.ts";
import { eventScope } from "./pipeline/event_scope.ts";
import { Limits } from "./pipeline/limits.ts";
import { metricsStep } from "./pipeline/metrics.ts";
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
  /** The metrics (null when `metrics.enabled` is off). */
  readonly metrics: RegistryMetrics | null;
  /** The health checks (`/readyz`, `/debug/health`). */
  readonly health: Health;
  /**
   * The data root's admin token: a request carrying it (`X-Registry-Admin-Token`) may use the
   * admin endpoint (main writes it to `<root>/.admin.json` for `deno task gc`).
   */
  readonly adminToken: string;
  /** Stops a garbage collection under way and writes the activity not yet written. */
  quiesce(): Promise<void>;
  /**
   * Re-reads the external token issuer's key files (SIGHUP): true when the new keys are in
   * use; on unusable files logs an error and keeps the old keys. Null without an external issuer.
   */
  readonly reloadTokenKeys: (() => Promise<boolean>) | null;
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
  /** How often the htpasswd file is looked at, and how long a success is remembered (tests). */
  readonly auth?: AccessControlOptions;
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
  const notifications = new Notifications(config, { log });
  const services = await createServices(config, {
    eventSink: notifications.open,
    onSpillFailure: (error) =>
      log.warn("upload bytes past storage.s3.uploadmemory kept in memory: no temporary file", {
        error: String(error),
      }),
    ...options,
  });
  let access: AccessControl;
  try {
    const open = () => accessControl(config, log, options.auth ?? {}, services.driver);
    // Replicas starting together on a new bucket: one generates the token signing key, the
    // others read it (under a lock of the shared database).
    access = services.database === null
      ? await open()
      : await services.locks.run("startup:token-signing-key", open);
  } catch (error) {
    services.close();
    throw error;
  }
  const recovered = await services.uploads.recover();
  log.info("upload sessions recovered", {
    resumable: recovered.resumed,
    purged: recovered.purged,
  });
  const metrics = config.metrics.enabled ? new RegistryMetrics(services.driver) : null;
  const health = new Health(config, services.driver, log, { database: services.database });
  const routes: Route[] = [
    ...healthRoutes(health, () => limits.draining),
    ...access.routes,
    ...listingRoutes(services),
    ...blobRoutes(services),
    ...manifestRoutes(services),
    ...adminRoutes(services),
    ...gcRoutes(services.gc, config),
  ];
  services.gc.onReport((report) => {
    if (report.skipped !== undefined) {
      // another replica collects: not a run of this one (metrics count runs)
      log.info(`garbage collection skipped: ${report.skipped}`);
      return;
    }
    metrics?.recordGc(report);
    const fields = gcLogFields(report);
    if (report.error !== undefined) log.error("garbage collection stopped", fields);
    else log.info("garbage collection", fields);
  });
  const gcTimer = config.gc.intervalMs > 0
    ? setInterval(() => {
      if (config.readOnly || services.gc.running) return;
      services.gc.run();
    }, config.gc.intervalMs)
    : null;
  if (gcTimer !== null) Deno.unrefTimer(gcTimer);
  const activityTimer = setInterval(() => {
    const { activity, gc } = services;
    // Without collections (which compact it), the journal is compacted once it grew: it is
    // read whole at start.
    const grown = activity.batchesSinceCompaction >= ACTIVITY_COMPACT_BATCHES ||
      activity.linesSinceCompaction >= ACTIVITY_COMPACT_LINES;
    const write = grown && !gc.running ? activity.compact(gc.activityWindowMs) : activity.flush();
    write.catch((error) => log.warn("activity journal not written", { error: String(error) }));
  }, ACTIVITY_FLUSH_MS);
  Deno.unrefTimer(activityTimer);
  const adminToken = Array.from(
    crypto.getRandomValues(new Uint8Array(32)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const adminTokenStep = adminTokenMarker(adminToken);
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
  const admin = adminRule(config);
  const limits = new Limits(config);
  const pipeline = compose([
    responseHeaders(config, trusted),
    healthStep(),
    accessLog(log, config.logRequests),
    metricsStep(metrics),
    cors(config.cors), // outside the catch: it sees error replies (and access control's 401)
    catchErrors(log),
    limits.step,
    adminTokenStep,
    access.step,
    adminGate(),
    writePolicy(config),
    eventScope(config.publicUrl, notifications.enabled),
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
      admin,
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
  notifications.start();
  return Object.assign(serveHandler, {
    handle,
    services,
    log,
    metrics,
    health,
    adminToken,
    quiesce: async () => {
      if (gcTimer !== null) clearInterval(gcTimer);
      await services.gc.stop();
      await services.activity.flush().catch((error) =>
        log.warn("activity journal not written", { error: String(error) })
      );
    },
    reloadTokenKeys: access.reload === null ? null : reloadWith(access.reload, log),
    close: () => {
      health.close();
      if (timer !== null) clearInterval(timer);
      if (gcTimer !== null) clearInterval(gcTimer);
      clearInterval(activityTimer);
      void notifications.close();
      services.close();
      log.flush();
    },
    drain: (graceMs: number) => limits.drain(graceMs),
  });
}

/** How often blob touches and manifest pulls are written to the activity journal. */
const ACTIVITY_FLUSH_MS = 5000;
/**
 * The journal is compacted between collections once it has this many batches more than at the
 * last compaction (those found at start count: see `Activity.countJournal`).
 */
const ACTIVITY_COMPACT_BATCHES = 500;
/**
 * Or once this process wrote this many lines: a compacted journal has a line per remembered
 * entry (at most 2 × 250,000), so a collection reads about a million lines at most, unless
 * restarts or replicas added up to 500 batches of their own (540,000 lines took half a second
 * on the bench's 2-core machine).
 */
const ACTIVITY_COMPACT_LINES = 500_000;

/** The log fields of a garbage collection's report: counts, bytes, and the first items. */
function gcLogFields(report: GcReport): Record<string, string | number | boolean | undefined> {
  const first = <T>(list: readonly T[]) => list.slice(0, 20);
  return {
    dry_run: report.dryRun,
    duration_ms: report.durationMs,
    tags: report.counts.tags,
    manifests: report.counts.manifests,
    links: report.counts.links,
    blobs: report.counts.blobs,
    uploads: report.counts.uploads,
    bytes_freed: report.bytesFreed,
    spared: report.spared,
    error: report.error,
    report: JSON.stringify({
      tags: first(report.tags),
      manifests: first(report.manifests),
      links: first(report.links),
      blobs: first(report.blobs),
    }),
  };
}

/** The SIGHUP reload of the token keys: logs the outcome, keeps the old keys on failure. */
function reloadWith(reload: () => Promise<void>, log: Logger): () => Promise<boolean> {
  return async () => {
    try {
      await reload();
    } catch (error) {
      const line = error instanceof Error ? error.message : String(error);
      log.error(`token key reload failed, keeping the previous keys: ${line}`);
      log.flush();
      return false;
    }
    log.info("token keys reloaded (auth.token.rootcertbundle, auth.token.jwks)");
    log.flush();
    return true;
  };
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
  return match.handler({
    request,
    body: ctx.body,
    query,
    params: match.params,
    ...(ctx.canPull ? { canPull: ctx.canPull } : {}),
  });
}
