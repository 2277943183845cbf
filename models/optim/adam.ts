/**
 * Adam (Kingma & Ba, 2015) over one flat parameter vector, in the form scikit-learn's `AdamOptimizer` uses: the bias
 * corrections are folded into the step size and epsilon is added to the uncorrected √v. Following that form exactly
 * lets the MLP trainer be compared with `MLPClassifier`/`MLPRegressor` numbers.
 *
 * Everything lives in Float64Arrays allocated once; {@link Adam.step} allocates nothing.
 */

/** Adam's hyperparameters. */
export interface AdamOptions {
  /** Initial step size (scikit-learn's `learning_rate_init`). */
  readonly learningRate: number;
  /** Decay of the first-moment estimate, in [0, 1). */
  readonly beta1: number;
  /** Decay of the second-moment estimate, in [0, 1). */
  readonly beta2: number;
  /** Added to √v to avoid dividing by zero. */
  readonly epsilon: number;
}

/** scikit-learn's defaults: lr 1e-3, betas 0.9/0.999, epsilon 1e-8. */
export const DEFAULT_ADAM_OPTIONS: AdamOptions = { learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };

/** A JSON-serializable snapshot of the optimizer (plain arrays: JSON numbers round-trip float64 exactly). */
export interface AdamState {
  /** Number of steps taken so far. */
  readonly step: number;
  readonly m: readonly number[];
  readonly v: readonly number[];
}

/** Adam over a parameter vector of fixed size. */
export class Adam {
  private readonly m: Float64Array;
  private readonly v: Float64Array;
  private t = 0;

  /**
   * @param size - Number of parameters.
   * @param options - Hyperparameters (see {@link DEFAULT_ADAM_OPTIONS}).
   * @param state - A snapshot from {@link Adam.snapshot} to continue from.
   * @throws RangeError when `state` does not hold `size` moments.
   */
  constructor(
    readonly size: number,
    readonly options: AdamOptions = DEFAULT_ADAM_OPTIONS,
    state?: AdamState,
  ) {
    this.m = new Float64Array(size);
    this.v = new Float64Array(size);
    if (state) {
      if (state.m.length !== size || state.v.length !== size) {
        throw new RangeError(`Adam state holds ${state.m.length}/${state.v.length} moments, expected ${size}`);
      }
      this.m.set(state.m);
      this.v.set(state.v);
      this.t = state.step;
    }
  }

  /** Number of steps taken so far. */
  get steps(): number {
    return this.t;
  }

  /**
   * One update in place: `params -= lr_t · m / (√v + ε)` with `lr_t = lr · √(1 - β₂ᵗ) / (1 - β₁ᵗ)`.
   *
   * @param params - Updated in place; at least `size` long (only the first `size` entries are touched).
   * @param grads - The gradient of the objective at `params`.
   */
  step(params: Float64Array, grads: Float64Array): void {
    const { learningRate, beta1, beta2, epsilon } = this.options;
    this.t += 1;
    const rate = (learningRate * Math.sqrt(1 - beta2 ** this.t)) / (1 - beta1 ** this.t);
    const m = this.m;
    const v = this.v;
    const c1 = 1 - beta1;
    const c2 = 1 - beta2;
    for (let i = 0; i < this.size; i++) {
      const g = grads[i]!;
      const mi = beta1 * m[i]! + c1 * g;
      const vi = beta2 * v[i]! + c2 * g * g;
      m[i] = mi;
      v[i] = vi;
      params[i] = params[i]! - (rate * mi) / (Math.sqrt(vi) + epsilon);
    }
  }

  /** A copy of the optimizer's state, for checkpoints. */
  snapshot(): AdamState {
    return { step: this.t, m: Array.from(this.m), v: Array.from(this.v) };
  }
}
