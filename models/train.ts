import path from 'node:path';
import type { DataEngine } from '../data/engine.js';
import type { FittedTransform } from '../data/transform.js';
import { loadEncodedDataset, loadSparseEncodedDataset, loadTreeDataset } from './dataset.js';
import type { TrainerKind } from './training-job.js';
import { trainGradientBoostedTrees } from './trainers/gbt/index.js';
import { trainLogisticRegression, trainRidge, trainSoftmaxRegression } from './trainers/linear/index.js';
import { trainMlp, type MlpParams } from './trainers/mlp/index.js';
import { TrainingParameterError, type TrainedModel, type TrainingHooks } from './types.js';

/** Largest dense matrix the MLP trainer is given (its input is dense); beyond it, training is refused up front. */
const MLP_MAX_DENSE_BYTES = 1.5 * 2 ** 30;

/**
 * Loads the training split in the form the trainer needs and trains. Task-specific trainers check that the
 * transform's label task fits them (a regression label for logistic regression is a TrainingParameterError).
 */
export async function trainFromParquet(
  engine: DataEngine,
  trainer: TrainerKind,
  params: Record<string, unknown>,
  trainPath: string,
  transform: FittedTransform,
  hooks: TrainingHooks & { onLoaded?: (rows: number, seconds: number) => void },
): Promise<TrainedModel> {
  const task = transform.label.task;
  // The class count comes from the label's classes over both splits: a class absent from training still gets its
  // output, so the model's outputs line up with the transform's classes.
  const classes = transform.label.classes?.length;
  const loadStarted = performance.now();
  const loaded = (rows: number) => hooks.onLoaded?.(rows, (performance.now() - loadStarted) / 1000);
  const file = path.resolve(trainPath);
  switch (trainer) {
    case 'logistic_regression': {
      if (task === 'regression') throw new TrainingParameterError('trainer', 'logistic regression needs a class label');
      const data = await loadSparseEncodedDataset(engine, file, transform);
      loaded(data.x.rows);
      return task === 'multiclass'
        ? trainSoftmaxRegression(data, { ...params, task: 'multiclass', classCount: classes } as never, hooks)
        : trainLogisticRegression(data, { ...params, task: 'binary' } as never, hooks);
    }
    case 'softmax_regression': {
      if (task === 'regression') throw new TrainingParameterError('trainer', 'softmax regression needs a class label');
      const data = await loadSparseEncodedDataset(engine, file, transform);
      loaded(data.x.rows);
      return trainSoftmaxRegression(data, { ...params, classCount: classes } as never, hooks);
    }
    case 'ridge': {
      if (task !== 'regression') throw new TrainingParameterError('trainer', 'ridge regression needs a numeric label');
      const data = await loadSparseEncodedDataset(engine, file, transform);
      loaded(data.x.rows);
      return trainRidge(data, params as never, hooks);
    }
    case 'mlp': {
      const data = await loadEncodedDataset(engine, file, transform);
      if (data.x.data.byteLength > MLP_MAX_DENSE_BYTES) {
        throw new TrainingParameterError(
          'trainer',
          `the MLP trains on a dense matrix and this one would take ${(data.x.data.byteLength / 2 ** 30).toFixed(1)} GiB; reduce maxCategories or sample the data`,
        );
      }
      loaded(data.x.rows);
      return trainMlp(
        data,
        { ...params, task, ...(task === 'multiclass' ? { classCount: classes } : {}) } as MlpParams,
        hooks,
      );
    }
    case 'gradient_boosted_trees': {
      const data = await loadTreeDataset(engine, file, transform);
      loaded(data.rows);
      return trainGradientBoostedTrees(
        data,
        { ...params, task, ...(task === 'multiclass' ? { numClasses: classes } : {}) },
        hooks,
      );
    }
  }
}
