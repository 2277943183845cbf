/** The COPY text encoder of the prediction log: field order, nulls, escapes and timestamps. */
import { describe, expect, it } from 'vitest';
import type { PredictionLogRow } from '../../../serving/prediction-log-records.js';
import { copyText } from '../../../serving/prediction-log-copy.js';

const VERSION_ID = '00000000-0000-4000-8000-000000000003';

describe('copyText', () => {
  const row = (extra: Partial<PredictionLogRow> = {}): PredictionLogRow => ({
    requestId: 'r1',
    loggedAt: Date.UTC(2026, 10, 27, 6, 59, 59, 999),
    deployment: 'delays',
    model: 'delays',
    versionId: VERSION_ID,
    version: 3,
    role: 'champion',
    features: '{"x":1,"kind":"k0"}',
    outputs: '{"label":1,"probabilities":[0.25,0.75]}',
    latencyMs: 1.5,
    error: null,
    ...extra,
  });

  it('writes one tab-separated line per row, shared fields first, null as \\N', () => {
    expect(copyText([row(), row({ requestId: 'r2', deployment: null, outputs: null, error: 'failed' })])).toBe(
      `delays\tdelays\t${VERSION_ID}\t3\tchampion\tr1\t2026-11-27T06:59:59.999Z\t1.5\t\\N\t` +
        `{"x":1,"kind":"k0"}\t{"label":1,"probabilities":[0.25,0.75]}\n` +
        `\\N\tdelays\t${VERSION_ID}\t3\tchampion\tr2\t2026-11-27T06:59:59.999Z\t1.5\tfailed\t` +
        `{"x":1,"kind":"k0"}\t\\N\n`,
    );
  });

  it('escapes backslashes, tabs and line breaks in text and JSON fields', () => {
    const text = copyText([
      row({
        requestId: 'a\tb',
        error: 'one\ntwo\r\\',
        features: JSON.stringify({ note: 'x\\y\t"z"\n' }),
        role: 'shadow',
      }),
    ]);
    const fields = text.slice(0, -1).split('\t');
    expect(fields).toHaveLength(11);
    expect(fields[5]).toBe('a\\tb');
    expect(fields[8]).toBe('one\\ntwo\\r\\\\');
    // JSON.stringify already wrote the tab and line break as \t and \n; COPY doubles every backslash.
    expect(fields[9]).toBe(String.raw`{"note":"x\\\\y\\t\\"z\\"\\n"}`);
    expect(fields[9]!.replaceAll('\\\\', '\\')).toBe(JSON.stringify({ note: 'x\\y\t"z"\n' }));
  });

  it('formats each timestamp exactly, across seconds, and fractions of a millisecond', () => {
    const times = [
      Date.UTC(2026, 10, 27, 6, 59, 59, 999),
      Date.UTC(2026, 10, 27, 7, 0, 0, 0),
      Date.UTC(2026, 10, 27, 7, 0, 0, 7),
      Date.UTC(2026, 10, 27, 7, 0, 0, 42),
      Date.UTC(1969, 11, 31, 23, 59, 59, 5),
      Date.UTC(2026, 10, 27, 7, 0, 1, 0) + 0.5,
    ];
    const lines = copyText(times.map((loggedAt) => row({ loggedAt }))).split('\n');
    expect(lines.slice(0, -1).map((line) => line.split('\t')[6])).toEqual([
      '2026-11-27T06:59:59.999Z',
      '2026-11-27T07:00:00.000Z',
      '2026-11-27T07:00:00.007Z',
      '2026-11-27T07:00:00.042Z',
      '1969-12-31T23:59:59.005Z',
      '2026-11-27T07:00:01.000Z',
    ]);
  });
});
