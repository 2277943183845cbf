/**
 * Histogram gradient-boosted trees (scikit-learn's HistGradientBoosting, in TypeScript on typed arrays): the trainer,
 * its parameters and its checkpoint format. Inference lives in models/predict/gbt.ts.
 */
export { trainGradientBoostedTrees, AUTO_EARLY_STOPPING_ROWS, AUTO_THREADS_ROWS } from './train.js';
export { shouldStop } from './early-stopping.js';
export { parseGbtParams, gbtParamsSchema, MAX_BINS, type GbtParams, type GbtParamsInput } from './params.js';
export { GBT_CHECKPOINT_FORMAT, type GbtCheckpoint } from './checkpoint.js';
