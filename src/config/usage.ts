/**
 * The `--help` text, generated from the settings table.
 */

import { CONFIG_PATH_VARIABLE } from "./setting.ts";
import { SETTINGS } from "./settings.ts";

const WIDTH = 100;
const FLAG_COLUMN = 30;

/** Markdown-free text. */
function plain(text: string): string {
  return text.replaceAll("`", "");
}

/** Word-wraps `text` to WIDTH, the first line after `first`, the others indented by `indent`. */
function wrap(first: string, indent: number, text: string): string[] {
  const lines: string[] = [];
  let line = first;
  for (const word of text.split(" ")) {
    if (line.length > indent && line.length + 1 + word.length > WIDTH) {
      lines.push(line);
      line = " ".repeat(indent);
    }
    line += line.length > indent && !line.endsWith(" ") ? ` ${word}` : word;
  }
  lines.push(line);
  return lines;
}

function usage(): string {
  const option = (left: string, help: string) =>
    wrap(`  ${left}`.padEnd(FLAG_COLUMN), FLAG_COLUMN, help);
  const lines = [
    "Usage: deno task start [options]",
    "",
    "Options:",
    ...option(
      "--config FILE",
      `read settings from FILE, a CNCF Distribution config.yml [${CONFIG_PATH_VARIABLE}]`,
    ),
    ...option("--print-config", "print the effective settings as YAML (secrets masked) and exit"),
    ...option("--version", "print the version and exit"),
    ...option("--help", "print this text"),
  ];
  for (const setting of SETTINGS) {
    for (const alias of setting.aliases) {
      if (!alias.flag) continue;
      const env = alias.env ? ` [${alias.env}${alias.arg ? "" : "=1"}]` : "";
      lines.push(
        ...option(
          `--${alias.flag}${alias.arg ? ` ${alias.arg}` : ""}`,
          `${alias.help}; sets ${setting.key}${env}`,
        ),
      );
    }
  }
  lines.push(
    "",
    "Settings (configuration file key: type, default). Each key but version also has an",
    "environment variable: REGISTRY_ and the key upper-cased, _ for . (REGISTRY_HTTP_ADDR).",
  );
  for (const s of SETTINGS) {
    lines.push(...wrap(`  ${s.key}: ${plain(s.type)}, default`, 6, plain(s.default)));
    lines.push(...wrap("      ", 6, plain(s.help)));
  }
  lines.push(
    "",
    "Later sources win: defaults < configuration file < environment < flags; the legacy",
    "variables in brackets apply after Distribution's. Durations are Go durations (500ms, 10s,",
    "1h30m), sizes plain integers (bytes). --print-config shows the result.",
  );
  return `${lines.join("\n")}\n`;
}

/** Text printed by `--help`. */
export const USAGE: string = usage();
