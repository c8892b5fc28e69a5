/**
 * CORS for browser UIs (`registry.http.cors.*`): a preflight (`OPTIONS` with
 * `Access-Control-Request-Method`) from an allowed origin is answered 204 here, before access
 * control (browsers send preflights without credentials); other replies to an allowed origin
 * say which origin may read them and which headers it may see. Requests from other origins
 * get nothing extra (the browser then hides the reply from the page).
 *
 * And for UIs: a request carrying `X-Registry-UI` (any value) gets its `WWW-Authenticate:
 * Basic …` challenges renamed to `X-Basic …`, so that the browser shows no login popup of its
 * own and the UI can ask for credentials itself. The step sits outside the catch step so that
 * it sees every reply, errors included.
 */

import type { CorsConfig } from "../config/mod.ts";
import type { Reply } from "../http/responses.ts";
import type { Step } from "./context.ts";

/** The request header with which a UI asks for no `Basic` challenge. */
export const UI_HEADER = "X-Registry-UI";

/** What a `Basic` challenge's scheme is renamed to for UIs. */
export const UI_BASIC_SCHEME = "X-Basic";

/** The response headers a page of an allowed origin may read. */
export const EXPOSED_HEADERS: readonly string[] = [
  "Docker-Content-Digest",
  "Docker-Distribution-API-Version",
  "Docker-Upload-UUID",
  "Location",
  "Range",
  "Content-Range",
  "Content-Length",
  "Link",
  "OCI-Subject",
  "OCI-Filters-Applied",
  "X-Request-Id",
  "WWW-Authenticate",
];

/** The CORS step. */
export function cors(config: CorsConfig): Step {
  const any = config.origins.includes("*");
  const origins = new Set(config.origins.map((o) => o.toLowerCase()));
  const allowed = (origin: string | null): origin is string =>
    origin !== null && (any || origins.has(origin.toLowerCase()));
  const exposed = EXPOSED_HEADERS.join(", ");
  return async (ctx, next) => {
    const headers = ctx.request.headers;
    const origin = headers.get("origin");
    const ok = allowed(origin);
    if (
      ok && ctx.request.method === "OPTIONS" &&
      headers.get("access-control-request-method") !== null
    ) {
      return {
        status: 204,
        headers: [
          ["Access-Control-Allow-Origin", origin],
          ["Access-Control-Allow-Methods", config.methods.join(", ")],
          ["Access-Control-Allow-Headers", config.headers.join(", ")],
          ["Access-Control-Max-Age", String(config.maxAgeS)],
          ["Vary", "Origin"],
        ],
        body: null,
      } as Reply;
    }
    const reply = await next();
    const forUi = headers.get(UI_HEADER) !== null;
    if (!ok && !forUi) return reply;
    const out: [string, string][] = [];
    for (const [name, value] of reply.headers) {
      out.push([name, forUi && isBasicChallenge(name, value) ? renameScheme(value) : value]);
    }
    if (ok) {
      out.push(
        ["Access-Control-Allow-Origin", origin],
        ["Access-Control-Expose-Headers", exposed],
        ["Vary", "Origin"],
      );
    }
    return { ...reply, headers: out } as Reply;
  };
}

function isBasicChallenge(name: string, value: string): boolean {
  return name.toLowerCase() === "www-authenticate" && /^basic(?:\s|$)/i.test(value);
}

function renameScheme(value: string): string {
  return `${UI_BASIC_SCHEME}${value.slice("basic".length)}`;
}
