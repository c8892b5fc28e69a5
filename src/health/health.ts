/**
 * The registry's health: the storage check (a small write and delete through the driver),
 * the free space of the data root, and the drain, as `/readyz` and `/debug/health` report
 * them. In the scale-out mode (`storage.s3`) there is no data root: no free-space check, and
 * `/readyz` checks the database (`select 1`) as well.
 *
 * With `health.storagedriver` enabled the storage check runs every `intervalMs` and counts
 * as failing once `threshold` checks in a row failed (Distribution's threshold updater); it
 * then appears in `/debug/health` as `storagedriver_<driver>` and fails `/readyz`. Disabled,
 * `/debug/health` reports nothing about storage, and `/readyz` runs the check itself, at most
 * once per `ON_DEMAND_MS`, failing at the first failure.
 */

import type { Config } from "../config/mod.ts";
import type { Logger } from "../log.ts";
import type { StorageDriver } from "../storage/driver.ts";
import { type FreeSpace, freeSpaceMeter } from "./free_space.ts";

/** The key the storage check writes and deletes (at the top of the data root). */
export const PROBE_KEY = "_health";

/** Without the periodic check, `/readyz` checks storage at most this often. */
export const ON_DEMAND_MS = 3000;

/** Free space is measured at most this often. */
const FREE_SPACE_MS = 1000;

/** Options of `Health` beyond the configuration (tests). */
export interface HealthOptions {
  /** How free space is measured (default: `freeSpaceMeter()`; null: not checked). */
  readonly freeSpace?: FreeSpace | null;
  /** The scale-out mode's database (checked by `/readyz`); absent: none. */
  readonly database?: { check(): Promise<void> } | null;
}

/** Failing checks by name, with why: empty when healthy. */
export type CheckFailures = Record<string, string>;

/** The health checks of one registry. */
export class Health {
  /** The storage check's name, as Distribution names it (`storagedriver_filesystem`). */
  readonly storageCheck: string;
  readonly #driver: StorageDriver;
  readonly #log: Logger;
  readonly #periodic: boolean;
  readonly #threshold: number;
  readonly #timeoutMs: number;
  readonly #dataDir: string;
  readonly #minFree: number;
  readonly #freeSpace: FreeSpace | null;
  readonly #timer: ReturnType<typeof setInterval> | null;
  /** Failed storage checks in a row, and the last failure. */
  #failures = 0;
  #lastError = "";
  #probe: Promise<void> | null = null;
  #probedAt = -Infinity;
  #free: { at: number; bytes: Promise<number | null> } | null = null;
  #warnedFreeSpace = false;
  readonly #database: { check(): Promise<void> } | null;

  /** Sets up the checks; the periodic storage check starts when enabled. */
  constructor(config: Config, driver: StorageDriver, log: Logger, options: HealthOptions = {}) {
    const { enabled, intervalMs, threshold } = config.storageHealth;
    this.storageCheck = `storagedriver_${driver.name}`;
    this.#driver = driver;
    this.#log = log;
    this.#periodic = enabled;
    this.#threshold = enabled ? Math.max(1, threshold) : 1;
    this.#timeoutMs = enabled ? Math.max(1000, intervalMs) : 10_000;
    this.#dataDir = config.dataDir;
    // No data root in the scale-out mode: nothing of the replica's own disk to check.
    this.#minFree = config.s3 === null ? config.readyMinFreeBytes : 0;
    this.#freeSpace = options.freeSpace === undefined ? freeSpaceMeter() : options.freeSpace;
    this.#database = options.database ?? null;
    this.#timer = enabled ? setInterval(() => void this.checkStorage(), intervalMs) : null;
    if (this.#timer !== null) Deno.unrefTimer(this.#timer);
  }

  /** Stops the periodic check (a check under way finishes; `settled()` waits for it). */
  close(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
  }

  /** Resolves when no storage check is under way. */
  async settled(): Promise<void> {
    await this.#probe;
  }

  /**
   * Runs the storage check now (or joins the one under way): writes and deletes `PROBE_KEY`,
   * failing when either throws or both take longer than the interval.
   */
  checkStorage(): Promise<void> {
    this.#probe ??= this.#runProbe().finally(() => {
      this.#probe = null;
    });
    return this.#probe;
  }

  /** The storage failure, once `threshold` checks in a row failed; else null. */
  storageFailure(): string | null {
    return this.#failures >= this.#threshold ? this.#lastError : null;
  }

  /** `/debug/health`: Distribution's checks (storage, when its periodic check is on). */
  debugStatus(): CheckFailures {
    const failure = this.#periodic ? this.storageFailure() : null;
    return failure === null ? {} : { [this.storageCheck]: failure };
  }

  /**
   * `/readyz`: the failing checks among the drain, storage and free space (empty: ready).
   * While draining no storage check is started.
   */
  async readiness(draining: boolean): Promise<CheckFailures> {
    const failing: CheckFailures = {};
    if (draining) failing.draining = "The registry is shutting down";
    const storage = this.#periodic || draining ? this.storageFailure() : await this.#onDemand();
    if (storage !== null) failing[this.storageCheck] = storage;
    if (this.#database !== null && !draining) {
      const failure = await this.#checkDatabase();
      if (failure !== null) failing.database = failure;
    }
    const free = await this.#freeBytes();
    if (free !== null && free < this.#minFree) {
      failing.free_space = `Free space on the data root is ${free} bytes, ` +
        `below the minimum of ${this.#minFree} bytes`;
    }
    return failing;
  }

  async #checkDatabase(): Promise<string | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
    });
    try {
      await Promise.race([this.#database!.check(), timeout]);
      return null;
    } catch (error) {
      return `Cannot reach the database: ${error instanceof Error ? error.message : String(error)}`;
    } finally {
      clearTimeout(timer);
    }
  }

  async #onDemand(): Promise<string | null> {
    if (performance.now() - this.#probedAt >= ON_DEMAND_MS) await this.checkStorage();
    return this.storageFailure();
  }

  async #runProbe(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`Storage check took longer than ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
    });
    const write = (async () => {
      await this.#driver.put(PROBE_KEY, new Date().toISOString());
      await this.#driver.delete(PROBE_KEY);
    })();
    write.catch(() => {}); // when the timeout wins, its failure is already reported
    try {
      await Promise.race([write, timeout]);
      if (this.#failures >= this.#threshold) {
        this.#log.info("storage health check passes again", { check: this.storageCheck });
      }
      this.#failures = 0;
    } catch (error) {
      this.#lastError = `Cannot write to the storage: ${
        error instanceof Error ? error.message : String(error)
      }`;
      const wasFailing = this.#failures >= this.#threshold;
      this.#failures = Math.min(this.#failures + 1, this.#threshold);
      if (!wasFailing && this.#failures >= this.#threshold) {
        this.#log.warn("storage health check fails", {
          check: this.storageCheck,
          error: this.#lastError,
        });
      }
    } finally {
      clearTimeout(timer);
      this.#probedAt = performance.now();
    }
  }

  async #freeBytes(): Promise<number | null> {
    if (this.#minFree <= 0 || this.#freeSpace === null) {
      if (this.#minFree > 0 && !this.#warnedFreeSpace) {
        this.#warnedFreeSpace = true;
        this.#log.warn("free space of the data root cannot be measured; /readyz ignores it", {
          hint: "grant --allow-sys=statfs or --allow-ffi",
        });
      }
      return null;
    }
    const now = performance.now();
    if (this.#free === null || now - this.#free.at >= FREE_SPACE_MS) {
      this.#free = { at: now, bytes: this.#freeSpace(this.#dataDir).catch(() => null) };
    }
    return await this.#free.bytes;
  }
}
