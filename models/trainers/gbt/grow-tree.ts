/**
 * Grows one regression tree on gradients and hessians, leaf-wise by best gain (scikit-learn's TreeGrower with
 * max_leaf_nodes): the splittable leaf with the largest gain is split next, until the leaf budget, the depth limit or
 * the lack of a positive-gain split stops it.
 *
 * Rows are tracked as index ranges of one Uint32Array that each split partitions stably (partition.ts), so a node is
 * `[start, end)` and its rows stay in ascending order (sequential reads of the binned rows). The row passes run on
 * the executor (executor.ts), possibly on several threads.
 * Histograms: built from rows for the root and for the smaller child of each split; the larger child's is the
 * parent's minus the smaller one's.
 */
import type { CategoricalSplitNode, NumericSplitNode, Tree, TreeNode } from '../../types.js';
import { FLOAT32_MAX, type BinnedRows, type FeatureBinning } from './binning.js';
import type { Executor } from './executor.js';
import { HistogramPool, histogramSize, subtractHistogram } from './histogram.js';
import { MIN_HESSIAN_TO_SPLIT, SplitFinder, leftTable, nodeValue, type SplitCandidate } from './splitting.js';

export interface GrowerOptions {
  readonly maxLeafNodes: number | null;
  readonly maxDepth: number | null;
  readonly minSamplesLeaf: number;
  readonly l2Regularization: number;
  /** Shrinkage applied to leaf values. */
  readonly learningRate: number;
}

/** A tree in bin space, to route binned rows (the validation split) without going back to float values. */
export interface BinnedTree {
  /** Split feature per node; -1 for a leaf. */
  readonly feature: Int32Array;
  readonly left: Int32Array;
  readonly right: Int32Array;
  /** Leaf values (shrinkage applied). */
  readonly value: Float64Array;
  /** 256 entries per node: 1 when a row with that bin goes left. */
  readonly goesLeft: Uint8Array;
}

export interface GrownTree {
  readonly tree: Tree;
  readonly binned: BinnedTree;
  /** The leaves' row ranges in the executor's `indices` with their values: how the raw scores are updated. */
  readonly leaves: readonly { readonly start: number; readonly end: number; readonly value: number }[];
}

interface GrowNode {
  readonly id: number;
  readonly start: number;
  readonly end: number;
  readonly gradient: number;
  readonly hessian: number;
  readonly depth: number;
  histogram: Float64Array | null;
  split: SplitCandidate | null;
}

type Built =
  | { kind: 'leaf'; value: number; start: number; end: number }
  | { kind: 'split'; split: SplitCandidate; left: number; right: number; table: Uint8Array };

/** Grows trees on the executor's binned training rows; reuses its buffers from tree to tree. */
export class TreeGrower {
  private readonly pool: HistogramPool;
  private readonly finder: SplitFinder;

  constructor(
    private readonly executor: Executor,
    private readonly binning: readonly FeatureBinning[],
    private readonly options: GrowerOptions,
  ) {
    this.pool = new HistogramPool(histogramSize(executor.arrays.features));
    this.finder = new SplitFinder(binning, options);
  }

  /** Grows the tree of raw-score output `output` from the gradients and hessians at `output × rows`. */
  grow(output: number): GrownTree {
    const { options, pool, executor } = this;
    const { rows: n, indices, gradient, hessian } = executor.arrays;
    const offset = output * n;
    for (let i = 0; i < n; i++) indices[i] = i;
    let g = 0;
    let h = 0;
    for (let r = offset; r < offset + n; r++) {
      g += gradient[r]!;
      h += hessian[r]!;
    }
    const built: Built[] = [];
    const splittable: GrowNode[] = [];
    let leafCount = 0;

    const finalize = (node: GrowNode): void => {
      if (node.histogram) pool.release(node.histogram);
      node.histogram = null;
      const value = options.learningRate * nodeValue(node.gradient, node.hessian, options.l2Regularization);
      built[node.id] = { kind: 'leaf', value, start: node.start, end: node.end };
      leafCount++;
    };
    const push = (node: GrowNode): void => {
      const split = this.finder.find(node.histogram!, node.end - node.start, node.gradient, node.hessian);
      if (split === null) finalize(node);
      else {
        node.split = split;
        splittable.push(node);
      }
    };

    built.push({ kind: 'leaf', value: 0, start: 0, end: n });
    const root: GrowNode = { id: 0, start: 0, end: n, gradient: g, hessian: h, depth: 0, histogram: null, split: null };
    if (n < 2 * options.minSamplesLeaf || h < MIN_HESSIAN_TO_SPLIT) finalize(root);
    else {
      root.histogram = pool.acquire();
      executor.histogram(root.histogram, 0, n, offset);
      push(root);
    }

    while (splittable.length > 0) {
      // Highest gain first; ties go to the older node (scikit-learn's heap leaves them in no fixed order).
      let pick = 0;
      for (let i = 1; i < splittable.length; i++)
        if (splittable[i]!.split!.gain > splittable[pick]!.split!.gain) pick = i;
      const node = splittable.splice(pick, 1)[0]!;
      const split = node.split!;
      const table = leftTable(split, this.binning[split.feature]!, new Uint8Array(256));
      const middle = executor.partition(node.start, node.end, split.feature, table);
      const depth = node.depth + 1;
      const left: GrowNode = {
        id: built.length,
        start: node.start,
        end: middle,
        gradient: split.gradientLeft,
        hessian: split.hessianLeft,
        depth,
        histogram: null,
        split: null,
      };
      const right: GrowNode = {
        id: built.length + 1,
        start: middle,
        end: node.end,
        gradient: split.gradientRight,
        hessian: split.hessianRight,
        depth,
        histogram: null,
        split: null,
      };
      const spec = this.binning[split.feature]!;
      if (spec.kind === 'numeric' && !spec.hasMissing) {
        // No missing value seen in training: send future ones where most training rows went (scikit-learn's rule).
        split.missingLeft = split.countLeft > split.countRight;
        table[255] = split.missingLeft ? 1 : 0;
      }
      built[node.id] = { kind: 'split', split, left: left.id, right: right.id, table };
      built.push({ kind: 'leaf', value: 0, start: 0, end: 0 }, { kind: 'leaf', value: 0, start: 0, end: 0 });
      const parentHistogram = node.histogram!;
      node.histogram = null;

      const leavesAfter = leafCount + splittable.length + 2;
      if (options.maxLeafNodes !== null && leavesAfter >= options.maxLeafNodes) {
        pool.release(parentHistogram);
        finalize(left);
        finalize(right);
        for (const other of splittable.splice(0)) finalize(other);
        break;
      }
      if (options.maxDepth !== null && depth >= options.maxDepth) {
        pool.release(parentHistogram);
        finalize(left);
        finalize(right);
        continue;
      }
      const splitLeft = left.end - left.start >= 2 * options.minSamplesLeaf;
      const splitRight = right.end - right.start >= 2 * options.minSamplesLeaf;
      if (splitLeft || splitRight) {
        const leftSmaller = left.end - left.start < right.end - right.start;
        const smaller = leftSmaller ? left : right;
        const larger = leftSmaller ? right : left;
        smaller.histogram = pool.acquire();
        executor.histogram(smaller.histogram, smaller.start, smaller.end, offset);
        subtractHistogram(parentHistogram, smaller.histogram);
        larger.histogram = parentHistogram;
      } else pool.release(parentHistogram);
      if (splitLeft) push(left);
      else finalize(left);
      if (splitRight) push(right);
      else finalize(right);
    }
    return this.assemble(built, output);
  }

  private assemble(built: readonly Built[], output: number): GrownTree {
    const count = built.length;
    const binned: BinnedTree = {
      feature: new Int32Array(count).fill(-1),
      left: new Int32Array(count),
      right: new Int32Array(count),
      value: new Float64Array(count),
      goesLeft: new Uint8Array(count * 256),
    };
    const nodes: TreeNode[] = [];
    const leaves: { start: number; end: number; value: number }[] = [];
    for (const [i, b] of built.entries()) {
      if (b.kind === 'leaf') {
        nodes.push({ kind: 'leaf', value: b.value });
        binned.value[i] = b.value;
        leaves.push({ start: b.start, end: b.end, value: b.value });
        continue;
      }
      const { split } = b;
      binned.feature[i] = split.feature;
      binned.left[i] = b.left;
      binned.right[i] = b.right;
      binned.goesLeft.set(b.table, i * 256);
      nodes.push(this.splitNode(split, b.left, b.right));
    }
    return { tree: { output, nodes }, binned, leaves };
  }

  private splitNode(split: SplitCandidate, left: number, right: number): NumericSplitNode | CategoricalSplitNode {
    const spec = this.binning[split.feature]!;
    if (spec.kind === 'categorical') {
      const leftCodes: number[] = [];
      for (const b of split.leftBins) {
        if (b < spec.pooledFrom) leftCodes.push(b);
        else for (let code = spec.pooledFrom; code < spec.cardinality; code++) leftCodes.push(code);
      }
      return { kind: 'categorical', feature: split.feature, leftCodes, left, right };
    }
    if (split.bin === spec.valueBins - 1) {
      // The last value bin as split point: every value left, missing values right. No finite float32 threshold lies
      // above every finite value, but x < -FLOAT32_MAX holds for none: written the other way round (missing values
      // left, values right), the split routes every input as the bins did.
      return {
        kind: 'numeric',
        feature: split.feature,
        threshold: -FLOAT32_MAX,
        missingLeft: true,
        left: right,
        right: left,
      };
    }
    const threshold = spec.thresholds[split.bin]!;
    return { kind: 'numeric', feature: split.feature, threshold, missingLeft: split.missingLeft, left, right };
  }
}

/** Adds the tree's leaf values to `raw[offset + r]` for the binned rows r (row-major bins). */
export function addBinnedTree(tree: BinnedTree, rows: BinnedRows, raw: Float64Array, offset: number): void {
  const { bins, features } = rows;
  const { feature, left, right, value, goesLeft } = tree;
  for (let r = 0; r < rows.rows; r++) {
    let node = 0;
    let f = feature[0]!;
    while (f >= 0) {
      node = goesLeft[(node << 8) | bins[r * features + f]!] === 1 ? left[node]! : right[node]!;
      f = feature[node]!;
    }
    raw[offset + r] = raw[offset + r]! + value[node]!;
  }
}
