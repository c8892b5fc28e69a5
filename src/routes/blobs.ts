/**
 * Blob routes (stories 006, 007, 012): blob GET/HEAD/DELETE and the upload session routes
 * POST (start, monolithic, mount), PATCH, PUT, GET (status) and DELETE (cancel).
 *
 * A blob GET on a driver that can presign (S3) is answered, as Distribution does, with
 * 307 Temporary Redirect to a URL of the bucket valid for `REDIRECT_SECONDS` (the client
 * sends its Range there), unless `storage.redirect.disable` is true: then the registry
 * streams the bytes itself, with Range. HEAD is always answered here from the object's size
 * (no redirect, no bytes read): the client gets `Docker-Content-Digest` and the length.
 */

import { parseDigest } from "../digest/digest.ts";
import { evaluate, hasPreconditions, rangeIfCurrent } from "../http/conditional.ts";
import { parseRepositoryName, parseUploadId } from "../http/params.ts";
import { parseContentRange, resolveRange, uploadRange } from "../http/ranges.ts";
import { contentLength } from "../http/request.ts";
import { content, empty } from "../http/responses.ts";
import { blobKey } from "../storage/keys.ts";
import type { Route, RouteContext } from "../router.ts";
import type { Chunk, UploadStatus } from "../services/uploads.ts";
import type { Services } from "../services/registry.ts";
import type { Digest, RepositoryName } from "../types/oci.ts";

/** How long a redirect's presigned URL is valid (Distribution's 20 minutes). */
export const REDIRECT_SECONDS = 20 * 60;

/** The blob and upload routes over the registry's services. */
export function blobRoutes(services: Services): Route[] {
  const { blobs, uploads } = services;
  const signedUrl = services.config.redirectDisabled ? undefined : services.driver.signedUrl;

  const blobHeaders = (digest: Digest, length: number) => ({
    "Content-Length": String(length),
    "Content-Type": "application/octet-stream",
    "Docker-Content-Digest": digest,
    "Accept-Ranges": "bytes",
    "Cache-Control": "max-age=31536000",
    "ETag": `"${digest}"`,
  });

  /**
   * The reply to a conditional GET or HEAD whose precondition fails (304 or 412), or null to
   * answer as usual; a blob that is not there stays a 404.
   */
  const preconditions = async (ctx: RouteContext, name: RepositoryName, digest: Digest) => {
    if (!hasPreconditions(ctx.request.headers)) return null;
    const size = await blobs.stat(name, digest);
    const verdict = evaluate(ctx.request.headers, `"${digest}"`);
    if (verdict === "proceed") return null;
    if (verdict === "failed") return empty(412, { ETag: `"${digest}"` });
    // the 200's fields but Content-Type (RFC 9110 §15.4.5)
    const { "Content-Type": _type, ...fields } = blobHeaders(digest, size);
    return empty(304, fields);
  };

  const sessionResponse = (status: number, name: RepositoryName, s: UploadStatus) =>
    empty(status, {
      Location: `/v2/${name}/blobs/uploads/${s.id}`,
      "Docker-Upload-UUID": s.id,
      Range: uploadRange(s.size),
    });

  const created = (name: RepositoryName, digest: Digest) =>
    empty(201, { Location: `/v2/${name}/blobs/${digest}`, "Docker-Content-Digest": digest });

  const chunkOf = ({ request, body }: RouteContext): Chunk => ({
    body,
    range: parseContentRange(request.headers.get("content-range")),
    contentLength: contentLength(request),
  });

  const target = ({ params }: RouteContext) => ({
    name: parseRepositoryName(params.name),
    digest: parseDigest(params.digest),
  });

  const session = ({ params }: RouteContext) => ({
    name: parseRepositoryName(params.name),
    id: parseUploadId(params.uuid),
  });

  return [
    {
      name: "blob_upload",
      path: "/v2/<name>/blobs/uploads/",
      marker: "/blobs/uploads",
      last: "",
      methods: {
        async POST(ctx) {
          const name = parseRepositoryName(ctx.params.name);
          const mount = ctx.query.get("mount");
          const from = ctx.query.get("from");
          // Without `from`, a mount looks in every repository when automatic mount is on
          // (content discovery); otherwise it falls back to a new session.
          if (mount !== null && (from !== null || services.config.automaticMount)) {
            const digest = parseDigest(mount);
            const source = from === null ? null : parseRepositoryName(from);
            if (await blobs.mount(name, source, digest, ctx.canPull)) {
              return created(name, digest);
            }
          }
          const digest = ctx.query.get("digest");
          if (digest !== null) {
            return created(
              name,
              await uploads.uploadWhole(name, parseDigest(digest), chunkOf(ctx)),
            );
          }
          return sessionResponse(202, name, await uploads.start(name));
        },
      },
    },
    {
      name: "blob_upload_chunk",
      path: "/v2/<name>/blobs/uploads/<uuid>",
      marker: "/blobs/uploads",
      param: "uuid",
      methods: {
        async GET(ctx) {
          const { name, id } = session(ctx);
          return sessionResponse(204, name, await uploads.status(name, id));
        },
        async PATCH(ctx) {
          const { name, id } = session(ctx);
          return sessionResponse(202, name, await uploads.append(name, id, chunkOf(ctx)));
        },
        async PUT(ctx) {
          const { name, id } = session(ctx);
          const digest = parseDigest(ctx.query.get("digest"));
          return created(name, await uploads.complete(name, id, digest, chunkOf(ctx)));
        },
        async DELETE(ctx) {
          const { name, id } = session(ctx);
          await uploads.cancel(name, id);
          return empty(204);
        },
      },
    },
    {
      name: "blob",
      path: "/v2/<name>/blobs/<digest>",
      marker: "/blobs",
      param: "digest",
      methods: {
        async HEAD(ctx) {
          const { name, digest } = target(ctx);
          const unmet = await preconditions(ctx, name, digest);
          if (unmet) return unmet;
          return empty(200, blobHeaders(digest, await blobs.size(name, digest)));
        },
        async GET(ctx) {
          const { name, digest } = target(ctx);
          if (signedUrl) {
            // the bucket answers the conditions (RFC 9110 §13.2.1: not for a 307 of ours)
            await blobs.size(name, digest); // linked and stored (BLOB_UNKNOWN); a pull event
            const url = await signedUrl.call(services.driver, blobKey(digest), REDIRECT_SECONDS);
            return empty(307, { Location: url, "Docker-Content-Digest": digest });
          }
          const unmet = await preconditions(ctx, name, digest);
          if (unmet) return unmet;
          const range = rangeIfCurrent(ctx.request.headers, `"${digest}"`);
          const blob = await blobs.open(name, digest, (size) => resolveRange(range, size));
          if (blob.span === null) {
            return content(200, blob.stream, blobHeaders(digest, blob.size));
          }
          const { start, end } = blob.span;
          return content(206, blob.stream, {
            ...blobHeaders(digest, end - start + 1),
            "Content-Range": `bytes ${start}-${end}/${blob.size}`,
          });
        },
        async DELETE(ctx) {
          const { name, digest } = target(ctx);
          await blobs.delete(name, digest);
          return empty(202);
        },
      },
    },
  ];
}
