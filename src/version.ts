/**
 * The registry's version, from the `version` field of deno.json (the one place it is kept).
 */

import meta from "../deno.json" with { type: "json" };

/** The registry's version, e.g. `0.3.0`. */
export const VERSION: string = meta.version;
