/**
 * bcrypt, behind this module only (`bcryptjs`, pure JavaScript): hashing for tests and tools,
 * verification of `htpasswd -B` entries (`$2y$`, `$2a$`, `$2b$`). Verification runs in slices
 * that yield to the event loop, so one check does not stall other requests.
 */

import bcryptjs from "bcryptjs";

const BCRYPT = /^\$2[aby]\$(\d{2})\$[./A-Za-z0-9]{53}$/;

/** Whether `hash` is a bcrypt hash in the modular crypt format. */
export function isBcrypt(hash: string): boolean {
  const m = BCRYPT.exec(hash);
  return m !== null && Number(m[1]) >= 4 && Number(m[1]) <= 31;
}

/** The cost (log2 of the rounds) of a bcrypt hash; throws on a hash that is not bcrypt. */
export function costOf(hash: string): number {
  if (!isBcrypt(hash)) throw new Error("Not a bcrypt hash");
  return Number(hash.slice(4, 6));
}

/** Hashes a password at `cost` (4..31) as a `$2y$` entry, as `htpasswd -B` writes it. */
export async function hashPassword(password: string, cost: number): Promise<string> {
  const hash = await bcryptjs.hash(password, cost);
  return `$2y$${hash.slice(4)}`;
}

/** Whether `password` matches the bcrypt `hash` (false for a hash that is not bcrypt). */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  if (!isBcrypt(hash)) return false;
  // bcryptjs knows $2a$ and $2b$; $2y$ (PHP's and Apache's name) is the same algorithm.
  const normalized = hash.startsWith("$2y$") ? `$2b$${hash.slice(4)}` : hash;
  return await bcryptjs.compare(password, normalized);
}

/**
 * A well-formed hash at `cost` that no password matches in practice: an unknown user is
 * checked against it, so that a miss costs as much as a wrong password.
 */
export function dummyHash(cost: number): string {
  const salt = bcryptjs.genSaltSync(cost);
  return `$2y$${salt.slice(4)}${"A".repeat(31)}`;
}
