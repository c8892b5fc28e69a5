/**
 * Tokens of an external issuer (`auth.token.rootcertbundle`, `auth.token.jwks`), verified as
 * CNCF Distribution verifies them: the issuer (`auth.token.issuer`), the audience
 * (`auth.token.service`), `exp` and `nbf` with 60 s leeway, an allowed algorithm, and a
 * signature by a trusted key (trusted_keys.ts). A valid token's `access` claim is the authority:
 * the issuer decides who may do what, anonymous pulls included (an empty or absent `sub`).
 * The key files are read at start; `reload` re-reads them (SIGHUP), keeping the old keys when
 * the new files are unusable.
 */

import type { TokenAuthConfig } from "../config/mod.ts";
import { CLOCK_LEEWAY_S, verifyForeignToken } from "./jwt.ts";
import { accessOf } from "./scopes.ts";
import type { TokenGrant } from "./tokens.ts";
import { loadTrustStore, type TrustStore } from "./trusted_keys.ts";
import { type Verified, VerifiedTokens } from "./verified_tokens.ts";

/** Verifies the access tokens of the configured external issuer. */
export class ExternalIssuer {
  readonly #config: TokenAuthConfig;
  #store: TrustStore;
  /** Tokens verified before, until they expire (forgotten when the keys are re-read). */
  readonly #verified = new VerifiedTokens<TokenGrant>();

  private constructor(config: TokenAuthConfig, store: TrustStore) {
    this.#config = config;
    this.#store = store;
  }

  /** Reads the key files of `config`; throws one line naming a file that is unusable. */
  static async open(config: TokenAuthConfig): Promise<ExternalIssuer> {
    return new ExternalIssuer(config, await loadTrustStore(config.rootCertBundle, config.jwks));
  }

  /** How many keys are trusted, and how many root certificates chains may end in. */
  get counts(): { keys: number; roots: number } {
    return { keys: this.#store.size, roots: this.#store.roots };
  }

  /** Re-reads the key files; throws (keeping the keys in use) when they are unusable. */
  async reload(): Promise<void> {
    this.#store = await loadTrustStore(this.#config.rootCertBundle, this.#config.jwks);
    this.#verified.clear();
  }

  /** The grant of a token verified before and still valid, without waiting; else null. */
  knownAccess(token: string): TokenGrant | null {
    return this.#verified.known(token) ?? null;
  }

  /** The grant of a valid token of the external issuer; null for anything else. */
  verifyAccess(token: string): Promise<TokenGrant | null> {
    return this.#verified.get(token, (t) => this.#verifyOnce(t));
  }

  async #verifyOnce(token: string): Promise<Verified<TokenGrant> | null> {
    const store = this.#store;
    const payload = await verifyForeignToken(token, (header) => store.resolve(header), {
      issuer: this.#config.issuer,
      audience: this.#config.service,
    });
    if (payload === null) return null;
    if (payload.sub !== undefined && typeof payload.sub !== "string") return null;
    const access = accessOf(payload.access);
    if (access === null || typeof payload.exp !== "number") return null;
    return {
      value: { user: payload.sub ? payload.sub : null, access },
      validUntilS: payload.exp + CLOCK_LEEWAY_S,
    };
  }
}
