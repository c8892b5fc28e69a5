/**
 * The limits and drain step: counts requests in flight, refuses new ones while the registry
 * drains (503 with `Retry-After`), caps the size of request headers (431), and watches request
 * bodies (408 for one that stalls; all cut when the drain's grace period is over). Body bytes
 * read are counted for the access log and metrics.
 */

import type { Config } from "../config/mod.ts";
import { RegistryError } from "../errors.ts";
import { BodyGuard, checkHeaderSize } from "../http/limits.ts";
import type { RequestContext, Step } from "./context.ts";

/** Bytes the handler read from a request's body so far. */
export function bytesReceived(ctx: RequestContext): number {
  return ctx.body?.received ?? 0;
}

/** Requests in flight, the drain, and the request limits. */
export class Limits {
  readonly #config: Config;
  readonly #bodies: BodyGuard;
  #inFlight = 0;
  #draining = false;
  readonly #settled: (() => void)[] = [];

  /** Makes the step's state over the configured limits. */
  constructor(config: Config) {
    this.#config = config;
    this.#bodies = new BodyGuard(config.bodyIdleTimeoutMs);
  }

  /** Requests being answered now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Whether the registry is draining (new requests get 503). */
  get draining(): boolean {
    return this.#draining;
  }

  /** The step. */
  readonly step: Step = async (ctx, next) => {
    const body = this.#bodies.open(ctx.body, ctx.request.method);
    ctx.body = body;
    this.#inFlight++;
    try {
      if (this.#draining) throw shuttingDown();
      checkHeaderSize(ctx.request, this.#config.maxHeaderBytes);
      return await next();
    } finally {
      this.#bodies.release(body);
      if (--this.#inFlight === 0) this.#settled.splice(0).forEach((wake) => wake());
    }
  };

  /**
   * Starts a graceful stop: new requests get 503 at once; requests in flight get `graceMs`
   * to finish, then the bodies still being read are cut (503). Resolves when no request is
   * in flight (or 1 s after the cut).
   */
  async drain(graceMs: number): Promise<void> {
    this.#draining = true;
    await this.#idle(graceMs);
    if (this.#inFlight === 0) return;
    this.#bodies.abortAll(shuttingDown());
    await this.#idle(1000);
  }

  async #idle(ms: number): Promise<void> {
    if (this.#inFlight === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((wake) => this.#settled.push(wake)),
      new Promise<void>((wake) => (timer = setTimeout(wake, ms))),
    ]);
    clearTimeout(timer);
  }
}

function shuttingDown(): RegistryError {
  return new RegistryError("UNKNOWN", "The registry is shutting down; retry the request", {
    status: 503,
    headers: { "Retry-After": "1", Connection: "close" },
  });
}
