/**
 * Ridge regression, following scikit-learn's conventions so that its numbers can be checked against it: minimizes
 * Σᵢ cᵢ·(yᵢ − xᵢ·w − b)² + alpha·‖w‖² (scikit-learn's `Ridge(alpha)`), by the normal equations of the centered
 * problem, Cholesky and two steps of iterative refinement, or by preconditioned conjugate gradients for many columns.
 */
import { z } from 'zod';
import { parseTrainingParams } from '../../params.js';
import { abortError } from '../../optim/lbfgs.js';
import { TrainingParameterError, type LinearModel, type TrainingHooks } from '../../types.js';
import { choleskyInPlace, choleskySolve } from './cholesky.js';
import {
  checkLengths,
  forEachNonZero,
  inputLayoutSchema,
  toDesign,
  type Design,
  type LinearTrainingData,
} from './design.js';

/** Parameters of ridge regression; defaults follow scikit-learn's `Ridge`. */
export const ridgeParamsSchema = z.strictObject({
  /** L2 penalty on the weights, not the intercept (scikit-learn's alpha). 0 is ordinary least squares. */
  alpha: z.number().min(0).finite().default(1),
  fitIntercept: z.boolean().default(true),
  /** `cholesky`: normal equations (columns² memory); `cg`: conjugate gradients; `auto`: cholesky up to RIDGE_CHOLESKY_MAX_COLUMNS (2048) columns. */
  solver: z.enum(['auto', 'cholesky', 'cg']).default('auto'),
  /** CG: stop when ‖residual‖ ≤ tol·‖right-hand side‖. */
  tol: z.number().positive().finite().default(1e-10),
  /** CG iterations at most; default: columns + 1000. */
  maxIterations: z.number().int().min(1).max(10_000_000).optional(),
  inputLayout: inputLayoutSchema,
});

export type RidgeParams = z.input<typeof ridgeParamsSchema>;
export type ResolvedRidgeParams = z.output<typeof ridgeParamsSchema>;

/**
 * Validates ridge parameters and fills in the defaults.
 *
 * @throws TrainingParameterError naming the first offending parameter.
 */
export function parseRidgeParams(params: unknown): ResolvedRidgeParams {
  return parseTrainingParams(ridgeParamsSchema, params ?? {});
}

/** `auto` solves by Cholesky up to this many columns (a d×d Gram matrix, d³/6 multiply-adds), by CG beyond. */
export const RIDGE_CHOLESKY_MAX_COLUMNS = 2048;

/**
 * Trains ridge regression (scikit-learn's `Ridge`): minimizes Σᵢ cᵢ·(yᵢ − xᵢ·w − b)² + alpha·‖w‖², cᵢ the sample
 * weight (1 without), b unpenalized. With an intercept the problem is centered (weighted means of x and y), solved for
 * w, and b = ȳ − x̄·w. Cholesky solves to machine precision (plus two steps of iterative refinement that repair the
 * cancellation of forming the centered Gram matrix); CG to `tol`. Deterministic.
 *
 * Hooks: `onProgress` once for Cholesky, per iteration for CG (loss = objective / Σcᵢ); `signal` is checked before
 * solving and between CG iterations. Checkpoints are not taken (`onCheckpoint`/`resumeFrom` are ignored): a solve is
 * one pass to build the system plus a few passes per CG iteration.
 *
 * @throws TrainingParameterError for invalid parameters or inputs, or alpha = 0 on a rank-deficient matrix.
 */
export async function trainRidge(
  data: LinearTrainingData,
  params: RidgeParams = {},
  hooks: TrainingHooks = {},
): Promise<LinearModel> {
  const p = parseRidgeParams(params);
  checkLengths(data);
  for (let i = 0; i < data.y.length; i++) {
    if (!Number.isFinite(data.y[i]!)) throw new TrainingParameterError('y', `target ${i} is ${data.y[i]}`);
  }
  const design = toDesign(data.x, p.inputLayout);
  const { rows, cols } = design;
  const c = data.weights ?? new Float64Array(rows).fill(1);
  const system = centeredSystem(design, data.y, c, p.fitIntercept);
  if (!(system.total > 0)) throw new TrainingParameterError('weights', 'the rows weigh nothing in all');
  if (hooks.signal?.aborted) throw abortError(hooks.signal);

  const useCholesky = p.solver === 'cholesky' || (p.solver === 'auto' && cols <= RIDGE_CHOLESKY_MAX_COLUMNS);
  const apply = (v: Float64Array, out: Float64Array) => applyCentered(design, c, system.mean, p.alpha, v, out);
  let w: Float64Array;
  if (useCholesky) {
    const a = gramMatrix(design, c, system, p.alpha);
    if (!choleskyInPlace(a, cols)) {
      throw new TrainingParameterError('alpha', 'the centered matrix is rank-deficient: use alpha > 0');
    }
    w = choleskySolve(a, cols, system.rhs);
    const residual = new Float64Array(cols);
    for (let step = 0; step < 2; step++) {
      apply(w, residual);
      for (let j = 0; j < cols; j++) residual[j] = system.rhs[j]! - residual[j]!;
      const correction = choleskySolve(a, cols, residual);
      for (let j = 0; j < cols; j++) w[j] = w[j]! + correction[j]!;
    }
    hooks.onProgress?.({ iteration: 1, loss: ridgeLoss(system, w, apply) });
  } else {
    w = await conjugateGradients(design, c, system, p, apply, hooks);
  }
  let intercept = 0;
  if (p.fitIntercept) {
    intercept = system.yMean;
    for (let j = 0; j < cols; j++) intercept -= system.mean[j]! * w[j]!;
  }
  return { kind: 'linear', task: 'regression', weights: [Array.from(w)], intercepts: [intercept] };
}

interface CenteredSystem {
  /** Σcᵢ. */
  readonly total: number;
  /** Weighted column means (zeros without an intercept). */
  readonly mean: Float64Array;
  readonly yMean: number;
  /** Σ cᵢ·(xᵢ − x̄)·(yᵢ − ȳ). */
  readonly rhs: Float64Array;
  /** Σ cᵢ·(yᵢ − ȳ)². */
  readonly yy: number;
  /** Σ cᵢ·(xᵢ − x̄)²ⱼ (the diagonal of the centered Gram matrix, for CG's preconditioner). */
  readonly diagonal: Float64Array;
}

function centeredSystem(design: Design, y: Float64Array, c: Float64Array, fitIntercept: boolean): CenteredSystem {
  const { rows, cols } = design;
  const mean = new Float64Array(cols);
  let total = 0;
  let ySum = 0;
  for (let r = 0; r < rows; r++) {
    const cr = c[r]!;
    total += cr;
    ySum += cr * y[r]!;
    if (fitIntercept) forEachNonZero(design, r, (j, v) => (mean[j] = mean[j]! + cr * v));
  }
  const yMean = fitIntercept ? ySum / total : 0;
  if (fitIntercept) for (let j = 0; j < cols; j++) mean[j] = mean[j]! / total;
  const rhs = new Float64Array(cols);
  const squares = new Float64Array(cols);
  let residualSum = 0;
  let yy = 0;
  for (let r = 0; r < rows; r++) {
    const cr = c[r]!;
    const t = cr * (y[r]! - yMean);
    residualSum += t;
    yy += t * (y[r]! - yMean);
    forEachNonZero(design, r, (j, v) => {
      rhs[j] = rhs[j]! + t * v;
      squares[j] = squares[j]! + cr * v * v;
    });
  }
  const diagonal = new Float64Array(cols);
  for (let j = 0; j < cols; j++) {
    rhs[j] = rhs[j]! - mean[j]! * residualSum;
    diagonal[j] = squares[j]! - total * mean[j]! * mean[j]!;
  }
  return { total, mean, yMean, rhs, yy, diagonal };
}

/** The centered Gram matrix plus alpha·I, full (both triangles), row-major. */
function gramMatrix(design: Design, c: Float64Array, system: CenteredSystem, alpha: number): Float64Array {
  const { rows, cols } = design;
  const a = new Float64Array(cols * cols);
  const js = new Int32Array(cols);
  const vs = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const cr = c[r]!;
    let count = 0;
    forEachNonZero(design, r, (j, v) => {
      js[count] = j;
      vs[count++] = v;
    });
    for (let p = 0; p < count; p++) {
      const row = js[p]! * cols;
      const cv = cr * vs[p]!;
      for (let q = p; q < count; q++) a[row + js[q]!]! += cv * vs[q]!;
    }
  }
  const { mean, total } = system;
  for (let j = 0; j < cols; j++) {
    for (let k = j; k < cols; k++) {
      const value = a[j * cols + k]! - total * mean[j]! * mean[k]! + (j === k ? alpha : 0);
      a[j * cols + k] = value;
      a[k * cols + j] = value;
    }
  }
  return a;
}

/** out = (Xc'·C·Xc + alpha·I)·v, Xc = X − 1·x̄ᵀ, without forming Xc: one pass over the rows. */
function applyCentered(
  design: Design,
  c: Float64Array,
  mean: Float64Array,
  alpha: number,
  v: Float64Array,
  out: Float64Array,
): void {
  const { rows, cols } = design;
  let meanDot = 0;
  for (let j = 0; j < cols; j++) meanDot += mean[j]! * v[j]!;
  out.fill(0);
  let tSum = 0;
  for (let r = 0; r < rows; r++) {
    let dotRow = 0;
    forEachNonZero(design, r, (j, x) => (dotRow += x * v[j]!));
    const t = c[r]! * (dotRow - meanDot);
    tSum += t;
    forEachNonZero(design, r, (j, x) => (out[j] = out[j]! + t * x));
  }
  for (let j = 0; j < cols; j++) out[j] = out[j]! - mean[j]! * tSum + alpha * v[j]!;
}

/** Objective / Σc at w, from the quadratic form: Σc(y−ȳ)² − wᵀ(rhs + r), r = rhs − A·w. */
function ridgeLoss(
  system: CenteredSystem,
  w: Float64Array,
  apply: (v: Float64Array, out: Float64Array) => void,
): number {
  const aw = new Float64Array(w.length);
  apply(w, aw);
  let value = system.yy;
  for (let j = 0; j < w.length; j++) value -= w[j]! * (2 * system.rhs[j]! - aw[j]!);
  return value / system.total;
}

/** Jacobi-preconditioned conjugate gradients on the centered normal equations, from w = 0. */
async function conjugateGradients(
  design: Design,
  c: Float64Array,
  system: CenteredSystem,
  p: ResolvedRidgeParams,
  apply: (v: Float64Array, out: Float64Array) => void,
  hooks: TrainingHooks,
): Promise<Float64Array> {
  const n = design.cols;
  const maxIterations = p.maxIterations ?? n + 1000;
  const inverseDiagonal = system.diagonal.map((d) => (d + p.alpha > 0 ? 1 / (d + p.alpha) : 1));
  const w = new Float64Array(n);
  const r = Float64Array.from(system.rhs);
  const z = r.map((v, j) => v * inverseDiagonal[j]!);
  const direction = Float64Array.from(z);
  const ad = new Float64Array(n);
  const rhsNorm = Math.sqrt(dot(system.rhs, system.rhs));
  let rz = dot(r, z);
  for (let iteration = 1; iteration <= maxIterations; iteration++) {
    if (Math.sqrt(dot(r, r)) <= p.tol * rhsNorm) break;
    await new Promise((resolve) => setImmediate(resolve));
    if (hooks.signal?.aborted) throw abortError(hooks.signal);
    apply(direction, ad);
    const curvature = dot(direction, ad);
    if (!(curvature > 0)) {
      throw new TrainingParameterError('alpha', 'the centered matrix is rank-deficient: use alpha > 0');
    }
    const step = rz / curvature;
    for (let j = 0; j < n; j++) {
      w[j] = w[j]! + step * direction[j]!;
      r[j] = r[j]! - step * ad[j]!;
      z[j] = r[j]! * inverseDiagonal[j]!;
    }
    const next = dot(r, z);
    const beta = next / rz;
    rz = next;
    for (let j = 0; j < n; j++) direction[j] = z[j]! + beta * direction[j]!;
    // Objective from the quadratic form: Σc(y−ȳ)² − wᵀ(rhs + r).
    let value = system.yy;
    for (let j = 0; j < n; j++) value -= w[j]! * (system.rhs[j]! + r[j]!);
    hooks.onProgress?.({ iteration, loss: value / system.total });
  }
  return w;
}

function dot(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i]! * b[i]!;
  return sum;
}
