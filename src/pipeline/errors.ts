/**
 * The single catch: the only place an error becomes a reply. A RegistryError carries its OCI
 * code and status (the built-in server's `HttpError`, a request body it could not read, becomes
 * one); an operating-system storage failure becomes a clean 5xx (507 for a full disk); anything
 * else is a 500 `UNKNOWN`, logged with the request id. A HEAD reply carries the error's headers
 * and no body.
 */

import { errorBody, RegistryError } from "../errors.ts";
import { unreadable } from "../http/body.ts";
import { storageFailure } from "../http/failures.ts";
import { content, type HeaderValues, type Reply } from "../http/responses.ts";
import type { Logger } from "../log.ts";
import { HttpError } from "../server/mod.ts";
import type { RequestContext, Step } from "./context.ts";

const encoder = new TextEncoder();

/** The catching step: errors thrown by the steps after it become replies. */
export function catchErrors(log: Logger): Step {
  return async (ctx, next) => {
    try {
      return await next();
    } catch (error) {
      return errorReply(error, ctx, log);
    }
  };
}

/** The reply for an error thrown while answering `ctx`. */
export function errorReply(failure: unknown, ctx: RequestContext, log: Logger): Reply {
  const { request } = ctx;
  // a body the built-in server could not read to its end
  let error = failure instanceof HttpError ? unreadable(failure.message, failure) : failure;
  const storage = storageFailure(error);
  if (storage) {
    log.error("storage failure", {
      request_id: ctx.id,
      method: request.method,
      route: ctx.route.name,
      error: String(failure),
    });
    error = storage;
  }
  let status = 500;
  let body: string;
  let extra: HeaderValues = {};
  if (error instanceof RegistryError) {
    status = error.status;
    body = errorBody(error.code, error.message, error.detail);
    extra = error.headers;
  } else {
    log.error("unexpected error", {
      request_id: ctx.id,
      method: request.method,
      route: ctx.route.name,
      error: error instanceof Error ? (error.stack ?? String(error)) : String(error),
    });
    body = errorBody("UNKNOWN", "Internal error; see the registry log");
  }
  const bytes = encoder.encode(body);
  // HEAD: the length GET's body would have (RFC 9110 §8.6), and no body
  const head = request.method === "HEAD";
  return content(status, head ? null : bytes, {
    "Content-Type": "application/json",
    "Content-Length": String(bytes.length),
    ...extra,
  });
}
