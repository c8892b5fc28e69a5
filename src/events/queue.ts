/**
 * One endpoint's event queue: durable on the storage driver, delivered in order by one loop.
 *
 * Push, mount and delete events are written as one object per operation
 * (`events/<endpoint>/<seq>`, a Distribution envelope) with the driver's atomic, durable `put`
 * before `append` resolves, so before the operation is acknowledged; an object is deleted only
 * once the endpoint accepted it. A crash between the two sends it again: delivery is at least
 * once (receivers dedupe by event id). On start the objects left on disk are delivered first,
 * in sequence order. Pull events live in memory only (best effort).
 *
 * Memory is bounded: at most `window` queued objects are held in memory. Beyond it, objects
 * stay on disk only ("spilled") and are read back in order as the window empties; the disk
 * backlog itself is not bounded (push events are never refused nor dropped), but a warning is
 * logged when it passes `warnBacklog` objects, and again at each doubling. Pull events are
 * dropped while the window is full.
 *
 * Retries follow Distribution's breaker: after a failed attempt the next one goes at once,
 * until `threshold` failures in a row; from then on each attempt waits `backoffMs` after the
 * last failure. Retries never stop; a success resets the count.
 */

import type { Logger } from "../log.ts";
import type { StorageDriver } from "../storage/driver.ts";
import { eventKey, eventQueueKey, eventSeqName, eventSeqOf } from "../storage/keys.ts";
import { deliver, type DeliveryTarget } from "./delivery.ts";
import type { RegistryEvent } from "./event.ts";

/** How one endpoint is delivered to. */
export interface QueueEndpoint extends DeliveryTarget {
  /** Failures in a row after which attempts are spaced by `backoffMs`. */
  readonly threshold: number;
  readonly backoffMs: number;
}

/** What a queue runs with. */
export interface QueueOptions {
  readonly driver: StorageDriver;
  readonly log: Logger;
  readonly fetch: typeof fetch;
  /** Milliseconds clock of the backoff. */
  readonly now: () => number;
  /** Waits `ms`, or less when `signal` aborts. */
  readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Queued objects held in memory at most. */
  readonly window: number;
  /** Events per POST at most (a bigger object is still sent whole). */
  readonly batch: number;
  /** Objects on disk past which a warning is logged. */
  readonly warnBacklog: number;
}

interface Entry {
  readonly seq: number;
  /** The object's key; null for a pull event (memory only). */
  readonly key: string | null;
  readonly events: readonly RegistryEvent[];
  committed: boolean;
}

const FAILURE_LOG_INTERVAL_MS = 60_000;

/** The durable, ordered event queue of one endpoint. */
export class EventQueue {
  readonly #endpoint: QueueEndpoint;
  readonly #options: QueueOptions;
  readonly #prefix: string;
  readonly #entries: Entry[] = [];
  readonly #spilling = new Set<number>();
  readonly #abort = new AbortController();
  #nextSeq = 0;
  /** Committed objects exist on disk past `#cursor` that are not in memory. */
  #overflow = false;
  /** The highest sequence number placed in memory; disk reads resume after it. */
  #cursor = -1;
  #spillEpoch = 0;
  #backlog = 0;
  #warnedAt = 0;
  #droppedPulls = 0;
  #wake: (() => void) | null = null;
  #loop: Promise<void> | null = null;

  private constructor(endpoint: QueueEndpoint, options: QueueOptions) {
    this.#endpoint = endpoint;
    this.#options = options;
    this.#prefix = eventQueueKey(endpoint.name);
  }

  /** Opens the queue of `endpoint`, finding what an earlier run left undelivered. */
  static async open(endpoint: QueueEndpoint, options: QueueOptions): Promise<EventQueue> {
    const queue = new EventQueue(endpoint, options);
    const seqs = (await options.driver.list(queue.#prefix))
      .map(eventSeqOf)
      .filter((seq): seq is number => seq !== null);
    if (seqs.length > 0) {
      queue.#nextSeq = seqs.reduce((a, b) => Math.max(a, b)) + 1;
      queue.#backlog = seqs.length;
      queue.#overflow = true;
      options.log.info("undelivered events found", {
        endpoint: endpoint.name,
        pending: seqs.length,
      });
    }
    return queue;
  }

  /** The endpoint's name. */
  get name(): string {
    return this.#endpoint.name;
  }

  /** Objects on disk not yet delivered. */
  get backlog(): number {
    return this.#backlog;
  }

  /** Pull events dropped since start because the window was full. */
  get droppedPulls(): number {
    return this.#droppedPulls;
  }

  /** Writes `events` durably as the next object of the queue; throws what the driver threw. */
  async append(events: readonly RegistryEvent[]): Promise<void> {
    const seq = this.#nextSeq++;
    const key = eventKey(this.#endpoint.name, seq);
    const inMemory = !this.#overflow && this.#entries.length < this.#options.window;
    let entry: Entry | null = null;
    if (inMemory) {
      entry = { seq, key, events, committed: false };
      this.#entries.push(entry);
      this.#cursor = seq;
    } else {
      this.#overflow = true;
      this.#spilling.add(seq);
      this.#spillEpoch++;
    }
    try {
      await this.#options.driver.put(key, JSON.stringify({ events }));
    } catch (error) {
      if (entry !== null) this.#entries.splice(this.#entries.indexOf(entry), 1);
      else this.#spilling.delete(seq);
      this.#notify();
      throw error;
    }
    if (entry !== null) entry.committed = true;
    else this.#spilling.delete(seq);
    this.#backlog++;
    this.#warnBacklog();
    this.#notify();
  }

  /** Queues a pull event in memory; drops it when the window is full. */
  push(event: RegistryEvent): void {
    if (this.#overflow || this.#entries.length >= this.#options.window) {
      if (this.#droppedPulls++ === 0) {
        this.#options.log.warn("event queue full: pull events are dropped", {
          endpoint: this.#endpoint.name,
        });
      }
      return;
    }
    const seq = this.#nextSeq++;
    this.#entries.push({ seq, key: null, events: [event], committed: true });
    this.#cursor = seq;
    this.#notify();
  }

  /** Starts the delivery loop. */
  start(): void {
    this.#loop ??= this.#run().catch((error) => {
      this.#options.log.error("event delivery stopped", {
        endpoint: this.#endpoint.name,
        error: String(error),
      });
    });
  }

  /**
   * Stops delivering (an attempt in flight is aborted; what is queued stays on disk). Later
   * `append`s still write durably, for the next start. Resolves when the loop has ended.
   */
  close(): Promise<void> {
    this.#abort.abort();
    this.#notify();
    return this.#loop ?? Promise.resolve();
  }

  async #run(): Promise<void> {
    const { log, now, sleep } = this.#options;
    const signal = this.#abort.signal;
    const name = this.#endpoint.name;
    let failures = 0;
    let lastFailure = 0;
    let lastLogged = -Infinity;
    while (!signal.aborted) {
      if (this.#overflow && this.#entries.length <= this.#options.window / 2) {
        try {
          await this.#refill();
        } catch (error) {
          log.error("event queue unreadable", { endpoint: name, error: String(error) });
          await sleep(this.#endpoint.backoffMs, signal);
          continue;
        }
      }
      const batch = this.#head();
      if (batch.length === 0) {
        // Spilled objects finished writing while the disk was read: read on.
        if (this.#overflow && this.#spilling.size === 0 && this.#entries.length === 0) continue;
        await this.#idle();
        continue;
      }
      if (failures >= this.#endpoint.threshold) {
        const wait = lastFailure + this.#endpoint.backoffMs - now();
        if (wait > 0) await sleep(wait, signal);
        if (signal.aborted) break;
      }
      const events = batch.flatMap((entry) => entry.events);
      const attempt = await deliver(this.#endpoint, { events }, this.#options.fetch, signal);
      if (signal.aborted) break;
      if (attempt.ok) {
        if (failures > 0) log.info("event delivery resumed", { endpoint: name, failures });
        failures = 0;
        this.#entries.splice(0, batch.length);
        await this.#forget(batch);
        continue;
      }
      failures++;
      lastFailure = now();
      const fields = {
        endpoint: name,
        reason: attempt.reason,
        failures,
        pending: this.#backlog,
      };
      if (failures === 1 || failures === this.#endpoint.threshold) {
        log.warn(
          failures === 1 ? "event delivery failed" : "event delivery failing: backing off",
          fields,
        );
        lastLogged = lastFailure;
      } else if (lastFailure - lastLogged >= FAILURE_LOG_INTERVAL_MS) {
        log.warn("event delivery still failing", fields);
        lastLogged = lastFailure;
      } else {
        log.debug("event delivery failed", fields);
      }
    }
  }

  /** The committed entries at the head, at most `batch` events (at least one entry). */
  #head(): Entry[] {
    const out: Entry[] = [];
    let count = 0;
    for (const entry of this.#entries) {
      if (!entry.committed) break;
      if (out.length > 0 && count + entry.events.length > this.#options.batch) break;
      out.push(entry);
      count += entry.events.length;
    }
    return out;
  }

  /** Deletes the delivered objects; a failed delete only means a redelivery after restart. */
  async #forget(batch: readonly Entry[]): Promise<void> {
    await Promise.all(batch.map(async ({ key }) => {
      if (key === null) return;
      try {
        await this.#options.driver.delete(key);
      } catch (error) {
        this.#options.log.error("delivered event not removed from the queue", {
          endpoint: this.#endpoint.name,
          key,
          error: String(error),
        });
      }
      this.#backlog--;
    }));
    if (this.#backlog < this.#options.warnBacklog) this.#warnedAt = 0;
  }

  /**
   * Reads spilled objects back into memory, in order, stopping before any object still being
   * written; clears the overflow once the disk holds nothing more.
   */
  async #refill(): Promise<void> {
    const { driver, log } = this.#options;
    const epoch = this.#spillEpoch;
    const limit = this.#options.window - this.#entries.length;
    const after = this.#cursor < 0 ? undefined : eventSeqName(this.#cursor);
    // Taken before listing: a spill still being written may be missing from the listing, so
    // nothing at or past it is read, and the overflow is kept until a refill saw none. Nor is
    // anything numbered after the listing began: a spill started during it may be missing
    // while a later one, written faster, is listed (reading that one would pass the first).
    const stopAt = Math.min(this.#nextSeq, ...this.#spilling);
    const inFlight = this.#spilling.size;
    const names = await driver.list(this.#prefix, { ...(after ? { after } : {}), limit });
    let complete = names.length < limit;
    for (const name of names) {
      const seq = eventSeqOf(name);
      if (seq === null) continue;
      if (seq >= stopAt) {
        complete = false;
        break;
      }
      const key = `${this.#prefix}/${name}`;
      const bytes = await driver.get(key);
      this.#cursor = seq;
      const events = bytes === null ? null : parseEnvelope(bytes);
      if (events === null) {
        // Left on disk for a person to look at; not counted as pending any more.
        log.error("unreadable event object skipped", { endpoint: this.#endpoint.name, key });
        this.#backlog--;
        continue;
      }
      this.#entries.push({ seq, key, events, committed: true });
    }
    if (complete && inFlight === 0 && this.#spilling.size === 0 && epoch === this.#spillEpoch) {
      this.#overflow = false;
    }
  }

  #warnBacklog(): void {
    const { warnBacklog, log } = this.#options;
    if (this.#backlog <= warnBacklog || this.#backlog <= this.#warnedAt * 2) return;
    this.#warnedAt = this.#backlog;
    log.warn("event queue growing: the endpoint is not keeping up", {
      endpoint: this.#endpoint.name,
      pending: this.#backlog,
    });
  }

  #idle(): Promise<void> {
    if (this.#abort.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => (this.#wake = resolve));
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/** The events of a stored envelope, or null when it is not one. */
function parseEnvelope(bytes: Uint8Array): RegistryEvent[] | null {
  try {
    const value = JSON.parse(new TextDecoder().decode(bytes)) as { events?: unknown };
    return Array.isArray(value.events) ? value.events as RegistryEvent[] : null;
  } catch {
    return null;
  }
}
