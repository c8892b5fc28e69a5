/**
 * A one-shot failure that waits can be raced against without leaking.
 *
 * `Promise.race([work, failed])` with a `failed` promise that stays pending adds a reaction
 * to `failed` at every call, and each reaction keeps the race's promise (and its value)
 * reachable until `failed` settles. For a promise that lives as long as a keep-alive
 * connection, raced at every request head, that is a few hundred bytes per request held for
 * the connection's life: 64 busy connections grew the heap by about 100 MiB in 20 s. A
 * tripwire's `race` forgets its wait once the work settles.
 */
export class Tripwire {
  #tripped = false;
  #error: unknown = undefined;
  readonly #waiting = new Set<(error: unknown) => void>();

  /** True once `trip` was called. */
  get tripped(): boolean {
    return this.#tripped;
  }

  /** Races still waiting: none once every raced work settled, or once tripped. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /** Fails every race under way, and every later one, with `error`; later calls do nothing. */
  trip(error: unknown): void {
    if (this.#tripped) return;
    this.#tripped = true;
    this.#error = error;
    for (const fail of this.#waiting) fail(error);
    this.#waiting.clear();
  }

  /**
   * Settles as `work` does, unless the tripwire has tripped or trips before `work`'s outcome
   * is delivered (even when `work` has already settled): then rejects with its error (`work`
   * goes on, and its outcome is ignored).
   */
  race<T>(work: Promise<T>): Promise<T> {
    if (this.#tripped) {
      work.catch(() => {});
      return Promise.reject(this.#error);
    }
    return new Promise<T>((resolve, reject) => {
      this.#waiting.add(reject);
      work.then(
        (value) => {
          this.#waiting.delete(reject);
          resolve(value);
        },
        (error) => {
          this.#waiting.delete(reject);
          reject(error);
        },
      );
    });
  }
}
