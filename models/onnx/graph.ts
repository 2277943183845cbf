/**
 * A small, deterministic builder for ONNX graphs on top of `onnx-proto`'s generated protobuf messages: named values,
 * constant initializers, nodes with typed attributes, and the model envelope. It knows nothing about models or
 * transforms (export.ts does); it only guarantees that the same sequence of calls encodes to the same bytes.
 */
import onnxProto from 'onnx-proto';

// onnx-proto is a CommonJS module whose `module.exports` is the protobufjs root: under ESM its default export is that
// root, and the `onnx` namespace hangs off it (a named import would need Node's CJS named-export detection, which
// does not see through protobufjs's generated code).
const { onnx } = onnxProto;
type AttributeProto = onnxProto.onnx.IAttributeProto;
type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

/** ONNX element types this project uses, by their ONNX name (the name `ModelSignature` fields carry). */
export type ElementType = 'float' | 'double' | 'int64' | 'string' | 'bool';

/** ONNX's `TensorProto.DataType` code of each element type (Cast's `to` takes these). */
export const DATA_TYPE: Readonly<Record<ElementType, number>> = {
  float: onnx.TensorProto.DataType.FLOAT,
  double: onnx.TensorProto.DataType.DOUBLE,
  int64: onnx.TensorProto.DataType.INT64,
  string: onnx.TensorProto.DataType.STRING,
  bool: onnx.TensorProto.DataType.BOOL,
};

/** A dimension: a fixed size, or a symbolic name for a dynamic axis (the batch). */
export type Dimension = number | string;

/** An attribute value; arrays must say which element type they hold, since `[]` alone is ambiguous. */
export type AttributeValue =
  | { readonly int: number }
  | { readonly float: number }
  | { readonly string: string }
  | { readonly ints: readonly number[] }
  | { readonly floats: readonly number[] }
  | { readonly strings: readonly string[] }
  /** A 1-D double tensor attribute (the `*_as_tensor` attributes of the tree ensembles). */
  | { readonly doubles: readonly number[] };

/** The domain of the classic ML operators (LabelEncoder, TreeEnsemble*). */
export const ML_DOMAIN = 'ai.onnx.ml';

const utf8 = new TextEncoder();

function attribute(name: string, value: AttributeValue): AttributeProto {
  const type = onnx.AttributeProto.AttributeType;
  if ('int' in value) return { name, type: type.INT, i: value.int };
  if ('float' in value) return { name, type: type.FLOAT, f: value.float };
  if ('string' in value) return { name, type: type.STRING, s: utf8.encode(value.string) };
  if ('ints' in value) return { name, type: type.INTS, ints: [...value.ints] };
  if ('floats' in value) return { name, type: type.FLOATS, floats: [...value.floats] };
  if ('doubles' in value) {
    const raw = littleEndian(new Float64Array(value.doubles));
    return { name, type: type.TENSOR, t: { dataType: DATA_TYPE.double, dims: [value.doubles.length], rawData: raw } };
  }
  return { name, type: type.STRINGS, strings: value.strings.map((s) => utf8.encode(s)) };
}

function valueInfo(name: string, type: ElementType, shape: readonly Dimension[]): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: DATA_TYPE[type],
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/** Little-endian bytes of a typed array (raw_data is little-endian whatever the host's byte order). */
function littleEndian(values: Float32Array | Float64Array | BigInt64Array): Uint8Array {
  const out = new Uint8Array(values.length * values.BYTES_PER_ELEMENT);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) {
    if (values instanceof Float32Array) view.setFloat32(i * 4, values[i]!, true);
    else if (values instanceof Float64Array) view.setFloat64(i * 8, values[i]!, true);
    else view.setBigInt64(i * 8, values[i]!, true);
  }
  return out;
}

/** Options of {@link GraphBuilder.encode}. */
export interface ModelEnvelope {
  readonly producerName: string;
  readonly producerVersion: string;
  readonly graphName: string;
  readonly docString?: string;
  /** Stored as `metadata_props`, sorted by key so that the bytes do not depend on insertion order. */
  readonly metadata?: Readonly<Record<string, string>>;
  readonly irVersion: number;
  readonly opsets: readonly { readonly domain: string; readonly version: number }[];
}

/**
 * Accumulates one graph. Value names are unique: {@link fresh} derives them from a readable stem plus a counter, so
 * two builders fed the same calls produce the same names, and so the same bytes.
 */
export class GraphBuilder {
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly used = new Set<string>();
  private counter = 0;

  /** Reserves `name` exactly (graph inputs and outputs keep the names callers feed and fetch). */
  reserve(name: string): string {
    if (this.used.has(name)) throw new Error(`ONNX value name ${name} is used twice`);
    this.used.add(name);
    return name;
  }

  /** A new unique internal name. */
  fresh(stem: string): string {
    let name: string;
    do name = `${stem}__${this.counter++}`;
    while (this.used.has(name));
    this.used.add(name);
    return name;
  }

  input(name: string, type: ElementType, shape: readonly Dimension[]): string {
    this.inputs.push(valueInfo(this.reserve(name), type, shape));
    return name;
  }

  /** Declares `value` (already produced by a node) as a graph output. */
  output(value: string, type: ElementType, shape: readonly Dimension[]): void {
    this.outputs.push(valueInfo(value, type, shape));
  }

  /** A constant tensor; `shape` defaults to a vector of the values' length. */
  constant(
    stem: string,
    type: 'float' | 'double' | 'int64',
    values: readonly number[],
    shape: readonly number[] = [values.length],
  ): string {
    const size = shape.reduce((a, b) => a * b, 1);
    if (size !== values.length) throw new Error(`constant ${stem}: ${values.length} values for shape [${shape}]`);
    const raw =
      type === 'float'
        ? new Float32Array(values)
        : type === 'double'
          ? new Float64Array(values)
          : BigInt64Array.from(values, (v) => BigInt(v));
    const name = this.fresh(stem);
    this.initializers.push({ name, dataType: DATA_TYPE[type], dims: [...shape], rawData: littleEndian(raw) });
    return name;
  }

  /**
   * Adds a node and returns its output names. `outputs` is the number of outputs to create (named from the op), or
   * one entry per output: a name to reserve as it is (graph outputs), or null for a fresh one.
   */
  node(
    opType: string,
    inputs: readonly string[],
    attributes: Readonly<Record<string, AttributeValue>> = {},
    options: { readonly domain?: string; readonly outputs?: number | readonly (string | null)[] } = {},
  ): string[] {
    const spec = options.outputs ?? 1;
    const outputs =
      typeof spec === 'number'
        ? Array.from({ length: spec }, () => this.fresh(opType.toLowerCase()))
        : spec.map((name) => (name === null ? this.fresh(opType.toLowerCase()) : this.reserve(name)));
    this.nodes.push({
      name: this.fresh(`${opType}_node`),
      opType,
      domain: options.domain ?? '',
      input: [...inputs],
      output: outputs,
      // Sorted by name: the encoding must not depend on the order an object literal listed them in.
      attribute: Object.keys(attributes)
        .sort()
        .map((key) => attribute(key, attributes[key]!)),
    });
    return outputs;
  }

  /** A node with exactly one output. */
  op(
    opType: string,
    inputs: readonly string[],
    attributes: Readonly<Record<string, AttributeValue>> = {},
    domain?: string,
  ): string {
    return this.node(opType, inputs, attributes, domain === undefined ? {} : { domain })[0]!;
  }

  /** Serialized `ModelProto`. */
  encode(envelope: ModelEnvelope): Uint8Array {
    const metadata = Object.entries(envelope.metadata ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const model = onnx.ModelProto.create({
      irVersion: envelope.irVersion,
      producerName: envelope.producerName,
      producerVersion: envelope.producerVersion,
      docString: envelope.docString ?? '',
      opsetImport: envelope.opsets.map((o) => ({ domain: o.domain, version: o.version })),
      metadataProps: metadata.map(([key, value]) => ({ key, value })),
      graph: {
        name: envelope.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}
