/**
 * Test helper: a memory driver whose calls can be held back, to force an interleaving of a
 * read and a write in the stores above it. A held read (`get`, `list`, `stat`) takes its value
 * at once and hands it over only when released; a held write (`put`, `delete`) waits before
 * it touches anything.
 */

import assert from "node:assert/strict";
import type { ListOptions, ObjectInfo, PutOptions } from "../../src/storage/driver.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";

/** The calls that can be held. */
export type HeldCall = "get" | "list" | "stat" | "put" | "delete";

interface Hold {
  readonly call: HeldCall;
  readonly key: string;
  readonly gate: Promise<void>;
}

/** A memory driver with holds; see the module comment. */
export class HeldDriver extends MemoryDriver {
  #holds: Hold[] = [];
  /** `call key` of every call that was held so far. */
  readonly held: string[] = [];

  /**
   * Holds the next `call` of `key` (one call per hold) until the returned function is
   * called. Reads take their value first; writes wait before doing anything.
   */
  hold(call: HeldCall, key: string): () => void {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const hold = { call, key, gate };
    this.#holds.push(hold);
    return () => {
      this.#holds = this.#holds.filter((h) => h !== hold);
      release();
    };
  }

  /** Resolves once a call of `key` is being held (polls the event loop a while). */
  async whenHeld(call: HeldCall, key: string): Promise<void> {
    const wanted = `${call} ${key}`;
    for (let i = 0; i < 1000 && !this.held.includes(wanted); i++) {
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    assert.ok(this.held.includes(wanted), `a ${call} of ${key} is held`);
  }

  async #wait(call: HeldCall, key: string): Promise<void> {
    const hold = this.#holds.find((h) => h.call === call && h.key === key);
    if (!hold) return;
    this.#holds = this.#holds.filter((h) => h !== hold);
    this.held.push(`${call} ${key}`);
    await hold.gate;
  }

  override async get(key: string): Promise<Uint8Array<ArrayBuffer> | null> {
    const value = await super.get(key);
    await this.#wait("get", key);
    return value;
  }

  override async list(prefix: string, options?: ListOptions): Promise<string[]> {
    const value = await super.list(prefix, options);
    await this.#wait("list", prefix);
    return value;
  }

  override async stat(key: string): Promise<ObjectInfo | null> {
    const value = await super.stat(key);
    await this.#wait("stat", key);
    return value;
  }

  override async put(key: string, bytes: Uint8Array | string, options?: PutOptions) {
    await this.#wait("put", key);
    await super.put(key, bytes, options);
  }

  override async delete(key: string): Promise<boolean> {
    await this.#wait("delete", key);
    return await super.delete(key);
  }
}

/** Runs `fn` after `ticks` microtasks. */
export function afterTicks(ticks: number, fn: () => void): void {
  let later = Promise.resolve();
  for (let i = 0; i < ticks; i++) later = later.then(() => {});
  later.then(fn);
}

/** One race of `raceAtEveryOffset`: a write, a read of what it changes, and the check. */
export interface Race {
  /** The write's driver call to hold, and its key. */
  readonly writeCall: HeldCall;
  readonly writeKey: string;
  /** The read's driver call to hold (once it has its value), and its key. */
  readonly readCall: HeldCall;
  readonly readKey: string;
  write(): Promise<unknown>;
  read(): Promise<unknown>;
  /** Throws when a later read gives a stale value. */
  check(): Promise<void>;
}

/**
 * For every offset from -`span` to +`span` microtasks: starts `write` and holds its driver
 * call, starts `read` (so it begins while the write is inside the store) and holds it once it
 * has its value (from before the write), then releases the write and the read `offset`
 * microtasks apart (negative: the read first), and runs `check`. So the read resumes at every
 * point around the end of the write. `make` builds fresh stores over a fresh driver each time.
 */
export async function raceAtEveryOffset(
  make: () => Promise<{ driver: HeldDriver; race: Race }>,
  span = 30,
): Promise<void> {
  for (let offset = -span; offset <= span; offset++) {
    const { driver, race } = await make();
    const releaseWrite = driver.hold(race.writeCall, race.writeKey);
    const writing = race.write();
    await driver.whenHeld(race.writeCall, race.writeKey);
    const releaseRead = driver.hold(race.readCall, race.readKey);
    const reading = race.read();
    await driver.whenHeld(race.readCall, race.readKey);
    afterTicks(Math.max(0, -offset), releaseWrite);
    afterTicks(Math.max(0, offset), releaseRead);
    await Promise.all([writing, reading]);
    try {
      await race.check();
    } catch (error) {
      throw new Error(
        `stale cache when the read resumed ${offset} microtasks after the write was let go`,
        { cause: error },
      );
    }
  }
}
