/**
 * Verified tokens, remembered until they expire. Checking an ES256 signature costs about a
 * millisecond of CPU here, twenty times a blob HEAD; clients send the same token for every
 * request of its lifetime, so the registry checks each token once and then looks it up.
 *
 * The whole token text is the key: a token that differs in any byte is a miss and is checked
 * in full. Only valid tokens are remembered (a stream of bad tokens cannot fill the memory),
 * each until the end of its own validity (`exp` plus the verification's clock leeway), and
 * the total is bounded by bytes of token text: the least recently used go first.
 */

/** A verified token's meaning and the second (Unix time) after which it is no longer valid. */
export interface Verified<T> {
  readonly value: T;
  /** Unix seconds: the token is refused from this second on (its `exp` plus the leeway). */
  readonly validUntilS: number;
}

/** Options of `VerifiedTokens`. */
export interface VerifiedTokensOptions {
  /** The most bytes of token text remembered (default 4 MiB). */
  readonly maxBytes?: number;
  /** The clock, in milliseconds (tests). */
  readonly now?: () => number;
}

/** A bounded memory of verified tokens. */
export class VerifiedTokens<T> {
  readonly #maxBytes: number;
  readonly #now: () => number;
  /** Insertion order is recency order: a hit moves its entry to the end. */
  readonly #entries = new Map<string, Verified<T>>();
  #bytes = 0;
  /** Moves on every `clear`: a check that started before one is not remembered. */
  #generation = 0;
  /** The most recently used token (the last entry), or null when that is not known. */
  #newest: string | null = null;

  /** Makes an empty memory. */
  constructor(options: VerifiedTokensOptions = {}) {
    this.#maxBytes = options.maxBytes ?? 4 * 1024 * 1024;
    this.#now = options.now ?? Date.now;
  }

  /** Bytes of token text remembered. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Tokens remembered. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * The meaning of `token` when it was verified before and is still valid (it is then the most
   * recently used), without waiting; undefined otherwise (an expired token is forgotten).
   */
  known(token: string): T | undefined {
    const known = this.#entries.get(token);
    if (known === undefined) return undefined;
    if (this.#now() / 1000 >= known.validUntilS) {
      this.#forget(token);
      return undefined;
    }
    // Clients send one token for many requests: most hits are on the newest entry already.
    if (token !== this.#newest) {
      this.#entries.delete(token);
      this.#entries.set(token, known);
      this.#newest = token;
    }
    return known.value;
  }

  /**
   * The meaning of `token`: remembered when it was verified before and is still valid,
   * otherwise `verify(token)`'s answer (remembered when it is not null).
   */
  async get(
    token: string,
    verify: (token: string) => Promise<Verified<T> | null>,
  ): Promise<T | null> {
    const known = this.known(token);
    if (known !== undefined) return known;
    const generation = this.#generation;
    const verified = await verify(token);
    if (verified === null) return null;
    if (
      generation === this.#generation && this.#now() / 1000 < verified.validUntilS &&
      token.length <= this.#maxBytes
    ) {
      this.#remember(token, verified);
    }
    return verified.value;
  }

  /** Forgets every token (the trusted keys changed). */
  clear(): void {
    this.#generation++;
    this.#entries.clear();
    this.#bytes = 0;
    this.#newest = null;
  }

  #remember(token: string, verified: Verified<T>): void {
    this.#forget(token);
    this.#entries.set(token, verified);
    this.#bytes += token.length;
    this.#newest = token;
    for (const oldest of this.#entries.keys()) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#forget(oldest);
    }
  }

  #forget(token: string): void {
    if (!this.#entries.delete(token)) return;
    this.#bytes -= token.length;
    if (token === this.#newest) this.#newest = null;
  }
}
