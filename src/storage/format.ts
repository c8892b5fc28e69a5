/**
 * The data root's format version, recorded in `format.json`. Format 1 is the layout in
 * `keys.ts`; revision records may carry their references (`refs`), which a registry that
 * does not know them ignores, and which are filled in on first need for records written
 * without them. A root without the record (made before it existed, or new) is marked format
 * 1 at start; a root of a newer format is refused.
 */

import { StartupError } from "../errors.ts";
import type { StorageDriver } from "./driver.ts";
import { FORMAT_KEY } from "./keys.ts";

/** The format this registry writes. */
export const FORMAT_VERSION = 1;

/**
 * Checks (and records, when missing) the format of the storage behind `driver`. Throws
 * StartupError for a newer or unreadable format.
 */
export async function checkFormat(driver: StorageDriver, where: string): Promise<void> {
  const bytes = await driver.get(FORMAT_KEY);
  if (bytes === null) {
    await driver.put(FORMAT_KEY, `${JSON.stringify({ format: FORMAT_VERSION })}\n`);
    return;
  }
  let format: unknown;
  try {
    format = (JSON.parse(new TextDecoder().decode(bytes)) as { format?: unknown }).format;
  } catch {
    format = undefined;
  }
  if (typeof format !== "number" || !Number.isInteger(format) || format < 1) {
    throw new StartupError(`data root ${where} has an unreadable ${FORMAT_KEY}`);
  }
  if (format > FORMAT_VERSION) {
    throw new StartupError(
      `data root ${where} has format ${format}; this registry reads format ${FORMAT_VERSION} and older`,
    );
  }
}
