/**
 * One delivery attempt: a POST of an envelope to an endpoint, as Distribution's `httpSink`
 * makes it. The endpoint's configured headers go with it; a response of 200–399 (as
 * Distribution counts it) is delivery; anything else, a network error or the per-attempt
 * timeout is a failure. Failure reasons never contain header values, and URLs in them are
 * replaced by the endpoint's name (the endpoint's URL may carry a token in its query).
 */

import { type Envelope, EVENTS_MEDIA_TYPE } from "./event.ts";

/** Where and how one endpoint is posted to. */
export interface DeliveryTarget {
  readonly name: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, readonly string[]>>;
  readonly timeoutMs: number;
}

/** The outcome of one attempt. */
export type Attempt =
  | { readonly ok: true; readonly status: number }
  | { readonly ok: false; readonly status: number | null; readonly reason: string };

/** Posts `envelope` once; `signal` aborts it (the app is closing). */
export async function deliver(
  target: DeliveryTarget,
  envelope: Envelope,
  fetcher: typeof fetch,
  signal: AbortSignal,
): Promise<Attempt> {
  const headers = new Headers({ "Content-Type": EVENTS_MEDIA_TYPE });
  for (const [name, values] of Object.entries(target.headers)) {
    for (const value of values) headers.append(name, value);
  }
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), target.timeoutMs);
  try {
    const response = await fetcher(target.url, {
      method: "POST",
      headers,
      body: JSON.stringify(envelope),
      redirect: "manual",
      signal: AbortSignal.any([signal, timeout.signal]),
    });
    await response.body?.cancel().catch(() => {});
    if (response.status >= 200 && response.status < 400) {
      return { ok: true, status: response.status };
    }
    return { ok: false, status: response.status, reason: `status ${response.status}` };
  } catch (error) {
    if (timeout.signal.aborted) {
      return { ok: false, status: null, reason: `no answer within ${target.timeoutMs} ms` };
    }
    return { ok: false, status: null, reason: scrub(String(error), target) };
  } finally {
    clearTimeout(timer);
  }
}

/** An error text with every URL in it (the endpoint's, as fetch printed it) replaced. */
function scrub(text: string, target: DeliveryTarget): string {
  return text.replace(/https?:\/\/[^\s)]+/g, `<${target.name}>`).slice(0, 300);
}
