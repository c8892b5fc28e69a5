/**
 * Retention: which tags and manifests of one repository garbage collection keeps, from the
 * repository's state, push and pull times, and the first `storage.gc.retention` rule whose
 * glob matches it. Pure: the collector gathers the facts and applies the decision.
 *
 * - A tag is kept when its rule sets no tag rule (`keeptags`, `keeptagpatterns`,
 *   `keeppulledwithin`), or it matches `keeptagpatterns`, or it is among the `keeptags` most
 *   recently pushed tags, or its manifest was pulled within `keeppulledwithin`, or it was
 *   pushed within the grace window. Other tags are deleted.
 * - A manifest is kept when a kept tag names it; when it is untagged and not a referrer,
 *   unless `untaggedafter` is set and it was pushed longer ago than that (and not pulled within
 *   `keeppulledwithin`); when a kept index lists it; when it refers to (`subject`) a kept
 *   manifest; when it is a referrer whose subject is gone, unless `deleteOrphanReferrers`;
 *   and always when it was pushed or touched within the grace window.
 */

import { repositoryGlob, tagGlob } from "../auth/policy.ts";
import type { RetentionRule } from "../config/mod.ts";
import type { Digest } from "../types/oci.ts";

/** What the collector knows of one tag. */
export interface TagFact {
  readonly tag: string;
  readonly digest: Digest;
  /** When the tag was last pushed (its record's modification time). */
  readonly pushedAt: number;
}

/** What the collector knows of one manifest revision. */
export interface RevisionFact {
  readonly digest: Digest;
  readonly isIndex: boolean;
  /** The index's children, or the image manifest's blobs. */
  readonly refs: readonly Digest[];
  readonly subject: Digest | null;
  /** When the revision was last written. */
  readonly pushedAt: number;
  /** The last touch (push, pull) the activity tracker knows of. */
  readonly touchedAt: number;
  /** The last pull in this repository (0: none known). */
  readonly pulledAt: number;
}

/** The decision for one repository. */
export interface RetentionDecision {
  /** Tags to delete. */
  readonly tags: readonly TagFact[];
  /** Revisions to delete, each after every index listing it (parents first). */
  readonly revisions: readonly Digest[];
  /** Revisions kept. */
  readonly kept: ReadonlySet<Digest>;
}

/** Retention rules compiled once. */
export class Retention {
  readonly #rules: readonly { rule: RetentionRule; globs: RegExp[]; tags: RegExp[] }[];

  /** Compiles the rules. */
  constructor(rules: readonly RetentionRule[]) {
    this.#rules = rules.map((rule) => ({
      rule,
      globs: rule.repositories.map(repositoryGlob),
      tags: rule.keepTagPatterns.map(tagGlob),
    }));
  }

  /** The first rule matching a repository, with its compiled tag patterns; null: none. */
  ruleFor(repository: string): { rule: RetentionRule; tags: RegExp[] } | null {
    return this.#rules.find((r) => r.globs.some((g) => g.test(repository))) ?? null;
  }

  /** Decides what of one repository goes. */
  decide(
    repository: string,
    facts: {
      readonly tags: readonly TagFact[];
      readonly revisions: readonly RevisionFact[];
      readonly now: number;
      readonly graceMs: number;
      readonly deleteOrphanReferrers: boolean;
    },
  ): RetentionDecision {
    const { now, graceMs } = facts;
    const found = this.ruleFor(repository);
    const rule = found?.rule ?? null;
    const byDigest = new Map(facts.revisions.map((r) => [r.digest, r]));
    const pulledWithin = (r: RevisionFact | undefined) =>
      rule?.keepPulledWithinMs != null && r !== undefined && r.pulledAt > 0 &&
      now - r.pulledAt <= rule.keepPulledWithinMs;
    const young = (r: RevisionFact) => now - r.pushedAt < graceMs || now - r.touchedAt < graceMs;

    // Tags.
    const tagRules = rule !== null &&
      (rule.keepTags !== null || rule.keepTagPatterns.length > 0 ||
        rule.keepPulledWithinMs !== null);
    const deleted: TagFact[] = [];
    const keptTags: TagFact[] = [];
    if (!tagRules) keptTags.push(...facts.tags);
    else {
      const newest = [...facts.tags].sort((a, b) =>
        b.pushedAt - a.pushedAt || (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0)
      );
      newest.forEach((t, i) => {
        const keep = (rule.keepTags !== null && i < rule.keepTags) ||
          found!.tags.some((g) => g.test(t.tag)) ||
          pulledWithin(byDigest.get(t.digest)) ||
          now - t.pushedAt < graceMs;
        (keep ? keptTags : deleted).push(t);
      });
    }

    // Manifests: roots, then what kept ones hold.
    const kept = new Set<Digest>();
    const tagged = new Set(keptTags.map((t) => t.digest));
    for (const r of facts.revisions) {
      if (tagged.has(r.digest) || young(r) || pulledWithin(r)) kept.add(r.digest);
      else if (r.subject === null) {
        const drop = rule?.untaggedAfterMs != null && now - r.pushedAt > rule.untaggedAfterMs;
        if (!drop) kept.add(r.digest);
      }
    }
    const close = () => {
      for (let changed = true; changed;) {
        changed = false;
        for (const r of facts.revisions) {
          if (kept.has(r.digest)) {
            if (!r.isIndex) continue;
            for (const child of r.refs) {
              if (byDigest.has(child) && !kept.has(child)) {
                kept.add(child);
                changed = true;
              }
            }
          } else if (r.subject !== null && kept.has(r.subject)) {
            kept.add(r.digest);
            changed = true;
          }
        }
      }
    };
    close();
    if (!facts.deleteOrphanReferrers) {
      // Referrers whose subject is gone (or goes now) stay, with what they hold.
      let orphans = false;
      for (const r of facts.revisions) {
        if (!kept.has(r.digest) && r.subject !== null) {
          kept.add(r.digest);
          orphans = true;
        }
      }
      if (orphans) close();
    }

    // Parents first: a revision goes once no index still stored lists it.
    const doomed = facts.revisions.filter((r) => !kept.has(r.digest));
    const order: Digest[] = [];
    const gone = new Set<Digest>();
    while (order.length < doomed.length) {
      const before = order.length;
      for (const r of doomed) {
        if (gone.has(r.digest)) continue;
        const listed = doomed.some((p) =>
          p.isIndex && !gone.has(p.digest) && p.digest !== r.digest && p.refs.includes(r.digest)
        );
        if (!listed) {
          order.push(r.digest);
          gone.add(r.digest);
        }
      }
      if (order.length === before) break; // cannot happen (digests make no cycles)
    }
    return { tags: deleted, revisions: order, kept };
  }
}
