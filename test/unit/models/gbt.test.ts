/**
 * The gradient-boosted trees trainer on small datasets: what it learns (separable data, stumps, categorical subsets,
 * missing values, piecewise targets, multiclass), and its guarantees (determinism, early stopping, parameters,
 * resume, cancellation).
 */
import { describe, expect, it } from 'vitest';
import { predictGradientBoostedTrees } from '../../../models/predict/gbt.js';
import { trainGradientBoostedTrees, shouldStop, type GbtCheckpoint } from '../../../models/trainers/gbt/index.js';
import {
  TrainingParameterError,
  type CategoricalSplitNode,
  type GradientBoostedTreesModel,
  type TrainingProgress,
} from '../../../models/types.js';
import { categorical, dataset, integers, noisyBinary, numeric, uniform } from './gbt-fixtures.js';

/** The first tree's root, which must be a categorical split. */
function categoricalRoot(model: GradientBoostedTreesModel): CategoricalSplitNode {
  const root = model.trees[0]!.nodes[0]!;
  if (root.kind !== 'categorical') throw new Error(`expected a categorical root, got ${root.kind}`);
  return root;
}

describe('trainGradientBoostedTrees: what it learns', () => {
  it('fits separable data perfectly (binary, two numeric features)', async () => {
    const x1 = uniform(400, 1);
    const x2 = uniform(400, 2);
    const y = x1.map((v, i) => (v + x2[i]! > 1 ? 1 : 0));
    const data = dataset([numeric('a', x1), numeric('b', x2)], y);
    const model = await trainGradientBoostedTrees(data, { task: 'binary', maxIterations: 200, minSamplesLeaf: 1 });
    const p = predictGradientBoostedTrees(model, data);
    expect(y.every((label, i) => (p[i]! > 0.5 ? 1 : 0) === label)).toBe(true);
  });

  it('a single split: leaf value = −G/(H+λ) × learning rate at the baseline, base score = logit of the mean', async () => {
    // 30 rows at x < 5 with 6 positives, 30 rows at x ≥ 5 with 24 positives.
    const x = [...Array.from({ length: 30 }, (_, i) => i / 10), ...Array.from({ length: 30 }, (_, i) => 5 + i / 10)];
    const y = x.map((v, i) => (v < 5 ? (i % 5 === 0 ? 1 : 0) : i % 5 === 4 ? 0 : 1));
    const lambda = 2;
    const model = await trainGradientBoostedTrees(dataset([numeric('x', x)], y), {
      task: 'binary',
      maxIterations: 1,
      maxDepth: 1,
      minSamplesLeaf: 5,
      l2Regularization: lambda,
      learningRate: 0.3,
    });
    const mean = 30 / 60;
    expect(model.baseScores[0]).toBeCloseTo(Math.log(mean / (1 - mean)), 12);
    const [root, left, right] = model.trees[0]!.nodes;
    expect(root).toMatchObject({ kind: 'numeric', feature: 0 });
    // Between 2.9 and 5 (float32 midpoint), every row of a side sharing p = 0.5: g = p − y, h = p(1 − p) = 1/4.
    const threshold = (root as { threshold: number }).threshold;
    expect(threshold).toBeGreaterThan(Math.fround(2.9));
    expect(threshold).toBeLessThanOrEqual(5);
    const leaf = (positives: number) => (-(30 * 0.5 - positives) / (30 * 0.25 + lambda)) * 0.3;
    expect(left).toEqual({ kind: 'leaf', value: expect.closeTo(leaf(6), 7) });
    expect(right).toEqual({ kind: 'leaf', value: expect.closeTo(leaf(24), 7) });
  });

  it('a categorical split sends exactly the categories with the same target left; unseen codes go right', async () => {
    // Codes 0..6 seen, 7 (the unknown index) never.
    const codes = integers(600, 7, 3);
    const positive = new Set([1, 4, 6]);
    const y = codes.map((c) => (positive.has(c) ? 1 : 0));
    const data = dataset([categorical('c', codes, 8)], y);
    const model = await trainGradientBoostedTrees(data, { task: 'binary', maxIterations: 1, maxDepth: 1 });
    // Sorted by G/(H + 10), the positives come first: the scan from that end takes exactly them.
    expect([...categoricalRoot(model).leftCodes].sort()).toEqual([1, 4, 6]);
    const p = predictGradientBoostedTrees(
      model,
      dataset([categorical('c', [1, 4, 6, 0, 2, 7], 8)], [0, 0, 0, 0, 0, 0]),
    );
    expect(new Set(p.slice(0, 3)).size).toBe(1);
    expect(new Set(p.slice(3)).size).toBe(1);
    expect(p[0]).toBeGreaterThan(p[3]!);
  });

  it('pools codes beyond maxBins into one bin and lists all of them when that bin goes left', async () => {
    // 40 categories, maxBins 8: codes 8..39 share a bin; those are exactly the positives.
    const codes = integers(2000, 40, 4);
    const y = codes.map((c) => (c >= 8 ? 1 : 0));
    const model = await trainGradientBoostedTrees(dataset([categorical('c', codes, 40)], y), {
      task: 'binary',
      maxIterations: 1,
      maxDepth: 1,
      maxBins: 8,
    });
    const left = [...categoricalRoot(model).leftCodes].sort((a, b) => a - b);
    const pooled = Array.from({ length: 32 }, (_, i) => 8 + i);
    const others = Array.from({ length: 8 }, (_, i) => i);
    expect([pooled, others]).toContainEqual(left);
  });

  it('learns where missing values go, and sends them there at prediction', async () => {
    // NaN rows are positive; among observed rows, x < 0.5 is positive too: NaN belongs with the low side.
    const x = uniform(1000, 5).map((v, i) => (i % 4 === 0 ? NaN : v));
    const y = x.map((v) => (Number.isNaN(v) || v < 0.5 ? 1 : 0));
    const model = await trainGradientBoostedTrees(dataset([numeric('x', x)], y), {
      task: 'binary',
      maxIterations: 1,
      maxDepth: 1,
    });
    const root = model.trees[0]!.nodes[0]!;
    expect(root).toMatchObject({ kind: 'numeric', missingLeft: true });
    const p = predictGradientBoostedTrees(model, dataset([numeric('x', [NaN, 0.1, 0.9])], [0, 0, 0]));
    expect(p[0]).toBe(p[1]);
    expect(p[0]).toBeGreaterThan(p[2]!);

    // The mirror case: NaN with the high side, missing goes right.
    const y2 = x.map((v) => (Number.isNaN(v) || v >= 0.5 ? 1 : 0));
    const model2 = await trainGradientBoostedTrees(dataset([numeric('x', x)], y2), {
      task: 'binary',
      maxIterations: 1,
      maxDepth: 1,
    });
    expect(model2.trees[0]!.nodes[0]).toMatchObject({ kind: 'numeric', missingLeft: false });
  });

  it('without missing values in training, sends future NaN to the child that had more rows', async () => {
    const x = uniform(500, 6);
    const y = x.map((v) => (v < 0.2 ? 1 : 0));
    const model = await trainGradientBoostedTrees(dataset([numeric('x', x)], y), {
      task: 'binary',
      maxIterations: 1,
      maxDepth: 1,
    });
    // About 20% of rows go left: NaN goes right.
    expect(model.trees[0]!.nodes[0]).toMatchObject({ kind: 'numeric', missingLeft: false });
  });

  it('regression: recovers a noiseless piecewise-constant target with thresholds between the pieces', async () => {
    // 200 distinct values: one bin each (with more, a quantile bin could straddle a breakpoint).
    const x = integers(600, 200, 7).map((k) => Math.fround(k / 200));
    const f = (v: number) => (v < 0.3 ? 3 : v < 0.7 ? -1 : 2);
    const y = x.map(f);
    const data = dataset([numeric('x', x)], y);
    const model = await trainGradientBoostedTrees(data, { task: 'regression', maxIterations: 200, learningRate: 0.3 });
    const p = predictGradientBoostedTrees(model, data);
    let worst = 0;
    for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(p[i]! - y[i]!));
    expect(worst).toBeLessThan(1e-3);
    // The first tree splits at both breakpoints (the same rows fall below them as below 0.3 and 0.7), the root at one.
    // Splits inside a piece may follow: their gain is zero up to rounding, which scikit-learn accepts as well.
    const below = (t: number) => x.filter((v) => Math.fround(v) < t).length;
    const cuts = model.trees[0]!.nodes.flatMap((n) => (n.kind === 'numeric' ? [below(n.threshold)] : []));
    expect(cuts).toContain(below(0.3));
    expect(cuts).toContain(below(0.7));
    expect([below(0.3), below(0.7)]).toContain(cuts[0]);
    expect(model.baseScores[0]).toBeCloseTo(y.reduce((a, b) => a + b, 0) / y.length, 12);
  });

  it('multiclass: one tree per class per iteration, probabilities sum to 1, the classes are learned', async () => {
    const x = integers(900, 250, 8).map((k) => Math.fround(k / 250));
    const y = x.map((v) => (v < 0.33 ? 0 : v < 0.66 ? 1 : 2));
    const data = dataset([numeric('x', x)], y);
    const model = await trainGradientBoostedTrees(data, { task: 'multiclass', maxIterations: 20, numClasses: 4 });
    expect(model.baseScores).toHaveLength(4);
    expect(model.trees).toHaveLength(80);
    expect(model.trees.slice(0, 4).map((t) => t.output)).toEqual([0, 1, 2, 3]);
    const p = predictGradientBoostedTrees(model, data);
    expect(p).toHaveLength(900 * 4);
    let correct = 0;
    for (let r = 0; r < 900; r++) {
      const row = Array.from(p.subarray(r * 4, r * 4 + 4));
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
      if (row.indexOf(Math.max(...row)) === y[r]) correct++;
    }
    expect(correct).toBe(900);
    // The empty class 3 stays unlikely.
    expect(p[3]).toBeLessThan(1e-6);
  });

  it('sample weights: a weight of 2 counts like a duplicated row', async () => {
    // Few distinct values, so that both datasets get one bin per value.
    const x = integers(300, 100, 9).map((v) => v / 100);
    const y = x.map((v, i) => (v < 0.5 !== (i % 7 === 0) ? 1 : 0));
    const weights = x.map((_, i) => (i % 3 === 0 ? 2 : 1));
    const doubled: number[] = [];
    const doubledY: number[] = [];
    x.forEach((v, i) => {
      for (let k = 0; k < weights[i]!; k++) {
        doubled.push(v);
        doubledY.push(y[i]!);
      }
    });
    const params = { task: 'binary', maxIterations: 5, minSamplesLeaf: 1, earlyStopping: false } as const;
    const weighted = await trainGradientBoostedTrees(dataset([numeric('x', x)], y, weights), params);
    const repeated = await trainGradientBoostedTrees(dataset([numeric('x', doubled)], doubledY), params);
    const a = predictGradientBoostedTrees(weighted, dataset([numeric('x', x)], y));
    const b = predictGradientBoostedTrees(repeated, dataset([numeric('x', x)], y));
    for (let i = 0; i < x.length; i++) expect(a[i]).toBeCloseTo(b[i]!, 5);
  });
});

describe('trainGradientBoostedTrees: guarantees', () => {
  it('is deterministic for a seed (early stopping, binning subsample and validation split included)', async () => {
    const data = noisyBinary(12_000, 10);
    const params = { task: 'binary', maxIterations: 15, seed: 7 } as const;
    const a = await trainGradientBoostedTrees(data, params);
    const b = await trainGradientBoostedTrees(data, params);
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    const c = await trainGradientBoostedTrees(data, { ...params, seed: 8 });
    expect(JSON.stringify(c)).not.toBe(JSON.stringify(a));
  });

  it('gives the same model with helper threads as without (chunked histograms, partitions and gradients)', async () => {
    // Enough rows for every chunked path (histograms ≥ 16,384 rows, partitions ≥ 65,536).
    const data = noisyBinary(80_000, 19);
    const params = { task: 'binary', maxIterations: 3, earlyStopping: false } as const;
    const alone = await trainGradientBoostedTrees(data, { ...params, threads: 1 });
    const shared = await trainGradientBoostedTrees(data, { ...params, threads: 3 });
    expect(JSON.stringify(shared)).toBe(JSON.stringify(alone));
  });

  it("stops early once the validation loss stalls ('auto' above 10,000 rows), and reports it", async () => {
    // Labels independent of the feature: nothing to learn, the validation loss stops improving at once.
    const x = uniform(12_000, 11);
    const y = integers(12_000, 2, 12);
    const progress: TrainingProgress[] = [];
    const model = await trainGradientBoostedTrees(
      dataset([numeric('x', x)], y),
      { task: 'binary', maxIterations: 500 },
      { onProgress: (p) => progress.push(p) },
    );
    expect(model.trees.length).toBeLessThan(500);
    expect(progress).toHaveLength(model.trees.length);
    expect(progress.every((p) => p.validationLoss !== undefined && Number.isFinite(p.loss))).toBe(true);
    const losses = [NaN, ...progress.map((p) => p.validationLoss!)];
    expect(progress.length).toBeGreaterThanOrEqual(10);
    // The stopping rule held at the end: no loss of the last 10 beat the one before them by 1e-7.
    const reference = losses[losses.length - 11]!;
    expect(losses.slice(-10).every((l) => !(l < reference - 1e-7))).toBe(true);

    // Below 10,000 rows 'auto' is off: every iteration runs, without a validation loss.
    const small = await trainGradientBoostedTrees(
      dataset([numeric('x', x.slice(0, 2000))], y.slice(0, 2000)),
      { task: 'binary', maxIterations: 30 },
      { onProgress: (p) => expect(p.validationLoss).toBeUndefined() },
    );
    expect(small.trees).toHaveLength(30);
  });

  it('shouldStop follows scikit-learn: none of the last n beats the one before them by more than tol', () => {
    expect(shouldStop([1, 0.9, 0.8], 2, 0)).toBe(false);
    expect(shouldStop([1, 1, 1], 2, 0)).toBe(true);
    expect(shouldStop([1, 1, 0.99], 2, 0.02)).toBe(true);
    expect(shouldStop([1, 1.1, 0.99], 2, 0)).toBe(false);
    expect(shouldStop([1, 1], 2, 0)).toBe(false);
  });

  it('rejects bad parameters with a TrainingParameterError naming them', async () => {
    const data = noisyBinary(100, 13);
    const cases: [Record<string, unknown>, string][] = [
      [{ task: 'binary', learningRate: 0 }, 'learningRate'],
      [{ task: 'binary', maxIterations: 1.5 }, 'maxIterations'],
      [{ task: 'binary', maxLeafNodes: 1 }, 'maxLeafNodes'],
      [{ task: 'binary', maxDepth: 0 }, 'maxDepth'],
      [{ task: 'binary', minSamplesLeaf: 0 }, 'minSamplesLeaf'],
      [{ task: 'binary', l2Regularization: -1 }, 'l2Regularization'],
      [{ task: 'binary', maxBins: 256 }, 'maxBins'],
      [{ task: 'binary', earlyStopping: 'yes' }, 'earlyStopping'],
      [{ task: 'binary', validationFraction: 1 }, 'validationFraction'],
      [{ task: 'binary', nIterNoChange: 0 }, 'nIterNoChange'],
      [{ task: 'binary', tol: -1 }, 'tol'],
      [{ task: 'binary', seed: -1 }, 'seed'],
      [{ task: 'binary', learning_rate: 0.1 }, 'learning_rate'],
      [{ task: 'ranking' }, 'task'],
      [{ learningRate: 0.1 }, 'task'],
      [{ task: 'regression', maxIterations: 2 }, 'task'],
    ];
    for (const [params, parameter] of cases) {
      const error = await trainGradientBoostedTrees(
        parameter === 'task' && params.task === 'regression' ? dataset([numeric('x', [1, 2])], [NaN, 1]) : data,
        params,
      ).catch((e: unknown) => e);
      expect(error, JSON.stringify(params)).toBeInstanceOf(TrainingParameterError);
      expect((error as TrainingParameterError).parameter, JSON.stringify(params)).toBe(parameter);
    }
    const labels = await trainGradientBoostedTrees(dataset([numeric('x', [1, 2])], [0, 2]), { task: 'binary' }).catch(
      (e: unknown) => e,
    );
    expect(labels).toMatchObject({ name: 'TrainingParameterError', parameter: 'task' });
    const checkpointEvery = await trainGradientBoostedTrees(data, { task: 'binary' }, { checkpointEvery: 0 }).catch(
      (e: unknown) => e,
    );
    expect(checkpointEvery).toMatchObject({ parameter: 'checkpointEvery' });
  });

  it('resumes from a checkpoint to the same model as an uninterrupted run (through JSON)', async () => {
    const data = noisyBinary(12_000, 14);
    const params = { task: 'binary', maxIterations: 25, seed: 3 } as const;
    const checkpoints: GbtCheckpoint[] = [];
    const full = await trainGradientBoostedTrees(data, params, {
      checkpointEvery: 4,
      onCheckpoint: async (state) => {
        await Promise.resolve();
        checkpoints.push(state as GbtCheckpoint);
      },
    });
    expect(checkpoints.map((c) => c.iteration)).toEqual([4, 8, 12, 16, 20, 24].filter((i) => i <= full.trees.length));
    const state = JSON.parse(JSON.stringify(checkpoints[1]!)) as unknown;
    const progress: number[] = [];
    const resumed = await trainGradientBoostedTrees(data, params, {
      resumeFrom: state,
      onProgress: (p) => progress.push(p.iteration),
    });
    expect(progress[0]).toBe(9);
    expect(JSON.stringify(resumed)).toBe(JSON.stringify(full));

    // Multiclass and regression too.
    for (const task of ['multiclass', 'regression'] as const) {
      const x = uniform(3000, 15);
      const y = x.map((v, i) => (task === 'regression' ? Math.sin(6 * v) + (i % 5) / 10 : Math.floor(v * 3)));
      const d = dataset([numeric('x', x), categorical('c', integers(3000, 5, 16), 5)], y);
      const p = { task, maxIterations: 6, earlyStopping: true } as const;
      let saved: unknown;
      const whole = await trainGradientBoostedTrees(d, p, {
        checkpointEvery: 3,
        onCheckpoint: (s) => {
          saved ??= JSON.parse(JSON.stringify(s));
        },
      });
      const again = await trainGradientBoostedTrees(d, p, { resumeFrom: saved });
      expect(JSON.stringify(again)).toBe(JSON.stringify(whole));
    }
  });

  it('refuses a checkpoint taken with other parameters or data', async () => {
    const data = noisyBinary(500, 17);
    let saved: unknown;
    await trainGradientBoostedTrees(
      data,
      { task: 'binary', maxIterations: 2 },
      { checkpointEvery: 1, onCheckpoint: (s) => void (saved ??= s) },
    );
    const other = await trainGradientBoostedTrees(
      data,
      { task: 'binary', maxIterations: 2, learningRate: 0.2 },
      { resumeFrom: saved },
    ).catch((e: unknown) => e);
    expect(other).toMatchObject({ name: 'TrainingParameterError', parameter: 'resumeFrom' });
    const garbage = await trainGradientBoostedTrees(data, { task: 'binary' }, { resumeFrom: { trees: 1 } }).catch(
      (e: unknown) => e,
    );
    expect(garbage).toMatchObject({ parameter: 'resumeFrom' });
    const fewer = await trainGradientBoostedTrees(
      noisyBinary(400, 17),
      { task: 'binary' },
      { resumeFrom: saved },
    ).catch((e: unknown) => e);
    expect(fewer).toMatchObject({ parameter: 'resumeFrom' });
  });

  it('stops with an AbortError between iterations when the signal fires', async () => {
    const data = noisyBinary(2000, 18);
    const controller = new AbortController();
    const seen: number[] = [];
    const error = await trainGradientBoostedTrees(
      data,
      { task: 'binary', maxIterations: 100 },
      {
        onProgress: (p) => {
          seen.push(p.iteration);
          if (p.iteration === 3) controller.abort();
        },
        signal: controller.signal,
      },
    ).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'AbortError' });
    expect(seen).toEqual([1, 2, 3]);
  });
});
