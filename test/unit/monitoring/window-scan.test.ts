import { describe, expect, it } from 'vitest';
import {
  accumulateCopyText,
  accumulateInstance,
  accumulateRow,
  emptyScan,
  unescapeCopyText,
  type ScanPlan,
} from '../../../monitoring/window-scan.js';
import { analyzeFeature, distanceBreaches, performanceBreaches } from '../../../monitoring/window-analysis.js';

const plan: ScanPlan = {
  features: [
    { name: 'distance', kind: 'numeric', edges: [0, 100, 1000] },
    { name: 'origin', kind: 'categorical' },
    { name: 'hour', kind: 'numeric' },
  ],
  task: 'binary',
  keepProbabilities: true,
};

describe('accumulateRow', () => {
  it('counts features, served labels, probabilities and feedback in one pass', () => {
    const scan = emptyScan(plan);
    const row = (features: string, p: number, feedback: string | null) =>
      accumulateRow(scan, plan, {
        features,
        label: p >= 0.5 ? 'true' : 'false',
        probabilities: `[${1 - p}, ${p}]`,
        prediction: null,
        feedback,
      });
    row('{"distance": 50, "origin": "PIT", "hour": 3}', 0.75, 'true');
    row('{"distance": 5000, "origin": true}', 0.25, null);
    row('{"distance": null, "origin": 7, "hour": "x"}', 0.5, 'false');
    row('not json', 0.125, null);
    expect(scan.rows).toBe(4);
    const [distance, origin, hour] = scan.features;
    expect(Array.from(distance!.numeric!.counts)).toEqual([0, 1, 0, 1]);
    expect(distance!.numeric!.missing).toBe(2);
    expect([...origin!.categorical!.counts]).toEqual([
      ['PIT', 1],
      ['true', 1],
      ['7', 1],
    ]);
    expect(origin!.categorical!.missing).toBe(1);
    expect(hour!.missingOnly).toBe(3);
    expect(Array.from(scan.probabilities.view())).toEqual([0.75, 0.25, 0.5, 0.125]);
    expect([...scan.predictedLabels.counts]).toEqual([
      ['true', 2],
      ['false', 2],
    ]);
    expect(scan.servedClasses.get(1)).toBe('true');
    expect(scan.servedClasses.get(0)).toBe('false');
    expect(scan.feedbackLabels).toEqual(['true', 'false']);
    expect(Array.from(scan.feedbackOutputs.view())).toEqual([0.25, 0.75, 0.5, 0.5]);
  });
});

describe('accumulateInstance', () => {
  it('counts a parsed instance (a row read from the warehouse) as accumulateRow counts its JSON text', () => {
    const rows = [
      { features: '{"distance": 50, "origin": "PIT", "hour": 3}', p: 0.75, feedback: 'true' },
      { features: '{"distance": 5000, "origin": true}', p: 0.25, feedback: null },
      { features: '[1, 2]', p: 0.5, feedback: 'false' },
    ];
    const streamed = emptyScan(plan);
    const exported = emptyScan(plan);
    for (const r of rows) {
      const outputs = { label: r.p >= 0.5 ? 'true' : 'false', prediction: null, feedback: r.feedback };
      accumulateRow(streamed, plan, { ...outputs, features: r.features, probabilities: `[${1 - r.p}, ${r.p}]` });
      accumulateInstance(exported, plan, JSON.parse(r.features), {
        ...outputs,
        probabilities: JSON.stringify([1 - r.p, r.p]),
      });
    }
    expect(exported).toEqual(streamed);
  });
});

describe('accumulateCopyText', () => {
  it('counts COPY text rows, escapes and NULLs included, as accumulateRow counts the same rows', () => {
    const rows = [
      { features: '{"distance":50,"origin":"PIT","hour":3}', label: '1', p: 0.75, feedback: '1' },
      { features: '{"distance" : 5000, "origin" : "a\\"b"}', label: '0', p: 0.25, feedback: null },
      { features: '{"distance":"7","origin":"tab\\tin","hour":[1]}', label: 'x\ty', p: 0.5, feedback: null },
      { features: '{\n"distance": 1e2}', label: null, p: null, feedback: 'late' },
      { features: '[1, 2]', label: '1', p: 0.125, feedback: null },
    ];
    const escape = (text: string | null) =>
      text === null ? '\\N' : text.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n');
    const text = rows
      .map((r) =>
        [
          escape(r.features),
          escape(r.label),
          escape(r.p === null ? null : `[${1 - r.p}, ${r.p}]`),
          '\\N',
          escape(r.feedback),
        ].join('\t'),
      )
      .join('\n');
    const copied = emptyScan(plan);
    accumulateCopyText(copied, plan, `${text}\n`);
    const counted = emptyScan(plan);
    for (const r of rows) {
      accumulateRow(counted, plan, {
        features: r.features,
        label: r.label,
        probabilities: r.p === null ? null : `[${1 - r.p}, ${r.p}]`,
        prediction: null,
        feedback: r.feedback,
      });
    }
    expect(copied).toEqual(counted);
    expect(copied.rows).toBe(5);
    expect([...copied.features[1]!.categorical!.counts.keys()]).toEqual(['PIT', 'a"b', 'tab\tin']);
  });
});

describe('unescapeCopyText', () => {
  it("undoes COPY's text escapes", () => {
    expect(unescapeCopyText('plain')).toBe('plain');
    expect(unescapeCopyText('{"a":"x\\\\"y\\tz\\n"}')).toBe('{"a":"x\\"y\tz\n"}');
    expect(unescapeCopyText('\\\\\\\\')).toBe('\\\\');
  });
});

describe('analyzeFeature', () => {
  it('measures drift against the previous report on the same bins, and stays quiet below the minimum rows', () => {
    const scan = emptyScan(plan);
    for (const d of [10, 20, 500, 600]) {
      accumulateRow(scan, plan, {
        features: JSON.stringify({ distance: d }),
        label: null,
        probabilities: null,
        prediction: null,
        feedback: null,
      });
    }
    const previous = analyzeFeature({
      feature: 'distance',
      kind: 'numeric',
      numeric: scan.features[0]!.numeric!,
      rows: 4,
      thresholds: { skew: 0.1, drift: 0.1 },
      quiet: false,
    }).report;
    const shifted = emptyScan(plan);
    for (const d of [900, 950, 2000, 3000]) {
      accumulateRow(shifted, plan, {
        features: JSON.stringify({ distance: d }),
        label: null,
        probabilities: null,
        prediction: null,
        feedback: null,
      });
    }
    const input = {
      feature: 'distance',
      kind: 'numeric' as const,
      numeric: shifted.features[0]!.numeric!,
      rows: 4,
      previous,
      thresholds: { skew: 0.1, drift: 0.1 },
    };
    const loud = analyzeFeature({ ...input, quiet: false });
    // Before: half in [0, 100), half in [100, 1000]; after: half in [100, 1000], half over: JS = 1/2.
    expect(loud.monitoring.drift?.distance).toBeCloseTo(0.5, 12);
    expect(loud.monitoring.drift?.breached).toBe(true);
    expect(distanceBreaches([loud.monitoring])).toEqual([
      { kind: 'drift', subject: 'distance', value: loud.monitoring.drift!.distance, threshold: 0.1 },
    ]);
    const quiet = analyzeFeature({ ...input, quiet: true });
    expect(quiet.monitoring.drift?.breached).toBe(false);
    expect(distanceBreaches([quiet.monitoring])).toEqual([]);
  });

  it('flags a live metric past its floor only with enough labelled rows', () => {
    const rule = { metric: 'auc', min: 0.7, minLabelledRows: 10 };
    expect(performanceBreaches(rule, { auc: 0.6 }, 10, false)).toEqual([
      { kind: 'performance', subject: 'auc', value: 0.6, threshold: 0.7 },
    ]);
    expect(performanceBreaches(rule, { auc: 0.6 }, 9, false)).toEqual([]);
    expect(performanceBreaches(rule, { auc: 0.6 }, 10, true)).toEqual([]);
    expect(
      performanceBreaches({ metric: 'log_loss', max: 0.5, minLabelledRows: 1 }, { log_loss: 0.7 }, 5, false),
    ).toHaveLength(1);
  });
});
