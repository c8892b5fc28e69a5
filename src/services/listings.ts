/**
 * Listings: a repository's tags, the catalog of repositories, and the referrers of a digest.
 */

import { RegistryError } from "../errors.ts";
import type { MetadataStore } from "../storage/metadata/metadata.ts";
import { type Digest, MediaType, type RepositoryName } from "../types/oci.ts";
import type { Page } from "../types/spans.ts";

/** One page of a sorted list, and the `last` value to ask for the next page, if any. */
export interface PageResult<T> {
  readonly items: readonly T[];
  readonly next: string | null;
}

/** Cuts a sorted list at `last` (exclusive) and `n`. */
export function paginate<T extends string>(sorted: readonly T[], page: Page): PageResult<T> {
  let from = 0;
  if (page.last !== null) {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sorted[mid] <= page.last) lo = mid + 1;
      else hi = mid;
    }
    from = lo;
  }
  if (page.n === null) return { items: sorted.slice(from), next: null };
  const items = sorted.slice(from, from + page.n);
  const more = page.n > 0 && from + page.n < sorted.length;
  return { items, next: more ? items[items.length - 1] : null };
}

/** Registry semantics of tag lists, the catalog and referrers. */
export class ListingService {
  readonly #meta: MetadataStore;

  /** Makes the service over the metadata store. */
  constructor(stores: { meta: MetadataStore }) {
    this.#meta = stores.meta;
  }

  /** A page of a repository's tags in lexical order; throws NAME_UNKNOWN. */
  async tags(name: RepositoryName, page: Page): Promise<PageResult<string>> {
    const tags = await this.#meta.listTags(name);
    if (tags === null) {
      throw new RegistryError("NAME_UNKNOWN", `Repository "${name}" is not known`, {
        detail: { name },
      });
    }
    return paginate(tags, page);
  }

  /** A page of repository names in lexical order, of those `visible` allows (default: all). */
  async catalog(
    page: Page,
    visible?: (repository: string) => boolean,
  ): Promise<PageResult<string>> {
    // Reads the store only as far as the page needs: one name past it says whether more follow.
    const items: string[] = [];
    if (page.n === 0) return { items, next: null };
    for await (const name of this.#meta.repositoriesAfter(page.last)) {
      if (visible && !visible(name)) continue;
      if (page.n !== null && items.length === page.n) {
        return { items, next: items[items.length - 1]! };
      }
      items.push(name);
    }
    return { items, next: null };
  }

  /**
   * The referrers of `subject` in a repository as an OCI image index (JSON text), optionally
   * filtered by artifact type. An unknown subject or repository gives an empty list.
   */
  async referrers(
    name: RepositoryName,
    subject: Digest,
    artifactType: string | null,
  ): Promise<string> {
    const descriptors: unknown[] = [];
    for (const text of await this.#meta.listReferrers(name, subject)) {
      try {
        const descriptor = JSON.parse(text) as { artifactType?: string };
        if (artifactType === null || descriptor.artifactType === artifactType) {
          descriptors.push(descriptor);
        }
      } catch {
        // A torn entry cannot exist (atomic writes); skip anything unreadable all the same.
      }
    }
    return JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: descriptors,
    });
  }
}
