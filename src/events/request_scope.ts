/**
 * The request scope: what events need to know about the request being answered (its id, the
 * client, the host, the user agent, the user), carried through the services' async calls by
 * `AsyncLocalStorage`, so that the services stay free of HTTP. A pipeline step enters it.
 */

import { AsyncLocalStorage } from "node:async_hooks";
import type { RequestInfo } from "./event.ts";

const storage = new AsyncLocalStorage<RequestInfo>();

/** Runs `fn` with `info` as the current request of everything it calls. */
export function runInRequestScope<T>(info: RequestInfo, fn: () => T): T {
  return storage.run(info, fn);
}

/** The current request, or null outside any request scope. */
export function currentRequest(): RequestInfo | null {
  return storage.getStore() ?? null;
}
