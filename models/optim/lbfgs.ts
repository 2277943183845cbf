/**
 * Limited-memory BFGS for smooth unconstrained minimization (Nocedal & Wright, Numerical Optimization, 2nd ed.:
 * Algorithm 7.4, the two-loop recursion, with the strong-Wolfe line search of Algorithms 3.5/3.6 and safeguarded
 * cubic interpolation).
 *
 * Pure, single-threaded and deterministic: the same objective, start and options give the same iterates bit for bit.
 * Between iterations it yields to the event loop (so timers, heartbeats and AbortSignals get their turn), checks its
 * signal, and reports; every report can produce a serializable {@link LbfgsState} from which {@link minimizeLbfgs}
 * continues exactly (see there).
 */

/** Writes the gradient at `x` into `gradient` and returns the value at `x`. Must be deterministic. */
export type Objective = (x: Float64Array, gradient: Float64Array) => number;

/** Why the minimization stopped. */
export type LbfgsStatus =
  /** The largest absolute gradient component fell to `gradientTolerance`. */
  | 'gradient_tolerance'
  /** The last iteration reduced the value by at most `lossTolerance`, relatively. */
  | 'loss_tolerance'
  | 'max_iterations'
  /** No step along the search direction satisfied the Wolfe conditions, even after a steepest-descent restart:
   * usually the limit of floating-point precision, at a minimum. The last accepted point is returned. */
  | 'line_search_failed';

export interface LbfgsOptions {
  /** Correction pairs kept (m); default 10. */
  readonly memory?: number;
  /** Iterations (accepted steps) in all, counting those before a resume; default 100. */
  readonly maxIterations?: number;
  /** Stop when max |gradient_i| ≤ this (scipy's `gtol`); default 1e-5. */
  readonly gradientTolerance?: number;
  /** Stop when (f_prev − f) ≤ this × max(|f_prev|, |f|, 1) (scipy's `ftol`); default 1e-12. */
  readonly lossTolerance?: number;
  /** Objective evaluations one line search may use; default 25. */
  readonly maxLineSearchEvaluations?: number;
  /** Checked before every iteration: when it fires, the minimization throws an error named `AbortError`. */
  readonly signal?: AbortSignal;
  /** Called after every iteration (awaited); `report.state()` captures a resumable state. */
  readonly onIteration?: (report: LbfgsIteration) => void | Promise<void>;
  /** Continue from this state instead of starting at `x0`. */
  readonly resumeFrom?: LbfgsState;
}

/** One iteration's report. */
export interface LbfgsIteration {
  /** 1 for the first accepted step. */
  readonly iteration: number;
  readonly loss: number;
  /** max |gradient_i|. */
  readonly gradientNorm: number;
  /** Objective evaluations so far (the initial one included). */
  readonly evaluations: number;
  /** The accepted step length along the search direction. */
  readonly step: number;
  /**
   * The state after this iteration, as plain JSON-serializable data (a copy: safe to keep). Call it before the
   * callback returns or its promise settles: the minimization reuses its buffers afterwards.
   */
  readonly state: () => LbfgsState;
}

/**
 * Everything the next iteration depends on, as plain JSON (numbers survive JSON exactly: `JSON.stringify` writes
 * the shortest decimal that parses back to the same double).
 */
export interface LbfgsState {
  readonly version: 1;
  readonly x: number[];
  readonly loss: number;
  readonly gradient: number[];
  /** The value before the last iteration (null before the first): the loss-tolerance test needs it. */
  readonly previousLoss: number | null;
  /** Correction pairs, oldest first: s = x_{k+1} − x_k, y = g_{k+1} − g_k. */
  readonly s: number[][];
  readonly y: number[][];
  readonly iteration: number;
  readonly evaluations: number;
}

export interface LbfgsResult {
  readonly x: Float64Array;
  readonly loss: number;
  readonly gradient: Float64Array;
  readonly gradientNorm: number;
  readonly iterations: number;
  readonly evaluations: number;
  readonly status: LbfgsStatus;
}

const C1 = 1e-4;
const C2 = 0.9;

/**
 * Minimizes `objective` from `x0` (not modified).
 *
 * Resuming: with `resumeFrom` set to a state captured by `report.state()` at iteration k, the run continues with
 * iteration k + 1 exactly as the uninterrupted run did: same iterates, same values, same stopping decision, bit for
 * bit, provided the objective and the options (memory, tolerances, line-search budget) are the same. `maxIterations`
 * counts from the original start.
 *
 * @throws RangeError for an x0 or state of the wrong dimension, or a non-finite initial value.
 * @throws an error named `AbortError` when the signal fires.
 */
export async function minimizeLbfgs(
  objective: Objective,
  x0: Float64Array,
  options: LbfgsOptions = {},
): Promise<LbfgsResult> {
  const n = x0.length;
  const memory = options.memory ?? 10;
  const maxIterations = options.maxIterations ?? 100;
  const gradientTolerance = options.gradientTolerance ?? 1e-5;
  const lossTolerance = options.lossTolerance ?? 1e-12;
  const maxEvaluations = options.maxLineSearchEvaluations ?? 25;
  if (!(memory >= 1)) throw new RangeError('memory must be at least 1');

  let x = new Float64Array(n);
  let g = new Float64Array(n);
  let f: number;
  let previous: number | null = null;
  let iteration = 0;
  let evaluations = 0;
  const history: { s: Float64Array; y: Float64Array; rho: number }[] = [];

  const resume = options.resumeFrom;
  if (resume) {
    if (resume.version !== 1 || resume.x.length !== n || resume.gradient.length !== n) {
      throw new RangeError(`the state is not a version-1 state of dimension ${n}`);
    }
    x.set(resume.x);
    g.set(resume.gradient);
    f = resume.loss;
    previous = resume.previousLoss;
    iteration = resume.iteration;
    evaluations = resume.evaluations;
    for (let i = 0; i < resume.s.length; i++) {
      const s = Float64Array.from(resume.s[i]!);
      const y = Float64Array.from(resume.y[i]!);
      if (s.length !== n || y.length !== n) throw new RangeError(`correction pair ${i} has the wrong dimension`);
      history.push({ s, y, rho: 1 / dot(s, y) });
    }
  } else {
    x.set(x0);
    f = objective(x, g);
    evaluations = 1;
    if (!Number.isFinite(f)) throw new RangeError(`the objective is ${f} at the starting point`);
  }

  const result = (status: LbfgsStatus): LbfgsResult => ({
    x,
    loss: f,
    gradient: g,
    gradientNorm: maxAbs(g),
    iterations: iteration,
    evaluations,
    status,
  });
  const converged = (): LbfgsStatus | null => {
    if (maxAbs(g) <= gradientTolerance) return 'gradient_tolerance';
    if (previous !== null && previous - f <= lossTolerance * Math.max(Math.abs(previous), Math.abs(f), 1)) {
      return 'loss_tolerance';
    }
    return null;
  };

  // Buffers: the direction, the two-loop's scratch, the line search's trial and best points.
  const d = new Float64Array(n);
  const alpha = new Float64Array(memory);
  let trialX = new Float64Array(n);
  let trialG = new Float64Array(n);
  let bestX = new Float64Array(n);
  let bestG = new Float64Array(n);

  for (;;) {
    const stop = converged();
    if (stop) return result(stop);
    if (iteration >= maxIterations) return result('max_iterations');
    await yieldToEventLoop();
    if (options.signal?.aborted) throw abortError(options.signal);

    let search: LineSearchOutcome | null = null;
    // A failed search along the quasi-Newton direction is retried once along steepest descent.
    for (let attempt = 0; attempt < 2 && search === null; attempt++) {
      if (attempt === 1) {
        if (history.length === 0) break;
        history.length = 0;
      }
      let slope = direction(g, history, d, alpha);
      if (!(slope < 0)) {
        history.length = 0;
        slope = direction(g, history, d, alpha);
      }
      if (!(slope < 0)) break; // zero gradient: nothing to do (the tolerance test catches it next time)
      const initial = history.length === 0 ? Math.min(1, 1 / Math.sqrt(dot(d, d))) : 1;
      const buffers = { trialX, trialG, bestX, bestG };
      search = lineSearch(objective, x, f, slope, d, initial, maxEvaluations, buffers);
      evaluations += search.evaluations;
      if (!search.accepted) search = null;
    }
    if (search === null) return result('line_search_failed');

    // The accepted point lives in one of the buffers: swap it in, keep the old vectors as the next scratch.
    const [newX, newG] = search.inBest ? [bestX, bestG] : [trialX, trialG];
    const s = new Float64Array(n);
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      s[i] = newX[i]! - x[i]!;
      y[i] = newG[i]! - g[i]!;
    }
    const sy = dot(s, y);
    if (sy > 1e-10 * dot(y, y)) {
      if (history.length === memory) history.shift();
      history.push({ s, y, rho: 1 / sy });
    }
    const [oldX, oldG] = [x, g];
    x = newX;
    g = newG;
    if (search.inBest) [bestX, bestG] = [oldX, oldG];
    else [trialX, trialG] = [oldX, oldG];
    previous = f;
    f = search.loss;
    iteration++;

    if (options.onIteration) {
      const [xs, gs, fs, ps, is, es] = [x, g, f, previous, iteration, evaluations];
      // Correction pairs are never modified once made, and x and g are not reused before the callback settles.
      const pairs = history.slice();
      await options.onIteration({
        iteration,
        loss: f,
        gradientNorm: maxAbs(g),
        evaluations,
        step: search.step,
        state: () => ({
          version: 1,
          x: Array.from(xs),
          loss: fs,
          gradient: Array.from(gs),
          previousLoss: ps,
          s: pairs.map((h) => Array.from(h.s)),
          y: pairs.map((h) => Array.from(h.y)),
          iteration: is,
          evaluations: es,
        }),
      });
    }
  }
}

/** Builds an error named `AbortError` from a fired signal (its reason, when that is one already). */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  const error = new Error('the operation was aborted', { cause: reason });
  error.name = 'AbortError';
  return error;
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** d = −H·g by the two-loop recursion (H0 = γI, γ = sᵀy/yᵀy of the newest pair); returns the slope dᵀg. */
function direction(
  g: Float64Array,
  history: readonly { s: Float64Array; y: Float64Array; rho: number }[],
  d: Float64Array,
  alpha: Float64Array,
): number {
  const n = g.length;
  for (let i = 0; i < n; i++) d[i] = -g[i]!;
  for (let k = history.length - 1; k >= 0; k--) {
    const { s, y, rho } = history[k]!;
    const a = rho * dot(s, d);
    alpha[k] = a;
    for (let i = 0; i < n; i++) d[i] = d[i]! - a * y[i]!;
  }
  const newest = history.at(-1);
  if (newest) {
    const gamma = 1 / (newest.rho * dot(newest.y, newest.y));
    for (let i = 0; i < n; i++) d[i] = d[i]! * gamma;
  }
  for (let k = 0; k < history.length; k++) {
    const { s, y, rho } = history[k]!;
    const b = rho * dot(y, d);
    const a = alpha[k]!;
    for (let i = 0; i < n; i++) d[i] = d[i]! + (a - b) * s[i]!;
  }
  return dot(d, g);
}

interface LineSearchOutcome {
  readonly accepted: boolean;
  readonly step: number;
  readonly loss: number;
  /** Whether the accepted point is in the `best` buffers (else in the `trial` buffers). */
  readonly inBest: boolean;
  readonly evaluations: number;
}

interface Buffers {
  readonly trialX: Float64Array;
  readonly trialG: Float64Array;
  readonly bestX: Float64Array;
  readonly bestG: Float64Array;
}

/**
 * Strong-Wolfe line search along d from x (value f0, slope g0 = dᵀ∇f < 0): bracketing, then zoom (Nocedal & Wright
 * Algorithms 3.5 and 3.6). `best` keeps the lowest point that satisfies sufficient decrease (the bracket's `lo`): when
 * the budget runs out, that point is accepted if it exists.
 */
function lineSearch(
  objective: Objective,
  x: Float64Array,
  f0: number,
  g0: number,
  d: Float64Array,
  initial: number,
  maxEvaluations: number,
  buffers: Buffers,
): LineSearchOutcome {
  const { trialX, trialG, bestX, bestG } = buffers;
  const n = x.length;
  let evaluations = 0;
  const evaluate = (step: number): { f: number; slope: number } => {
    for (let i = 0; i < n; i++) trialX[i] = x[i]! + step * d[i]!;
    const f = objective(trialX, trialG);
    evaluations++;
    return { f: Number.isNaN(f) ? Infinity : f, slope: dot(trialG, d) };
  };
  const keep = () => {
    bestX.set(trialX);
    bestG.set(trialG);
  };
  const armijo = (step: number, f: number) => f <= f0 + C1 * step * g0;
  const curvature = (slope: number) => Math.abs(slope) <= -C2 * g0;
  const done = (step: number, loss: number, inBest: boolean): LineSearchOutcome => ({
    accepted: true,
    step,
    loss,
    inBest,
    evaluations,
  });

  // Bracket: lo is the best point so far that satisfies sufficient decrease (0 = the start).
  let lo = { step: 0, f: f0, slope: g0 };
  let hi: { step: number; f: number; slope: number } | null = null;
  let step = initial;
  while (hi === null) {
    if (evaluations >= maxEvaluations) return fallback();
    const { f, slope } = evaluate(step);
    if (!armijo(step, f) || (lo.step > 0 && f >= lo.f)) {
      hi = { step, f, slope };
    } else if (curvature(slope)) {
      return done(step, f, false);
    } else if (slope >= 0) {
      keep();
      hi = lo;
      lo = { step, f, slope };
    } else {
      keep();
      lo = { step, f, slope };
      step *= 2;
    }
  }

  // Zoom between lo (sufficient decrease, lowest) and hi.
  while (evaluations < maxEvaluations) {
    const width = Math.abs(hi.step - lo.step);
    if (width <= 1e-14 * Math.max(lo.step, hi.step)) break;
    const a = Math.min(lo.step, hi.step);
    const trial = safeguard(cubicMinimizer(lo, hi), a + 0.1 * width, a + 0.9 * width, a + 0.5 * width);
    const { f, slope } = evaluate(trial);
    if (!armijo(trial, f) || f >= lo.f) {
      hi = { step: trial, f, slope };
    } else {
      if (curvature(slope)) return done(trial, f, false);
      keep();
      if (slope * (hi.step - lo.step) >= 0) hi = lo;
      lo = { step: trial, f, slope };
    }
  }
  return fallback();

  function fallback(): LineSearchOutcome {
    if (lo.step > 0 && lo.f < f0) return done(lo.step, lo.f, true);
    return { accepted: false, step: 0, loss: f0, inBest: false, evaluations };
  }
}

/** Minimizer of the cubic through two points with values and slopes (NaN when it has none). */
function cubicMinimizer(
  p: { step: number; f: number; slope: number },
  q: { step: number; f: number; slope: number },
): number {
  const d1 = p.slope + q.slope - (3 * (p.f - q.f)) / (p.step - q.step);
  const discriminant = d1 * d1 - p.slope * q.slope;
  if (!(discriminant >= 0)) return NaN;
  const d2 = Math.sign(q.step - p.step) * Math.sqrt(discriminant);
  return q.step - ((q.step - p.step) * (q.slope + d2 - d1)) / (q.slope - p.slope + 2 * d2);
}

function safeguard(value: number, low: number, high: number, otherwise: number): number {
  return Number.isFinite(value) && value >= low && value <= high ? value : otherwise;
}

function dot(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i]! * b[i]!;
  return sum;
}

function maxAbs(a: Float64Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const v = Math.abs(a[i]!);
    if (v > max || v !== v) max = v;
  }
  return max;
}
