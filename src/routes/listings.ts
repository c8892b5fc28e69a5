/**
 * Listing routes: `/v2/` (base), `/v2/_catalog`, `/v2/<name>/tags/list` and
 * `/v2/<name>/referrers/<digest>`.
 */

import { parseDigest } from "../digest/digest.ts";
import { parsePage, parseRepositoryName } from "../http/params.ts";
import { jsonText } from "../http/responses.ts";
import type { Route } from "../router.ts";
import type { PageResult } from "../services/listings.ts";
import type { Services } from "../services/registry.ts";

function nextLink(path: string, n: number | null, result: PageResult<string>): string | undefined {
  if (result.next === null || n === null) return undefined;
  return `<${path}?n=${n}&last=${encodeURIComponent(result.next)}>; rel="next"`;
}

/** The listing routes over the registry's services. */
export function listingRoutes(services: Services): Route[] {
  const { listings } = services;
  return [
    {
      name: "base",
      path: "/v2/",
      exact: ["/v2/", "/v2"],
      methods: {
        GET: () => Promise.resolve(jsonText(200, "{}")),
      },
    },
    {
      name: "catalog",
      path: "/v2/_catalog",
      exact: ["/v2/_catalog"],
      methods: {
        async GET({ query, canPull }) {
          const page = parsePage(query);
          const result = await listings.catalog(page, canPull);
          return jsonText(200, JSON.stringify({ repositories: result.items }), {
            Link: nextLink("/v2/_catalog", page.n, result),
          });
        },
      },
    },
    {
      name: "tags",
      path: "/v2/<name>/tags/list",
      marker: "/tags",
      last: "list",
      methods: {
        async GET({ params, query }) {
          const name = parseRepositoryName(params.name);
          const page = parsePage(query);
          const result = await listings.tags(name, page);
          return jsonText(200, JSON.stringify({ name, tags: result.items }), {
            Link: nextLink(`/v2/${name}/tags/list`, page.n, result),
          });
        },
      },
    },
    {
      name: "referrers",
      path: "/v2/<name>/referrers/<digest>",
      marker: "/referrers",
      param: "digest",
      methods: {
        async GET({ params, query }) {
          const name = parseRepositoryName(params.name);
          const digest = parseDigest(params.digest);
          const artifactType = query.get("artifactType");
          const text = await listings.referrers(name, digest, artifactType);
          return jsonText(200, text, {
            "Content-Type": "application/vnd.oci.image.index.v1+json",
            "OCI-Filters-Applied": artifactType !== null ? "artifactType" : undefined,
          });
        },
      },
    },
  ];
}
