/**
 * What a setting is: its file key, variable, type, default, help, parser, and where its value
 * goes in the configuration. The table itself is in settings.ts.
 */

import type { YamlNode } from "./file.ts";
import type { Config } from "./types.ts";
import type { Place } from "./values.ts";

/** The configuration being built: Config's fields, writable, plus loading's own state. */
export type Draft = { -readonly [K in keyof Config]: Config[K] } & {
  /** `storage.maintenance.uploadpurging.enabled` (purging runs when enabled and not dry). */
  purgeEnabled: boolean;
  /** `storage.maintenance.uploadpurging.dryrun`. */
  purgeDryRun: boolean;
};

/** Another way to set a setting: a command-line flag, a legacy variable, or both. */
export interface Alias<T> {
  /** The flag without `--`. */
  readonly flag?: string;
  /** The flag's argument name in `--help`; absent for a switch (which passes `true`). */
  readonly arg?: string;
  /** The legacy environment variable. */
  readonly env?: string;
  /** The flag's line in `--help`. */
  readonly help: string;
  /** Parses the flag's or the variable's text. */
  readonly parse: (node: YamlNode, place: Place) => T;
}

/** One setting. */
export interface Setting<T = unknown> {
  /** The configuration-file key, dotted (`http.addr`). */
  readonly key: string;
  /** The environment variable (`REGISTRY_HTTP_ADDR`), or null for none. */
  readonly env: string | null;
  /** What the value looks like, for the documentation. */
  readonly type: string;
  /** The default, as documented. */
  readonly default: string;
  /** What it does (one sentence, no trailing period). */
  readonly help: string;
  /** Whether the value is a secret (never shown). */
  readonly secret: boolean;
  /** Whether an environment value is YAML (a mapping or a list). */
  readonly structured: boolean;
  /** Validates a value from the file or the environment; `warn` records a warning. */
  readonly parse: (node: YamlNode, place: Place, warn: (message: string) => void) => T;
  /** Writes a valid value into the configuration being built. */
  readonly apply: (draft: Draft, value: T) => void;
  /** The setting's value in `config` as the file writes it; secrets masked when `mask`. */
  readonly show: (config: Config, mask: boolean) => unknown;
  /** Flags and legacy variables that set it too. */
  readonly aliases: readonly Alias<T>[];
}

/** The environment variable of a key in Distribution's scheme. */
export function envName(key: string): string {
  return `REGISTRY_${key.toUpperCase().replaceAll(".", "_")}`;
}

/** A setting as declared in the table (the variable is derived from the key). */
export type Declared<T> =
  & Omit<Setting<T>, "env" | "secret" | "structured" | "aliases">
  & Partial<Pick<Setting<T>, "secret" | "structured" | "aliases">>
  & { readonly noEnv?: boolean };

/** Declares a setting: derives its variable and fills the optional fields. */
export function define<T>(s: Declared<T>): Setting {
  return {
    ...s,
    env: s.noEnv ? null : envName(s.key),
    secret: s.secret ?? false,
    structured: s.structured ?? false,
    aliases: s.aliases ?? [],
  } as Setting;
}

/** The variable naming the configuration file (Distribution's). */
export const CONFIG_PATH_VARIABLE = "REGISTRY_CONFIGURATION_PATH";

/** What secrets are shown as. */
export const MASK = "********";
