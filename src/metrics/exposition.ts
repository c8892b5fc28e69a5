/**
 * The Prometheus text exposition format, version 0.0.4: escaping of label values and help
 * text, number formatting, and the checks on metric and label names.
 * https://prometheus.io/docs/instrumenting/exposition_formats/
 */

/** The `Content-Type` of a scrape answer in the text format. */
export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Throws unless `name` is a valid metric name. */
export function checkMetricName(name: string): void {
  if (!METRIC_NAME.test(name)) throw new Error(`Invalid metric name ${JSON.stringify(name)}`);
}

/** Throws unless `name` is a valid label name (and not one reserved with `__`). */
export function checkLabelName(name: string): void {
  if (!LABEL_NAME.test(name) || name.startsWith("__")) {
    throw new Error(`Invalid label name ${JSON.stringify(name)}`);
  }
}

/** A label value escaped for the text format: `\` → `\\`, `"` → `\"`, newline → `\n`. */
export function escapeLabelValue(value: string): string {
  if (!/[\\"\n]/.test(value)) return value;
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

/** Help text escaped for a `# HELP` line: `\` → `\\`, newline → `\n`. */
export function escapeHelp(text: string): string {
  if (!/[\\\n]/.test(text)) return text;
  return text.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

/**
 * The label pairs of a series, without braces: `a="x",b="y"` (empty for no labels). Computed
 * once per series, when it is created, never per request.
 */
export function labelPairs(names: readonly string[], values: readonly string[]): string {
  let out = "";
  for (let i = 0; i < names.length; i++) {
    if (i > 0) out += ",";
    out += `${names[i]}="${escapeLabelValue(values[i] ?? "")}"`;
  }
  return out;
}

/** A sample value as the text format writes it (Go's float syntax: `+Inf`, `-Inf`, `NaN`). */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** One sample line: `name{pairs} value` (no braces without labels). */
export function sampleLine(name: string, pairs: string, value: number): string {
  return pairs === ""
    ? `${name} ${formatValue(value)}\n`
    : `${name}{${pairs}} ${formatValue(value)}\n`;
}

/** The `# HELP` and `# TYPE` lines of a metric family. */
export function familyHeader(name: string, help: string, type: string): string {
  return `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
}
