/**
 * Loading: the defaults, then the configuration file (`--config FILE` or
 * `REGISTRY_CONFIGURATION_PATH`), then the environment (Distribution's variable names, then the
 * legacy ones), then the command-line flags; a later source wins. Keys Distribution defines
 * but this registry does not implement are refused or ignored (distribution.ts); keys nobody
 * defines are refused. Every error is one line naming where the value came from.
 */

import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { VERSION } from "../version.ts";
import { coveredBy, IGNORED, REFUSED } from "./distribution.ts";
import { parseYaml, readConfigFile, scalar, toYaml, type YamlNode } from "./file.ts";
import { CONFIG_PATH_VARIABLE, type Draft, type Setting } from "./setting.ts";
import { SETTINGS } from "./settings.ts";
import { scaleOutProblem } from "./storage_settings.ts";
import { type Config, ConfigError, DEFAULTS } from "./types.ts";
import { USAGE } from "./usage.ts";
import { invalid, Place } from "./values.ts";

/** What the command line asks for. */
export type Invocation =
  | { readonly action: "run"; readonly config: Config; readonly warnings: readonly string[] }
  | {
    readonly action: "print-config";
    readonly config: Config;
    readonly warnings: readonly string[];
    /** The effective settings as YAML, secrets masked. */
    readonly text: string;
  }
  | { readonly action: "help"; readonly text: string }
  | { readonly action: "version"; readonly text: string };

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Reads the command line, the environment and the configuration file. Throws ConfigError (one
 * line) for a bad flag, variable, key or value. Warnings are lines to log once at start.
 */
export function parseCommandLine(args: readonly string[], env: Env): Invocation {
  const flags = readFlags(args);
  if (flags.help) return { action: "help", text: USAGE };
  if (flags.version) return { action: "version", text: `registry ${VERSION}` };
  const { config, warnings } = build(flags, env);
  if (flags["print-config"]) {
    return { action: "print-config", config, warnings, text: printConfig(config) };
  }
  return { action: "run", config, warnings };
}

/**
 * Builds the configuration from command-line arguments, environment variables and the
 * configuration file they name. Returns "help" when `--help` was given; throws ConfigError on a
 * bad value. (`parseCommandLine` also reports warnings, `--version` and `--print-config`.)
 */
export function loadConfig(args: readonly string[], env: Env): Config | "help" {
  const flags = readFlags(args);
  return flags.help ? "help" : build(flags, env).config;
}

/** The effective settings as YAML with our keys, secrets masked (or not, for tests). */
export function printConfig(config: Config, mask = true): string {
  const root: Record<string, unknown> = {};
  for (const setting of SETTINGS) {
    const path = setting.key.split(".");
    let node = root;
    for (const part of path.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
    node[path[path.length - 1]] = setting.show(config, mask);
  }
  const note = mask ? "; secrets masked" : "";
  return `# effective settings (file < environment < flags)${note}\n${toYaml(root)}`;
}

type Flags = Record<string, string | boolean | undefined>;

const OWN_FLAGS = {
  config: { type: "string" },
  "print-config": { type: "boolean" },
  version: { type: "boolean" },
  help: { type: "boolean" },
} as const;

function readFlags(args: readonly string[]): Flags {
  const options: Record<string, { type: "string" | "boolean" }> = { ...OWN_FLAGS };
  for (const setting of SETTINGS) {
    for (const alias of setting.aliases) {
      if (alias.flag) options[alias.flag] = { type: alias.arg ? "string" : "boolean" };
    }
  }
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new ConfigError(argumentError(error as Error & { code?: string }));
  }
}

function argumentError(error: Error & { code?: string }): string {
  const quoted = /'([^']*)'/.exec(error.message)?.[1] ?? "";
  const option = quoted.split(" ")[0];
  switch (error.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `Unknown option ${option}`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `Unexpected argument ${JSON.stringify(quoted)}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return error.message.includes("does not take an argument")
        ? `Option ${option} takes no value`
        : `Option ${option} needs a value`;
  }
  return error.message.split("\n")[0].replace(/\.$/, "");
}

interface Loading {
  readonly draft: Draft;
  readonly warnings: string[];
  /** Whether `storage.s3` was named without keys (`storage: s3`, an empty section). */
  s3Named: boolean;
}

function build(flags: Flags, env: Env): { config: Config; warnings: string[] } {
  const loading: Loading = {
    draft: { ...DEFAULTS, purgeEnabled: DEFAULTS.uploadPurging, purgeDryRun: false } as Draft,
    warnings: [],
    s3Named: false,
  };
  const explicit = new Set<string>();
  const apply = (setting: Setting, node: YamlNode, place: Place) => {
    const warn = (message: string) => loading.warnings.push(message);
    setting.apply(loading.draft, setting.parse(node, place, warn));
    explicit.add(setting.key);
  };
  const file = typeof flags.config === "string" ? flags.config : env[CONFIG_PATH_VARIABLE];
  if (file) fromFile(file, loading, apply);
  fromEnvironment(env, loading, apply);
  for (const setting of SETTINGS) {
    for (const alias of setting.aliases) {
      const value = alias.env === undefined ? undefined : env[alias.env];
      // A legacy variable whose own flag is given is not read (as before the file existed).
      if (value === undefined || (alias.flag && flags[alias.flag] !== undefined)) continue;
      setting.apply(loading.draft, alias.parse(scalar(value), Place.env(alias.env!, setting.key)));
      explicit.add(setting.key);
    }
  }
  for (const setting of SETTINGS) {
    for (const alias of setting.aliases) {
      const value = alias.flag === undefined ? undefined : flags[alias.flag];
      if (value === undefined) continue;
      const node = scalar(typeof value === "string" ? value : "true");
      setting.apply(loading.draft, alias.parse(node, Place.flag(`--${alias.flag}`, setting.key)));
      explicit.add(setting.key);
    }
  }
  const { purgeEnabled, purgeDryRun, ...config } = loading.draft;
  config.uploadPurging = purgeEnabled && !purgeDryRun;
  config.dataDir = resolve(config.dataDir);
  if (!explicit.has("storage.maintenance.uploadpurging.interval")) {
    config.purgeIntervalMs = Math.min(DEFAULTS.purgeIntervalMs, config.uploadMaxAgeMs);
  }
  if (config.tls !== null) {
    // (main.ts refuses a certificate without a key and the reverse)
    const { certificate, key } = config.tls;
    config.tls = { certificate: certificate && resolve(certificate), key: key && resolve(key) };
  }
  const scaleOut = scaleOutProblem(config, explicit, loading.s3Named);
  if (scaleOut !== null) throw new ConfigError(scaleOut);
  if (config.metrics.enabled && config.debugAddr === null) {
    loading.warnings.push(
      "Metrics are not served: http.debug.prometheus.enabled needs http.debug.addr",
    );
  }
  return { config: deepFreeze(config), warnings: [...new Set(loading.warnings)] };
}

type Apply = (setting: Setting, node: YamlNode, place: Place) => void;

function fromFile(path: string, loading: Loading, apply: Apply): void {
  const root = readConfigFile(path);
  if (root.kind === "scalar" && root.value === null) return;
  if (root.kind !== "map") {
    throw new ConfigError(`Invalid configuration file ${path}: expected a mapping of keys`);
  }
  walk(root, "", (key, line) => Place.file(path, key, line), loading, apply);
}

/** Applies a mapping's entries under `prefix` (a file's root or a section variable). */
function walk(
  node: YamlNode,
  prefix: string,
  placeOf: (key: string, line: number) => Place,
  loading: Loading,
  apply: Apply,
): void {
  if (node.kind === "scalar" && node.value === null) return;
  if (node.kind === "scalar" && (prefix === "storage" || prefix === "auth")) {
    // `storage: filesystem` names the driver without parameters, as in Distribution.
    node = {
      kind: "map",
      line: node.line,
      entries: [{ key: node.value!, line: node.line, value: scalar(null) }],
    };
  }
  if (node.kind !== "map") throw invalid(node, placeOf(prefix, node.line), "a mapping");
  for (const entry of node.entries) {
    const key = prefix ? `${prefix}.${entry.key}` : entry.key;
    const place = placeOf(key, entry.line);
    const found = classify(key);
    switch (found.kind) {
      case "setting":
        if (!(entry.value.kind === "scalar" && entry.value.value === null)) {
          apply(found.setting, entry.value, place);
        }
        break;
      case "refused":
        throw new ConfigError(`Unsupported ${place}: ${found.entry.why}`);
      case "section":
        // `storage: s3` or an empty `s3:` names the driver (its keys are then missing)
        if (key === "storage.s3" && entry.value.kind === "scalar") loading.s3Named = true;
        walk(entry.value, key, placeOf, loading, apply);
        break;
      case "ignored":
        loading.warnings.push(`Ignoring ${place}: ${found.entry.why}`);
        break;
      default:
        throw new ConfigError(`Unknown ${place}${suggestion(key)}`);
    }
  }
}

function fromEnvironment(env: Env, loading: Loading, apply: Apply): void {
  const legacy = new Set(SETTINGS.flatMap((s) => s.aliases.map((a) => a.env)));
  const names = Object.keys(env).filter((name) =>
    name.startsWith("REGISTRY_") && name !== CONFIG_PATH_VARIABLE && !legacy.has(name)
  ).sort();
  for (const name of names) {
    const value = env[name]!;
    const key = name.slice("REGISTRY_".length).toLowerCase().replaceAll("_", ".");
    const place = Place.env(name, key);
    const found = classify(key);
    switch (found.kind) {
      case "setting":
        if (value === "") break;
        apply(
          found.setting,
          found.setting.structured ? parseYaml(value, name) : scalar(value),
          place,
        );
        break;
      case "refused":
        throw new ConfigError(`Unsupported ${name} (${found.entry.key}): ${found.entry.why}`);
      case "section": {
        if (key === "storage.s3") loading.s3Named = true;
        const node = /^[a-z0-9]+$/.test(value) ? scalar(value) : parseYaml(value, name);
        walk(node, key, (k) => place.at(k, 0), loading, apply);
        break;
      }
      case "ignored":
        loading.warnings.push(`Ignoring ${name} (${found.entry.key}): ${found.entry.why}`);
        break;
      case "inside":
        throw new ConfigError(
          `Unsupported ${name}: set ${found.setting.env} to the whole ${found.setting.key} value as YAML`,
        );
      default:
        loading.warnings.push(`Ignoring unknown variable ${name}`);
    }
  }
}

type Found =
  | { kind: "setting" | "inside"; setting: Setting }
  | { kind: "refused" | "ignored"; entry: { key: string; why: string } }
  | { kind: "section" | "unknown" };

const KNOWN = [
  ...SETTINGS.map((s) => s.key),
  ...REFUSED.map((r) => r.key),
  ...IGNORED.map((i) => i.key),
];
const SECTIONS = new Set(
  KNOWN.flatMap((key) =>
    key.split(".").slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join("."))
  ),
);

function classify(key: string): Found {
  const setting = SETTINGS.find((s) => s.key === key);
  if (setting) return { kind: "setting", setting };
  const refused = coveredBy(REFUSED, key);
  if (refused) return { kind: "refused", entry: refused };
  if (SECTIONS.has(key)) return { kind: "section" };
  const ignored = coveredBy(IGNORED, key);
  if (ignored) return { kind: "ignored", entry: ignored };
  const outer = SETTINGS.find((s) => key.startsWith(`${s.key}.`));
  return outer ? { kind: "inside", setting: outer } : { kind: "unknown" };
}

function suggestion(key: string): string {
  let best = "";
  let bestDistance = 3;
  for (const known of [...KNOWN, ...SECTIONS]) {
    const d = distance(key, known);
    if (d < bestDistance) [best, bestDistance] = [known, d];
  }
  return best ? `; did you mean ${best}?` : "";
}

/** Levenshtein distance. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length];
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}
