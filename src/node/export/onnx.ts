/**
 * TensorFlow.js layers model (topology + weights, as a run directory stores them) -> ONNX.
 *
 * The sequential layers are walked in order and each becomes standard ONNX ops (opset 13):
 *
 *   Flatten            Flatten(axis 1) of the NHWC tensor: the H, W, C order tfjs flattens in
 *   Dense              MatMul + Add (+ activation)
 *   Conv2D             Conv with explicit pads ('same' as TensorFlow pads: the odd pixel at
 *                      the bottom/right), kernel HWIO -> OIHW
 *   Max/AveragePooling2D  MaxPool / AveragePool (count_include_pad 0, as TensorFlow averages)
 *   GlobalAverage/MaxPooling2D  ReduceMean / ReduceMax over H, W
 *   BatchNormalization BatchNormalization in inference form (moving mean and variance, epsilon)
 *   Activation, ReLU, LeakyReLU, ELU, Softmax  their ONNX ops
 *   Dropout and the noise layers  nothing (identity at inference)
 *
 * The graph input is the tensor the tfjs model takes: float32 NHWC [N, H, W, C] with a dynamic
 * batch. Conv, pooling and batch normalization want NCHW, so the converter tracks each value's
 * layout and inserts a Transpose only where the layout must change (into the first conv, back
 * before Flatten or Dense); consecutive convolutions and pools stay in NCHW.
 *
 * softmax-scratch is not a layers model: its W and b become Flatten + MatMul + Add.
 *
 * The imgclf models output logits; a final Softmax makes the ONNX output the class
 * probabilities. Anything without a mapping stops with one line (a UserError) naming the layer.
 */
import type { ImageShape } from '../../core/data/dataset.js';
import type { Preprocessing } from '../../core/data/source.js';
import { UserError } from '../../core/errors.js';
import type { NetArtifacts } from '../../core/models/net.js';
import { VERSION } from '../../core/version.js';
import { type AttrValue, encodeModel, floatValueInfo, GraphBuilder, OPSET } from './graph.js';

export const INPUT_NAME = 'input';
export const OUTPUT_NAME = 'probabilities';

/** What the exported file records about the model besides its graph. */
export interface ExportInfo {
  /** Registered model name (metadata.json's `model`). */
  model: string;
  classNames?: string[];
  /** [H, W, C]; taken from the topology when absent, and checked against it when given. */
  inputShape?: ImageShape;
  preprocessing?: Preprocessing;
  /** What error messages call the model, e.g. the run directory (default "the model"). */
  source?: string;
  /** More metadata_props entries (e.g. the run's weights checksum). */
  extraMetadata?: Record<string, string>;
}

export interface OnnxExport {
  bytes: Uint8Array;
  opset: number;
  inputShape: ImageShape;
  numClasses: number;
  /** ONNX op types in graph order (e.g. for a summary). */
  ops: string[];
  /** The metadata_props written into the file. */
  metadata: Record<string, string>;
}

/** Layers that do nothing at inference. */
const IDENTITY_LAYERS = new Set([
  'Dropout',
  'SpatialDropout1D',
  'SpatialDropout2D',
  'GaussianNoise',
  'GaussianDropout',
  'AlphaDropout',
]);

interface LayerJson {
  class_name: string;
  config: Record<string, unknown>;
}

interface Weight {
  shape: number[];
  values: Float32Array;
}

/**
 * A value flowing through the graph. `shape` is the logical (channels-last) shape without the
 * batch dimension, whatever the layout; `layout` says whether a rank-3 (image) value is stored
 * NHWC, as tfjs has it, or NCHW, as ONNX's Conv and pooling want it.
 */
interface Value {
  name: string;
  shape: number[];
  layout: 'NHWC' | 'NCHW';
}

class Unsupported extends Error {}

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

const pair = (v: unknown, fallback: number): [number, number] => {
  if (v === undefined || v === null) return [fallback, fallback];
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number'))
    return [v[0] as number, v[1] as number];
  if (Array.isArray(v) && v.length === 1 && typeof v[0] === 'number') return [v[0], v[0]];
  throw new Unsupported(`cannot read ${JSON.stringify(v)} as a 2-D size`);
};

/** Output size and [before, after] pads of one spatial axis, as TensorFlow computes them. */
function window(
  size: number,
  kernel: number,
  stride: number,
  dilation: number,
  padding: string,
): { out: number; pads: [number, number] } {
  const effective = (kernel - 1) * dilation + 1;
  if (padding === 'valid') {
    const out = Math.floor((size - effective) / stride) + 1;
    if (out < 1) throw new Unsupported(`its ${kernel}-wide window does not fit the ${size}-wide input`);
    return { out, pads: [0, 0] };
  }
  if (padding === 'same') {
    const out = Math.ceil(size / stride);
    const total = Math.max((out - 1) * stride + effective - size, 0);
    // TensorFlow puts the odd pixel after (bottom/right): ONNX's SAME_UPPER.
    return { out, pads: [Math.floor(total / 2), total - Math.floor(total / 2)] };
  }
  throw new Unsupported(`padding '${padding}' has no ONNX mapping`);
}

function checkChannelsLast(config: Record<string, unknown>): void {
  const f = config.data_format;
  if (f !== undefined && f !== null && f !== 'channels_last' && f !== 'channelsLast')
    throw new Unsupported(`data_format '${String(f)}' is not supported (only channels_last)`);
}

/** The activation names tfjs writes (camelCase class names; Keras writes snake_case). */
function normalizeActivation(a: unknown): string {
  if (a === undefined || a === null) return 'linear';
  if (typeof a === 'object' && 'class_name' in a) return normalizeActivation((a as LayerJson).class_name);
  if (typeof a !== 'string') throw new Unsupported(`cannot read activation ${JSON.stringify(a)}`);
  return a.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

class Converter {
  readonly g = new GraphBuilder();
  private readonly weights: Map<string, Weight>;

  constructor(
    artifacts: NetArtifacts,
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

  op(
    v: Value,
    op: string,
    scope: string,
    attrs: Record<string, AttrValue> = {},
    extra: string[] = [],
  ): Value {
    return { ...v, name: this.g.node(op, [v.name, ...extra], scope, attrs) };
  }

  activation(v: Value, raw: unknown, scope: string): Value {
    const a = normalizeActivation(raw);
    switch (a) {
      case 'linear':
        return v;
      case 'relu':
        return this.op(v, 'Relu', scope);
      case 'relu6':
        return this.clip(v, 0, 6, scope);
      case 'sigmoid':
        return this.op(v, 'Sigmoid', scope);
      case 'tanh':
        return this.op(v, 'Tanh', scope);
      case 'softmax':
        return this.op(v, 'Softmax', scope, { axis: { int: this.channelAxis(v) } });
      case 'logSoftmax':
        return this.op(v, 'LogSoftmax', scope, { axis: { int: this.channelAxis(v) } });
      case 'elu':
        return this.op(v, 'Elu', scope, { alpha: { float: 1 } });
      case 'selu':
        // ONNX's defaults are SELU's constants, as tfjs uses them.
        return this.op(v, 'Selu', scope);
      case 'softplus':
        return this.op(v, 'Softplus', scope);
      case 'softsign':
        return this.op(v, 'Softsign', scope);
      case 'hardSigmoid':
        // tfjs: clip(0.2 x + 0.5, 0, 1).
        return this.op(v, 'HardSigmoid', scope, { alpha: { float: 0.2 }, beta: { float: 0.5 } });
      case 'swish': {
        const s = this.g.node('Sigmoid', [v.name], scope);
        return { ...v, name: this.g.node('Mul', [v.name, s], scope) };
      }
      case 'mish': {
        const t = this.g.node('Tanh', [this.g.node('Softplus', [v.name], scope)], scope);
        return { ...v, name: this.g.node('Mul', [v.name, t], scope) };
      }
      default:
        throw new Unsupported(`activation '${a}' has no ONNX mapping`);
    }
  }

  clip(v: Value, min: number, max: number, scope: string): Value {
    const lo = this.g.constant(`${scope}/min`, [min], []);
    const hi = this.g.constant(`${scope}/max`, [max], []);
    return this.op(v, 'Clip', scope, {}, [lo, hi]);
  }

  /** One tfjs layer; returns the value it outputs. */
  layer(layer: LayerJson, v: Value): Value {
    const c = layer.config;
    const name = String(c.name ?? layer.class_name);
    const cls = layer.class_name;
    if (IDENTITY_LAYERS.has(cls)) return v;
    switch (cls) {
      case 'InputLayer':
        return v;
      case 'Flatten': {
        checkChannelsLast(c);
        const x = this.toNHWC(v, name);
        const size = x.shape.reduce((a, b) => a * b, 1);
        return {
          name: this.g.node('Flatten', [x.name], name, { axis: { int: 1 } }),
          shape: [size],
          layout: 'NHWC',
        };
      }
      case 'Dense': {
        const x = this.toNHWC(v, name);
        const inputs = x.shape.at(-1)!;
        const units = Number(c.units);
        const kernel = this.weight(name, 'kernel', [inputs, units]);
        const k = this.g.constant(`${name}/kernel`, kernel.values, kernel.shape);
        let y = this.g.node('MatMul', [x.name, k], name);
        if (c.use_bias !== false) {
          const bias = this.weight(name, 'bias', [units]);
          y = this.g.node('Add', [y, this.g.constant(`${name}/bias`, bias.values, bias.shape)], name);
        }
        return this.activation(
          { name: y, shape: [...x.shape.slice(0, -1), units], layout: 'NHWC' },
          c.activation,
          name,
        );
      }
      case 'Conv2D': {
        checkChannelsLast(c);
        if (v.shape.length !== 3) throw new Unsupported(`it needs an image input, not shape [${v.shape}]`);
        if (c.groups !== undefined && c.groups !== null && c.groups !== 1)
          throw new Unsupported('grouped convolution is not supported');
        const [h, w, cin] = v.shape;
        const filters = Number(c.filters);
        const [kh, kw] = pair(c.kernel_size, 1);
        const [sh, sw] = pair(c.strides, 1);
        const [dh, dw] = pair(c.dilation_rate, 1);
        const padding = String(c.padding ?? 'valid');
        const rows = window(h, kh, sh, dh, padding);
        const cols = window(w, kw, sw, dw, padding);
        const kernel = this.weight(name, 'kernel', [kh, kw, cin, filters]);
        // tfjs kernels are [kh, kw, in, out]; ONNX wants [out, in, kh, kw].
        const oihw = new Float32Array(kernel.values.length);
        for (let y = 0; y < kh; y++)
          for (let x = 0; x < kw; x++)
            for (let i = 0; i < cin; i++)
              for (let o = 0; o < filters; o++)
                oihw[((o * cin + i) * kh + y) * kw + x] =
                  kernel.values[((y * kw + x) * cin + i) * filters + o];
        const inputs = [
          this.toNCHW(v, name).name,
          this.g.constant(`${name}/kernel`, oihw, [filters, cin, kh, kw]),
        ];
        if (c.use_bias !== false) {
          const bias = this.weight(name, 'bias', [filters]);
          inputs.push(this.g.constant(`${name}/bias`, bias.values, bias.shape));
        }
        const y = this.g.node('Conv', inputs, name, {
          kernel_shape: { ints: [kh, kw] },
          strides: { ints: [sh, sw] },
          dilations: { ints: [dh, dw] },
          pads: { ints: [rows.pads[0], cols.pads[0], rows.pads[1], cols.pads[1]] },
          group: { int: 1 },
        });
        return this.activation(
          { name: y, shape: [rows.out, cols.out, filters], layout: 'NCHW' },
          c.activation,
          name,
        );
      }
      case 'MaxPooling2D':
      case 'AveragePooling2D': {
        checkChannelsLast(c);
        if (v.shape.length !== 3) throw new Unsupported(`it needs an image input, not shape [${v.shape}]`);
        const [h, w, ch] = v.shape;
        const [ph, pw] = pair(c.pool_size, 2);
        const [sh, sw] = c.strides === null || c.strides === undefined ? [ph, pw] : pair(c.strides, 1);
        const padding = String(c.padding ?? 'valid');
        const rows = window(h, ph, sh, 1, padding);
        const cols = window(w, pw, sw, 1, padding);
        const attrs: Record<string, AttrValue> = {
          kernel_shape: { ints: [ph, pw] },
          strides: { ints: [sh, sw] },
          pads: { ints: [rows.pads[0], cols.pads[0], rows.pads[1], cols.pads[1]] },
        };
        // TensorFlow averages over the pixels inside the image only ('same' padding).
        if (cls === 'AveragePooling2D') attrs.count_include_pad = { int: 0 };
        const x = this.toNCHW(v, name);
        const op = cls === 'MaxPooling2D' ? 'MaxPool' : 'AveragePool';
        return {
          name: this.g.node(op, [x.name], name, attrs),
          shape: [rows.out, cols.out, ch],
          layout: 'NCHW',
        };
      }
      case 'GlobalAveragePooling2D':
      case 'GlobalMaxPooling2D': {
        checkChannelsLast(c);
        if (v.shape.length !== 3) throw new Unsupported(`it needs an image input, not shape [${v.shape}]`);
        if (c.keepdims === true) throw new Unsupported('keepdims is not supported');
        const axes = v.layout === 'NCHW' ? [2, 3] : [1, 2];
        const op = cls === 'GlobalAveragePooling2D' ? 'ReduceMean' : 'ReduceMax';
        const y = this.g.node(op, [v.name], name, { axes: { ints: axes }, keepdims: { int: 0 } });
        return { name: y, shape: [v.shape[2]], layout: 'NHWC' };
      }
      case 'BatchNormalization':
        return this.batchNorm(v, c, name);
      case 'Activation':
        return this.activation(v, c.activation, name);
      case 'ReLU': {
        if (c.max_value === null || c.max_value === undefined) return this.op(v, 'Relu', name);
        return this.clip(v, 0, Number(c.max_value), name);
      }
      case 'LeakyReLU':
        return this.op(v, 'LeakyRelu', name, { alpha: { float: Number(c.alpha ?? 0.3) } });
      case 'ELU':
        return this.op(v, 'Elu', name, { alpha: { float: Number(c.alpha ?? 1) } });
      case 'Softmax': {
        const axis = c.axis ?? -1;
        if (axis !== -1 && axis !== v.shape.length)
          throw new Unsupported(`softmax over axis ${JSON.stringify(axis)} is not supported (only the last)`);
        return this.op(v, 'Softmax', name, { axis: { int: this.channelAxis(v) } });
      }
      default:
        throw new Unsupported(`no ONNX mapping for ${cls}`);
    }
  }

  batchNorm(v: Value, c: Record<string, unknown>, name: string): Value {
    const rank = v.shape.length + 1;
    const axes = Array.isArray(c.axis) ? c.axis : [c.axis ?? -1];
    const axis = Number(axes[0]);
    if (axes.length !== 1 || (axis !== -1 && axis !== rank - 1))
      throw new Unsupported(
        `normalization over axis ${JSON.stringify(c.axis)} is not supported (only the channels)`,
      );
    if (rank !== 2 && rank !== 4)
      throw new Unsupported(`it needs a [N, C] or [N, H, W, C] input, not [N, ${v.shape}]`);
    const ch = v.shape.at(-1)!;
    const param = (p: string, enabled: boolean, fill: number) =>
      enabled
        ? this.g.constant(`${name}/${p}`, this.weight(name, p, [ch]).values, [ch])
        : this.g.constant(`${name}/${p}`, new Float32Array(ch).fill(fill), [ch]);
    const x = this.toNCHW(v, name);
    const inputs = [
      x.name,
      param('gamma', c.scale !== false, 1),
      param('beta', c.center !== false, 0),
      param('moving_mean', true, 0),
      param('moving_variance', true, 1),
    ];
    const epsilon = Number(c.epsilon ?? 1e-3);
    return { ...x, name: this.g.node('BatchNormalization', inputs, name, { epsilon: { float: epsilon } }) };
  }
}

function layersOf(topology: Record<string, unknown>, source: string): LayerJson[] {
  // Keras-converted files wrap the model config with its training config.
  const t = (topology.model_config ?? topology) as { class_name?: string; config?: unknown };
  if (t.class_name !== 'Sequential') {
    throw new UserError(
      `cannot export ${source} to ONNX: only sequential layers models are supported (this one is a ${t.class_name ?? 'model without a class name'})`,
    );
  }
  const layers = Array.isArray(t.config) ? t.config : (t.config as { layers?: unknown })?.layers;
  if (!Array.isArray(layers) || layers.length === 0)
    throw new UserError(`cannot export ${source} to ONNX: its topology lists no layers`);
  return layers as LayerJson[];
}

function topologyInputShape(layers: LayerJson[]): number[] | undefined {
  const c = layers[0].config;
  const shape = (c.batch_input_shape ?? c.batchInputShape) as (number | null)[] | undefined;
  return shape ? (shape.slice(1) as number[]) : undefined;
}

/** Converts a model (as `Net.artifacts()` or a run directory gives it) to an ONNX file. */
export function convertToOnnx(artifacts: NetArtifacts, info: ExportInfo): OnnxExport {
  const source = info.source ?? 'the model';
  const topology = artifacts.modelTopology as Record<string, unknown>;
  const conv = new Converter(artifacts, source);
  const g = conv.g;
  g.reserve(INPUT_NAME);

  let inputShape: number[];
  let v: Value;
  if ('imgclf' in topology) {
    // A model on raw variables names itself; softmax-scratch is the one there is.
    if (topology.imgclf !== 'softmax-scratch')
      throw new UserError(
        `cannot export ${source} to ONNX: no ONNX mapping for model '${String(topology.imgclf)}'`,
      );
    inputShape = (info.inputShape ?? topology.inputShape) as number[];
    const n = inputShape.reduce((a, b) => a * b, 1);
    const k = Number(topology.numClasses);
    const scope = 'softmax-scratch';
    // Its weights are named W and b, without a layer prefix.
    const param = (p: string, shape: number[]) => {
      const w = conv.named(p);
      if (!w || w.shape.join(',') !== shape.join(','))
        throw new UserError(
          `cannot export ${source} to ONNX: softmax-scratch weight ${p} is ${w ? `[${w.shape}]` : 'missing'} where [${shape}] was expected`,
        );
      return w;
    };
    const W = param('W', [n, k]);
    const b = param('b', [k]);
    const flat = g.node('Flatten', [INPUT_NAME], scope, { axis: { int: 1 } });
    const mm = g.node('MatMul', [flat, g.constant(`${scope}/W`, W.values, [n, k])], scope);
    v = {
      name: g.node('Add', [mm, g.constant(`${scope}/b`, b.values, [k])], scope),
      shape: [k],
      layout: 'NHWC',
    };
  } else {
    const layers = layersOf(topology, source);
    const fromTopology = topologyInputShape(layers);
    inputShape = info.inputShape ?? (fromTopology as number[]);
    if (!inputShape || inputShape.some((d) => typeof d !== 'number' || d < 1))
      throw new UserError(
        `cannot export ${source} to ONNX: its input shape is not known (got ${JSON.stringify(inputShape)})`,
      );
    if (fromTopology && fromTopology.join('x') !== inputShape.join('x'))
      throw new UserError(
        `cannot export ${source} to ONNX: the model takes ${fromTopology.join('x')} inputs but the run records ${inputShape.join('x')}`,
      );
    v = { name: INPUT_NAME, shape: [...inputShape], layout: 'NHWC' };
    for (const layer of layers) {
      try {
        v = conv.layer(layer, v);
      } catch (err) {
        if (!(err instanceof Unsupported)) throw err;
        throw new UserError(
          `cannot export layer '${String(layer.config?.name ?? '?')}' (class ${layer.class_name}) of ${source} to ONNX: ${err.message}`,
        );
      }
    }
  }
  if (inputShape.length !== 3)
    throw new UserError(
      `cannot export ${source} to ONNX: the input is [${inputShape}], not an image [H, W, C]`,
    );
  if (v.shape.length !== 1)
    throw new UserError(
      `cannot export ${source} to ONNX: its output has shape [${v.shape}], not one score per class`,
    );
  const numClasses = v.shape[0];
  if (info.classNames && info.classNames.length !== numClasses)
    throw new UserError(
      `cannot export ${source} to ONNX: it names ${info.classNames.length} classes but the model has ${numClasses} outputs`,
    );
  // The models output logits; the file outputs probabilities.
  g.node('Softmax', [v.name], 'probabilities', { axis: { int: -1 } }, OUTPUT_NAME);

  const shape = inputShape as ImageShape;
  const metadata: Record<string, string> = {
    model: info.model,
    class_names: JSON.stringify(info.classNames ?? Array.from({ length: numClasses }, (_, i) => String(i))),
    input_shape: JSON.stringify(shape),
    input_layout: 'NHWC',
    preprocessing: JSON.stringify(info.preprocessing ?? { scale: 255 }),
    output: 'probabilities',
    imgclf_version: VERSION,
    ...info.extraMetadata,
  };
  const scale = info.preprocessing?.scale ?? 255;
  const bytes = encodeModel(g, {
    graphName: info.model,
    producerVersion: VERSION,
    docString:
      `imgclf ${info.model} image classifier. Input '${INPUT_NAME}': float32 [N, ${shape.join(', ')}] ` +
      `(NHWC), pixel values / ${scale}. Output '${OUTPUT_NAME}': float32 [N, ${numClasses}], softmax ` +
      `probabilities in the order of metadata_props class_names.`,
    input: floatValueInfo(INPUT_NAME, ['N', ...shape]),
    output: floatValueInfo(OUTPUT_NAME, ['N', numClasses]),
    metadata,
  });
  return { bytes, opset: OPSET, inputShape: shape, numClasses, ops: g.nodes.map((n) => n.opType), metadata };
}
