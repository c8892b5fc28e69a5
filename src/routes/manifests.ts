/**
 * Manifest routes (story 008): PUT, GET, HEAD and DELETE of `/v2/<name>/manifests/<reference>`.
 */

import { parseReference, parseRepositoryName } from "../http/params.ts";
import { readLimited } from "../http/request.ts";
import { content, empty } from "../http/responses.ts";
import type { Route, RouteContext } from "../router.ts";
import type { ManifestInfo } from "../services/manifests.ts";
import type { Services } from "../services/registry.ts";

/** The manifest routes over the registry's services. */
export function manifestRoutes(services: Services): Route[] {
  const { manifests, config } = services;

  const target = ({ params }: RouteContext, forWrite = false) => ({
    name: parseRepositoryName(params.name),
    reference: parseReference(params.reference, { forWrite }),
  });

  const headers = (info: ManifestInfo) => ({
    "Content-Type": info.mediaType,
    "Content-Length": String(info.size),
    "Docker-Content-Digest": info.digest,
    "ETag": `"${info.digest}"`,
  });

  return [{
    name: "manifest",
    path: "/v2/<name>/manifests/<reference>",
    marker: "/manifests",
    param: "reference",
    methods: {
      async PUT(ctx) {
        const { name, reference } = target(ctx, true);
        const bytes = await readLimited(ctx.request, ctx.body, config.maxManifestBytes);
        const contentType = ctx.request.headers.get("content-type");
        const result = await manifests.put(name, reference, { bytes, contentType });
        return empty(201, {
          Location: `/v2/${name}/manifests/${result.digest}`,
          "Docker-Content-Digest": result.digest,
          "OCI-Subject": result.subject,
        });
      },
      async GET(ctx) {
        const { name, reference } = target(ctx);
        const manifest = await manifests.get(name, reference);
        return content(200, manifest.bytes, headers(manifest));
      },
      async HEAD(ctx) {
        const { name, reference } = target(ctx);
        return empty(200, headers(await manifests.resolve(name, reference)));
      },
      async DELETE(ctx) {
        const { name, reference } = target(ctx);
        await manifests.delete(name, reference);
        return empty(202);
      },
    },
  }];
}
