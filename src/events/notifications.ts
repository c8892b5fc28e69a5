/**
 * `notifications.endpoints` in the app: opens the event dispatcher over the storage driver
 * when the services are built (its `open` is the services' `eventSink` factory), starts its
 * delivery loops once the app is ready, and stops them when the app closes. Without an
 * enabled endpoint it is inert: the services get `NO_EVENTS`, no request scope is entered.
 */

import type { StorageDriver } from "../storage/driver.ts";
import { type DispatcherOptions, type EndpointSettings, EventDispatcher } from "./dispatcher.ts";
import { type EventSink, NO_EVENTS } from "./sink.ts";

/** What `Notifications` needs of the configuration. */
export interface NotificationSettings {
  readonly host: string;
  readonly port: number;
  readonly notifications: readonly EndpointSettings[];
}

/** The notification endpoints of one app. */
export class Notifications {
  readonly #settings: NotificationSettings;
  readonly #options: DispatcherOptions;
  #dispatcher: EventDispatcher | null = null;

  /** Prepares the endpoints of `settings`; nothing runs before `open` and `start`. */
  constructor(settings: NotificationSettings, options: DispatcherOptions) {
    this.#settings = settings;
    this.#options = options;
  }

  /** Whether any endpoint is enabled (the request scope is needed). */
  get enabled(): boolean {
    return this.#settings.notifications.some((endpoint) => !endpoint.disabled);
  }

  /** The running dispatcher, or null (no endpoint, or not opened). */
  get dispatcher(): EventDispatcher | null {
    return this.#dispatcher;
  }

  /** Opens the dispatcher over `driver` (recovering queued events); the services' sink. */
  readonly open = async (driver: StorageDriver): Promise<EventSink> => {
    if (!this.enabled) return NO_EVENTS;
    const { host, port } = this.#settings;
    this.#dispatcher = await EventDispatcher.open(driver, this.#settings.notifications, {
      source: { addr: `${hostName() ?? host}:${port}`, instanceID: crypto.randomUUID() },
      ...this.#options,
    });
    return this.#dispatcher;
  };

  /** Starts delivering. */
  start(): void {
    this.#dispatcher?.start();
  }

  /** Stops delivering (queued events stay on disk for the next start). */
  close(): Promise<void> {
    return this.#dispatcher?.close() ?? Promise.resolve();
  }
}

/** This host's name when the process may read it (`--allow-sys`), else null. */
function hostName(): string | null {
  try {
    const query = Deno.permissions.querySync({ name: "sys", kind: "hostname" });
    return query.state === "granted" ? Deno.hostname() : null;
  } catch {
    return null;
  }
}
