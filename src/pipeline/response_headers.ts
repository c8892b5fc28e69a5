/**
 * Headers every reply carries: the request id, the configured `http.headers`, and `Location`
 * made absolute when the registry knows its public URL (`http.host`) or a trusted proxy says
 * how the client reached it (`X-Forwarded-Proto` with the request's `Host`).
 */

import type { Config } from "../config/mod.ts";
import { requestHost } from "../http/request.ts";
import type { Reply } from "../http/responses.ts";
import type { Step } from "./context.ts";

/** The response headers step. */
export function responseHeaders(config: Config, trustedProxy: (ip: string) => boolean): Step {
  const extra: [string, string][] = [];
  for (const [name, values] of Object.entries(config.responseHeaders)) {
    for (const value of values) extra.push([name, value]);
  }
  const base = config.publicUrl?.replace(/\/+$/, "") ?? null;
  return async (ctx, next) => {
    const reply = await next();
    let origin = base;
    if (origin === null && trustedProxy(ctx.request.remoteAddress ?? "")) {
      const host = ctx.request.headers.get("x-forwarded-host") ?? requestHost(ctx.request);
      if (host && /^[A-Za-z0-9.:[\]-]+$/.test(host)) origin = `${ctx.scheme}://${host}`;
    }
    const headers: [string, string][] = [];
    for (const [name, value] of reply.headers) {
      const absolute = origin !== null && value.startsWith("/") &&
        name.toLowerCase() === "location";
      headers.push([name, absolute ? `${origin}${value}` : value]);
    }
    headers.push(["X-Request-Id", ctx.id], ...extra);
    return { ...reply, headers } as Reply;
  };
}
