/**
 * The delay after a failed authentication, per client address: `base` after the first
 * failure in a row, doubling with each further one up to ten times `base`; a success resets
 * the address. Only the failing requests of that address wait: other addresses, and the
 * address's own good requests, are never held back. The table is bounded (oldest first out).
 */

const MAX_ADDRESSES = 10_000;
const FORGET_MS = 15 * 60_000;

/** Failure counts per client address. */
export class FailDelay {
  readonly #baseMs: number;
  readonly #failures = new Map<string, { count: number; at: number }>();

  /** `baseMs` 0 turns the delay off. */
  constructor(baseMs: number) {
    this.#baseMs = baseMs;
  }

  /** Records a failure from `address` and returns how long to wait before answering (ms). */
  fail(address: string): number {
    if (this.#baseMs === 0) return 0;
    const now = performance.now();
    const last = this.#failures.get(address);
    const count = last && now - last.at < FORGET_MS ? last.count + 1 : 1;
    this.#failures.delete(address);
    if (this.#failures.size >= MAX_ADDRESSES) {
      this.#failures.delete(this.#failures.keys().next().value!);
    }
    this.#failures.set(address, { count, at: now });
    return Math.min(this.#baseMs * 2 ** Math.min(count - 1, 10), this.#baseMs * 10);
  }

  /** Forgets the failures of `address` (after a success). */
  succeed(address: string): void {
    this.#failures.delete(address);
  }
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}
