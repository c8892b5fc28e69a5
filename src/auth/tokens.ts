/**
 * The built-in token issuer's tokens. An access token is an ES256 JWT (`typ: JWT`) with iss,
 * sub (the user, `""` for anonymous), aud (the service), exp, nbf, iat, jti and `access`. A
 * refresh token is an ES256 JWT of its own type (`typ: refresh+jwt`) and audience
 * (`<service>#refresh`), bound to the user, valid for 30 days and carrying no access: it only
 * buys access tokens, and only while the user is still in the htpasswd file.
 */

import type { TokenAuthConfig } from "../config/mod.ts";
import { CLOCK_LEEWAY_S, type SigningKey, signToken, verifyToken } from "./jwt.ts";
import { type AccessEntry, accessOf } from "./scopes.ts";
import { type Verified, VerifiedTokens } from "./verified_tokens.ts";

/** How long a refresh token lasts, in seconds. */
export const REFRESH_EXPIRY_S = 30 * 24 * 3600;

const ACCESS_TYP = "JWT";
const REFRESH_TYP = "refresh+jwt";

/** The body of a token endpoint's answer. */
export interface TokenResponse {
  readonly token: string;
  readonly access_token: string;
  readonly expires_in: number;
  readonly issued_at: string;
  readonly refresh_token?: string;
}

/** Who a verified access token speaks for, and what it allows. */
export interface TokenGrant {
  /** The user; null for an anonymous token. */
  readonly user: string | null;
  readonly access: readonly AccessEntry[];
}

/** Signs and verifies the registry's access and refresh tokens. */
export class TokenIssuer {
  readonly #key: SigningKey;
  readonly #config: TokenAuthConfig;
  /** Access tokens verified before, so a client's token costs one signature check. */
  readonly #verified = new VerifiedTokens<TokenGrant>();

  /** An issuer signing with `key` for the service and issuer of `config`. */
  constructor(key: SigningKey, config: TokenAuthConfig) {
    this.#key = key;
    this.#config = config;
  }

  /** The key id (`kid`) of the tokens. */
  get kid(): string {
    return this.#key.kid;
  }

  /** An access token for `user` (null: anonymous) granting `access`, and a refresh token. */
  async issue(
    user: string | null,
    access: readonly AccessEntry[],
    refresh: string | boolean,
  ): Promise<TokenResponse> {
    const expiresIn = Math.max(60, Math.floor(this.#config.expirationMs / 1000));
    const issuedAt = new Date();
    const token = await signToken(this.#key, { access }, {
      issuer: this.#config.issuer,
      audience: this.#config.service,
      subject: user ?? "",
      typ: ACCESS_TYP,
      expiresInS: expiresIn,
    });
    const refreshToken = typeof refresh === "string"
      ? refresh
      : refresh && user !== null
      ? await signToken(this.#key, {}, {
        issuer: this.#config.issuer,
        audience: `${this.#config.service}#refresh`,
        subject: user,
        typ: REFRESH_TYP,
        expiresInS: REFRESH_EXPIRY_S,
      })
      : undefined;
    return {
      token,
      access_token: token,
      expires_in: expiresIn,
      issued_at: issuedAt.toISOString(),
      ...(refreshToken ? { refresh_token: refreshToken } : {}),
    };
  }

  /** The grant of a token verified before and still valid, without waiting; else null. */
  knownAccess(token: string): TokenGrant | null {
    return this.#verified.known(token) ?? null;
  }

  /** The grant of a valid access token of ours; null for anything else. */
  verifyAccess(token: string): Promise<TokenGrant | null> {
    return this.#verified.get(token, (t) => this.#verifyAccessOnce(t));
  }

  async #verifyAccessOnce(token: string): Promise<Verified<TokenGrant> | null> {
    const payload = await verifyToken(this.#key, token, {
      issuer: this.#config.issuer,
      audience: this.#config.service,
      typ: ACCESS_TYP,
    });
    if (payload === null || typeof payload.sub !== "string") return null;
    const access = accessOf(payload.access);
    if (access === null || typeof payload.exp !== "number") return null;
    return {
      value: { user: payload.sub === "" ? null : payload.sub, access },
      validUntilS: payload.exp + CLOCK_LEEWAY_S,
    };
  }

  /** The user of a valid refresh token of ours; null for anything else. */
  async verifyRefresh(token: string): Promise<string | null> {
    const payload = await verifyToken(this.#key, token, {
      issuer: this.#config.issuer,
      audience: `${this.#config.service}#refresh`,
      typ: REFRESH_TYP,
    });
    return typeof payload?.sub === "string" && payload.sub !== "" ? payload.sub : null;
  }
}
