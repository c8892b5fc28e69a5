/**
 * Locks come in through an interface: the services take the lock of a repository (or of a
 * blob digest, or an upload session) around each operation that must be linearizable. One
 * process owning its data root uses the in-process `KeyedMutex`; replicas sharing storage use
 * an implementation over their shared database.
 */

/** Runs functions one at a time per key. */
export interface LockManager {
  /** Runs `fn` once every earlier holder of `key` has finished; rethrows what `fn` throws. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /** Whether some caller holds or waits for `key` (in this process). */
  isBusy(key: string): boolean;
}

/**
 * A keyed async mutex: callers with the same key run one after another, in arrival order.
 * It serializes writers within this process (the process owns its data root).
 */
export class KeyedMutex implements LockManager {
  readonly #tails = new Map<string, Promise<void>>();

  /** @inheritdoc */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** @inheritdoc */
  isBusy(key: string): boolean {
    return this.#tails.has(key);
  }
}
