/**
 * Garbage collection's settings, under `storage.gc.` (Distribution has no online collector):
 * the schedule, the grace window, orphan referrers, and the retention rules.
 */

import type { YamlMap, YamlNode } from "./file.ts";
import { define, type Setting } from "./setting.ts";
import { ConfigError, DEFAULTS, type RetentionRule } from "./types.ts";
import {
  boolean,
  duration,
  formatDuration,
  integer,
  invalid,
  type Place,
  stringList,
  text,
} from "./values.ts";

const TEN_YEARS_MS = 10 * 365 * 86_400_000;
const REPOSITORY_GLOB = /^[a-z0-9._*/-]{1,255}$/;
const TAG_GLOB = /^[A-Za-z0-9_.*-]{1,128}$/;
const RULE_KEYS = [
  "repositories",
  "keeptags",
  "keeptagpatterns",
  "keeppulledwithin",
  "untaggedafter",
];

/** The garbage collection settings, in the order of `--help` and the README. */
export const GC_SETTINGS: readonly Setting[] = [
  define<number>({
    key: "storage.gc.interval",
    type: "duration or `off`",
    default: `\`${formatDuration(DEFAULTS.gc.intervalMs)}\``,
    help: "time between scheduled garbage collections; `0` or `off`: none (the admin " +
      "endpoint and `deno task gc` still run one)",
    parse: (node, place) => {
      const value = text(node, place, "a duration like 1h, or off");
      if (value === "off" || value === "0") return 0;
      return duration(1000, TEN_YEARS_MS)(node, place);
    },
    apply: (d, v) => d.gc = { ...d.gc, intervalMs: v },
    show: (c) => c.gc.intervalMs === 0 ? "off" : formatDuration(c.gc.intervalMs),
  }),
  define<number>({
    key: "storage.gc.grace",
    type: "duration",
    default: `\`${formatDuration(DEFAULTS.gc.graceMs)}\``,
    help: "garbage collection never deletes a blob, link, tag or manifest touched (pushed, " +
      "mounted, pulled, named by a pushed manifest) more recently than this",
    parse: duration(0, TEN_YEARS_MS),
    apply: (d, v) => d.gc = { ...d.gc, graceMs: v },
    show: (c) => formatDuration(c.gc.graceMs),
  }),
  define<boolean>({
    key: "storage.gc.deleteorphanreferrers",
    type: "boolean",
    default: "`false`",
    help: "whether garbage collection deletes untagged referrers whose subject manifest is " +
      "gone (kept otherwise)",
    parse: boolean,
    apply: (d, v) => d.gc = { ...d.gc, deleteOrphanReferrers: v },
    show: (c) => c.gc.deleteOrphanReferrers,
  }),
  define<RetentionRule[]>({
    key: "storage.gc.retention",
    type: "list",
    default: "none",
    help: "retention rules (none: every tag and manifest is kept), the first whose " +
      "`repositories` glob matches applies: " +
      "`keeptags` (the N most recently pushed), `keeptagpatterns`, `keeppulledwithin`, " +
      "`untaggedafter` (see Garbage collection)",
    structured: true,
    parse: parseRetention,
    apply: (d, v) => d.gc = { ...d.gc, retention: v },
    show: (c) => c.gc.retention.map(showRule),
  }),
];

/** Parses `storage.gc.retention` (null: none). */
export function parseRetention(node: YamlNode, place: Place): RetentionRule[] {
  if (node.kind === "scalar" && node.value === null) return [];
  if (node.kind !== "list") throw invalid(node, place, "a list of retention rules");
  return node.items.map((item, i) => parseRule(item, place.at(`${place.key}[${i}]`, item.line)));
}

function parseRule(node: YamlNode, place: Place): RetentionRule {
  if (node.kind !== "map") {
    throw invalid(node, place, "a retention rule (a mapping with repositories)");
  }
  const field = fieldsOf(node, place);
  const get = <T>(key: string, parse: (n: YamlNode, p: Place) => T, fallback: T): T => {
    const entry = field(key);
    return entry ? parse(entry.node, entry.place) : fallback;
  };
  const repositories = get(
    "repositories",
    stringList("repository globs (team/*, team/**)", (v) => REPOSITORY_GLOB.test(v)),
    [],
  );
  if (repositories.length === 0) throw new ConfigError(`Missing repositories in ${place}`);
  return {
    repositories,
    keepTags: get("keeptags", integer(0, 1_000_000), null),
    keepTagPatterns: get(
      "keeptagpatterns",
      stringList("tag patterns (v*, latest)", (v) => TAG_GLOB.test(v)),
      [],
    ),
    keepPulledWithinMs: get("keeppulledwithin", duration(1000, TEN_YEARS_MS), null),
    untaggedAfterMs: get("untaggedafter", duration(0, TEN_YEARS_MS), null),
  };
}

/** A rule as the configuration file writes it. */
function showRule(rule: RetentionRule): Record<string, unknown> {
  const out: Record<string, unknown> = { repositories: rule.repositories };
  if (rule.keepTags !== null) out.keeptags = rule.keepTags;
  if (rule.keepTagPatterns.length > 0) out.keeptagpatterns = rule.keepTagPatterns;
  if (rule.keepPulledWithinMs !== null) {
    out.keeppulledwithin = formatDuration(rule.keepPulledWithinMs);
  }
  if (rule.untaggedAfterMs !== null) out.untaggedafter = formatDuration(rule.untaggedAfterMs);
  return out;
}

/** A lookup of a rule's fields, refusing unknown keys; null values count as absent. */
function fieldsOf(node: YamlMap, place: Place) {
  const found = new Map<string, { node: YamlNode; place: Place }>();
  for (const entry of node.entries) {
    const where = place.at(`${place.key}.${entry.key}`, entry.line);
    if (!RULE_KEYS.includes(entry.key)) {
      throw new ConfigError(`Unknown ${where}; expected one of ${RULE_KEYS.join(", ")}`);
    }
    if (entry.value.kind === "scalar" && entry.value.value === null) continue;
    found.set(entry.key, { node: entry.value, place: where });
  }
  return (key: string) => found.get(key);
}
