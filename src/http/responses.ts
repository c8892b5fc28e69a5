/**
 * Response builders. Every response carries `Docker-Distribution-API-Version`. Bodies are
 * never compressed: digests are over the stored bytes. Each builder also records the body it
 * was given (`bodyOf`), so our HTTP/1.1 server writes bytes and files without going through
 * the `Response`'s stream.
 */

/** The body a response was built with. */
export type ResponseBody = Uint8Array | ReadableStream<Uint8Array> | null;

const bodies = new WeakMap<Response, ResponseBody>();

/** The body a response from these builders was made with; undefined for other responses. */
export function bodyOf(response: Response): ResponseBody | undefined {
  return bodies.get(response);
}

function make(status: number, body: ResponseBody, headers: [string, string][]): Response {
  const response = new Response(body as BodyInit | null, { status, headers });
  bodies.set(response, body);
  return response;
}

/** Response header values; undefined entries are left out. */
export type HeaderValues = Record<string, string | undefined>;

/** The header Docker clients check on every response. */
export const API_VERSION_HEADER = "Docker-Distribution-API-Version";
const API_VERSION = "registry/2.0";

/** The header list of a response: the given values plus the API version. */
export function headerList(values: HeaderValues): [string, string][] {
  const list: [string, string][] = [[API_VERSION_HEADER, API_VERSION]];
  for (const key in values) {
    const value = values[key];
    if (value !== undefined) list.push([key, value]);
  }
  return list;
}

/** A response with no body (202, 204, 201, HEAD), `Content-Length: 0` unless given. */
export function empty(status: number, headers: HeaderValues = {}): Response {
  return make(status, null, headerList({ "Content-Length": "0", ...headers }));
}

/** A JSON response from already-serialized text. */
export function jsonText(status: number, text: string, headers: HeaderValues = {}): Response {
  const bytes = new TextEncoder().encode(text);
  return make(
    status,
    bytes,
    headerList({
      "Content-Type": "application/json",
      "Content-Length": String(bytes.length),
      ...headers,
    }),
  );
}

/** A response carrying bytes or a stream with an exact length and type. */
export function content(status: number, body: ResponseBody, headers: HeaderValues): Response {
  return make(status, body, headerList(headers));
}

/** A response without a body carrying another response's status and headers (HEAD from GET). */
export function headersOnly(response: Response): Response {
  return make(response.status, null, [...response.headers]);
}
