/**
 * Gradient-boosted trees as the attributes of the classic `ai.onnx.ml` tree ensembles (TreeEnsembleClassifier and
 * TreeEnsembleRegressor, ai.onnx.ml opset 3).
 *
 * Mapping:
 * - Tree `t` of the model is ensemble tree `t`; its node `i` keeps node id `i`, so an exported graph can be read
 *   against the model's JSON. Nodes are listed tree by tree, root first: onnxruntime takes the first node of each
 *   tree id as its root.
 * - Numeric split `x < threshold → left` is BRANCH_LT with the true branch on the left; NaN follows `missingLeft`
 *   through `nodes_missing_value_tracks_true` (onnxruntime sends NaN to the true branch when it is 1, else NaN fails
 *   `<` and goes to the false branch).
 * - Categorical split with `leftCodes` [c0, c1, ...]: the classic ensemble has no set membership, so it becomes a
 *   chain of BRANCH_EQ nodes, one per code, every one's true branch on the SAME left child and its false branch on the
 *   next link; the last link's false branch is the right child. The first link keeps the split's node id, the others
 *   get ids after the tree's last node. onnxruntime accepts the shared child (it is how LightGBM's converter encodes
 *   categorical sets, and it folds such chains into a set-membership node itself). A split with no left codes compares
 *   with -1, which no code equals, so everything goes right.
 * - Leaf value: one weight on the tree's output (class id / target id).
 * - Precision: thresholds, leaf weights and base values go in the opset-3 `*_as_tensor` attributes as DOUBLE tensors,
 *   and export.ts feeds the ensemble a double matrix holding float32 values (the trainers' Float32Array features).
 *   onnxruntime then compares and accumulates in double: `x < threshold` is exactly the trainer's float32-value vs
 *   float64-threshold comparison (no threshold rounding), and the sum of hundreds of leaves loses nothing to
 *   float32 (only the operator's float32 output is rounded). With float inputs onnxruntime insists on float
 *   attributes and sums in float32, which cost 2e-5 on regression scores in the hundreds.
 */
import type { GradientBoostedTreesModel, TreeNode } from '../types.js';
import { OnnxExportError } from './errors.js';
import type { AttributeValue } from './graph.js';

/** What a tree input column holds: export.ts feeds raw numbers for numeric features, vocabulary codes otherwise. */
export type TreeInputKind =
  | { readonly kind: 'numeric' }
  | { readonly kind: 'categorical'; /** vocabulary length + 1 (the unknown code) */ readonly cardinality: number };

/** Attribute arrays shared by both ensemble operators (their leaf arrays differ only in the prefix). */
interface EnsembleArrays {
  readonly nodes_treeids: number[];
  readonly nodes_nodeids: number[];
  readonly nodes_featureids: number[];
  readonly nodes_modes: string[];
  readonly nodes_values: number[];
  readonly nodes_truenodeids: number[];
  readonly nodes_falsenodeids: number[];
  readonly nodes_missing_value_tracks_true: number[];
  readonly leaf_treeids: number[];
  readonly leaf_nodeids: number[];
  readonly leaf_ids: number[];
  readonly leaf_weights: number[];
}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new OnnxExportError(message);
}

function validateTree(nodes: readonly TreeNode[], t: number, features: readonly TreeInputKind[]): void {
  check(nodes.length > 0, `tree ${t} has no nodes`);
  // Every node reachable once from the root: the ensemble needs a tree, not a graph with cycles or shared nodes.
  const seen = new Uint8Array(nodes.length);
  const stack = [0];
  while (stack.length > 0) {
    const i = stack.pop()!;
    check(Number.isInteger(i) && i >= 0 && i < nodes.length, `tree ${t}: child index ${i} out of range`);
    check(seen[i] === 0, `tree ${t}: node ${i} is reached twice (the nodes do not form a tree)`);
    seen[i] = 1;
    const node = nodes[i]!;
    if (node.kind === 'leaf') {
      check(Number.isFinite(node.value), `tree ${t}, node ${i}: leaf value ${node.value} is not finite`);
      continue;
    }
    const feature = features[node.feature];
    check(feature !== undefined, `tree ${t}, node ${i}: feature ${node.feature} does not exist`);
    check(
      feature.kind === node.kind,
      `tree ${t}, node ${i}: ${node.kind} split on ${feature.kind} feature ${node.feature}`,
    );
    if (node.kind === 'numeric') {
      check(!Number.isNaN(node.threshold), `tree ${t}, node ${i}: threshold is NaN`);
    } else if (feature.kind === 'categorical') {
      for (const code of node.leftCodes) {
        check(
          Number.isInteger(code) && code >= 0 && code < feature.cardinality,
          `tree ${t}, node ${i}: category code ${code} is outside 0..${feature.cardinality - 1}`,
        );
      }
    }
    stack.push(node.right, node.left);
  }
}

/**
 * The ensemble's node and leaf arrays for `model`. `features` describes the ensemble's input columns (the transform's
 * features, in order). A model without trees gets one single-leaf tree of weight 0: onnxruntime rejects an ensemble
 * without nodes, and a zero leaf leaves the scores at the base values.
 */
export function ensembleArrays(model: GradientBoostedTreesModel, features: readonly TreeInputKind[]): EnsembleArrays {
  const a: EnsembleArrays = {
    nodes_treeids: [],
    nodes_nodeids: [],
    nodes_featureids: [],
    nodes_modes: [],
    nodes_values: [],
    nodes_truenodeids: [],
    nodes_falsenodeids: [],
    nodes_missing_value_tracks_true: [],
    leaf_treeids: [],
    leaf_nodeids: [],
    leaf_ids: [],
    leaf_weights: [],
  };
  const push = (
    t: number,
    id: number,
    mode: string,
    feature: number,
    value: number,
    yes: number,
    no: number,
    m = 0,
  ) => {
    a.nodes_treeids.push(t);
    a.nodes_nodeids.push(id);
    a.nodes_featureids.push(feature);
    a.nodes_modes.push(mode);
    a.nodes_values.push(value);
    a.nodes_truenodeids.push(yes);
    a.nodes_falsenodeids.push(no);
    a.nodes_missing_value_tracks_true.push(m);
  };
  const trees = model.trees.length > 0 ? model.trees : [{ output: 0, nodes: [{ kind: 'leaf', value: 0 } as const] }];
  trees.forEach((tree, t) => {
    validateTree(tree.nodes, t, features);
    const extra: [id: number, code: number, yes: number, no: number, feature: number][] = [];
    let nextId = tree.nodes.length;
    tree.nodes.forEach((node, i) => {
      if (node.kind === 'leaf') {
        push(t, i, 'LEAF', 0, 0, 0, 0);
        a.leaf_treeids.push(t);
        a.leaf_nodeids.push(i);
        a.leaf_ids.push(tree.output);
        a.leaf_weights.push(node.value);
      } else if (node.kind === 'numeric') {
        push(t, i, 'BRANCH_LT', node.feature, node.threshold, node.left, node.right, node.missingLeft ? 1 : 0);
      } else {
        const codes = node.leftCodes.length > 0 ? node.leftCodes : [-1];
        // Link k (k >= 1) gets a fresh id; link k's false branch is link k+1, the last one's is the right child.
        const ids = codes.map((_, k) => (k === 0 ? i : nextId++));
        codes.forEach((code, k) => {
          const no = k + 1 < ids.length ? ids[k + 1]! : node.right;
          if (k === 0) push(t, i, 'BRANCH_EQ', node.feature, code, node.left, no);
          else extra.push([ids[k]!, code, node.left, no, node.feature]);
        });
      }
    });
    for (const [id, code, yes, no, feature] of extra) push(t, id, 'BRANCH_EQ', feature, code, yes, no);
  });
  return a;
}

/** Attributes of `TreeEnsembleClassifier` (SOFTMAX for multiclass, LOGISTIC with one score for binary). */
export function classifierAttributes(
  model: GradientBoostedTreesModel,
  features: readonly TreeInputKind[],
  classes: number,
): Record<string, AttributeValue> {
  const a = ensembleArrays(model, features);
  return {
    ...nodeAttributes(a),
    // Binary: every leaf weighs on class 0 only and there are two class labels. onnxruntime then treats the ensemble
    // as one logit s and returns [1 - sigmoid(s), sigmoid(s)] with LOGISTIC (checked against a hand-computed
    // sigmoid in the tests, for all-positive and mixed-sign leaves).
    classlabels_int64s: { ints: Array.from({ length: classes }, (_, k) => k) },
    class_treeids: { ints: a.leaf_treeids },
    class_nodeids: { ints: a.leaf_nodeids },
    class_ids: { ints: a.leaf_ids },
    class_weights_as_tensor: { doubles: a.leaf_weights },
    base_values_as_tensor: { doubles: [...model.baseScores] },
    post_transform: { string: classes === 2 ? 'LOGISTIC' : 'SOFTMAX' },
  };
}

/** Attributes of `TreeEnsembleRegressor` (one target, sum of the leaves plus the base score). */
export function regressorAttributes(
  model: GradientBoostedTreesModel,
  features: readonly TreeInputKind[],
): Record<string, AttributeValue> {
  const a = ensembleArrays(model, features);
  return {
    ...nodeAttributes(a),
    n_targets: { int: 1 },
    aggregate_function: { string: 'SUM' },
    post_transform: { string: 'NONE' },
    target_treeids: { ints: a.leaf_treeids },
    target_nodeids: { ints: a.leaf_nodeids },
    target_ids: { ints: a.leaf_ids },
    target_weights_as_tensor: { doubles: a.leaf_weights },
    base_values_as_tensor: { doubles: [...model.baseScores] },
  };
}

function nodeAttributes(a: EnsembleArrays): Record<string, AttributeValue> {
  return {
    nodes_treeids: { ints: a.nodes_treeids },
    nodes_nodeids: { ints: a.nodes_nodeids },
    nodes_featureids: { ints: a.nodes_featureids },
    nodes_modes: { strings: a.nodes_modes },
    nodes_values_as_tensor: { doubles: a.nodes_values },
    nodes_truenodeids: { ints: a.nodes_truenodeids },
    nodes_falsenodeids: { ints: a.nodes_falsenodeids },
    nodes_missing_value_tracks_true: { ints: a.nodes_missing_value_tracks_true },
  };
}
