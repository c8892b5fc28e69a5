/**
 * Response builders. Bodies are never compressed: digests are over the stored bytes.
 */

/** Response header values; undefined entries are left out. */
export type HeaderValues = Record<string, string | undefined>;

function headersOf(values: HeaderValues): Headers {
  const headers = new Headers();
  for (const [key, value] of Object.entries(values)) {
    if (value !== undefined) headers.set(key, value);
  }
  return headers;
}

/** A response with no body (202, 204, 201 without content), `Content-Length: 0`. */
export function empty(status: number, headers: HeaderValues = {}): Response {
  return new Response(null, { status, headers: headersOf({ "Content-Length": "0", ...headers }) });
}

/** A JSON response from already-serialized text. */
export function jsonText(
  status: number,
  text: string,
  headers: HeaderValues = {},
): Response {
  const bytes = new TextEncoder().encode(text);
  return new Response(bytes, {
    status,
    headers: headersOf({
      "Content-Type": "application/json",
      "Content-Length": String(bytes.length),
      ...headers,
    }),
  });
}

/** A response carrying bytes or a stream with an exact length and type. */
export function content(
  status: number,
  body: BodyInit | null,
  headers: HeaderValues,
): Response {
  return new Response(body, { status, headers: headersOf(headers) });
}
