/**
 * Test helpers for events: a fake endpoint (an injected `fetch` with scripted answers), a real
 * HTTP receiver on 127.0.0.1, endpoint settings, a log sink, and polling.
 */

import type { EndpointSettings } from "../../src/events/dispatcher.ts";
import type { Envelope, RegistryEvent } from "../../src/events/event.ts";
import { createLogger, type Logger } from "../../src/log.ts";

/** One POST an endpoint received. */
export interface Post {
  readonly url: string;
  readonly headers: Headers;
  readonly body: Envelope;
}

/** What a fake endpoint answers to the n-th POST (from 0): a status, a throw, or no answer. */
export type Answer = number | "error" | "hang";

/** An endpoint behind an injected `fetch`: records POSTs, answers as scripted. */
export class FakeEndpoint {
  readonly posts: Post[] = [];
  /** Every attempt, delivered or not. */
  attempts = 0;
  answer: (attempt: number) => Answer = () => 200;
  #gate: PromiseWithResolvers<void> | null = null;

  /** Holds every POST until `open` (they are still attempts). */
  hold(): void {
    this.#gate ??= Promise.withResolvers<void>();
  }

  /** Lets held POSTs through. */
  open(): void {
    this.#gate?.resolve();
    this.#gate = null;
  }

  /** The events of the delivered POSTs, in order. */
  get events(): RegistryEvent[] {
    return this.posts.flatMap((post) => [...post.body.events]);
  }

  readonly fetch: typeof fetch = async (input, init) => {
    const attempt = this.attempts++;
    if (this.#gate) await this.#gate.promise;
    const answer = this.answer(attempt);
    if (answer === "error") throw new TypeError(`error sending request for url (${input})`);
    if (answer === "hang") {
      await new Promise((_, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
      });
    }
    const status = answer as number;
    if (status >= 200 && status < 400) {
      this.posts.push({
        url: String(input),
        headers: new Headers(init?.headers),
        body: JSON.parse(String(init?.body)) as Envelope,
      });
    }
    return new Response(null, { status });
  };
}

/** Endpoint settings with short timings, `overrides` applied. */
export function endpoint(overrides: Partial<EndpointSettings> = {}): EndpointSettings {
  return {
    name: "hook",
    url: "http://receiver.test/events",
    headers: {},
    timeoutMs: 1000,
    threshold: 3,
    backoffMs: 20,
    ignoredMediaTypes: [],
    ignoredActions: [],
    disabled: false,
    ...overrides,
  };
}

/** A logger writing JSON lines into `lines`. */
export function testLogger(lines: string[], level: "debug" | "info" = "info"): Logger {
  return createLogger({ level, format: "json", sink: (line) => lines.push(line) });
}

/** Polls `check` until it is true; throws after `timeoutMs`. */
export async function waitUntil(
  check: () => boolean,
  timeoutMs = 5000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A real HTTP receiver on 127.0.0.1 recording POSTs, answering `status`. */
export interface Receiver extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
  readonly posts: Post[];
  /** Every POST received, answered with a 2xx or not. */
  readonly attempts: number;
  /** What it answers (200 by default). */
  status: number;
  /** Events of the POSTs it answered with a 2xx, in order. */
  readonly events: RegistryEvent[];
  /** Stops listening. */
  close(): Promise<void>;
}

/** Starts a receiver on `port` (0: any free port). */
export function startReceiver(port = 0): Receiver {
  const posts: Post[] = [];
  const state = { status: 200, attempts: 0 };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port, onListen: () => {} },
    async (request) => {
      const text = await request.text();
      state.attempts++;
      if (state.status >= 200 && state.status < 300) {
        posts.push({
          url: request.url,
          headers: request.headers,
          body: JSON.parse(text) as Envelope,
        });
      }
      return new Response(null, { status: state.status });
    },
  );
  let closed: Promise<void> | null = null;
  const close = () => (closed ??= server.shutdown());
  return {
    url: `http://127.0.0.1:${server.addr.port}/events`,
    port: server.addr.port,
    posts,
    get attempts() {
      return state.attempts;
    },
    get status() {
      return state.status;
    },
    set status(value: number) {
      state.status = value;
    },
    get events() {
      return posts.flatMap((post) => [...post.body.events]);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** A port nothing listens on (taken and released). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
