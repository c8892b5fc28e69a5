/**
 * Manifest routes (story 008): PUT, GET, HEAD and DELETE of `/v2/<name>/manifests/<reference>`.
 */

import { evaluate, hasPreconditions } from "../http/conditional.ts";
import { parseReference, parseRepositoryName } from "../http/params.ts";
import { readLimited } from "../http/request.ts";
import { content, empty, type Reply } from "../http/responses.ts";
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

  /**
   * The reply to a conditional GET or HEAD of the manifest `info` (what a tag named when it was
   * read) whose precondition fails (304 or 412), or null to answer as usual. It counts as a
   * pull, as a HEAD does.
   */
  const preconditions = (ctx: RouteContext, info: ManifestInfo): Reply | null => {
    if (!hasPreconditions(ctx.request.headers)) return null;
    const verdict = evaluate(ctx.request.headers, `"${info.digest}"`);
    if (verdict === "proceed") return null;
    if (verdict === "failed") return empty(412, { ETag: `"${info.digest}"` });
    // the 200's fields but Content-Type (RFC 9110 §15.4.5)
    const { "Content-Type": _type, ...fields } = headers(info);
    return empty(304, fields);
  };

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
        return preconditions(ctx, manifest) ?? content(200, manifest.bytes, headers(manifest));
      },
      async HEAD(ctx) {
        const { name, reference } = target(ctx);
        const info = await manifests.resolve(name, reference);
        return preconditions(ctx, info) ?? empty(200, headers(info));
      },
      async DELETE(ctx) {
        const { name, reference } = target(ctx);
        await manifests.delete(name, reference);
        return empty(202);
      },
    },
  }];
}
