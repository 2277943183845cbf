import { describe, expect, it } from 'vitest';
import type { ModelSignature } from '../../../schema/registry.js';
import {
  compileSignature,
  parsePredictBody,
  PredictRequestError,
  UnservableSignatureError,
  validateInstances,
} from '../../../serving/signature.js';

const signature: ModelSignature = {
  inputs: [
    { name: 'hour', type: 'double', shape: [null, 1] },
    { name: 'distance', type: 'double', shape: [null, 1] },
    { name: 'origin', type: 'string', shape: [null, 1] },
  ],
  outputs: [
    { name: 'label', type: 'int64', shape: [null] },
    { name: 'probabilities', type: 'float', shape: [null, 2] },
  ],
};
const compiled = compileSignature(signature);

function refusal(run: () => unknown): PredictRequestError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(PredictRequestError);
    return error as PredictRequestError;
  }
  throw new Error('expected the request to be refused');
}

function check(body: unknown, maxInstances = 100): PredictRequestError {
  return refusal(() => validateInstances(compiled, parsePredictBody(body, maxInstances)));
}

const ok = { hour: 7, distance: 812.5, origin: 'SFO' };

describe('compileSignature', () => {
  it('keeps the input order and picks the outputs by task', () => {
    expect(compiled.inputs.map((i) => [i.name, i.numeric, i.tensorType])).toEqual([
      ['hour', true, 'float64'],
      ['distance', true, 'float64'],
      ['origin', false, 'string'],
    ]);
    expect(compiled).toMatchObject({ task: 'classification', fetches: ['label', 'probabilities'] });
    const regression = compileSignature({
      inputs: [{ name: 'x', type: 'float' }],
      outputs: [{ name: 'prediction', type: 'double' }],
    });
    expect(regression).toMatchObject({ task: 'regression', fetches: ['prediction'] });
    expect(regression.inputs[0]?.tensorType).toBe('float32');
  });

  it('refuses inputs serving cannot feed and unknown outputs', () => {
    expect(() => compileSignature({ ...signature, inputs: [{ name: 'n', type: 'int64' }] })).toThrow(
      UnservableSignatureError,
    );
    expect(() => compileSignature({ ...signature, outputs: [{ name: 'scores', type: 'float' }] })).toThrow(
      /neither label/,
    );
  });
});

describe('parsePredictBody + validateInstances', () => {
  it('accepts instances, a single instance, null as missing, extra keys, and a version or alias', () => {
    const many = parsePredictBody({ instances: [ok, { hour: null, distance: 1, origin: null, id: 'row-1' }] }, 10);
    expect(() => validateInstances(compiled, many)).not.toThrow();
    expect(many).toMatchObject({ single: false });
    expect(many.instances).toHaveLength(2);
    const one = parsePredictBody({ instance: ok, version: 3 }, 10);
    expect(one).toMatchObject({ single: true, version: 3, instances: [ok] });
    expect(parsePredictBody({ instance: ok, alias: 'staging' }, 10)).toMatchObject({ alias: 'staging' });
    // null version/alias are absent.
    expect(parsePredictBody({ instance: ok, version: null, alias: null }, 10)).not.toHaveProperty('version');
  });

  it('names the missing feature with its instance index', () => {
    const error = check({ instances: [ok, ok, ok, { hour: 1, origin: 'x' }] });
    expect(error.httpStatus).toBe(400);
    expect(error.message).toBe('instances[3].distance: missing');
    expect(error.problems).toEqual([{ location: 'body', path: 'instances[3].distance', problem: 'missing' }]);
  });

  it('names the field and the expected type of a wrongly typed value', () => {
    expect(check({ instances: [{ ...ok, hour: '7' }] }).message).toBe(
      'instances[0].hour: expected a number or null, got a string',
    );
    expect(check({ instance: { ...ok, origin: 7 } }).message).toBe(
      'instance.origin: expected a string or null, got a number',
    );
    expect(check({ instance: { ...ok, distance: true } }).message).toMatch(/^instance\.distance: .*got a boolean/);
    expect(check({ instance: { ...ok, origin: ['SFO'] } }).message).toMatch(/^instance\.origin: .*got an array/);
    expect(check({ instance: { ...ok, hour: { v: 1 } } }).message).toMatch(/^instance\.hour: .*got an object/);
  });

  it('refuses an instance that is not an object', () => {
    expect(check({ instances: [ok, 'hour=7'] }).message).toBe(
      'instances[1]: expected an object of feature values, got a string',
    );
    expect(check({ instances: [null] }).message).toMatch(/^instances\[0\]: .*got null/);
    expect(check({ instance: [1, 2, 3] }).message).toMatch(/^instance: .*got an array/);
  });

  it('lists every problem (up to 20) and counts the rest', () => {
    const bad = Array.from({ length: 30 }, () => ({}));
    const error = check({ instances: bad });
    expect(error.problems).toHaveLength(20);
    expect(error.message).toBe('instances[0].hour: missing (and 89 more)');
    expect(error.problems.map((p) => p.path).slice(0, 4)).toEqual([
      'instances[0].hour',
      'instances[0].distance',
      'instances[0].origin',
      'instances[1].hour',
    ]);
  });

  it('does not take inherited properties for features', () => {
    const withProto = compileSignature({
      ...signature,
      inputs: [
        { name: 'constructor', type: 'double' },
        { name: 'toString', type: 'string' },
      ],
    });
    const error = refusal(() => validateInstances(withProto, parsePredictBody({ instance: {} }, 10)));
    expect(error.problems.map((p) => `${p.path}: ${p.problem}`)).toEqual([
      'instance.constructor: missing',
      'instance.toString: missing',
    ]);
    expect(() =>
      validateInstances(withProto, parsePredictBody(JSON.parse('{"instance":{"constructor":1,"toString":"a"}}'), 10)),
    ).not.toThrow();
  });

  it('refuses malformed bodies, naming the field', () => {
    const cases: [unknown, string][] = [
      [[ok], 'body: expected an object with instances or instance, got an array'],
      ['text', 'body: expected an object with instances or instance, got a string'],
      [{}, 'instances: missing: give instances (an array of objects) or instance (one object)'],
      [{ instances: ok }, 'instances: expected an array of objects, got an object'],
      [{ instances: [] }, 'instances: expected at least one instance'],
      [{ instances: [ok], instance: ok }, 'instance: give instances or instance, not both'],
      [{ instance: ok, version: 0 }, 'version: expected a positive integer version number'],
      [{ instance: ok, version: 1.5 }, 'version: expected a positive integer version number'],
      [{ instance: ok, version: '2' }, 'version: expected a positive integer version number'],
      [{ instance: ok, version: 2, alias: 'champion' }, 'alias: give version or alias, not both'],
      [{ instance: ok, alias: '' }, 'alias: expected an alias: a letter, then letters, digits and ._- (at most 64)'],
      [{ instance: ok, alias: 'a b' }, 'alias: expected an alias: a letter, then letters, digits and ._- (at most 64)'],
    ];
    for (const [body, message] of cases) {
      const error = refusal(() => parsePredictBody(body, 10));
      expect(error.httpStatus, message).toBe(400);
      expect(error.message).toBe(message);
    }
  });

  it('refuses more instances than the limit with a 413 naming instances', () => {
    const error = refusal(() => parsePredictBody({ instances: Array.from({ length: 11 }, () => ok) }, 10));
    expect(error.httpStatus).toBe(413);
    expect(error.code).toBe('too_many_instances');
    expect(error.message).toBe('instances: 11 instances; at most 10 per request');
  });
});
