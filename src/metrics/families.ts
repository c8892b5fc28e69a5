/**
 * Metric families (counters, gauges, histograms) with fixed label names, and the registry
 * that renders them in the text format. A series is a plain object holding its value and its
 * label text, made once: callers keep the series they update, so that recording is a field
 * update (a histogram: a short bucket scan), never a label lookup.
 */

import {
  checkLabelName,
  checkMetricName,
  familyHeader,
  labelPairs,
  sampleLine,
} from "./exposition.ts";

/** Something the registry renders: a family, or a family computed at scrape time. */
export interface Collectable {
  readonly name: string;
  /** The family's lines (HELP, TYPE, samples). */
  render(): string | Promise<string>;
}

/** What every family is made of. */
export interface FamilyOptions {
  readonly name: string;
  readonly help: string;
  /** The label names, in the order `labels(...)` takes their values. */
  readonly labels?: readonly string[];
}

/** A counter series: only goes up. */
export class Counter {
  /** The count. */
  value = 0;
  /** The series' label text (`a="x",b="y"`). */
  readonly pairs: string;
  /** Makes a series with its label text. */
  constructor(pairs: string) {
    this.pairs = pairs;
  }
  /** Adds `by` (default 1). */
  inc(by = 1): void {
    this.value += by;
  }
}

/** A gauge series: goes up and down. */
export class Gauge extends Counter {
  /** Subtracts `by` (default 1). */
  dec(by = 1): void {
    this.value -= by;
  }
  /** Sets the value. */
  set(value: number): void {
    this.value = value;
  }
}

/** A histogram series: counts per bucket (not cumulative), sum and count. */
export class Histogram {
  /** Upper bounds, ascending, without +Inf. */
  readonly bounds: readonly number[];
  /** Observations per bucket; the last slot holds those above every bound. */
  readonly counts: Float64Array;
  /** The sum of the observations. */
  sum = 0;
  /** The number of observations. */
  count = 0;
  /** The series' label text. */
  readonly pairs: string;
  /** Makes a series over bucket bounds. */
  constructor(pairs: string, bounds: readonly number[]) {
    this.pairs = pairs;
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }
  /** Records one observation. */
  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

abstract class Family<S> implements Collectable {
  /** The metric name. */
  readonly name: string;
  /** The `# HELP` text. */
  readonly help: string;
  /** The label names, in the order of `labels(...)`. */
  readonly labelNames: readonly string[];
  readonly #series = new Map<string, S>();

  constructor(options: FamilyOptions) {
    checkMetricName(options.name);
    for (const label of options.labels ?? []) checkLabelName(label);
    this.name = options.name;
    this.help = options.help;
    this.labelNames = options.labels ?? [];
  }

  /** The series for these label values (made on first use). Keep it: this is a lookup. */
  labels(...values: string[]): S {
    if (values.length !== this.labelNames.length) {
      throw new Error(`Metric ${this.name} takes ${this.labelNames.length} label values`);
    }
    const key = values.join("\u0000");
    let series = this.#series.get(key);
    if (series === undefined) {
      series = this.make(labelPairs(this.labelNames, values));
      this.#series.set(key, series);
    }
    return series;
  }

  /** Every series made so far. */
  series(): IterableIterator<S> {
    return this.#series.values();
  }

  protected abstract make(pairs: string): S;
  abstract render(): string;
}

/** A counter family. */
export class CounterFamily extends Family<Counter> {
  protected make(pairs: string): Counter {
    return new Counter(pairs);
  }
  /** The family's lines. */
  render(): string {
    let out = familyHeader(this.name, this.help, "counter");
    for (const s of this.series()) out += sampleLine(this.name, s.pairs, s.value);
    return out;
  }
}

/** A gauge family. */
export class GaugeFamily extends Family<Gauge> {
  protected make(pairs: string): Gauge {
    return new Gauge(pairs);
  }
  /** The family's lines. */
  render(): string {
    let out = familyHeader(this.name, this.help, "gauge");
    for (const s of this.series()) out += sampleLine(this.name, s.pairs, s.value);
    return out;
  }
}

/** Options of a histogram family. */
export interface HistogramOptions extends FamilyOptions {
  /** Bucket upper bounds, ascending (+Inf is implied). */
  readonly buckets: readonly number[];
}

/** A histogram family: `_bucket{le}` (cumulative), `_sum` and `_count` per series. */
export class HistogramFamily extends Family<Histogram> {
  /** The bucket upper bounds (without +Inf). */
  readonly buckets: readonly number[];
  readonly #le: readonly string[];

  /** Makes the family; throws when the buckets are not ascending. */
  constructor(options: HistogramOptions) {
    super(options);
    if (this.labelNames.includes("le")) throw new Error(`Histogram ${this.name} has label le`);
    const b = options.buckets;
    for (let i = 1; i < b.length; i++) {
      if (!(b[i] > b[i - 1])) throw new Error(`Buckets of ${this.name} are not ascending`);
    }
    this.buckets = [...b];
    this.#le = [...b.map((x) => `le="${x}"`), `le="+Inf"`];
  }

  protected make(pairs: string): Histogram {
    return new Histogram(pairs, this.buckets);
  }

  /** The family's lines. */
  render(): string {
    const name = this.name;
    let out = familyHeader(name, this.help, "histogram");
    for (const s of this.series()) {
      const prefix = s.pairs === "" ? "" : `${s.pairs},`;
      let cumulative = 0;
      for (let i = 0; i < s.counts.length; i++) {
        cumulative += s.counts[i];
        out += sampleLine(`${name}_bucket`, prefix + this.#le[i], cumulative);
      }
      out += sampleLine(`${name}_sum`, s.pairs, s.sum);
      out += sampleLine(`${name}_count`, s.pairs, s.count);
    }
    return out;
  }
}

/** One sample of a family computed at scrape time. */
export interface Sample {
  readonly labels?: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A family whose samples are computed at each scrape (e.g. from the process or storage). */
export class ComputedFamily implements Collectable {
  /** The metric name. */
  readonly name: string;
  readonly #help: string;
  readonly #type: "counter" | "gauge";
  readonly #collect: () => Sample[] | Promise<Sample[]>;

  /** Makes the family; `collect` gives its samples (none: the family is left out). */
  constructor(
    options: { name: string; help: string; type: "counter" | "gauge" },
    collect: () => Sample[] | Promise<Sample[]>,
  ) {
    checkMetricName(options.name);
    this.name = options.name;
    this.#help = options.help;
    this.#type = options.type;
    this.#collect = collect;
  }

  /** The family's lines, or nothing when it has no sample now. */
  async render(): Promise<string> {
    const samples = await this.#collect();
    if (samples.length === 0) return "";
    let out = familyHeader(this.name, this.#help, this.#type);
    for (const s of samples) {
      const names = Object.keys(s.labels ?? {});
      for (const n of names) checkLabelName(n);
      out += sampleLine(this.name, labelPairs(names, names.map((n) => s.labels![n])), s.value);
    }
    return out;
  }
}

/** The families a scrape renders, in the order they were added. */
export class MetricsRegistry {
  readonly #families: Collectable[] = [];

  /** Adds a family; throws when one of that name is there. */
  add<T extends Collectable>(family: T): T {
    if (this.#families.some((f) => f.name === family.name)) {
      throw new Error(`Metric ${family.name} is registered twice`);
    }
    this.#families.push(family);
    return family;
  }

  /** The whole exposition. A computed family that fails is left out (and `onError` told). */
  async render(onError: (name: string, error: unknown) => void = () => {}): Promise<string> {
    const parts = await Promise.all(this.#families.map(async (f) => {
      try {
        return await f.render();
      } catch (error) {
        onError(f.name, error);
        return "";
      }
    }));
    return parts.join("");
  }
}

/** Sample lines (series) in an exposition: the lines that are not comments. */
export function seriesCount(exposition: string): number {
  let n = 0;
  for (const line of exposition.split("\n")) if (line !== "" && !line.startsWith("#")) n++;
  return n;
}

/**
 * Histogram bounds 1, 2.5 and 5 times each power of ten, from `lowest` to `highest` (both of
 * that form), as decimal literals would give them (`0.00025`, not a rounding of it).
 */
export function decadeBuckets(lowest: number, highest: number): number[] {
  const out: number[] = [];
  for (let exponent = Math.floor(Math.log10(lowest)); exponent <= 3; exponent++) {
    for (const mantissa of [1, 2.5, 5]) {
      const bound = parseFloat(`${mantissa}e${exponent}`);
      if (bound >= lowest && bound <= highest) out.push(bound);
    }
  }
  return out;
}
