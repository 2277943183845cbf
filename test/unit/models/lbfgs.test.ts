import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { minimizeLbfgs, type LbfgsState, type Objective } from '../../../models/optim/lbfgs.js';

/** The n-dimensional Rosenbrock function, minimum 0 at (1, ..., 1). */
const rosenbrock: Objective = (x, g) => {
  g.fill(0);
  let f = 0;
  for (let i = 0; i < x.length - 1; i++) {
    const [a, b] = [x[i]!, x[i + 1]!];
    f += 100 * (b - a * a) ** 2 + (1 - a) ** 2;
    g[i]! += -400 * a * (b - a * a) - 2 * (1 - a);
    g[i + 1]! += 200 * (b - a * a);
  }
  return f;
};

function rosenbrockStart(n: number): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => (i % 2 === 0 ? -1.2 : 1));
}

/** f = ½xᵀAx − bᵀx with A = MᵀM + I (SPD); minimum at A⁻¹b. */
function quadratic(m: number[][], b: number[]): { objective: Objective; a: number[][] } {
  const n = b.length;
  const a = Array.from({ length: n }, (_, i) =>
    Array.from({ length: n }, (_, j) => m.reduce((s, row) => s + row[i]! * row[j]!, 0) + (i === j ? 1 : 0)),
  );
  const objective: Objective = (x, g) => {
    let f = 0;
    for (let i = 0; i < n; i++) {
      let ax = 0;
      for (let j = 0; j < n; j++) ax += a[i]![j]! * x[j]!;
      g[i] = ax - b[i]!;
      f += 0.5 * x[i]! * ax - b[i]! * x[i]!;
    }
    return f;
  };
  return { objective, a };
}

describe('minimizeLbfgs', () => {
  it('finds the minimum of the 2-D Rosenbrock function', async () => {
    const result = await minimizeLbfgs(rosenbrock, rosenbrockStart(2), {
      gradientTolerance: 1e-9,
      maxIterations: 500,
    });
    expect(result.status).toBe('gradient_tolerance');
    expect(result.x[0]).toBeCloseTo(1, 8);
    expect(result.x[1]).toBeCloseTo(1, 8);
    expect(result.loss).toBeLessThan(1e-16);
    expect(result.iterations).toBeLessThan(60);
  });

  it('finds the minimum of the 20-D Rosenbrock function', async () => {
    const result = await minimizeLbfgs(rosenbrock, rosenbrockStart(20), {
      gradientTolerance: 1e-8,
      lossTolerance: 0,
      maxIterations: 1000,
    });
    expect(result.status).toBe('gradient_tolerance');
    for (const v of result.x) expect(v).toBeCloseTo(1, 6);
  });

  it('solves random positive-definite quadratics', async () => {
    const matrix = fc.array(fc.array(fc.double({ min: -3, max: 3, noNaN: true }), { minLength: 6, maxLength: 6 }), {
      minLength: 1,
      maxLength: 8,
    });
    const vector = fc.array(fc.double({ min: -5, max: 5, noNaN: true }), { minLength: 6, maxLength: 6 });
    await fc.assert(
      fc.asyncProperty(matrix, vector, async (m, b) => {
        const { objective, a } = quadratic(m, b);
        const result = await minimizeLbfgs(objective, new Float64Array(6), {
          gradientTolerance: 1e-10,
          lossTolerance: 0,
          maxIterations: 200,
        });
        // The gradient Ax − b is zero at the answer, up to what float64 values of f can resolve (the line search
        // stops when no step lowers f any more).
        for (let i = 0; i < 6; i++) {
          const residual = a[i]!.reduce((s, v, j) => s + v * result.x[j]!, 0) - b[i]!;
          expect(Math.abs(residual)).toBeLessThan(1e-6);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('lowers the value at every iteration and reports each one', async () => {
    const reports: { iteration: number; loss: number }[] = [];
    await minimizeLbfgs(rosenbrock, rosenbrockStart(4), {
      maxIterations: 40,
      onIteration: (r) => void reports.push({ iteration: r.iteration, loss: r.loss }),
    });
    expect(reports.map((r) => r.iteration)).toEqual(reports.map((_, i) => i + 1));
    for (let i = 1; i < reports.length; i++) expect(reports[i]!.loss).toBeLessThan(reports[i - 1]!.loss);
  });

  it('stops at maxIterations and on the relative loss tolerance', async () => {
    const capped = await minimizeLbfgs(rosenbrock, rosenbrockStart(2), { maxIterations: 5 });
    expect(capped.status).toBe('max_iterations');
    expect(capped.iterations).toBe(5);
    const loose = await minimizeLbfgs(rosenbrock, rosenbrockStart(2), {
      gradientTolerance: 0,
      lossTolerance: 1e-3,
      maxIterations: 500,
    });
    expect(loose.status).toBe('loss_tolerance');
    expect(loose.iterations).toBeLessThan(capped.iterations + 40);
  });

  it('returns at once when the start is already a minimum', async () => {
    const result = await minimizeLbfgs(rosenbrock, Float64Array.of(1, 1));
    expect(result).toMatchObject({ status: 'gradient_tolerance', iterations: 0, evaluations: 1, loss: 0 });
  });

  it('backs off from steps where the objective is infinite', async () => {
    // A barrier: x² inside (−2, 2), +Infinity outside; the first full step overshoots.
    const barrier: Objective = (x, g) => {
      const v = x[0]!;
      g[0] = 2 * v;
      return Math.abs(v) < 2 ? v * v : Infinity;
    };
    const result = await minimizeLbfgs(barrier, Float64Array.of(1.9), { gradientTolerance: 1e-10 });
    expect(Math.abs(result.x[0]!)).toBeLessThan(1e-9);
  });

  it('refuses a non-finite starting value', async () => {
    const nan: Objective = () => NaN;
    await expect(minimizeLbfgs(nan, new Float64Array(2))).rejects.toThrow(RangeError);
  });

  it('stops with an AbortError when its signal fires', async () => {
    const controller = new AbortController();
    const run = minimizeLbfgs(rosenbrock, rosenbrockStart(10), {
      gradientTolerance: 0,
      lossTolerance: 0,
      maxIterations: 100_000,
      signal: controller.signal,
      onIteration: (r) => {
        if (r.iteration === 3) controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    const aborted = AbortSignal.abort();
    await expect(minimizeLbfgs(rosenbrock, rosenbrockStart(2), { signal: aborted })).rejects.toMatchObject({
      name: 'AbortError',
    });
  });

  it('notices an abort from a timer while it runs (it yields to the event loop)', async () => {
    const signal = AbortSignal.timeout(20);
    const slow: Objective = (x, g) => {
      const until = performance.now() + 2;
      while (performance.now() < until);
      return rosenbrock(x, g);
    };
    const run = minimizeLbfgs(slow, rosenbrockStart(10), {
      gradientTolerance: 0,
      lossTolerance: 0,
      maxIterations: 100_000,
      signal,
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('resumes from a JSON round-tripped state exactly as the uninterrupted run', async () => {
    const options = { gradientTolerance: 1e-9, maxIterations: 500, memory: 5 };
    const states = new Map<number, LbfgsState>();
    const full = await minimizeLbfgs(rosenbrock, rosenbrockStart(6), {
      ...options,
      onIteration: (r) => void states.set(r.iteration, JSON.parse(JSON.stringify(r.state())) as LbfgsState),
    });
    expect(full.iterations).toBeGreaterThan(20);
    for (const at of [1, 7, 20, full.iterations]) {
      const resumed = await minimizeLbfgs(rosenbrock, new Float64Array(6), {
        ...options,
        resumeFrom: states.get(at)!,
      });
      expect(resumed.status).toBe(full.status);
      expect(resumed.iterations).toBe(full.iterations);
      expect(resumed.evaluations).toBe(full.evaluations);
      expect(resumed.loss).toBe(full.loss);
      expect(Array.from(resumed.x)).toEqual(Array.from(full.x));
    }
  });

  it('refuses a state of another dimension', async () => {
    let state: LbfgsState | undefined;
    await minimizeLbfgs(rosenbrock, rosenbrockStart(2), {
      maxIterations: 2,
      onIteration: (r) => void (state = r.state()),
    });
    await expect(minimizeLbfgs(rosenbrock, new Float64Array(3), { resumeFrom: state! })).rejects.toThrow(RangeError);
  });
});
