/**
 * The trainers' contract: what they read (columnar typed arrays, built once from the prepared Parquet and the
 * fitted transform) and what they produce (plain, JSON-serializable parameters that the ONNX exporter turns into
 * one graph together with the preprocessing). No row objects anywhere near a hot loop.
 */
import type { FittedTransform, LabelTask } from '../data/transform.js';
import { DomainError } from '../core/errors.js';

export type { FittedTransform, LabelTask };

/** Row-major dense matrix. */
export interface DenseMatrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float64Array;
}

/**
 * Input of the linear models and the MLP: the transform applied exactly as `applyTransform` in data/transform.ts
 * defines it (numeric: imputed and standardized; categorical: one-hot over the vocabulary plus the unknown column),
 * in `columnNames(transform)` order.
 */
export interface EncodedDataset {
  readonly x: DenseMatrix;
  /** Binary: 0/1; multiclass: class index; regression: the target. */
  readonly y: Float64Array;
  /** Optional per-row weights (class weights are expanded into these). */
  readonly weights?: Float64Array;
}

/** One feature as the trees see it: raw numbers (NaN = missing), or vocabulary indexes (unknown = cardinality - 1). */
export type TreeFeature =
  | { readonly kind: 'numeric'; readonly name: string; readonly values: Float32Array }
  | { readonly kind: 'categorical'; readonly name: string; readonly codes: Int32Array; readonly cardinality: number };

/**
 * Input of the gradient-boosted trees: features in transform order, no scaling, missing kept as NaN, categorical
 * codes from the transform's vocabulary (unseen and missing share the unknown index). Float32, because the ONNX
 * tree ensemble compares in float32: training on the same values makes the exported model agree exactly.
 */
export interface TreeDataset {
  readonly rows: number;
  readonly features: readonly TreeFeature[];
  readonly y: Float64Array;
  readonly weights?: Float64Array;
}

/** A progress report from a trainer, once per iteration or epoch (turned into heartbeats and experiment curves). */
export interface TrainingProgress {
  readonly iteration: number;
  readonly loss: number;
  readonly validationLoss?: number;
  readonly rowsPerSecond?: number;
}

/** Hooks a trainer calls while it runs: progress, checkpoints, cancellation. */
export interface TrainingHooks {
  readonly onProgress?: (progress: TrainingProgress) => void;
  /** Called every `checkpointEvery` iterations with a state from which `resumeFrom` continues exactly. */
  readonly onCheckpoint?: (state: unknown) => void | Promise<void>;
  readonly checkpointEvery?: number;
  /** A state from an earlier `onCheckpoint`: training continues from there (same result as an uninterrupted run). */
  readonly resumeFrom?: unknown;
  /** Checked between iterations; training stops with an AbortError when it fires. */
  readonly signal?: AbortSignal;
}

/** Binary: one row of weights (logit of class 1); multiclass: one row per class (softmax); regression: one row. */
export interface LinearModel {
  readonly kind: 'linear';
  readonly task: LabelTask;
  /** weights[k][j] for output k and input column j. */
  readonly weights: readonly (readonly number[])[];
  readonly intercepts: readonly number[];
}

export interface MlpLayer {
  /** weights[o][i]: output unit o, input i. */
  readonly weights: readonly (readonly number[])[];
  readonly biases: readonly number[];
  readonly activation: 'relu' | 'tanh' | 'identity';
}

/** The last layer has identity activation and yields logits (binary: 1, multiclass: one per class) or the target. */
export interface MlpModel {
  readonly kind: 'mlp';
  readonly task: LabelTask;
  readonly layers: readonly MlpLayer[];
}

/** Numeric split: value < threshold goes left (NaN: `missingLeft`). Thresholds are float32-representable. */
export interface NumericSplitNode {
  readonly kind: 'numeric';
  readonly feature: number;
  readonly threshold: number;
  readonly missingLeft: boolean;
  readonly left: number;
  readonly right: number;
}

/** Categorical split: codes in `leftCodes` go left, every other code (the unknown one included unless listed) right. */
export interface CategoricalSplitNode {
  readonly kind: 'categorical';
  readonly feature: number;
  readonly leftCodes: readonly number[];
  readonly left: number;
  readonly right: number;
}

export interface LeafNode {
  readonly kind: 'leaf';
  /** Added to the raw score of the tree's output (learning rate already applied). */
  readonly value: number;
}

export type TreeNode = NumericSplitNode | CategoricalSplitNode | LeafNode;

export interface Tree {
  /** Which raw score it adds to: 0 for binary and regression, the class index for multiclass. */
  readonly output: number;
  /** nodes[0] is the root; children are indexes into this array. */
  readonly nodes: readonly TreeNode[];
}

/**
 * Raw score per output = baseScores[output] + sum of the tree leaves for it; binary: probability =
 * sigmoid(score); multiclass: softmax over outputs; regression: the score.
 */
export interface GradientBoostedTreesModel {
  readonly kind: 'gbt';
  readonly task: LabelTask;
  readonly baseScores: readonly number[];
  readonly trees: readonly Tree[];
}

export type TrainedModel = LinearModel | MlpModel | GradientBoostedTreesModel;

/** Thrown when training parameters are invalid; retrying cannot help (the activity makes it non-retryable). */
export class TrainingParameterError extends DomainError {
  override readonly name = 'TrainingParameterError';
  constructor(
    readonly parameter: string,
    message: string,
  ) {
    super('invalid', `invalid training parameter ${parameter}: ${message}`, { details: { parameter } });
  }
}
