/**
 * A small multilayer perceptron trained with Adam on typed arrays, modelled on scikit-learn's
 * `MLPClassifier`/`MLPRegressor` (same defaults, same objective, same Adam form, same stopping rule) so that its
 * numbers can be checked against scikit-learn's.
 *
 * - params.ts: the parameters and their defaults; checkpoint.ts: the resumable state;
 * - train.ts: the training loop (data checks, validation split, epochs, early stopping);
 * - network.ts: the forward and backward kernels (the objective is written out there); input.ts: the first layer's
 *   dense or sparse view of the input; random.ts: the seeded PRNG streams.
 *
 * Inference lives in models/predict/mlp.ts.
 */
export { mlpParamsSchema, parseMlpParams, type MlpParams, type ResolvedMlpParams } from './params.js';
export { type MlpCheckpoint } from './checkpoint.js';
export { mlpObjective, mlpValidationSplit, trainMlp, type MlpLayerGradient } from './train.js';
