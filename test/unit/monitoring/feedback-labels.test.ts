/**
 * The label rules of `POST /v1/feedback` (monitoring/feedback.ts), property-based: a classifier's label becomes one of
 * its classes (by value or text form) or is refused, a regressor's is a finite number, and the canonical form of a
 * canonical label is itself (so a repeat is "already recorded", never a conflict).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalLabel, taskOfSignature, type LabelSpace } from '../../../monitoring/feedback.js';

const scalar = fc.oneof(fc.string({ maxLength: 8 }), fc.double(), fc.integer({ min: -3, max: 3 }), fc.boolean());
const classes = fc.uniqueArray(fc.oneof(fc.string({ maxLength: 8 }), fc.integer({ min: -3, max: 3 }), fc.boolean()), {
  minLength: 1,
  maxLength: 6,
  selector: (c) => String(c),
});

describe('canonicalLabel', () => {
  it('maps a classifier label to one of its classes by value or text form, idempotently, or refuses it', () => {
    fc.assert(
      fc.property(classes, scalar, (cls, label) => {
        const space: LabelSpace = { task: 'classification', classes: cls };
        const fit = canonicalLabel(space, label);
        if ('problem' in fit) {
          expect(cls.some((c) => c === label || String(c) === String(label))).toBe(false);
          expect(fit.problem).toContain("model's classes");
          return;
        }
        expect(cls).toContain(fit.value);
        expect(String(fit.value)).toBe(String(label));
        expect(canonicalLabel(space, fit.value)).toEqual({ value: fit.value });
      }),
    );
  });

  it('takes any class given as itself', () => {
    fc.assert(
      fc.property(classes, (cls) => {
        for (const c of cls) expect(canonicalLabel({ task: 'classification', classes: cls }, c)).toEqual({ value: c });
      }),
    );
  });

  it("takes a regressor's label as a finite number only", () => {
    fc.assert(
      fc.property(scalar, (label) => {
        const fit = canonicalLabel({ task: 'regression' }, label);
        if (typeof label === 'number' && Number.isFinite(label)) expect(fit).toEqual({ value: label });
        else expect(fit).toHaveProperty('problem');
      }),
    );
  });

  it('takes labels as sent when the classes or the task are not known', () => {
    fc.assert(
      fc.property(scalar, (label) => {
        expect(canonicalLabel({ task: 'classification', classes: undefined }, label)).toEqual({ value: label });
        expect(canonicalLabel({ task: 'unknown' }, label)).toEqual({ value: label });
      }),
    );
  });

  it('names examples from the contract', () => {
    expect(canonicalLabel({ task: 'classification', classes: [false, true] }, 'true')).toEqual({ value: true });
    expect(canonicalLabel({ task: 'classification', classes: ['1', '2'] }, 1)).toEqual({ value: '1' });
    expect(canonicalLabel({ task: 'classification', classes: [false, true] }, 1)).toHaveProperty('problem');
    expect(canonicalLabel({ task: 'regression' }, '3.5')).toEqual({
      problem: 'a regression target is a number, got a string',
    });
  });
});

describe('taskOfSignature', () => {
  it('reads the task from the outputs serving fetches', () => {
    const field = (name: string) => ({ name, type: 'float' });
    expect(taskOfSignature({ inputs: [], outputs: [field('label'), field('probabilities')] })).toBe('classification');
    expect(taskOfSignature({ inputs: [], outputs: [field('prediction')] })).toBe('regression');
    expect(taskOfSignature({ inputs: [], outputs: [field('label')] })).toBeUndefined();
  });
});
