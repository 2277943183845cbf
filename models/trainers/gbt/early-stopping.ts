/**
 * Early stopping as scikit-learn's HistGradientBoosting does it: a held-out validation split (stratified for
 * classification) scored after every iteration, and the rule that stops when the score stalls.
 */
import { TrainingParameterError, type TreeDataset } from '../../types.js';
import type { GbtParams } from './params.js';
import type { SeededRandom } from './random.js';

/** Row indexes 0..n-1. */
export function allRows(n: number): Uint32Array {
  const rows = new Uint32Array(n);
  for (let i = 0; i < n; i++) rows[i] = i;
  return rows;
}

/**
 * Holds out ceil(validationFraction × rows) rows, as scikit-learn's train_test_split: stratified by class for
 * classification (each class gives its share, remainders to the largest fractional parts), uniformly otherwise.
 * Both lists come back ascending.
 */
export function splitValidation(
  data: TreeDataset,
  p: GbtParams,
  numClasses: number,
  random: SeededRandom,
): { train: Uint32Array; validation: Uint32Array } {
  const total = data.rows;
  const held = Math.ceil(p.validationFraction * total);
  if (held < 1 || total - held < 1) {
    throw new TrainingParameterError('validationFraction', `leaves no training or validation rows of ${total}`);
  }
  const groups: number[][] = [];
  if (p.task === 'regression') groups.push([...allRows(total)]);
  else {
    for (let k = 0; k < numClasses; k++) groups.push([]);
    for (let r = 0; r < total; r++) groups[data.y[r]!]!.push(r);
  }
  const exact = groups.map((g) => (held * g.length) / total);
  const counts = exact.map(Math.floor);
  let missing = held - counts.reduce((a, b) => a + b, 0);
  const byRemainder = exact
    .map((e, k) => ({ k, rest: e - Math.floor(e) }))
    .sort((a, b) => b.rest - a.rest || a.k - b.k);
  for (const { k } of byRemainder) {
    if (missing === 0) break;
    if (counts[k]! < groups[k]!.length) {
      counts[k]!++;
      missing--;
    }
  }
  const isValidation = new Uint8Array(total);
  for (const [k, group] of groups.entries()) {
    // Partial Fisher–Yates: the first counts[k] entries are a uniform sample of the group.
    for (let i = 0; i < counts[k]!; i++) {
      const j = i + random.nextInt(group.length - i);
      const chosen = group[j]!;
      group[j] = group[i]!;
      group[i] = chosen;
      isValidation[chosen] = 1;
    }
  }
  const validation = new Uint32Array(held);
  const train = new Uint32Array(total - held);
  for (let r = 0, v = 0, t = 0; r < total; r++) {
    if (isValidation[r] === 1) validation[v++] = r;
    else train[t++] = r;
  }
  return { train, validation };
}

/**
 * scikit-learn's `_should_stop`: stop when none of the last `patience` losses is lower than the loss `patience`
 * iterations before them by more than `tol`. `losses` starts with the loss of the baseline.
 */
export function shouldStop(losses: readonly number[], patience: number, tol: number): boolean {
  if (losses.length < patience + 1) return false;
  const reference = losses[losses.length - patience - 1]! - tol;
  for (let i = losses.length - patience; i < losses.length; i++) if (losses[i]! < reference) return false;
  return true;
}
