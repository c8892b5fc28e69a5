/**
 * Conditional GET and HEAD of content named by its digest (RFC 9110 §13): a blob's or a
 * manifest's entity tag is its quoted digest, strong, and the bytes behind it never change
 * (a tag that moves names another digest). There are no dates: `If-Modified-Since` and
 * `If-Unmodified-Since` are ignored, and an `If-Range` holding a date never matches.
 */

/** The request's header fields (a `Headers` is one). */
interface Fields {
  get(name: string): string | null;
}

/** What to answer: as usual, 304 Not Modified, or 412 Precondition Failed. */
export type Verdict = "proceed" | "not-modified" | "failed";

/** Whether the request carries a precondition this module evaluates. */
export function hasPreconditions(headers: Fields): boolean {
  return headers.get("if-match") !== null || headers.get("if-none-match") !== null;
}

/** The entity tags of an `If-Match` or `If-None-Match` value (`*` stays `*`). */
function tagsOf(value: string): string[] {
  return value.split(",").map((tag) => tag.trim()).filter((tag) => tag !== "");
}

/**
 * Evaluates `If-Match` (strong comparison: a weak tag never matches; 412 when none does) and
 * then `If-None-Match` (weak comparison; 304 when one matches), for a GET or HEAD of content
 * whose entity tag is `etag` (quoted). Only for content that exists: a 404 stays a 404.
 */
export function evaluate(headers: Fields, etag: string): Verdict {
  const ifMatch = headers.get("if-match");
  if (ifMatch !== null) {
    const tags = tagsOf(ifMatch);
    if (!tags.includes("*") && !tags.includes(etag)) return "failed";
  }
  const ifNoneMatch = headers.get("if-none-match");
  if (ifNoneMatch !== null) {
    const tags = tagsOf(ifNoneMatch).map((tag) => tag.startsWith("W/") ? tag.slice(2) : tag);
    if (tags.includes("*") || tags.includes(etag)) return "not-modified";
  }
  return "proceed";
}

/**
 * The `Range` to honour: the request's, unless an `If-Range` names another validator (a weak
 * or different entity tag, or a date), in which case the whole content is sent (§13.1.5).
 */
export function rangeIfCurrent(headers: Fields, etag: string): string | null {
  const range = headers.get("range");
  if (range === null) return null;
  const ifRange = headers.get("if-range");
  return ifRange === null || ifRange.trim() === etag ? range : null;
}
