/**
 * Exports a trained model together with its fitted transform as ONE ONNX graph, from raw feature values to the
 * prediction (ARCHITECTURE.md, principle 6): serving feeds what the user sent and never re-implements preprocessing.
 *
 * Graph contract (format 1):
 * - Inputs: one per feature, named by the feature's name, shape [N, 1] with a dynamic batch N, in transform order.
 *   Numeric features are tensor(double): the transform's raw values are DOUBLEs, so the graph sees exactly what
 *   training saw (float32 inputs would round, e.g., epoch seconds to 128 s steps). Categorical features are
 *   tensor(string).
 * - Missing values: numeric NaN (±Infinity is missing too, as in `applyTransform`); categorical "" (the empty string).
 *   The serving layer maps null/absent to these ({@link toOnnxFeeds} in runtime.ts). Because "" means missing, a
 *   vocabulary that contains "" cannot be exported (see {@link exportOnnx}).
 * - Outputs, classification: `label` int64 [N], the index into `transform.label.classes` of the most probable class
 *   (first on ties; binary: 1 iff p > 0.5), and `probabilities` float [N, K] (binary: K = 2, [1 - p, p]).
 *   Regression: `prediction` double [N, 1] (double so that large targets keep the trainer's precision).
 *
 * Linear models and the MLP get the transform exactly as `applyTransform` defines it, computed in double as the
 * trainers do: numeric Where(IsNaN ∨ IsInf, imputeValue, x), then (x - mean) / std; categorical LabelEncoder
 * (vocabulary → index, everything else → unknownIndex). The one-hot columns are never materialized: the first
 * layer's product with a one-hot block is a Gather of the code into that block's weights. Trees get raw numeric values rounded to float32 (±Infinity → NaN,
 * so the ensemble's missing-value rule applies) and the vocabulary code, like `TreeDataset`, carried as double.
 */
import type { ModelSignature, SignatureField } from '../../schema/registry.js';
import { columnNames, type FittedFeature, type FittedTransform } from '../../data/transform.js';
import type { GradientBoostedTreesModel, LinearModel, MlpModel, TrainedModel } from '../types.js';
import { OnnxExportError } from './errors.js';
import { DATA_TYPE, GraphBuilder, ML_DOMAIN } from './graph.js';
import { classifierAttributes, regressorAttributes, type TreeInputKind } from './trees.js';

/** Default-domain opset: Softmax/ArgMax/Where with their current semantics; IR version 8 is the one it needs. */
export const ONNX_OPSET = 17;
/**
 * `ai.onnx.ml` opset 3: LabelEncoder-2 (string keys → int64) and TreeEnsemble{Classifier,Regressor}-3. Opset 5
 * removed the classic tree ensembles (onnxruntime 1.30 rejects them there), and nothing here needs 4.
 */
export const ONNX_ML_OPSET = 3;
export const ONNX_IR_VERSION = 8;
/** Version of the graph contract in the module comment; stored in the model's metadata. */
export const ONNX_FORMAT_VERSION = '1';

export const OUTPUT_LABEL = 'label';
export const OUTPUT_PROBABILITIES = 'probabilities';
export const OUTPUT_PREDICTION = 'prediction';

/** Keys of the model's `metadata_props`. */
export const ONNX_METADATA = {
  format: 'temporal-mlops.format',
  modelKind: 'temporal-mlops.model-kind',
  task: 'temporal-mlops.task',
  label: 'temporal-mlops.label',
  /** JSON array of the label's classes (classification only): `label` output k means classes[k]. */
  classes: 'temporal-mlops.classes',
} as const;

export interface OnnxExportOptions {
  /** `producer_name`; default `temporal-mlops`. */
  readonly producer?: string;
  /** `producer_version`; default empty. */
  readonly producerVersion?: string;
  /** The graph's name; default `<kind>-<task>`. */
  readonly modelName?: string;
}

/** A serialized model and the signature serving validates requests against. */
export interface OnnxExport {
  readonly bytes: Uint8Array;
  readonly signature: ModelSignature;
}

const BATCH = 'N';
const DOUBLE = DATA_TYPE.double;
const FLOAT = DATA_TYPE.float;

/**
 * Builds the graph for `model` and `transform`. Deterministic: the same inputs give the same bytes (names come from
 * counters, attributes are sorted, metadata is sorted, no timestamps).
 *
 * @throws OnnxExportError when the model's shapes do not fit the transform or the task, a parameter is not finite,
 *   two features share a name (or use an output's name), or a vocabulary contains "" (reserved for missing: map empty
 *   strings to NULL in the feature expression, e.g. `NULLIF(x, '')`).
 */
export function exportOnnx(
  model: TrainedModel,
  transform: FittedTransform,
  options: OnnxExportOptions = {},
): OnnxExport {
  const signature = onnxSignature(model, transform);
  const classes = classCount(model, transform);
  const g = new GraphBuilder();
  // Inputs first: internal names are fresh (`stem__n`) and skip every name already taken; output names have no `__n`
  // suffix, and onnxSignature has checked that no feature takes one.
  const inputs = transform.features.map((f) => g.input(f.name, f.kind === 'numeric' ? 'double' : 'string', [BATCH, 1]));

  if (model.kind === 'gbt') {
    treesGraph(g, model, transform, inputs, classes);
  } else {
    const scores =
      model.kind === 'linear' ? linearScores(g, model, transform, inputs) : mlpScores(g, model, transform, inputs);
    head(g, model.task, scores);
  }
  for (const output of signature.outputs) {
    g.output(
      output.name,
      output.type as 'float' | 'double' | 'int64',
      (output.shape ?? []).map((d) => d ?? BATCH),
    );
  }

  const metadata: Record<string, string> = {
    [ONNX_METADATA.format]: ONNX_FORMAT_VERSION,
    [ONNX_METADATA.modelKind]: model.kind,
    [ONNX_METADATA.task]: model.task,
    [ONNX_METADATA.label]: transform.label.name,
  };
  if (transform.label.classes !== undefined) metadata[ONNX_METADATA.classes] = JSON.stringify(transform.label.classes);
  const bytes = g.encode({
    producerName: options.producer ?? 'temporal-mlops',
    producerVersion: options.producerVersion ?? '',
    graphName: options.modelName ?? `${model.kind}-${model.task}`,
    docString: `${model.kind} ${model.task} model of ${transform.label.name} from raw features (numeric: double, NaN = missing; categorical: string, "" = missing)`,
    metadata,
    irVersion: ONNX_IR_VERSION,
    opsets: [
      { domain: '', version: ONNX_OPSET },
      { domain: ML_DOMAIN, version: ONNX_ML_OPSET },
    ],
  });
  return { bytes, signature };
}

/**
 * The signature {@link exportOnnx} gives the graph of `model` over `transform` (inputs in transform order), without
 * building it. Validates what the signature depends on (names, task, class count).
 */
export function onnxSignature(model: TrainedModel, transform: FittedTransform): ModelSignature {
  validateTransform(transform);
  if (model.task !== transform.label.task) {
    throw new OnnxExportError(`the model's task is ${model.task} but the transform's label is ${transform.label.task}`);
  }
  const inputs: SignatureField[] = transform.features.map((f) => ({
    name: f.name,
    type: f.kind === 'numeric' ? 'double' : 'string',
    shape: [null, 1],
  }));
  const outputs: SignatureField[] =
    model.task === 'regression'
      ? [{ name: OUTPUT_PREDICTION, type: 'double', shape: [null, 1] }]
      : [
          { name: OUTPUT_LABEL, type: 'int64', shape: [null] },
          { name: OUTPUT_PROBABILITIES, type: 'float', shape: [null, classCount(model, transform)] },
        ];
  const outputNames = new Set(outputs.map((o) => o.name));
  for (const input of inputs) {
    if (outputNames.has(input.name)) {
      throw new OnnxExportError(`feature ${input.name} has the name of a graph output; rename the feature`);
    }
  }
  return { inputs, outputs };
}

function validateTransform(transform: FittedTransform): void {
  if (transform.features.length === 0) throw new OnnxExportError('the transform has no features');
  const names = new Set<string>();
  for (const f of transform.features) {
    if (f.name === '') throw new OnnxExportError('a feature has an empty name');
    if (names.has(f.name)) throw new OnnxExportError(`two features are named ${f.name}`);
    names.add(f.name);
    if (f.kind === 'numeric') {
      const { imputeValue, mean, std } = f.numeric;
      if (![imputeValue, mean, std].every(Number.isFinite) || std === 0) {
        throw new OnnxExportError(`feature ${f.name}: imputeValue, mean and std must be finite and std non-zero`);
      }
    } else {
      const { vocabulary, unknownIndex } = f.categorical;
      if (unknownIndex !== vocabulary.length) {
        throw new OnnxExportError(`feature ${f.name}: unknownIndex must equal the vocabulary's length`);
      }
      if (vocabulary.includes('')) {
        throw new OnnxExportError(
          `feature ${f.name}: the vocabulary contains the empty string, which the graph reserves for missing values; ` +
            `map empty strings to NULL in the feature expression (NULLIF(x, ''))`,
        );
      }
      if (new Set(vocabulary).size !== vocabulary.length) {
        throw new OnnxExportError(`feature ${f.name}: the vocabulary has duplicates`);
      }
    }
  }
}

/** K: the number of probability columns (classification) or 1 (regression), checked against the model's shape. */
function classCount(model: TrainedModel, transform: FittedTransform): number {
  const outputs =
    model.kind === 'linear'
      ? model.weights.length
      : model.kind === 'mlp'
        ? (model.layers.at(-1)?.weights.length ?? 0)
        : model.baseScores.length;
  if (model.task !== 'multiclass') {
    if (outputs !== 1)
      throw new OnnxExportError(`a ${model.task} ${model.kind} model must have 1 output, not ${outputs}`);
    return model.task === 'binary' ? 2 : 1;
  }
  if (outputs < 2) throw new OnnxExportError(`a multiclass model needs at least 2 outputs, not ${outputs}`);
  const declared = transform.label.classes?.length;
  if (declared !== undefined && declared !== outputs) {
    throw new OnnxExportError(`the model has ${outputs} outputs but the label has ${declared} classes`);
  }
  return outputs;
}

function assertFinite(values: readonly number[], what: string): void {
  for (const v of values) if (!Number.isFinite(v)) throw new OnnxExportError(`${what} has a non-finite value ${v}`);
}

/** LabelEncoder: a vocabulary value → its index; anything else (unseen, and "" = missing) → unknownIndex. */
function vocabularyCode(g: GraphBuilder, feature: FittedFeature & { kind: 'categorical' }, input: string): string {
  const { vocabulary, unknownIndex } = feature.categorical;
  // onnxruntime rejects a LabelEncoder without keys; with an empty vocabulary every value is unknown (index 0), and
  // mapping "" (missing) to 0 as well keeps that true.
  const keys = vocabulary.length > 0 ? vocabulary : [''];
  return g.op(
    'LabelEncoder',
    [input],
    {
      keys_strings: { strings: keys },
      values_int64s: { ints: keys.map((_, i) => (vocabulary.length > 0 ? i : 0)) },
      default_int64: { int: unknownIndex },
    },
    ML_DOMAIN,
  );
}

/** A value and its number of columns. */
interface Matrix {
  readonly name: string;
  readonly width: number;
}

/**
 * The first affine layer over the transform, `x · weightsᵀ + biases` with x the [N, D] matrix of `applyTransform`
 * (columns in `columnNames` order), computed without building x: the numeric columns go through one Gemm, and each
 * categorical feature's one-hot block is replaced by a Gather of its code into that block's weights (the block holds
 * a single 1, so its product is one weight column). The one-hot matrix would be mostly zeros (482 columns for the
 * flights model), and building and multiplying it was most of a linear model's scoring time.
 */
function affineOverTransform(
  g: GraphBuilder,
  transform: FittedTransform,
  inputs: readonly string[],
  weights: readonly (readonly number[])[],
  biases: readonly number[],
): Matrix {
  const width = columnNames(transform).length;
  checkDense(weights, biases, width);
  const outputs = weights.length;
  const numericColumns: string[] = [];
  const numericOffsets: number[] = [];
  const terms: string[] = [];
  let offset = 0;
  transform.features.forEach((feature, f) => {
    const x = inputs[f]!;
    if (feature.kind === 'numeric') {
      const { imputeValue, mean, std } = feature.numeric;
      const missing = g.op('Or', [g.op('IsNaN', [x]), g.op('IsInf', [x])]);
      const imputed = g.op('Where', [missing, g.constant('impute', 'double', [imputeValue]), x]);
      // Sub then Div, not Mul by 1/std: bit for bit what applyTransform computes. mean 0 / std 1 (scaling 'none')
      // are exact no-ops and are left out.
      const centered = mean === 0 ? imputed : g.op('Sub', [imputed, g.constant('mean', 'double', [mean])]);
      numericColumns.push(std === 1 ? centered : g.op('Div', [centered, g.constant('std', 'double', [std])]));
      numericOffsets.push(offset);
      offset += 1;
      return;
    }
    const blockWidth = feature.categorical.vocabulary.length + 1;
    // [V+1, K]: row c holds the weights of the one-hot column of code c, for every output.
    const block: number[] = [];
    for (let c = 0; c < blockWidth; c++) for (const row of weights) block.push(row[offset + c]!);
    const table = g.constant('block_weights', 'double', block, [blockWidth, outputs]);
    const code = g.op('Reshape', [vocabularyCode(g, feature, x), g.constant('flat', 'int64', [-1])]);
    terms.push(g.op('Gather', [table, code], { axis: { int: 0 } }));
    offset += blockWidth;
  });
  const b = g.constant('biases', 'double', [...biases]);
  if (numericColumns.length > 0) {
    const x = numericColumns.length === 1 ? numericColumns[0]! : g.op('Concat', numericColumns, { axis: { int: 1 } });
    const w = weights.flatMap((row) => numericOffsets.map((o) => row[o]!));
    const numericWeights = g.constant('numeric_weights', 'double', w, [outputs, numericColumns.length]);
    terms.unshift(g.op('Gemm', [x, numericWeights, b], { transB: { int: 1 } }));
  } else {
    terms.push(g.op('Expand', [b, g.constant('bias_shape', 'int64', [1, outputs])]));
  }
  return { name: terms.length === 1 ? terms[0]! : g.op('Sum', terms), width: outputs };
}

function checkDense(weights: readonly (readonly number[])[], biases: readonly number[], inputs: number): void {
  weights.forEach((row, k) => {
    if (row.length !== inputs) {
      throw new OnnxExportError(`weight row ${k} has ${row.length} inputs; ${inputs} expected`);
    }
    assertFinite(row, `weight row ${k}`);
  });
  if (biases.length !== weights.length) {
    throw new OnnxExportError(`${biases.length} biases for ${weights.length} outputs`);
  }
  assertFinite(biases, 'the biases');
}

/** Gemm with B transposed: the models store weights[output][input]. */
function dense(g: GraphBuilder, x: Matrix, weights: readonly (readonly number[])[], biases: readonly number[]): Matrix {
  checkDense(weights, biases, x.width);
  const w = g.constant('weights', 'double', weights.flat(), [weights.length, x.width]);
  const b = g.constant('biases', 'double', [...biases]);
  return { name: g.op('Gemm', [x.name, w, b], { transB: { int: 1 } }), width: weights.length };
}

function linearScores(
  g: GraphBuilder,
  model: LinearModel,
  transform: FittedTransform,
  inputs: readonly string[],
): string {
  return affineOverTransform(g, transform, inputs, model.weights, model.intercepts).name;
}

function mlpScores(g: GraphBuilder, model: MlpModel, transform: FittedTransform, inputs: readonly string[]): string {
  if (model.layers.length === 0) throw new OnnxExportError('the MLP has no layers');
  let h: Matrix | undefined;
  model.layers.forEach((layer, l) => {
    try {
      h =
        h === undefined
          ? affineOverTransform(g, transform, inputs, layer.weights, layer.biases)
          : dense(g, h, layer.weights, layer.biases);
    } catch (error) {
      if (error instanceof OnnxExportError) throw new OnnxExportError(`layer ${l}: ${error.message}`);
      throw error;
    }
    if (layer.activation === 'relu') h = { name: g.op('Relu', [h.name]), width: h.width };
    else if (layer.activation === 'tanh') h = { name: g.op('Tanh', [h.name]), width: h.width };
  });
  return h!.name;
}

/** Scores [N, K] (double) → the task's outputs. */
function head(g: GraphBuilder, task: LinearModel['task'], scores: string): void {
  if (task === 'regression') {
    g.node('Identity', [scores], {}, { outputs: [OUTPUT_PREDICTION] });
    return;
  }
  let probabilities: string;
  if (task === 'binary') {
    const p = g.op('Sigmoid', [scores]);
    const q = g.op('Sub', [g.constant('one', 'double', [1]), p]);
    probabilities = g.op('Concat', [q, p], { axis: { int: 1 } });
  } else {
    probabilities = g.op('Softmax', [scores], { axis: { int: 1 } });
  }
  // The label from the double probabilities, before they are rounded to float32 for the output.
  g.node('ArgMax', [probabilities], { axis: { int: 1 }, keepdims: { int: 0 } }, { outputs: [OUTPUT_LABEL] });
  g.node('Cast', [probabilities], { to: { int: FLOAT } }, { outputs: [OUTPUT_PROBABILITIES] });
}

function treesGraph(
  g: GraphBuilder,
  model: GradientBoostedTreesModel,
  transform: FittedTransform,
  inputs: readonly string[],
  classes: number,
): void {
  assertFinite(model.baseScores, 'baseScores');
  for (const tree of model.trees) {
    if (!Number.isInteger(tree.output) || tree.output < 0 || tree.output >= model.baseScores.length) {
      throw new OnnxExportError(`a tree has output ${tree.output}; the model has ${model.baseScores.length}`);
    }
  }
  const kinds: TreeInputKind[] = transform.features.map((f) =>
    f.kind === 'numeric' ? { kind: 'numeric' } : { kind: 'categorical', cardinality: f.categorical.unknownIndex + 1 },
  );
  const columns = transform.features.map((feature, f) => {
    const x = inputs[f]!;
    if (feature.kind === 'categorical') return g.op('Cast', [vocabularyCode(g, feature, x)], { to: { int: DOUBLE } });
    // ±Infinity is missing, like null and NaN. Double → float32 rounds to nearest, as Math.fround and Float32Array do
    // for the trainers' TreeDataset; back to double because the ensemble runs in double (see trees.ts), where a
    // float32 value compares with a float64 threshold exactly as it does in the trainer.
    const finite = g.op('Where', [g.op('IsInf', [x]), g.constant('nan', 'double', [Number.NaN]), x]);
    return g.op('Cast', [g.op('Cast', [finite], { to: { int: FLOAT } })], { to: { int: DOUBLE } });
  });
  const x = columns.length === 1 ? columns[0]! : g.op('Concat', columns, { axis: { int: 1 } });
  if (model.task === 'regression') {
    const [score] = g.node('TreeEnsembleRegressor', [x], regressorAttributes(model, kinds), { domain: ML_DOMAIN });
    g.node('Cast', [score!], { to: { int: DOUBLE } }, { outputs: [OUTPUT_PREDICTION] });
    return;
  }
  // The ensemble's own label output is left unused: `label` is the ArgMax of the probabilities for every model
  // kind (onnxruntime's binary label compares the raw score with 0.5 when all leaves are positive, not p with 0.5).
  g.node('TreeEnsembleClassifier', [x], classifierAttributes(model, kinds, classes), {
    domain: ML_DOMAIN,
    outputs: [null, OUTPUT_PROBABILITIES],
  });
  g.node('ArgMax', [OUTPUT_PROBABILITIES], { axis: { int: 1 }, keepdims: { int: 0 } }, { outputs: [OUTPUT_LABEL] });
}
