/**
 * Look-ups of one kind from many callers at once, answered by few queries: while `maxInFlight`
 * queries are out, new calls wait, and the next query answers every waiting call together
 * (up to `maxBatch`). Under light load each call is a query of its own, sent at once; under
 * heavy load (64 clients sending blob HEADs) one round trip answers dozens, which is where a
 * replica's time went: each query costs the database client a socket write and a reply parse.
 *
 * Freshness: a call is answered only by a query sent after the call was made, never by one
 * already out. So a look-up still sees every write that completed before it was asked, on any
 * replica, exactly as a query of its own would.
 *
 * A query that never settles (the database client can leave one so when its socket dies, see
 * `client.ts`) must not hold its place for good, or every later call would wait behind it: after
 * `timeoutMs` its calls fail with `timedOut()` and its place goes to the next query; a late
 * answer is dropped.
 */
export class Coalescer<K, V> {
  readonly #lookup: (keys: readonly K[]) => Promise<readonly V[]>;
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  readonly #timeoutMs: number;
  readonly #timedOut: () => Error;
  #inFlight = 0;
  readonly #waiting: Waiting<K, V>[] = [];

  /**
   * `lookup` answers keys in their order (one value per key, or it throws: every call of the
   * batch then fails with that error).
   */
  constructor(
    lookup: (keys: readonly K[]) => Promise<readonly V[]>,
    options: {
      maxInFlight: number;
      maxBatch: number;
      /** How long a query may take before its calls fail. */
      timeoutMs: number;
      /** The error of calls whose query took too long. */
      timedOut: () => Error;
    },
  ) {
    if (options.maxInFlight < 1 || options.maxBatch < 1 || !(options.timeoutMs > 0)) {
      throw new RangeError("a coalescer needs at least one query of at least one key, and time");
    }
    this.#lookup = lookup;
    this.#maxInFlight = options.maxInFlight;
    this.#maxBatch = options.maxBatch;
    this.#timeoutMs = options.timeoutMs;
    this.#timedOut = options.timedOut;
  }

  /** The value of `key`, from a query sent after this call. */
  get(key: K): Promise<V> {
    return new Promise<V>((resolve, reject) => {
      this.#waiting.push({ key, resolve, reject });
      this.#send();
    });
  }

  #send(): void {
    while (this.#inFlight < this.#maxInFlight && this.#waiting.length > 0) {
      const batch = this.#waiting.splice(0, this.#maxBatch);
      this.#inFlight++;
      this.#run(batch);
    }
  }

  async #run(batch: readonly Waiting<K, V>[]): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.#timedOut()), this.#timeoutMs);
    });
    try {
      const values = await Promise.race([this.#lookup(batch.map((w) => w.key)), late]);
      if (values.length !== batch.length) {
        throw new Error(`a batched look-up answered ${values.length} of ${batch.length} keys`);
      }
      batch.forEach((w, i) => w.resolve(values[i]!));
    } catch (error) {
      for (const w of batch) w.reject(error);
    } finally {
      clearTimeout(timer);
      this.#inFlight--;
      this.#send();
    }
  }
}

interface Waiting<K, V> {
  readonly key: K;
  readonly resolve: (value: V) => void;
  readonly reject: (error: unknown) => void;
}
