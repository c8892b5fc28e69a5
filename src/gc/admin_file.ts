/**
 * `<root>/.admin.json`: where the running registry of a data root listens and its admin token,
 * so that `deno task gc` can ask it to collect. Written (mode 0600, by a rename) once the
 * registry listens, removed when it stops; a file left by a crash names a dead PID and a port
 * nobody answers on, which the command reports.
 */

import { hostPort } from "../startup.ts";
import { syncDir, writeAll } from "../storage/drivers/fs_files.ts";

/** What the file holds. */
export interface AdminFile {
  readonly pid: number;
  /** The base URL (`http://127.0.0.1:5000`). */
  readonly url: string;
  readonly token: string;
}

/** The file's path in a data root. */
export function adminFilePath(root: string): string {
  return `${root}/.admin.json`;
}

/** The URL a local command reaches a listener at (a wildcard address means loopback). */
export function localUrl(scheme: string, hostname: string, port: number): string {
  const host = hostname === "0.0.0.0" ? "127.0.0.1" : hostname === "::" ? "::1" : hostname;
  return `${scheme}://${hostPort(host, port)}`;
}

/**
 * Writes the file atomically and durably (flushed before its rename, the folder flushed
 * after), readable only by its owner.
 */
export async function writeAdminFile(root: string, file: AdminFile): Promise<void> {
  const path = adminFilePath(root);
  const temporary = `${root}/.tmp-${crypto.randomUUID()}`;
  const handle = await Deno.open(temporary, { write: true, createNew: true, mode: 0o600 });
  try {
    await writeAll(handle, new TextEncoder().encode(`${JSON.stringify(file)}\n`));
    await handle.syncData();
  } finally {
    handle.close();
  }
  await Deno.chmod(temporary, 0o600); // whatever the umask
  await Deno.rename(temporary, path);
  await syncDir(root);
}

/** Reads the file; null when there is none or it is unreadable. */
export async function readAdminFile(root: string): Promise<AdminFile | null> {
  try {
    const value = JSON.parse(await Deno.readTextFile(adminFilePath(root)));
    if (
      typeof value?.pid === "number" && typeof value.url === "string" &&
      typeof value.token === "string"
    ) return value as AdminFile;
  } catch {
    // missing or unreadable
  }
  return null;
}

/** Removes the file if it is this process's (never throws). */
export async function removeAdminFile(root: string): Promise<void> {
  const file = await readAdminFile(root);
  if (file?.pid !== Deno.pid) return;
  await Deno.remove(adminFilePath(root)).catch(() => {});
}
