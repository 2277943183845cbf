/**
 * Linear models on the encoded input, following scikit-learn's conventions so that their numbers can be checked
 * against it:
 *
 * - logistic regression (binary) and softmax regression (multinomial): logistic-regression.ts, L-BFGS over the
 *   objectives of logistic-objectives.ts, which run over the distinct rows of distinct-rows.ts;
 * - ridge regression: ridge.ts, Cholesky (cholesky.ts) or conjugate gradients on the centered normal equations.
 *
 * Both check and read their input through design.ts (dense or compressed sparse rows, bit-identical results).
 */
export { type LinearTrainingData } from './design.js';
export {
  logisticObjective,
  logisticRegressionParamsSchema,
  parseLogisticRegressionParams,
  trainLogisticRegression,
  trainSoftmaxRegression,
  type LinearCheckpoint,
  type LogisticRegressionParams,
  type ResolvedLogisticRegressionParams,
} from './logistic-regression.js';
export {
  parseRidgeParams,
  RIDGE_CHOLESKY_MAX_COLUMNS,
  ridgeParamsSchema,
  trainRidge,
  type ResolvedRidgeParams,
  type RidgeParams,
} from './ridge.js';
