/**
 * Registry events in CNCF Distribution's format (its `notifications/event.go`): what the
 * services say happened (`EventSpec`, HTTP-free), and the JSON event built from it with the
 * request, actor and source records, in Distribution's field names and order.
 *
 * ```json
 * { "events": [ {
 *     "id": "…uuid…", "timestamp": "2025-01-02T03:04:05.678Z", "action": "push",
 *     "target": { "mediaType": "application/vnd.oci.image.manifest.v1+json",
 *                 "digest": "sha256:…", "size": 1234, "length": 1234,
 *                 "repository": "library/alpine", "url": "http://host/v2/library/alpine/manifests/sha256:…",
 *                 "tag": "latest" },
 *     "request": { "id": "…", "addr": "10.0.0.1", "host": "registry.example:5000",
 *                  "method": "PUT", "useragent": "docker/27.0" },
 *     "actor": { "name": "alice" },
 *     "source": { "addr": "node1:5000", "instanceID": "…uuid…" } } ] }
 * ```
 */

/** The media type of an events envelope. */
export const EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v2+json";

/** The media type Distribution gives blobs in events (it does not know the layer's type). */
export const BLOB_MEDIA_TYPE = "application/octet-stream";

/**
 * An event's action. `mount` is a blob linked from another repository (Distribution's
 * `EventActionMount`, with `target.fromRepository`).
 */
export type EventAction = "push" | "pull" | "mount" | "delete";

/** What a service reports: one thing that happened to one repository. */
export interface EventSpec {
  readonly action: EventAction;
  /** What the target is: a manifest, a blob, or a tag (a tag delete). */
  readonly kind: "manifest" | "blob" | "tag";
  readonly repository: string;
  readonly digest?: string;
  readonly mediaType?: string;
  readonly size?: number;
  readonly tag?: string;
  /** The repository a mounted blob came from. */
  readonly fromRepository?: string;
}

/** The request that caused an event (Distribution's `RequestRecord`). */
export interface RequestRecord {
  readonly id: string;
  readonly addr?: string;
  readonly host?: string;
  readonly method: string;
  readonly useragent: string;
}

/** Who caused an event (Distribution's `ActorRecord`): the user, when known. */
export interface ActorRecord {
  readonly name?: string;
}

/** The registry instance that made an event (Distribution's `SourceRecord`). */
export interface SourceRecord {
  readonly addr?: string;
  readonly instanceID?: string;
}

/** An event's target: a descriptor (media type, digest, size) and where it lives. */
export interface EventTarget {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly length?: number;
  readonly repository?: string;
  readonly fromRepository?: string;
  readonly url?: string;
  readonly tag?: string;
}

/** One event as it is queued and sent. */
export interface RegistryEvent {
  readonly id: string;
  /** RFC 3339 time at which the event happened. */
  readonly timestamp: string;
  readonly action: EventAction;
  readonly target: EventTarget;
  readonly request: RequestRecord;
  readonly actor: ActorRecord;
  readonly source: SourceRecord;
}

/** The envelope a receiver gets: one or more events, not necessarily related. */
export interface Envelope {
  readonly events: readonly RegistryEvent[];
}

/** What the request scope knows about the current request, read when an event is made. */
export interface RequestInfo {
  readonly id: string;
  /** The client's address. */
  readonly addr: string;
  /** The `Host` the client used, or empty. */
  readonly host: string;
  readonly method: string;
  readonly userAgent: string;
  /** The authenticated user, or null. */
  readonly actor: string | null;
  /** The registry's base URL as the client sees it (`http://host:port`), or null. */
  readonly baseUrl: string | null;
}

/** Builds the event for `spec`, caused by `request` (null: no request) at `time`. */
export function buildEvent(
  spec: EventSpec,
  request: RequestInfo | null,
  source: SourceRecord,
  time: Date,
): RegistryEvent {
  return {
    id: crypto.randomUUID(),
    timestamp: time.toISOString(),
    action: spec.action,
    target: targetOf(spec, request?.baseUrl ?? null),
    request: request === null ? { id: "", method: "", useragent: "" } : {
      id: request.id,
      ...(request.addr ? { addr: request.addr } : {}),
      ...(request.host ? { host: request.host } : {}),
      method: request.method,
      useragent: request.userAgent,
    },
    actor: request?.actor ? { name: request.actor } : {},
    source,
  };
}

/**
 * The target as Distribution fills it: pushes, pulls and mounts carry the descriptor, the
 * length (its size again) and the content's URL; deletes carry the digest (or the tag) only.
 */
function targetOf(spec: EventSpec, baseUrl: string | null): EventTarget {
  const described = spec.action !== "delete" && spec.kind !== "tag";
  const size = described ? spec.size ?? 0 : 0;
  const url = described && spec.digest !== undefined
    ? `${baseUrl ?? ""}/v2/${spec.repository}/${
      spec.kind === "manifest" ? "manifests" : "blobs"
    }/${spec.digest}`
    : undefined;
  return {
    mediaType: described ? spec.mediaType ?? "" : "",
    digest: spec.digest ?? "",
    size,
    ...(size > 0 ? { length: size } : {}),
    repository: spec.repository,
    ...(spec.fromRepository ? { fromRepository: spec.fromRepository } : {}),
    ...(url ? { url } : {}),
    ...(spec.tag ? { tag: spec.tag } : {}),
  };
}
