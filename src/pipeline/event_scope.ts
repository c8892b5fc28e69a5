/**
 * The event scope step: runs the rest of the request inside the events' request scope, so
 * that an event a service reports carries the request's id, client address, host, method,
 * user agent and user (read when the event is made, so a user set by a later step counts).
 * A no-op when no notification endpoint is enabled.
 */

import type { RequestInfo } from "../events/event.ts";
import { runInRequestScope } from "../events/request_scope.ts";
import { requestHost } from "../http/request.ts";
import type { RequestContext, Step } from "./context.ts";

const HOST = /^[A-Za-z0-9.:[\]-]{1,255}$/;

/**
 * The event scope step. `publicUrl` (`http.host`) is the base of event URLs when set;
 * otherwise the scheme and `Host` the client used.
 */
export function eventScope(publicUrl: string | null, enabled: boolean): Step {
  if (!enabled) return (_ctx, next) => next();
  const base = publicUrl?.replace(/\/+$/, "") ?? null;
  return (ctx, next) => runInRequestScope(new ContextInfo(ctx, base), next);
}

/** The request scope's view of a request context. */
class ContextInfo implements RequestInfo {
  readonly #ctx: RequestContext;
  readonly #base: string | null;

  constructor(ctx: RequestContext, base: string | null) {
    this.#ctx = ctx;
    this.#base = base;
  }

  get id(): string {
    return this.#ctx.id;
  }

  get addr(): string {
    return this.#ctx.client;
  }

  get host(): string {
    const host = requestHost(this.#ctx.request);
    return HOST.test(host) ? host : "";
  }

  get method(): string {
    return this.#ctx.request.method;
  }

  get userAgent(): string {
    return this.#ctx.request.headers.get("user-agent") ?? "";
  }

  get actor(): string | null {
    return this.#ctx.user;
  }

  get baseUrl(): string | null {
    if (this.#base !== null) return this.#base;
    const host = this.host;
    return host ? `${this.#ctx.scheme}://${host}` : null;
  }
}
