import type { FittedTransform } from '../data/transform.js';
import type { TrainedModel, TrainingProgress } from './types.js';

/** The built-in trainers, by the name a pipeline definition uses. */
export type TrainerKind = 'logistic_regression' | 'softmax_regression' | 'ridge' | 'mlp' | 'gradient_boosted_trees';

export const TRAINER_KINDS: readonly TrainerKind[] = [
  'logistic_regression',
  'softmax_regression',
  'ridge',
  'mlp',
  'gradient_boosted_trees',
];

/** Everything a training thread needs: local file paths and plain JSON, nothing that needs a connection. */
export interface TrainingJob {
  readonly trainer: TrainerKind;
  readonly params: Record<string, unknown>;
  /** Local Parquet file of the training split (from the prepare stage). */
  readonly trainPath: string;
  readonly transform: FittedTransform;
  /** Folder the thread's DuckDB may write to. */
  readonly workDir: string;
  readonly checkpointEvery?: number;
  /** A state from an earlier checkpoint to continue from. */
  readonly resumeFrom?: unknown;
}

/** Messages from the training thread to the activity. */
export type TrainingThreadMessage =
  | { readonly type: 'loaded'; readonly rows: number; readonly seconds: number }
  | { readonly type: 'progress'; readonly progress: TrainingProgress }
  | { readonly type: 'checkpoint'; readonly iteration: number; readonly state: unknown }
  | { readonly type: 'done'; readonly model: TrainedModel; readonly seconds: number }
  | {
      readonly type: 'error';
      readonly name: string;
      readonly message: string;
      readonly parameter?: string;
      readonly stack?: string;
    };
