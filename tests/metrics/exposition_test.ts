/**
 * The text exposition format 0.0.4: escaping, number syntax, name checks, and the lines of
 * counters, gauges, histograms and computed families. Every line rendered is checked against
 * the format's grammar.
 */

import assert from "node:assert/strict";
import {
  escapeHelp,
  escapeLabelValue,
  EXPOSITION_CONTENT_TYPE,
  formatValue,
  labelPairs,
} from "../../src/metrics/exposition.ts";
import {
  ComputedFamily,
  CounterFamily,
  GaugeFamily,
  HistogramFamily,
  MetricsRegistry,
  seriesCount,
} from "../../src/metrics/families.ts";
import { assertValidExposition } from "./exposition_check.ts";

Deno.test("exposition: content type is the text format 0.0.4", () => {
  assert.equal(EXPOSITION_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
});

Deno.test("exposition: label values escape backslash, quote and newline; help escapes two", () => {
  assert.equal(escapeLabelValue("plain"), "plain");
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(escapeHelp('a\\b"c\nd'), 'a\\\\b"c\\nd');
  assert.equal(labelPairs(["a", "b"], ["x", 'y"z']), 'a="x",b="y\\"z"');
  assert.equal(labelPairs([], []), "");
});

Deno.test("exposition: values use Go's float syntax", () => {
  assert.equal(formatValue(0), "0");
  assert.equal(formatValue(42), "42");
  assert.equal(formatValue(0.25), "0.25");
  assert.equal(formatValue(1e-7), "1e-7");
  assert.equal(formatValue(Infinity), "+Inf");
  assert.equal(formatValue(-Infinity), "-Inf");
  assert.equal(formatValue(NaN), "NaN");
});

Deno.test("exposition: invalid metric and label names are refused", () => {
  assert.throws(() => new CounterFamily({ name: "1bad", help: "" }), /Invalid metric name/);
  assert.throws(() => new CounterFamily({ name: "a-b", help: "" }), /Invalid metric name/);
  assert.throws(
    () => new CounterFamily({ name: "ok", help: "", labels: ["__x"] }),
    /Invalid label name/,
  );
  assert.throws(
    () => new HistogramFamily({ name: "h", help: "", labels: ["le"], buckets: [1] }),
    /label le/,
  );
  assert.throws(
    () => new HistogramFamily({ name: "h", help: "", buckets: [1, 1] }),
    /not ascending/,
  );
  const family = new CounterFamily({ name: "c", help: "", labels: ["a"] });
  assert.throws(() => family.labels(), /takes 1 label values/);
});

Deno.test("exposition: counters and gauges render HELP, TYPE and one line per series", () => {
  const counter = new CounterFamily({ name: "c_total", help: "Counts\nthings", labels: ["k"] });
  counter.labels("a").inc();
  counter.labels("a").inc(2);
  counter.labels('q"uote').inc();
  const gauge = new GaugeFamily({ name: "g", help: "A gauge" });
  gauge.labels().set(5);
  gauge.labels().dec();
  const text = counter.render() + gauge.render();
  assert.equal(
    text,
    [
      "# HELP c_total Counts\\nthings",
      "# TYPE c_total counter",
      'c_total{k="a"} 3',
      'c_total{k="q\\"uote"} 1',
      "# HELP g A gauge",
      "# TYPE g gauge",
      "g 4",
      "",
    ].join("\n"),
  );
  assertValidExposition(text);
  assert.equal(counter.labels("a"), counter.labels("a"), "a series is made once");
});

Deno.test("exposition: histograms have cumulative buckets, +Inf, sum and count", () => {
  const h = new HistogramFamily({
    name: "d_seconds",
    help: "Durations",
    labels: ["route"],
    buckets: [0.1, 0.5, 1],
  });
  const s = h.labels("x");
  for (const v of [0.05, 0.1, 0.3, 0.7, 2, 5]) s.observe(v);
  const text = h.render();
  assert.equal(
    text,
    [
      "# HELP d_seconds Durations",
      "# TYPE d_seconds histogram",
      'd_seconds_bucket{route="x",le="0.1"} 2',
      'd_seconds_bucket{route="x",le="0.5"} 3',
      'd_seconds_bucket{route="x",le="1"} 4',
      'd_seconds_bucket{route="x",le="+Inf"} 6',
      'd_seconds_sum{route="x"} 8.15',
      'd_seconds_count{route="x"} 6',
      "",
    ].join("\n"),
  );
  assertValidExposition(text);
  const bare = new HistogramFamily({ name: "b", help: "", buckets: [1] });
  bare.labels().observe(3);
  assert.match(
    bare.render(),
    /^b_bucket\{le="1"\} 0\nb_bucket\{le="\+Inf"\} 1\nb_sum 3\nb_count 1$/m,
  );
});

Deno.test("exposition: the registry renders families in order, leaving out failing ones", async () => {
  const registry = new MetricsRegistry();
  registry.add(new CounterFamily({ name: "first_total", help: "1" })).labels().inc();
  registry.add(
    new ComputedFamily({ name: "broken", help: "", type: "gauge" }, () => {
      throw new Error("Unreadable");
    }),
  );
  registry.add(new ComputedFamily({ name: "empty", help: "", type: "gauge" }, () => []));
  registry.add(
    new ComputedFamily(
      { name: "computed", help: "Computed", type: "gauge" },
      () => Promise.resolve([{ labels: { a: "1" }, value: 7 }, { value: 8 }]),
    ),
  );
  assert.throws(() => registry.add(new GaugeFamily({ name: "first_total", help: "" })));
  const failed: string[] = [];
  const text = await registry.render((name) => failed.push(name));
  assert.deepEqual(failed, ["broken"]);
  assert.equal(
    text,
    "# HELP first_total 1\n# TYPE first_total counter\nfirst_total 1\n" +
      '# HELP computed Computed\n# TYPE computed gauge\ncomputed{a="1"} 7\ncomputed 8\n',
  );
  assertValidExposition(text);
  assert.equal(seriesCount(text), 3);
});
