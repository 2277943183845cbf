import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Adam, DEFAULT_ADAM_OPTIONS } from '../../../models/optim/adam.js';

/** Gradient of Σ cᵢ·(xᵢ - aᵢ)². */
function quadraticGradient(x: Float64Array, a: readonly number[], c: readonly number[], out: Float64Array): void {
  for (let i = 0; i < x.length; i++) out[i] = 2 * c[i]! * (x[i]! - a[i]!);
}

describe('Adam', () => {
  it('matches scikit-learn AdamOptimizer step for step', () => {
    // /usr/bin/python3: AdamOptimizer([1, -2, 0.5], learning_rate_init=0.1), 5 updates with the gradient
    // 2·(p - [3, 1, 0.5])·[1, 10, 1].
    const x = Float64Array.from([1, -2, 0.5]);
    const g = new Float64Array(3);
    const adam = new Adam(3, { ...DEFAULT_ADAM_OPTIONS, learningRate: 0.1 });
    for (let step = 0; step < 5; step++) {
      quadraticGradient(x, [3, 1, 0.5], [1, 10, 1], g);
      adam.step(x, g);
    }
    expect(x[0]).toBeCloseTo(1.4970441937334664, 14);
    expect(x[1]).toBeCloseTo(-1.5017794571091443, 14);
    expect(x[2]).toBe(0.5);
    expect(adam.steps).toBe(5);
  });

  it('moves each coordinate by about the learning rate on its first step, whatever the gradient scale', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-3, max: 1e6, noNaN: true }), fc.boolean(), (scale, negative) => {
        const x = new Float64Array(1);
        const adam = new Adam(1, DEFAULT_ADAM_OPTIONS);
        adam.step(x, Float64Array.of(negative ? -scale : scale));
        expect(Math.abs(x[0]!)).toBeCloseTo(DEFAULT_ADAM_OPTIONS.learningRate, 6);
        expect(Math.sign(x[0]!)).toBe(negative ? 1 : -1);
      }),
    );
  });

  it('converges on an ill-conditioned quadratic', () => {
    const a = [3, -1, 0.25, 10];
    const c = [1, 100, 0.01, 5];
    const x = new Float64Array(4);
    const g = new Float64Array(4);
    const adam = new Adam(4, { ...DEFAULT_ADAM_OPTIONS, learningRate: 0.05 });
    for (let step = 0; step < 5000; step++) {
      quadraticGradient(x, a, c, g);
      adam.step(x, g);
    }
    for (let i = 0; i < 4; i++) expect(Math.abs(x[i]! - a[i]!)).toBeLessThan(1e-3);
  });

  it('continues exactly from a JSON snapshot', () => {
    const a = [1, 2, 3];
    const c = [1, 2, 3];
    const run = (steps: number, x: Float64Array, adam: Adam) => {
      const g = new Float64Array(3);
      for (let s = 0; s < steps; s++) {
        quadraticGradient(x, a, c, g);
        adam.step(x, g);
      }
    };
    const straight = new Float64Array(3);
    run(20, straight, new Adam(3));

    const resumed = new Float64Array(3);
    const first = new Adam(3);
    run(8, resumed, first);
    const state = JSON.parse(JSON.stringify(first.snapshot())) as ReturnType<Adam['snapshot']>;
    const second = new Adam(3, DEFAULT_ADAM_OPTIONS, state);
    expect(second.steps).toBe(8);
    run(12, resumed, second);
    expect(Array.from(resumed)).toEqual(Array.from(straight));
  });

  it('rejects a snapshot of another size', () => {
    const state = new Adam(2).snapshot();
    expect(() => new Adam(3, DEFAULT_ADAM_OPTIONS, state)).toThrow(RangeError);
  });
});
