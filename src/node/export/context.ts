/**
 * What every converter works with while a model becomes an ONNX graph: the graph being built,
 * the model's weights by name, and the values flowing between layers with their layout.
 * Layer converters (layers.ts) and model exporters (models.ts) share these types; onnx.ts
 * drives them.
 */
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

/** Reads the weights of a run (float32 only) by name. */
function decodeWeights(a: NetArtifacts, source: string): Map<string, Weight> {
  const out = new Map<string, Weight>();
  let offset = 0;
  for (const spec of a.weightSpecs) {
    const size = spec.shape.reduce((x, y) => x * y, 1);
    if ((spec.dtype !== undefined && spec.dtype !== 'float32') || spec.quantization) {
      throw new UserError(
        `cannot export ${source} to ONNX: weight ${spec.name} is ${spec.quantization ? 'quantized' : spec.dtype}; only float32 weights are supported`,
      );
    }
    if (offset + size * 4 > a.weightData.byteLength)
      throw new UserError(`cannot export ${source} to ONNX: the weights end before ${spec.name}`);
    // slice: an aligned copy, whatever the offset.
    const values = new Float32Array(a.weightData.slice(offset, offset + size * 4));
    out.set(spec.name, { shape: spec.shape, values });
    offset += size * 4;
  }
  return out;
}

export class ExportContext {
  readonly g = new GraphBuilder();
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
