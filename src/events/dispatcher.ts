/**
 * The event dispatcher: the `EventSink` of a registry with notification endpoints. It makes
 * each event once (one id, whatever the number of endpoints), with the current request from
 * the request scope, and hands it to the queue of every enabled endpoint that does not ignore
 * it (Distribution's `ignore.mediatypes` + `ignoredmediatypes`, and `ignore.actions`). Each
 * endpoint has its own queue and acknowledges independently.
 */

import type { Logger } from "../log.ts";
import type { StorageDriver } from "../storage/driver.ts";
import { eventQueueKey, EVENTS_AREA } from "../storage/keys.ts";
import { buildEvent, type EventSpec, type RegistryEvent, type SourceRecord } from "./event.ts";
import { EventQueue, type QueueEndpoint, type QueueOptions } from "./queue.ts";
import { currentRequest } from "./request_scope.ts";
import type { EventSink } from "./sink.ts";

/** One endpoint as the configuration gives it (`notifications.endpoints[]`). */
export interface EndpointSettings extends QueueEndpoint {
  readonly ignoredMediaTypes: readonly string[];
  readonly ignoredActions: readonly string[];
  readonly disabled: boolean;
}

/** Queued objects held in memory per endpoint (the rest waits on disk). */
export const EVENT_WINDOW = 1000;
/** Events per POST at most. */
export const EVENT_BATCH = 32;
/** Objects waiting on disk for one endpoint past which a warning is logged. */
export const EVENT_BACKLOG_WARNING = 10_000;

/** Options of `EventDispatcher.open`. */
export interface DispatcherOptions {
  readonly log: Logger;
  /** Who makes the events (default: a new instance id only). */
  readonly source?: SourceRecord;
  readonly fetch?: typeof fetch;
  /** The clock of timestamps and backoff (epoch milliseconds). */
  readonly now?: () => number;
  readonly sleep?: QueueOptions["sleep"];
  readonly window?: number;
  readonly batch?: number;
  readonly warnBacklog?: number;
}

interface Route {
  readonly queue: EventQueue;
  readonly mediaTypes: ReadonlySet<string>;
  readonly actions: ReadonlySet<string>;
}

/** Queues events for every endpoint and delivers them in the background. */
export class EventDispatcher implements EventSink {
  readonly #routes: readonly Route[];
  readonly #source: SourceRecord;
  readonly #now: () => number;
  readonly #log: Logger;

  private constructor(routes: Route[], source: SourceRecord, now: () => number, log: Logger) {
    this.#routes = routes;
    this.#source = source;
    this.#now = now;
    this.#log = log;
  }

  /**
   * Opens a queue for each enabled endpoint over `driver`, finding the events an earlier run
   * left undelivered, and warns about queues of endpoints no longer configured (kept on disk).
   * Call `start` to deliver.
   */
  static async open(
    driver: StorageDriver,
    endpoints: readonly EndpointSettings[],
    options: DispatcherOptions,
  ): Promise<EventDispatcher> {
    const now = options.now ?? Date.now;
    const queueOptions: QueueOptions = {
      driver,
      log: options.log,
      fetch: options.fetch ?? fetch,
      now,
      sleep: options.sleep ?? sleep,
      window: options.window ?? EVENT_WINDOW,
      batch: options.batch ?? EVENT_BATCH,
      warnBacklog: options.warnBacklog ?? EVENT_BACKLOG_WARNING,
    };
    const routes: Route[] = [];
    for (const endpoint of endpoints) {
      if (endpoint.disabled) {
        options.log.info("notification endpoint disabled", { endpoint: endpoint.name });
        continue;
      }
      routes.push({
        queue: await EventQueue.open(endpoint, queueOptions),
        mediaTypes: new Set(endpoint.ignoredMediaTypes),
        actions: new Set(endpoint.ignoredActions),
      });
    }
    const known = new Set(routes.map((r) => eventQueueKey(r.queue.name)));
    for (const folder of await driver.list(EVENTS_AREA)) {
      if (!known.has(`${EVENTS_AREA}/${folder}`)) {
        options.log.warn("event queue of an endpoint not configured (or disabled) kept", {
          queue: `${EVENTS_AREA}/${folder}`,
        });
      }
    }
    const source = options.source ?? { instanceID: crypto.randomUUID() };
    return new EventDispatcher(routes, source, now, options.log);
  }

  /** Whether any endpoint is enabled. */
  get enabled(): boolean {
    return this.#routes.length > 0;
  }

  /** Objects waiting on disk, per endpoint name. */
  backlog(): Record<string, number> {
    return Object.fromEntries(this.#routes.map((r) => [r.queue.name, r.queue.backlog]));
  }

  /** @inheritdoc */
  async record(specs: readonly EventSpec[]): Promise<void> {
    if (this.#routes.length === 0 || specs.length === 0) return;
    const events = this.#build(specs);
    await Promise.all(this.#routes.map((route) => {
      const wanted = events.filter((event) => wants(route, event));
      return wanted.length === 0 ? undefined : route.queue.append(wanted);
    }));
  }

  /** @inheritdoc */
  pulled(spec: EventSpec): void {
    if (this.#routes.length === 0) return;
    try {
      const [event] = this.#build([spec]);
      for (const route of this.#routes) if (wants(route, event)) route.queue.push(event);
    } catch (error) {
      this.#log.debug("pull event not queued", { error: String(error) });
    }
  }

  /** Starts delivering, each endpoint on its own. */
  start(): void {
    for (const route of this.#routes) route.queue.start();
  }

  /** Stops delivering; resolves when every loop has ended. Queued events stay on disk. */
  async close(): Promise<void> {
    await Promise.all(this.#routes.map((route) => route.queue.close()));
  }

  #build(specs: readonly EventSpec[]): RegistryEvent[] {
    const request = currentRequest();
    const time = new Date(this.#now());
    return specs.map((spec) => buildEvent(spec, request, this.#source, time));
  }
}

/** Whether a route's endpoint takes an event (Distribution's `ignoredSink`). */
function wants(route: Route, event: RegistryEvent): boolean {
  return !route.actions.has(event.action) && !route.mediaTypes.has(event.target.mediaType);
}

/** Waits `ms` (a timer that does not keep the process alive), or less when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    Deno.unrefTimer(timer);
    signal.addEventListener("abort", done);
  });
}
