/**
 * Which writes the registry accepts at all: in read-only mode (`storage.maintenance.readonly`)
 * every push and delete answers 405 `UNSUPPORTED` saying why; with deletes disabled
 * (`storage.delete.enabled: false`) every manifest, tag and blob DELETE does. Reads work.
 */

import type { Config } from "../config/mod.ts";
import { RegistryError } from "../errors.ts";
import { methodsOf } from "../router.ts";
import { type Action, actionOf, type RequestContext, type Step } from "./context.ts";

/**
 * The methods of the request's route whose action is not `refused` (HEAD with GET): the
 * `Allow` of a 405 (RFC 9110 §15.5.6).
 */
function allowed(ctx: RequestContext, refused: (action: Action | null) => boolean): string {
  const route = ctx.route.match?.route;
  if (!route) return "";
  return methodsOf(route).filter((m) => !refused(actionOf(route.name, m))).join(", ");
}

/** The write policy step. */
export function writePolicy(config: Config): Step {
  return (ctx, next) => {
    const action = ctx.route.action;
    const isWrite = (a: Action | null) => a === "push" || a === "delete";
    if (config.readOnly && isWrite(action)) {
      throw new RegistryError(
        "UNSUPPORTED",
        "The registry is in read-only mode (storage.maintenance.readonly): pushes and deletes are refused",
        { detail: { reason: "read-only" }, headers: { Allow: allowed(ctx, isWrite) } },
      );
    }
    if (!config.deleteEnabled && action === "delete") {
      throw new RegistryError(
        "UNSUPPORTED",
        "Deletes are disabled on this registry (storage.delete.enabled is false)",
        {
          detail: { reason: "delete-disabled" },
          headers: { Allow: allowed(ctx, (a) => a === "delete") },
        },
      );
    }
    return next();
  };
}
