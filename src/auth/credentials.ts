/**
 * The credentials of an `Authorization` header: `Basic` user and password, or a `Bearer` token.
 */

/** Credentials from an `Authorization` header: none, unusable, or a user and password. */
export type Credentials =
  | { readonly kind: "none" }
  | { readonly kind: "invalid" }
  | { readonly kind: "basic"; readonly user: string; readonly password: string };

/**
 * Reads `Basic` credentials from an `Authorization` header (anything else is invalid). An empty
 * user and password (`Basic Og==`) are no credentials: podman, skopeo and buildah
 * (containers/image) answer a `Basic` challenge with them when they have none.
 */
export function credentialsOf(header: string | null): Credentials {
  if (header === null || header.trim() === "") return { kind: "none" };
  const m = /^basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i.exec(header);
  if (!m) return { kind: "invalid" };
  let decoded: string;
  try {
    const bytes = Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0));
    decoded = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { kind: "invalid" };
  }
  if (decoded === ":") return { kind: "none" };
  const colon = decoded.indexOf(":");
  if (colon <= 0) return { kind: "invalid" };
  return { kind: "basic", user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** The token of an `Authorization: Bearer` header; null for any other header. */
export function bearerOf(header: string | null): string | null {
  const m = header === null ? null : /^bearer[ \t]+([^\s]+)[ \t]*$/i.exec(header);
  return m ? m[1] : null;
}
