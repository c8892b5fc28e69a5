/**
 * Which writes the registry accepts at all: in read-only mode (`storage.maintenance.readonly`)
 * every push and delete answers 405 `UNSUPPORTED` saying why; with deletes disabled
 * (`storage.delete.enabled: false`) every manifest, tag and blob DELETE does. Reads work.
 */

import type { Config } from "../config/mod.ts";
import { RegistryError } from "../errors.ts";
import type { Step } from "./context.ts";

/** The write policy step. */
export function writePolicy(config: Config): Step {
  return (ctx, next) => {
    const action = ctx.route.action;
    if (config.readOnly && (action === "push" || action === "delete")) {
      throw new RegistryError(
        "UNSUPPORTED",
        "The registry is in read-only mode (storage.maintenance.readonly): pushes and deletes are refused",
        { detail: { reason: "read-only" } },
      );
    }
    if (!config.deleteEnabled && action === "delete") {
      throw new RegistryError(
        "UNSUPPORTED",
        "Deletes are disabled on this registry (storage.delete.enabled is false)",
        { detail: { reason: "delete-disabled" } },
      );
    }
    return next();
  };
}
