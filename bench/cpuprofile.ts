/**
 * Summarizes a V8 `.cpuprofile` (from `deno run --cpu-prof`, e.g. `deno task bench
 * --profile DIR`): self time per function and per file, and total (inclusive) time of the
 * heaviest functions, so a profile can be read without a browser.
 *
 * Usage: deno run --allow-read bench/cpuprofile.ts FILE.cpuprofile [--top 25]
 */

import { parseArgs } from "node:util";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function label(frame: CallFrame): string {
  const file = frame.url.replace(/^file:\/\/.*?\/(src|bench|main\.ts)/, "$1").replace(
    /^ext:/,
    "ext:",
  );
  return `${frame.functionName || "(anonymous)"} ${file ? `${file}:${frame.lineNumber + 1}` : ""}`
    .trim();
}

/** Self and total milliseconds per function label, and self per file. */
export function summarize(profile: Profile): {
  totalMs: number;
  self: Map<string, number>;
  inclusive: Map<string, number>;
  byFile: Map<string, number>;
} {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfById = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfById.set(id, (selfById.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  }
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const [id, ms] of selfById) {
    const node = byId.get(id)!;
    const name = label(node.callFrame);
    self.set(name, (self.get(name) ?? 0) + ms);
    const file = node.callFrame.url || `(${node.callFrame.functionName})`;
    byFile.set(file, (byFile.get(file) ?? 0) + ms);
    // Charge every distinct ancestor function once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(byId.get(cur)!.callFrame);
      if (seen.has(l)) continue;
      seen.add(l);
      inclusive.set(l, (inclusive.get(l) ?? 0) + ms);
    }
  }
  return { totalMs: (profile.endTime - profile.startTime) / 1000, self, inclusive, byFile };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { top: { type: "string", default: "25" } },
  });
  const top = Number(values.top);
  for (const path of positionals) {
    const s = summarize(JSON.parse(await Deno.readTextFile(path)) as Profile);
    const show = (title: string, m: Map<string, number>) => {
      console.log(`\n${title}`);
      for (const [k, ms] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
        console.log(
          `${ms.toFixed(0).padStart(8)} ms ${(100 * ms / s.totalMs).toFixed(1).padStart(5)}%  ${k}`,
        );
      }
    };
    console.log(`${path}: ${s.totalMs.toFixed(0)} ms profiled`);
    show("Self time by function:", s.self);
    show("Self time by file:", s.byFile);
    show("Total (inclusive) time by function:", s.inclusive);
  }
}
