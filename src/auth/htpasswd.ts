/**
 * An htpasswd file of bcrypt entries (`user:$2y$...`, as `htpasswd -B` writes them), checked
 * for changes (modification time and size) at most once a second and re-read when it changed.
 * Entries of other hash kinds are refused with a warning naming the user, never the hash. An
 * unknown user is checked against a dummy hash of the file's highest cost, so that it costs
 * as much as a wrong password. A successful check is remembered for a minute (keyed by the user
 * and a SHA-256 of the password), so a client that sends Basic credentials on every request
 * pays one bcrypt, not one per request.
 */

import { createHash } from "node:crypto";
import type { Logger } from "../log.ts";
import { costOf, dummyHash, isBcrypt, verifyPassword } from "./bcrypt.ts";

/** Options of an HtpasswdFile (tests shorten the times). */
export interface HtpasswdOptions {
  /** The file is looked at (stat) at most this often (default 1000 ms). */
  readonly checkIntervalMs?: number;
  /** How long a successful check is remembered (default 60 s). */
  readonly cacheMs?: number;
  /** The most successful checks remembered (default 1000). */
  readonly cacheEntries?: number;
}

interface Loaded {
  /** User → bcrypt hash; null for an entry of a refused kind. */
  readonly users: ReadonlyMap<string, string | null>;
  readonly dummy: string;
  readonly stamp: string;
}

/** The users who can log in (bcrypt entries), and the entries refused (other hash kinds). */
function counts(loaded: Loaded): { users: number; refused: number } {
  let users = 0;
  for (const hash of loaded.users.values()) if (hash !== null) users++;
  return { users, refused: loaded.users.size - users };
}

/** The users of an htpasswd file. */
export class HtpasswdFile {
  readonly #path: string;
  readonly #log: Logger;
  readonly #checkIntervalMs: number;
  readonly #cacheMs: number;
  readonly #cacheEntries: number;
  #loaded: Loaded;
  #checkedAt: number;
  #checking: Promise<void> | null = null;
  /** `user \0 sha256(password)` → when the success expires. */
  readonly #cache = new Map<string, number>();

  private constructor(path: string, log: Logger, loaded: Loaded, options: HtpasswdOptions) {
    this.#path = path;
    this.#log = log;
    this.#loaded = loaded;
    this.#checkedAt = performance.now();
    this.#checkIntervalMs = options.checkIntervalMs ?? 1000;
    this.#cacheMs = options.cacheMs ?? 60_000;
    this.#cacheEntries = options.cacheEntries ?? 1000;
  }

  /** Reads the file; throws (naming the path) when it cannot be read. */
  static async open(
    path: string,
    log: Logger,
    options: HtpasswdOptions = {},
  ): Promise<HtpasswdFile> {
    const loaded = await load(path, log);
    log.info("htpasswd file loaded", { path, ...counts(loaded) });
    return new HtpasswdFile(path, log, loaded, options);
  }

  /** How many usable (bcrypt) entries the file has. */
  get size(): number {
    return counts(this.#loaded).users;
  }

  /** Whether the file (re-read if it changed) has a usable entry for `user`. */
  async has(user: string): Promise<boolean> {
    await this.#refresh();
    return (this.#loaded.users.get(user) ?? null) !== null;
  }

  /** Whether `password` is the user's; an unknown user takes as long as a wrong password. */
  async verify(user: string, password: string): Promise<boolean> {
    await this.#refresh();
    const key = `${user}\0${createHash("sha256").update(password).digest("hex")}`;
    const now = performance.now();
    const expires = this.#cache.get(key);
    if (expires !== undefined) {
      if (expires > now) return true;
      this.#cache.delete(key);
    }
    const loaded = this.#loaded;
    const hash = loaded.users.get(user) ?? null;
    const ok = await verifyPassword(password, hash ?? loaded.dummy) && hash !== null;
    // A success is only remembered if the file did not change while it was being checked.
    if (ok && loaded === this.#loaded) {
      if (this.#cache.size >= this.#cacheEntries) {
        this.#cache.delete(this.#cache.keys().next().value!);
      }
      this.#cache.set(key, now + this.#cacheMs);
    }
    return ok;
  }

  /** Re-reads the file when its modification time or size changed (stat at most once a second). */
  #refresh(): Promise<void> {
    if (performance.now() - this.#checkedAt < this.#checkIntervalMs) return Promise.resolve();
    this.#checking ??= (async () => {
      try {
        const info = await Deno.stat(this.#path);
        if (stampOf(info) !== this.#loaded.stamp) {
          this.#loaded = await load(this.#path, this.#log);
          this.#cache.clear();
          this.#log.info("htpasswd file reloaded", { path: this.#path, ...counts(this.#loaded) });
        }
      } catch (error) {
        this.#log.error("htpasswd file unreadable; keeping the users read before", {
          path: this.#path,
          error: error instanceof Error ? error.message : String(error),
        });
      } finally {
        this.#checkedAt = performance.now();
        this.#checking = null;
      }
    })();
    return this.#checking;
  }
}

function stampOf(info: Deno.FileInfo): string {
  return `${info.mtime?.getTime() ?? 0}:${info.size}`;
}

async function load(path: string, log: Logger): Promise<Loaded> {
  let info: Deno.FileInfo;
  let content: string;
  try {
    info = await Deno.stat(path);
    content = await Deno.readTextFile(path);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`Cannot read the htpasswd file ${path}: ${reason}`);
  }
  const users = new Map<string, string | null>();
  let cost = 4;
  content.split("\n").forEach((raw, i) => {
    const line = raw.replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) return;
    const colon = line.indexOf(":");
    if (colon <= 0) {
      log.warn("htpasswd line ignored: expected user:hash", { path, line: i + 1 });
      return;
    }
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (!isBcrypt(hash)) {
      log.warn("htpasswd entry refused: only bcrypt hashes (htpasswd -B) are accepted", {
        path,
        user,
        line: i + 1,
      });
      users.set(user, null);
      return;
    }
    cost = Math.max(cost, costOf(hash));
    users.set(user, hash);
  });
  return { users, dummy: dummyHash(cost), stamp: stampOf(info) };
}
