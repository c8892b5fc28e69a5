/**
 * Plain values the routes parse out of requests and hand to the services: byte spans and
 * page requests. No HTTP in them.
 */

/** An inclusive byte span `start..end` declared by a chunk (a PATCH's `Content-Range`). */
export interface ChunkRange {
  readonly start: number;
  readonly end: number;
}

/** A satisfiable byte span of a blob, inclusive (a GET's `Range`). */
export interface ByteSpan {
  readonly start: number;
  readonly end: number;
}

/** A page request: at most `n` items strictly after `last`. */
export interface Page {
  readonly n: number | null;
  readonly last: string | null;
}
