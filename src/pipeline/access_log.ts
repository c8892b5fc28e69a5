/**
 * The access log: one `info` line per request once it is answered, with the time, request id,
 * client address, method, path, route name, repository, status, bytes in and out, duration,
 * user and user agent. Never a credential or a token: those travel in headers, never logged
 * (the registry's query strings carry digests, names and page marks).
 */

import { headerOf, type Reply } from "../http/responses.ts";
import type { Logger } from "../log.ts";
import type { Step } from "./context.ts";
import { bytesReceived } from "./limits.ts";

/** The bytes a reply sends in its body, as far as is known before it is sent. */
export function bytesSent(reply: Reply, method: string): number {
  if (method === "HEAD" || reply.body === null) return 0;
  if (reply.body instanceof Uint8Array) return reply.body.length;
  return Number(headerOf(reply, "content-length") ?? 0);
}

/** Query parameters of the registry's own routes, logged as sent; any other value is masked. */
const LOGGED_PARAMETERS = new Set(["digest", "mount", "from", "n", "last", "artifactType"]);

/**
 * The target of a request URL as sent: its path, and its query with the values of parameters
 * the registry does not define masked (a client may send `?access_token=…`).
 */
function pathOf(url: string): string {
  const scheme = url.indexOf("://");
  const start = url.indexOf("/", scheme < 0 ? 0 : scheme + 3);
  if (start < 0) return "/";
  const query = url.indexOf("?", start);
  if (query < 0) return url.slice(start);
  const parts = url.slice(query + 1).split("&").map((part) => {
    const eq = part.indexOf("=");
    const name = eq < 0 ? part : part.slice(0, eq);
    return eq < 0 || LOGGED_PARAMETERS.has(name) ? part : `${name}=***`;
  });
  return `${url.slice(start, query)}?${parts.join("&")}`;
}

/** The access log step (a no-op when disabled or below the log level). */
export function accessLog(log: Logger, enabled: boolean): Step {
  if (!enabled || !log.enabled("info")) return (_ctx, next) => next();
  return async (ctx, next) => {
    const reply = await next();
    const { request } = ctx;
    log.info("request", {
      request_id: ctx.id,
      client: ctx.client,
      method: request.method,
      path: pathOf(request.url),
      route: ctx.route.name,
      repository: ctx.route.repository ?? undefined,
      status: reply.status,
      bytes_in: bytesReceived(ctx),
      bytes_out: bytesSent(reply, request.method),
      duration_ms: Math.round((performance.now() - ctx.startedAt) * 100) / 100,
      user: ctx.user ?? undefined,
      user_agent: request.headers.get("user-agent") ?? undefined,
    });
    return reply;
  };
}
