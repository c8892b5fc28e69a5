/**
 * The admin routes of repository maintenance, outside `/v2/`:
 *
 * - `DELETE /admin/repositories/<name>`: deletes the repository's tags, manifests, referrer
 *   entries and layer links (blob bytes stay for the collector); 202 with the counts as JSON,
 *   404 `NAME_UNKNOWN` when it does not exist, 405 `UNSUPPORTED` in read-only mode or with
 *   deletes disabled (`storage.delete.enabled: false`).
 * - `GET /admin/usage[?repository=<name>]`: storage usage as JSON (`usage.ts`).
 *
 * Their names start with `admin`, so the admin gate (`admin_access.ts`) decides who may use
 * them.
 */

import { RegistryError } from "../errors.ts";
import { parseRepositoryName } from "../http/params.ts";
import { jsonText } from "../http/responses.ts";
import type { Route } from "../router.ts";
import type { Services } from "../services/registry.ts";
import { measureUsage } from "./usage.ts";

/** The admin routes over a registry's services. */
export function adminRoutes(services: Services): Route[] {
  const { config } = services;
  return [
    {
      name: "admin-repository",
      path: "/admin/repositories/<name>",
      prefix: "/admin/repositories/",
      param: "repository",
      methods: {
        async DELETE({ params }) {
          if (config.readOnly) {
            throw new RegistryError(
              "UNSUPPORTED",
              "The registry is in read-only mode (storage.maintenance.readonly): repositories cannot be deleted",
              // the route's only method is refused (RFC 9110 §15.5.6: an empty Allow)
              { detail: { reason: "read-only" }, headers: { Allow: "" } },
            );
          }
          if (!config.deleteEnabled) {
            throw new RegistryError(
              "UNSUPPORTED",
              "Deletes are disabled on this registry (storage.delete.enabled is false)",
              { detail: { reason: "delete-disabled" }, headers: { Allow: "" } },
            );
          }
          const name = parseRepositoryName(params.repository);
          const report = await services.repositories.deleteRepository(name);
          return jsonText(202, JSON.stringify(report), { "Cache-Control": "no-store" });
        },
      },
    },
    {
      name: "admin-usage",
      path: "/admin/usage",
      exact: ["/admin/usage"],
      methods: {
        async GET({ query }) {
          const wanted = query.get("repository");
          const report = await measureUsage(
            services.driver,
            wanted === null ? {} : { repository: parseRepositoryName(wanted) },
          );
          return jsonText(200, JSON.stringify(report), { "Cache-Control": "no-store" });
        },
      },
    },
  ];
}
