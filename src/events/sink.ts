/**
 * The interface the services report events through. It knows nothing of HTTP: the services
 * say what happened; the sink adds the request (from the request scope) and queues it.
 */

import type { EventSpec } from "./event.ts";

/** Where the services report events. */
export interface EventSink {
  /**
   * Queues push, mount and delete events durably; resolves once they are on stable storage
   * for every endpoint that wants them (the operation may then be acknowledged). Throws what
   * the storage failed with: the caller fails the operation.
   */
  record(events: readonly EventSpec[]): Promise<void>;
  /** Queues a pull event in memory, best effort: never waits, never throws. */
  pulled(event: EventSpec): void;
}

/** The sink of a registry without notification endpoints. */
export const NO_EVENTS: EventSink = {
  record: () => Promise.resolve(),
  pulled: () => {},
};
