/**
 * A small builder for ONNX graphs over onnx-proto's protobufjs classes: float initializers (and
 * int64 ones for the ops that take integer tensors), nodes with typed attributes, unique value
 * names, and the model wrapper (IR version, opset, metadata_props). It knows nothing of
 * TensorFlow.js; layers.ts and models.ts map models onto it.
 */
import onnxProto from 'onnx-proto';

export const { onnx } = onnxProto;
type Onnx = typeof onnx;
export type NodeProto = InstanceType<Onnx['NodeProto']>;
export type TensorProto = InstanceType<Onnx['TensorProto']>;
export type ValueInfoProto = InstanceType<Onnx['ValueInfoProto']>;
export type AttributeProto = InstanceType<Onnx['AttributeProto']>;

/**
 * Opset 13: the first with today's Softmax (over one axis, as tfjs does) and Clip with tensor
 * bounds. Every op used here still has its opset-13 semantics in later opsets.
 */
export const OPSET = 13;
/**
 * IR version 8 (ONNX 1.10), the newest onnx-proto 8 writes: ONNX Runtime 1.10 and later (1.30
 * here) load it.
 */
export const IR_VERSION = 8;

const { AttributeType } = onnx.AttributeProto;
const { DataType } = onnx.TensorProto;

/** An attribute value: an integer (INT), a float (FLOAT), integer list (INTS) or string. */
export type AttrValue = { int: number } | { float: number } | { ints: number[] } | { string: string };

function attribute(name: string, v: AttrValue): AttributeProto {
  if ('int' in v) return onnx.AttributeProto.create({ name, type: AttributeType.INT, i: v.int });
  if ('float' in v) return onnx.AttributeProto.create({ name, type: AttributeType.FLOAT, f: v.float });
  if ('ints' in v) return onnx.AttributeProto.create({ name, type: AttributeType.INTS, ints: v.ints });
  return onnx.AttributeProto.create({
    name,
    type: AttributeType.STRING,
    s: new TextEncoder().encode(v.string),
  });
}

/** A float32 tensor type with the given dims (a string is a named dynamic dimension). */
export function floatValueInfo(name: string, dims: (number | string)[]): ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: DataType.FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  });
}

export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly used = new Set<string>();

  /** `base`, or `base_2`, `base_3`, ... when it is taken: every value and node name is unique. */
  unique(base: string): string {
    let name = base;
    for (let i = 2; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }

  /** Reserves a name given from outside (the graph input). */
  reserve(name: string): string {
    this.used.add(name);
    return name;
  }

  /** A float32 initializer (stored as raw little-endian bytes); returns its name. */
  constant(base: string, values: Float32Array | number[], dims: number[]): string {
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    const size = dims.reduce((a, b) => a * b, 1);
    if (data.length !== size) throw new Error(`initializer ${base}: ${data.length} values for dims ${dims}`);
    const name = this.unique(base);
    // Copy: the bytes must not alias a larger weights buffer, and must be little-endian (ONNX's
    // raw_data order), which Float32Array is on every platform Node runs on.
    const bytes = new Uint8Array(data.byteLength);
    bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType: DataType.FLOAT, rawData: bytes }));
    return name;
  }

  /** An int64 initializer, for the ops that take integers as a tensor (Pad's pads, Reshape's shape). */
  intConstant(base: string, values: number[], dims: number[]): string {
    const size = dims.reduce((a, b) => a * b, 1);
    if (values.length !== size)
      throw new Error(`initializer ${base}: ${values.length} values for dims ${dims}`);
    const name = this.unique(base);
    const data = BigInt64Array.from(values, (v) => BigInt(v));
    const rawData = new Uint8Array(data.buffer);
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType: DataType.INT64, rawData }));
    return name;
  }

  /**
   * Adds node `op` reading `inputs` and returns its output's name (`output`, made unique, or
   * `<node name>` when not given). Names are `<scope>/<Op>`, so a node says which layer it is.
   */
  node(
    op: string,
    inputs: string[],
    scope: string,
    attrs: Record<string, AttrValue> = {},
    output?: string,
  ): string {
    const name = this.unique(`${scope}/${op}`);
    const out = output !== undefined ? this.reserve(output) : name;
    this.nodes.push(
      onnx.NodeProto.create({
        name,
        opType: op,
        input: inputs,
        output: [out],
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      }),
    );
    return out;
  }
}

export interface ModelInfo {
  graphName: string;
  docString: string;
  producerVersion: string;
  input: ValueInfoProto;
  output: ValueInfoProto;
  metadata: Record<string, string>;
  /**
   * The opsets the nodes are written against, when not OPSET alone: a graph merged in (an ONNX
   * backbone) keeps its own (export/backbone.ts says which).
   */
  opsetImports?: { domain: string; version: number }[];
  irVersion?: number;
}

/** Serializes the graph as an ONNX model file. */
export function encodeModel(g: GraphBuilder, info: ModelInfo): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: info.irVersion ?? IR_VERSION,
    opsetImport: info.opsetImports ?? [{ domain: '', version: OPSET }],
    producerName: 'imgclf',
    producerVersion: info.producerVersion,
    modelVersion: 1,
    docString: info.docString,
    graph: onnx.GraphProto.create({
      name: info.graphName,
      node: g.nodes,
      initializer: g.initializers,
      input: [info.input],
      output: [info.output],
    }),
    metadataProps: Object.entries(info.metadata).map(([key, value]) => ({ key, value })),
  });
  return onnx.ModelProto.encode(model).finish();
}

/** Reads an ONNX model file back (for tests and for `--check`). */
export function decodeModel(bytes: Uint8Array): InstanceType<Onnx['ModelProto']> {
  return onnx.ModelProto.decode(bytes);
}
