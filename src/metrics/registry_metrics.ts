/**
 * The registry's metrics: the HTTP series of CNCF Distribution (labelled by route name as
 * `handler`, lower-case `method` and `code`, never by repository or digest, so that the
 * number of series is bounded by routes × methods × status codes whatever the number of
 * repositories), our byte counters and push/pull counters, the storage action timings and the
 * blob-bytes gauge of the instrumented driver, the open upload sessions and the process.
 *
 * Per request the pipeline step does two map lookups (route, then method) to get series it
 * then updates, plus one lookup by status code.
 */

import type { GcReport } from "../gc/collector.ts";
import type { StorageDriver } from "../storage/driver.ts";
import { instrumentationOf } from "../storage/drivers/instrumented.ts";
import { AREAS } from "../storage/keys.ts";
import { isUploadId } from "../types/names.ts";
import {
  ComputedFamily,
  type Counter,
  CounterFamily,
  decadeBuckets,
  type Gauge,
  GaugeFamily,
  type Histogram,
  HistogramFamily,
  MetricsRegistry,
} from "./families.ts";
import { processFamilies } from "./process.ts";

/** Bucket bounds of request durations in seconds: Distribution's, plus 0.5, 1 and 2.5 ms. */
export const HTTP_DURATION_BUCKETS: readonly number[] = [...decadeBuckets(0.0005, 10), 25, 60];

/** Methods by their label value; any other method is counted as `other`. */
const METHODS: ReadonlyMap<string, string> = new Map([
  ["GET", "get"],
  ["HEAD", "head"],
  ["POST", "post"],
  ["PUT", "put"],
  ["PATCH", "patch"],
  ["DELETE", "delete"],
  ["OPTIONS", "options"],
]);

/** Which push/pull counter a route and method may feed. */
type Kind = "none" | "manifest_put" | "manifest_get" | "blob_get" | "upload_put" | "upload_post";

function kindOf(route: string, method: string): Kind {
  if (route === "manifest") {
    return method === "PUT" ? "manifest_put" : method === "GET" ? "manifest_get" : "none";
  }
  if (route === "blob" && method === "GET") return "blob_get";
  if (route === "blob_upload_chunk" && method === "PUT") return "upload_put";
  if (route === "blob_upload" && method === "POST") return "upload_post";
  return "none";
}

/** The series of one route and method. */
export class MethodSeries {
  /** The route's series. */
  readonly route: RouteSeries;
  readonly duration: Histogram;
  readonly kind: Kind;
  readonly #requests: CounterFamily;
  readonly #values: readonly [string, string];
  readonly #codes = new Map<number, Counter>();

  /** Made by `RouteSeries.method`. */
  constructor(route: RouteSeries, method: string, label: string, families: HttpFamilies) {
    this.route = route;
    this.duration = families.duration.labels(route.name, label);
    this.kind = kindOf(route.name, method);
    this.#requests = families.requests;
    this.#values = [route.name, label];
  }

  /** The request counter of a status code. */
  code(status: number): Counter {
    let counter = this.#codes.get(status);
    if (counter === undefined) {
      counter = this.#requests.labels(this.#values[0], this.#values[1], String(status));
      this.#codes.set(status, counter);
    }
    return counter;
  }
}

/** The series of one route. */
export class RouteSeries {
  readonly name: string;
  readonly inFlight: Gauge;
  readonly requestBytes: Counter;
  readonly responseBytes: Counter;
  readonly #families: HttpFamilies;
  readonly #methods = new Map<string, MethodSeries>();
  #other: MethodSeries | null = null;

  /** Made by `RegistryMetrics.route`. */
  constructor(name: string, families: HttpFamilies) {
    this.name = name;
    this.#families = families;
    this.inFlight = families.inFlight.labels(name);
    this.requestBytes = families.requestBytes.labels(name);
    this.responseBytes = families.responseBytes.labels(name);
  }

  /** The series of a method (as sent; unknown methods share the `other` series). */
  method(method: string): MethodSeries {
    const known = this.#methods.get(method);
    if (known !== undefined) return known;
    const label = METHODS.get(method);
    if (label === undefined) {
      return this.#other ??= new MethodSeries(this, "OTHER", "other", this.#families);
    }
    const series = new MethodSeries(this, method, label, this.#families);
    this.#methods.set(method, series);
    return series;
  }
}

interface HttpFamilies {
  readonly requests: CounterFamily;
  readonly duration: HistogramFamily;
  readonly inFlight: GaugeFamily;
  readonly requestBytes: CounterFamily;
  readonly responseBytes: CounterFamily;
}

/** How a request ended, as the metrics step saw it. */
export interface Outcome {
  readonly status: number;
  readonly seconds: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** The request URL (read only to tell a mount from an upload). */
  readonly url: string;
}

function counter(name: string, help: string): CounterFamily {
  return new CounterFamily({ name, help });
}

/** Every metric of one registry, and its exposition. */
export class RegistryMetrics {
  /** The families, in exposition order. */
  readonly registry = new MetricsRegistry();
  readonly #http: HttpFamilies;
  readonly #routes = new Map<string, RouteSeries>();
  readonly #blobsPushed: Counter;
  readonly #blobsMounted: Counter;
  readonly #blobsPulled: Counter;
  readonly #manifestsPushed: Counter;
  readonly #manifestsPulled: Counter;
  readonly #gcRuns: CounterFamily;
  readonly #gcDuration: Histogram;
  readonly #gcDeleted: CounterFamily;
  readonly #gcBytes: Counter;

  /**
   * Builds the metrics over the registry's driver (timings and blob bytes when it is an
   * InstrumentedDriver; open upload sessions by listing it at scrape time).
   */
  constructor(driver: StorageDriver, options: { readonly process?: boolean } = {}) {
    const r = this.registry;
    this.#http = {
      requests: r.add(
        new CounterFamily({
          name: "registry_http_requests_total",
          help: "Total number of HTTP requests made.",
          labels: ["handler", "method", "code"],
        }),
      ),
      duration: r.add(
        new HistogramFamily({
          name: "registry_http_request_duration_seconds",
          help: "The HTTP request latencies in seconds (until the reply's head).",
          labels: ["handler", "method"],
          buckets: HTTP_DURATION_BUCKETS,
        }),
      ),
      inFlight: r.add(
        new GaugeFamily({
          name: "registry_http_in_flight_requests",
          help: "The in-flight HTTP requests",
          labels: ["handler"],
        }),
      ),
      requestBytes: r.add(
        new CounterFamily({
          name: "registry_http_request_bytes_total",
          help: "Request body bytes received.",
          labels: ["handler"],
        }),
      ),
      responseBytes: r.add(
        new CounterFamily({
          name: "registry_http_response_bytes_total",
          help: "Response body bytes sent (as announced by the reply's length).",
          labels: ["handler"],
        }),
      ),
    };
    this.#blobsPushed = r.add(counter(
      "registry_blobs_pushed_total",
      "Blobs uploaded (an upload completed with 201: PUT to a session, or POST with digest).",
    )).labels();
    this.#blobsMounted = r.add(counter(
      "registry_blobs_mounted_total",
      "Blobs mounted from another repository (POST with mount answered 201).",
    )).labels();
    this.#blobsPulled = r.add(counter(
      "registry_blobs_pulled_total",
      "Blob GETs answered 200 or 206 (each range request counts).",
    )).labels();
    this.#manifestsPushed = r.add(counter(
      "registry_manifests_pushed_total",
      "Manifest PUTs answered 201.",
    )).labels();
    this.#manifestsPulled = r.add(counter(
      "registry_manifests_pulled_total",
      "Manifest GETs answered 200 (HEAD not counted).",
    )).labels();
    this.#gcRuns = r.add(
      new CounterFamily({
        name: "registry_gc_runs_total",
        help: "Garbage collections finished, by kind (run, dry_run) and outcome (ok, error).",
        labels: ["kind", "outcome"],
      }),
    );
    this.#gcDuration = r.add(
      new HistogramFamily({
        name: "registry_gc_duration_seconds",
        help: "How long garbage collections took (dry runs included).",
        buckets: decadeBuckets(0.001, 1000),
      }),
    ).labels();
    this.#gcDeleted = r.add(
      new CounterFamily({
        name: "registry_gc_deleted_total",
        help: "Items garbage collection deleted, by kind (tag, manifest, link, blob, upload).",
        labels: ["kind"],
      }),
    );
    this.#gcBytes = r.add(counter(
      "registry_gc_freed_bytes_total",
      "Bytes of blob files garbage collection deleted (manifests included).",
    )).labels();
    const instrumented = instrumentationOf(driver);
    if (instrumented !== null) {
      r.add(instrumented.timings);
      r.add(
        new ComputedFamily({
          name: "registry_storage_bytes",
          help: "Bytes of committed blobs (manifests included) in the storage.",
          type: "gauge",
        }, async () => {
          const bytes = await instrumented.storedBytes.value();
          return bytes === null ? [] : [{ value: bytes }];
        }),
      );
    }
    r.add(
      new ComputedFamily({
        name: "registry_upload_sessions_open",
        help: "Upload sessions in the storage (started, not yet completed, cancelled or purged).",
        type: "gauge",
      }, async () => {
        const names = await driver.list(AREAS.uploads);
        return [{ value: names.filter((name) => isUploadId(name)).length }];
      }),
    );
    if (options.process ?? true) { for (const family of processFamilies()) r.add(family); }
  }

  /** The series of a route (by its name in the route table, or `unknown`). */
  route(name: string): RouteSeries {
    let series = this.#routes.get(name);
    if (series === undefined) {
      series = new RouteSeries(name, this.#http);
      this.#routes.set(name, series);
    }
    return series;
  }

  /** Records a finished request on its series (the in-flight gauge is the caller's). */
  finish(series: MethodSeries, outcome: Outcome): void {
    const { status } = outcome;
    series.code(status).value++;
    series.duration.observe(outcome.seconds);
    series.route.requestBytes.value += outcome.bytesIn;
    series.route.responseBytes.value += outcome.bytesOut;
    switch (series.kind) {
      case "none":
        return;
      case "manifest_put":
        if (status === 201) this.#manifestsPushed.value++;
        return;
      case "manifest_get":
        if (status === 200) this.#manifestsPulled.value++;
        return;
      case "blob_get":
        if (status === 200 || status === 206) this.#blobsPulled.value++;
        return;
      case "upload_put":
        if (status === 201) this.#blobsPushed.value++;
        return;
      case "upload_post":
        if (status === 201) {
          if (isMount(outcome)) this.#blobsMounted.value++;
          else this.#blobsPushed.value++;
        }
        return;
    }
  }

  /** Records a finished garbage collection (a dry run deletes nothing: only its run). */
  recordGc(report: GcReport): void {
    const kind = report.dryRun ? "dry_run" : "run";
    this.#gcRuns.labels(kind, report.error === undefined ? "ok" : "error").value++;
    this.#gcDuration.observe(report.durationMs / 1000);
    if (report.dryRun) return;
    const { counts } = report;
    this.#gcDeleted.labels("tag").value += counts.tags;
    this.#gcDeleted.labels("manifest").value += counts.manifests;
    this.#gcDeleted.labels("link").value += counts.links;
    this.#gcDeleted.labels("blob").value += counts.blobs;
    this.#gcDeleted.labels("upload").value += counts.uploads;
    this.#gcBytes.value += report.bytesFreed;
  }

  /** The exposition (text format 0.0.4). */
  render(onError?: (name: string, error: unknown) => void): Promise<string> {
    return this.registry.render(onError);
  }
}

/**
 * Whether a POST answered 201 was a mount: it named `mount`, and did not upload a body with
 * `digest` (a failed mount with `digest` falls back to a monolithic upload).
 */
function isMount({ url, bytesIn }: Outcome): boolean {
  const q = url.indexOf("?");
  if (q < 0) return false;
  const query = new URLSearchParams(url.slice(q + 1));
  return query.has("mount") && !(query.has("digest") && bytesIn > 0);
}
