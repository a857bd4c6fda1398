/**
 * What every converter works with while a model becomes an ONNX graph: the graph being built,
 * the model's weights by name, and the values flowing between layers with their layout.
 * Layer converters (layers.ts) and model exporters (models.ts) share these types; onnx.ts
 * drives them.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ImageShape } from '../../core/data/dataset.js';
import { UserError } from '../../core/errors.js';
import type { NetArtifacts } from '../../core/models/net.js';
import { type AttrValue, GraphBuilder } from './graph.js';

/** The graph's input (the model's NHWC images) and output (the class probabilities). */
export const INPUT_NAME = 'input';
export const OUTPUT_NAME = 'probabilities';

export interface Weight {
  shape: number[];
  values: Float32Array;
}

/**
 * A value flowing through the graph. `shape` is the logical (channels-last) shape without the
 * batch dimension, whatever the layout; `layout` says whether a rank-3 (image) value is stored
 * NHWC, as tfjs has it, or NCHW, as ONNX's Conv and pooling want it.
 */
export interface Value {
  name: string;
  shape: number[];
  layout: 'NHWC' | 'NCHW';
}

/** What a model exporter builds: the graph from INPUT_NAME to one score per class. */
export interface ModelGraph {
  /** The input the graph takes, [H, W, C]. */
  inputShape: number[];
  /** The class scores (logits); onnx.ts adds the final Softmax. */
  logits: Value;
}

/**
 * Builds the graph of one kind of model from its model.json topology. `recordedShape` is the
 * input shape the run records, when it does.
 */
export type ModelExporter = (
  cx: ExportContext,
  topology: Record<string, unknown>,
  recordedShape: ImageShape | undefined,
) => ModelGraph;

/**
 * Thrown by a converter for what it cannot map. The caller knows which layer it was
 * converting and turns this into the one-line UserError that names it.
 */
export class Unsupported extends Error {}

/** Bytes per stored value: a quantized weight is stored as its quantization's dtype. */
const STORED_BYTES: Record<string, number> = { float32: 4, uint8: 1, uint16: 2, float16: 2 };

/**
 * Reads the weights of a model by name, as float32. Quantized weights (uint8, uint16 or
 * float16, as tfjs-converter writes them) are dequantized by tfjs' own decodeWeights, so the
 * file holds exactly the values tfjs computes with.
 */
function decodeWeights(a: NetArtifacts, source: string): Map<string, Weight> {
  let bytes = 0;
  for (const spec of a.weightSpecs) {
    const stored = spec.quantization?.dtype ?? 'float32';
    const refuse = (what: string) =>
      new UserError(
        `cannot export ${source} to ONNX: weight ${spec.name} is ${what}; only float32 weights (plain, or quantized as uint8, uint16 or float16) are supported`,
      );
    if (spec.dtype !== undefined && spec.dtype !== 'float32') throw refuse(spec.dtype);
    if (!Object.hasOwn(STORED_BYTES, stored)) throw refuse(`quantized as ${stored}`);
    const q = spec.quantization;
    if (q && stored !== 'float16' && !(Number.isFinite(q.scale) && Number.isFinite(q.min)))
      throw refuse(`quantized as ${stored} without its scale and min`);
    bytes += spec.shape.reduce((x, y) => x * y, 1) * STORED_BYTES[stored];
    // Checked here: decodeWeights would fail on a short buffer with a message naming no file.
    if (bytes > a.weightData.byteLength)
      throw new UserError(`cannot export ${source} to ONNX: the weights end before ${spec.name}`);
  }
  const out = new Map<string, Weight>();
  const tensors = tf.io.decodeWeights(a.weightData, a.weightSpecs);
  for (const spec of a.weightSpecs) {
    const t = tensors[spec.name];
    out.set(spec.name, { shape: spec.shape, values: t.dataSync() as Float32Array });
  }
  for (const t of Object.values(tensors)) t.dispose();
  return out;
}

export class ExportContext {
  readonly g = new GraphBuilder();
  /**
   * The value the model reads: the graph input, or (a head on a backbone) the backbone's
   * features, which onnx.ts puts in front of the model before its exporter runs.
   */
  input = INPUT_NAME;
  private readonly weights: Map<string, Weight>;

  constructor(
    artifacts: NetArtifacts,
    /** What error messages call the model, e.g. its run directory. */
    readonly source: string,
  ) {
    this.weights = decodeWeights(artifacts, source);
  }

  /** The weight stored under exactly `name`. */
  named(name: string): Weight | undefined {
    return this.weights.get(name);
  }

  /** Parameter `param` of layer `layer`, checked to have `shape`. */
  weight(layer: string, param: string, shape: number[]): Weight {
    const w =
      this.weights.get(`${layer}/${param}`) ??
      [...this.weights].find(([name]) => name.endsWith(`/${layer}/${param}`))?.[1];
    if (!w) throw new Unsupported(`its weight ${layer}/${param} is missing from the weights`);
    if (w.shape.join(',') !== shape.join(','))
      throw new Unsupported(`its weight ${param} is [${w.shape}] where [${shape}] was expected`);
    return w;
  }

  toNCHW(v: Value, scope: string): Value {
    if (v.shape.length !== 3 || v.layout === 'NCHW') return v;
    const name = this.g.node('Transpose', [v.name], scope, { perm: { ints: [0, 3, 1, 2] } });
    return { ...v, name, layout: 'NCHW' };
  }

  toNHWC(v: Value, scope: string): Value {
    if (v.layout === 'NHWC') return v;
    const name = this.g.node('Transpose', [v.name], scope, { perm: { ints: [0, 2, 3, 1] } });
    return { ...v, name, layout: 'NHWC' };
  }

  /** The axis holding the channels (tfjs' last axis) in the stored layout. */
  channelAxis(v: Value): number {
    return v.shape.length === 3 && v.layout === 'NCHW' ? 1 : -1;
  }

  /** Node `op` on `v` (and `extra` inputs after it); the result keeps v's shape and layout. */
  op(
    v: Value,
    op: string,
    scope: string,
    attrs: Record<string, AttrValue> = {},
    extra: string[] = [],
  ): Value {
    return { ...v, name: this.g.node(op, [v.name, ...extra], scope, attrs) };
  }

  clip(v: Value, min: number, max: number, scope: string): Value {
    const lo = this.g.constant(`${scope}/min`, [min], []);
    const hi = this.g.constant(`${scope}/max`, [max], []);
    return this.op(v, 'Clip', scope, {}, [lo, hi]);
  }
}
