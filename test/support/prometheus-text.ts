/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), for tests: it throws, naming the line,
 * where a scraper would refuse the page or read it wrongly (a family declared twice, samples of one family split in
 * two groups, a sample outside any declared family, a repeated series, a malformed name, label or value, histogram
 * buckets that are not cumulative or disagree with `_count`).
 */

export interface PrometheusSample {
  /** The sample's own name (`x_bucket`, `x_sum`, ... for histograms and summaries). */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface PrometheusFamily {
  readonly name: string;
  readonly type: string;
  readonly help: string | undefined;
  readonly samples: PrometheusSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** Every family of the page, by name, in page order. */
export function parsePrometheusText(text: string): Map<string, PrometheusFamily> {
  const families = new Map<string, PrometheusFamily & { samples: PrometheusSample[]; help: string | undefined }>();
  const helped = new Set<string>();
  const closed = new Set<string>();
  const series = new Set<string>();
  let current: string | undefined;
  const fail = (line: number, message: string, content: string): never => {
    throw new Error(`line ${line + 1}: ${message}: ${JSON.stringify(content)}`);
  };
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) {
      f = { name, type: 'untyped', help: undefined, samples: [] };
      families.set(name, f);
    }
    return f;
  };
  const enter = (name: string, i: number, line: string) => {
    if (current === name) return;
    if (closed.has(name)) fail(i, `the family ${name} continues after another one`, line);
    if (current !== undefined) closed.add(current);
    current = name;
  };
  const lines = text.split('\n');
  if (text !== '' && !text.endsWith('\n')) fail(lines.length - 1, 'the page does not end with a newline', '');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const [, keyword, name, ...rest] = line.split(' ');
      if (keyword !== 'HELP' && keyword !== 'TYPE') return;
      if (!name || !NAME.test(name)) fail(i, 'a malformed metric name', line);
      const f = family(name!);
      enter(name!, i, line);
      if (keyword === 'HELP') {
        if (helped.has(name!)) fail(i, `a second HELP for ${name}`, line);
        helped.add(name!);
        f.help = rest.join(' ');
      } else {
        const type = rest.join(' ');
        if (!TYPES.has(type)) fail(i, 'an unknown type', line);
        if (f.type !== 'untyped' || f.samples.length > 0) fail(i, `a TYPE for ${name} after its type or samples`, line);
        (f as { type: string }).type = type;
      }
      return;
    }
    const sample = parseSample(line, (message) => fail(i, message, line));
    const owner = ownerOf(sample, families) ?? sample.name;
    enter(owner, i, line);
    const f = family(owner);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
    if (series.has(key)) fail(i, 'a repeated series', line);
    series.add(key);
    if (f.type === 'counter' && !(sample.value >= 0)) fail(i, 'a counter below zero', line);
    f.samples.push(sample);
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

/** The declared family a sample belongs to: its own name, or a histogram's or summary's. */
function ownerOf(sample: PrometheusSample, families: Map<string, PrometheusFamily>): string | undefined {
  if (families.has(sample.name)) return sample.name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sample.name.endsWith(suffix)) continue;
    const base = families.get(sample.name.slice(0, -suffix.length));
    if (base && (base.type === 'histogram' || (base.type === 'summary' && suffix !== '_bucket'))) return base.name;
  }
  return undefined;
}

function parseSample(line: string, fail: (message: string) => never): PrometheusSample {
  const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+-?\d+)?$/.exec(line);
  if (!match) fail('a malformed sample');
  const [, name, labelText, rawValue] = match!;
  const labels: Record<string, string> = {};
  if (labelText) {
    let rest = labelText.slice(1, -1);
    while (rest.length > 0) {
      const label = /^([^=\s]+)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
      if (!label) fail('malformed labels');
      const [whole, labelName, value] = label!;
      if (!LABEL_NAME.test(labelName!) || labelName!.startsWith('__')) fail(`a malformed label name ${labelName}`);
      if (labelName! in labels) fail(`the label ${labelName} twice`);
      labels[labelName!] = value!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(whole.length);
    }
  }
  // As Prometheus reads values (Go's ParseFloat): Inf, Infinity and NaN in any case (prom-client writes `Nan`).
  const special = /^([+-]?)(inf|infinity)$/i.exec(rawValue!);
  const value = special
    ? special[1] === '-'
      ? -Infinity
      : Infinity
    : /^nan$/i.test(rawValue!)
      ? NaN
      : Number(rawValue);
  if (Number.isNaN(value) && !/^nan$/i.test(rawValue!)) fail(`a malformed value ${rawValue}`);
  return { name: name!, labels, value };
}

/** Per label set: `+Inf` present, buckets cumulative in `le` order, `+Inf` equal to `_count`, `_sum` present. */
function checkHistogram(f: PrometheusFamily): void {
  const groups = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort(([a], [b]) => (a < b ? -1 : 1)));
    const group = groups.get(key) ?? { buckets: [] };
    groups.set(key, group);
    if (s.name.endsWith('_bucket')) {
      if (le === undefined) throw new Error(`${f.name}: a bucket without le`);
      group.buckets.push([le === '+Inf' ? Infinity : Number(le), s.value]);
    } else if (s.name.endsWith('_sum')) group.sum = s.value;
    else if (s.name.endsWith('_count')) group.count = s.value;
  }
  for (const [key, group] of groups) {
    const sorted = [...group.buckets].sort(([a], [b]) => a - b);
    if (sorted.at(-1)?.[0] !== Infinity) throw new Error(`${f.name}${key}: no +Inf bucket`);
    sorted.forEach(([le, value], i) => {
      if (i > 0 && value < sorted[i - 1]![1]) throw new Error(`${f.name}${key}: bucket le=${le} below the one before`);
    });
    if (group.count !== sorted.at(-1)![1]) throw new Error(`${f.name}${key}: +Inf bucket differs from _count`);
    if (group.sum === undefined) throw new Error(`${f.name}${key}: no _sum`);
  }
}

/** The value of one series, or undefined when the page does not have it. */
export function sampleValue(
  families: Map<string, PrometheusFamily>,
  family: string,
  labels: Record<string, string>,
  name = family,
): number | undefined {
  const wanted = Object.entries(labels);
  const sample = families
    .get(family)
    ?.samples.find(
      (s) =>
        s.name === name &&
        Object.keys(s.labels).length === wanted.length &&
        wanted.every(([k, v]) => s.labels[k] === v),
    );
  return sample?.value;
}
