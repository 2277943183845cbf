import { describe, expect, it } from 'vitest';
import { FlatObjectReader, lastTokenEnd, readJsonNumber, type JsonScalar } from '../../../monitoring/flat-json.js';

/** A seeded generator, so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296;
  };
}

function read(names: readonly string[], text: string): (JsonScalar | undefined)[] | false {
  const out: (JsonScalar | undefined)[] = [];
  return new FlatObjectReader(names).read(text, 0, text.length, out) ? out : false;
}

describe('readJsonNumber', () => {
  it('reads every JSON number exactly as Number() does, and where it ends', () => {
    const next = random(7);
    const texts = ['0', '-0', '1', '-12', '0.5', '1e3', '1E-3', '2.5e+2', '123456789012345678901', '1e400', '-1e-400'];
    texts.push('9007199254740993', '0.1', '0.30000000000000004', '4.9406564584124654e-324', '1.7976931348623157e308');
    for (let i = 0; i < 4_000; i++) {
      const x = (next() - 0.5) * 10 ** Math.floor(next() * 40 - 20);
      texts.push(String(x), x.toFixed(Math.floor(next() * 8)), x.toExponential(Math.floor(next() * 17)));
      texts.push(String(Math.fround(x)), String(Math.round(x * 100) / 100));
    }
    for (const text of texts) {
      const value = readJsonNumber(`${text},`, 0);
      expect(Object.is(value, Number(text)), text).toBe(true);
      expect(lastTokenEnd()).toBe(text.length);
    }
  });

  it('gives NaN where JSON has no number', () => {
    for (const text of ['', '-', '.5', '1.', '1e', '1e+', '+1', 'NaN', 'x']) {
      expect(readJsonNumber(text, 0), text).toBeNaN();
    }
  });
});

describe('FlatObjectReader', () => {
  const names = ['distance', 'origin', 'hour', 'ok'];

  it('reads the named members of flat objects as JSON.parse does', () => {
    const texts = [
      '{"distance":724.94,"origin":"DFW","hour":5,"ok":true}',
      '{"distance" : 1279.27, "origin" : "BOS", "hour" : 23}',
      ' {\t"hour":-0 ,\n"other":"x\\u0041"} ',
      '{}',
      '{"origin":null,"distance":"12","ok":false}',
      '{"distance":1,"distance":2}',
      '{"distanc":1,"distances":2,"origin":"Zürich"}',
      '{"hour":1e400,"origin":""}',
    ];
    for (const text of texts) {
      const expected = JSON.parse(text) as Record<string, unknown>;
      const out = read(names, text);
      if (text.includes('\\u')) {
        // Escapes are outside the subset: the caller parses those.
        expect(out).toBe(false);
        continue;
      }
      expect(out, text).toEqual(names.map((n) => expected[n]));
    }
  });

  it('reads random flat objects as JSON.parse does, in any key order', () => {
    const next = random(11);
    const values = [() => next() * 4000 - 1000, () => Math.floor(next() * 24), () => 'PIT', () => null, () => true];
    for (let i = 0; i < 5_000; i++) {
      const keys = [...names, 'extra', 'x'].filter(() => next() < 0.8).sort(() => next() - 0.5);
      const instance = Object.fromEntries(keys.map((k) => [k, values[Math.floor(next() * values.length)]!()]));
      const text = JSON.stringify(instance, null, next() < 0.3 ? 1 : undefined);
      expect(read(names, text)).toEqual(names.map((n) => instance[n]));
    }
  });

  it('reports what is outside the subset, so the caller parses it', () => {
    for (const text of [
      '{"distance":[1,2]}',
      '{"distance":{"a":1}}',
      '{"origin":"a\\"b"}',
      '{"di\\u0073tance":1}',
      '{"distance":1,}',
      '{"distance":01}',
      '{"distance":1} x',
      '[1]',
      'not json',
      '',
      '{"distance":1',
      '{"distance" 1}',
      '{"origin":"a\tb"}',
      '{"ok":tru}',
    ]) {
      expect(read(names, text), text).toBe(false);
    }
  });

  it('reads only up to the end it is given', () => {
    const text = '{"hour":3}\t{"hour":4}';
    const out: (JsonScalar | undefined)[] = [];
    const reader = new FlatObjectReader(['hour']);
    expect(reader.read(text, 0, 10, out)).toBe(true);
    expect(out).toEqual([3]);
    expect(reader.read(text, 11, text.length, out)).toBe(true);
    expect(out).toEqual([4]);
    expect(reader.read(text, 0, 9, out)).toBe(false);
  });
});
