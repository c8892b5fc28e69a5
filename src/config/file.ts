/**
 * YAML, behind this module only: reads a configuration file (or a YAML environment value) into
 * plain nodes that keep their line numbers, and writes the effective settings back as YAML.
 *
 * Scalars are read as text (YAML's failsafe schema), as Distribution's Go parser turns them
 * into the type of the field they land in: `0123` stays `0123`, `yes` is left to the boolean
 * parser. A plain empty value, `~` or `null` is null (the key keeps its default).
 */

import {
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  stringify,
} from "yaml";
import { ConfigError } from "./types.ts";

/** A parsed YAML value with the line it starts on (1-based; 0 when it has no file). */
export type YamlNode = YamlScalar | YamlMap | YamlList;

/** A scalar, as its text; null for an empty value, `~` or `null`. */
export interface YamlScalar {
  readonly kind: "scalar";
  readonly value: string | null;
  readonly line: number;
}

/** A mapping, its entries in file order (each with the line of its key). */
export interface YamlMap {
  readonly kind: "map";
  readonly entries: readonly { readonly key: string; readonly line: number; value: YamlNode }[];
  readonly line: number;
}

/** A sequence. */
export interface YamlList {
  readonly kind: "list";
  readonly items: readonly YamlNode[];
  readonly line: number;
}

/** A scalar node for a value that came from a flag or a variable. */
export function scalar(value: string | null): YamlScalar {
  return { kind: "scalar", value, line: 0 };
}

const NULLS = new Set(["", "~", "null", "Null", "NULL"]);

/**
 * Parses YAML text. `name` is what errors call the source (a file name or a variable); a
 * syntax error is a ConfigError naming it and the line.
 */
export function parseYaml(text: string, name: string): YamlNode {
  const lines = new LineCounter();
  const doc = parseDocument(text, { schema: "failsafe", lineCounter: lines, prettyErrors: true });
  const error = doc.errors[0];
  if (error) {
    const first = error.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
    const at = error.linePos?.[0];
    const where = at ? ` at line ${at.line}, column ${at.col}` : "";
    throw new ConfigError(`Invalid YAML in ${name}${where}: ${lowerFirst(first)}`);
  }
  const lineOf = (node: Node | null | undefined) =>
    node?.range ? lines.linePos(node.range[0]).line : 0;
  const seen = new Set<Node>();
  const convert = (node: unknown, line: number): YamlNode => {
    if (node === null || node === undefined) return { kind: "scalar", value: null, line };
    if (isAlias(node)) {
      const target = node.resolve(doc);
      if (!target || seen.has(target)) {
        throw new ConfigError(`Invalid YAML in ${name} at line ${line}: unresolvable alias`);
      }
      seen.add(target);
      const resolved = convert(target, line);
      seen.delete(target);
      return resolved;
    }
    if (isScalar(node)) {
      const value = String(node.value ?? "");
      const plain = node.type === "PLAIN" || node.type === undefined;
      return { kind: "scalar", value: plain && NULLS.has(value) ? null : value, line };
    }
    if (isSeq(node)) {
      return {
        kind: "list",
        items: node.items.map((item) => convert(item, lineOf(item as Node) || line)),
        line,
      };
    }
    if (isMap(node)) {
      const entries = node.items.map((pair) => {
        const keyLine = lineOf(pair.key as Node) || line;
        if (!isScalar(pair.key)) {
          throw new ConfigError(`Invalid YAML in ${name} at line ${keyLine}: keys must be text`);
        }
        const value = convert(pair.value, lineOf(pair.value as Node) || keyLine);
        return { key: String(pair.key.value), line: keyLine, value };
      });
      return { kind: "map", entries, line };
    }
    throw new ConfigError(`Invalid YAML in ${name} at line ${line}: unsupported node`);
  };
  return convert(doc.contents, lineOf(doc.contents) || 1);
}

/** Reads and parses a configuration file; a missing or unreadable file is a ConfigError. */
export function readConfigFile(path: string): YamlNode {
  let text;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : error instanceof Deno.errors.IsADirectory
      ? "it is a directory"
      : lowerFirst((error as Error).message);
    throw new ConfigError(`Cannot read configuration file ${path}: ${reason}`);
  }
  return parseYaml(text, path);
}

/** Writes a plain value (objects, arrays, strings, numbers, booleans, null) as YAML. */
export function toYaml(value: unknown): string {
  return stringify(value, { lineWidth: 0 });
}

function lowerFirst(text: string): string {
  return /^[A-Z][a-z]/.test(text) ? text[0].toLowerCase() + text.slice(1) : text;
}
