/**
 * TensorFlow.js layers models -> ONNX (opset 13): the sequential layers are walked in order and
 * each becomes standard ONNX ops through the converter registered for its class:
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
 * batch. Conv, pooling and batch normalization want NCHW, so each value carries its layout and
 * a converter asks for the one it needs (ExportContext.toNCHW / toNHWC): a Transpose appears
 * only where the layout changes (into the first conv, back before Flatten or Dense), and
 * consecutive convolutions and pools stay in NCHW.
 *
 * Another layer class is one `registerLayerConverter` call; a class without a converter stops
 * the export with one line naming the layer.
 */
import { UserError } from '../../core/errors.js';
import { type ExportContext, INPUT_NAME, type ModelExporter, Unsupported, type Value } from './context.js';
import type { AttrValue } from './graph.js';

/** One layer as model.json describes it. */
interface LayerJson {
  class_name: string;
  config: Record<string, unknown>;
}

/** What a converter is told about its layer. */
export interface Layer {
  /** The Keras/tfjs class name, e.g. 'Conv2D'. */
  className: string;
  /** The layer's name: the scope of its ONNX nodes and the prefix of its weights. */
  name: string;
  /** The layer's config as model.json stores it (snake_case keys). */
  config: Record<string, unknown>;
}

/**
 * Adds the ONNX nodes of one layer reading `x` and returns the value the layer outputs. It
 * throws `Unsupported` for a setting it cannot map; the message is told with the layer's name.
 */
export type LayerConverter = (cx: ExportContext, layer: Layer, x: Value) => Value;

const converters = new Map<string, LayerConverter>();

/** Makes layers of class `className` exportable; a class has one converter. */
export function registerLayerConverter(className: string, convert: LayerConverter): void {
  if (converters.has(className))
    throw new Error(`an ONNX converter for layer class ${className} is already registered`);
  converters.set(className, convert);
}

// ---------------------------------------------------------------------------------------------
// Reading layer configs.

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

function checkImage(x: Value): void {
  if (x.shape.length !== 3) throw new Unsupported(`it needs an image input, not shape [${x.shape}]`);
}

// ---------------------------------------------------------------------------------------------
// Activations, as a layer's `activation` setting or an Activation layer.

type Activation = (cx: ExportContext, x: Value, scope: string) => Value;

const ACTIVATIONS = new Map<string, Activation>([
  ['linear', (_cx, x) => x],
  ['relu', (cx, x, scope) => cx.op(x, 'Relu', scope)],
  ['relu6', (cx, x, scope) => cx.clip(x, 0, 6, scope)],
  ['sigmoid', (cx, x, scope) => cx.op(x, 'Sigmoid', scope)],
  ['tanh', (cx, x, scope) => cx.op(x, 'Tanh', scope)],
  ['softmax', (cx, x, scope) => cx.op(x, 'Softmax', scope, { axis: { int: cx.channelAxis(x) } })],
  ['logSoftmax', (cx, x, scope) => cx.op(x, 'LogSoftmax', scope, { axis: { int: cx.channelAxis(x) } })],
  ['elu', (cx, x, scope) => cx.op(x, 'Elu', scope, { alpha: { float: 1 } })],
  // ONNX's defaults are SELU's constants, as tfjs uses them.
  ['selu', (cx, x, scope) => cx.op(x, 'Selu', scope)],
  ['softplus', (cx, x, scope) => cx.op(x, 'Softplus', scope)],
  ['softsign', (cx, x, scope) => cx.op(x, 'Softsign', scope)],
  // tfjs: clip(0.2 x + 0.5, 0, 1).
  [
    'hardSigmoid',
    (cx, x, scope) => cx.op(x, 'HardSigmoid', scope, { alpha: { float: 0.2 }, beta: { float: 0.5 } }),
  ],
  [
    'swish',
    (cx, x, scope) => {
      const s = cx.g.node('Sigmoid', [x.name], scope);
      return { ...x, name: cx.g.node('Mul', [x.name, s], scope) };
    },
  ],
  [
    'mish',
    (cx, x, scope) => {
      const t = cx.g.node('Tanh', [cx.g.node('Softplus', [x.name], scope)], scope);
      return { ...x, name: cx.g.node('Mul', [x.name, t], scope) };
    },
  ],
]);

/** The activation names tfjs writes (camelCase class names; Keras writes snake_case). */
function normalizeActivation(a: unknown): string {
  if (a === undefined || a === null) return 'linear';
  if (typeof a === 'object' && 'class_name' in a) return normalizeActivation((a as LayerJson).class_name);
  if (typeof a !== 'string') throw new Unsupported(`cannot read activation ${JSON.stringify(a)}`);
  return a.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function activation(cx: ExportContext, x: Value, raw: unknown, scope: string): Value {
  const name = normalizeActivation(raw);
  const apply = ACTIVATIONS.get(name);
  if (!apply) throw new Unsupported(`activation '${name}' has no ONNX mapping`);
  return apply(cx, x, scope);
}

// ---------------------------------------------------------------------------------------------
// The converters of the built-in layer classes.

const identity: LayerConverter = (_cx, _layer, x) => x;

const flatten: LayerConverter = (cx, { name, config }, v) => {
  checkChannelsLast(config);
  const x = cx.toNHWC(v, name);
  const size = x.shape.reduce((a, b) => a * b, 1);
  return {
    name: cx.g.node('Flatten', [x.name], name, { axis: { int: 1 } }),
    shape: [size],
    layout: 'NHWC',
  };
};

const dense: LayerConverter = (cx, { name, config }, v) => {
  const x = cx.toNHWC(v, name);
  const inputs = x.shape.at(-1)!;
  const units = Number(config.units);
  const kernel = cx.weight(name, 'kernel', [inputs, units]);
  const k = cx.g.constant(`${name}/kernel`, kernel.values, kernel.shape);
  let y = cx.g.node('MatMul', [x.name, k], name);
  if (config.use_bias !== false) {
    const bias = cx.weight(name, 'bias', [units]);
    y = cx.g.node('Add', [y, cx.g.constant(`${name}/bias`, bias.values, bias.shape)], name);
  }
  const out: Value = { name: y, shape: [...x.shape.slice(0, -1), units], layout: 'NHWC' };
  return activation(cx, out, config.activation, name);
};

/** A tfjs kernel [kh, kw, in, out] in ONNX's order [out, in, kh, kw]. */
function hwioToOihw(values: Float32Array, [kh, kw, cin, cout]: number[]): Float32Array {
  const oihw = new Float32Array(values.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let i = 0; i < cin; i++)
        for (let o = 0; o < cout; o++)
          oihw[((o * cin + i) * kh + y) * kw + x] = values[((y * kw + x) * cin + i) * cout + o];
  return oihw;
}

const conv2d: LayerConverter = (cx, { name, config: c }, v) => {
  checkChannelsLast(c);
  checkImage(v);
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
  const kernel = cx.weight(name, 'kernel', [kh, kw, cin, filters]);
  const inputs = [
    cx.toNCHW(v, name).name,
    cx.g.constant(`${name}/kernel`, hwioToOihw(kernel.values, kernel.shape), [filters, cin, kh, kw]),
  ];
  if (c.use_bias !== false) {
    const bias = cx.weight(name, 'bias', [filters]);
    inputs.push(cx.g.constant(`${name}/bias`, bias.values, bias.shape));
  }
  const y = cx.g.node('Conv', inputs, name, {
    kernel_shape: { ints: [kh, kw] },
    strides: { ints: [sh, sw] },
    dilations: { ints: [dh, dw] },
    pads: { ints: [rows.pads[0], cols.pads[0], rows.pads[1], cols.pads[1]] },
    group: { int: 1 },
  });
  const out: Value = { name: y, shape: [rows.out, cols.out, filters], layout: 'NCHW' };
  return activation(cx, out, c.activation, name);
};

function pooling(op: 'MaxPool' | 'AveragePool'): LayerConverter {
  return (cx, { name, config: c }, v) => {
    checkChannelsLast(c);
    checkImage(v);
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
    if (op === 'AveragePool') attrs.count_include_pad = { int: 0 };
    const x = cx.toNCHW(v, name);
    return { name: cx.g.node(op, [x.name], name, attrs), shape: [rows.out, cols.out, ch], layout: 'NCHW' };
  };
}

function globalPooling(op: 'ReduceMean' | 'ReduceMax'): LayerConverter {
  return (cx, { name, config }, v) => {
    checkChannelsLast(config);
    checkImage(v);
    if (config.keepdims === true) throw new Unsupported('keepdims is not supported');
    const axes = v.layout === 'NCHW' ? [2, 3] : [1, 2];
    const y = cx.g.node(op, [v.name], name, { axes: { ints: axes }, keepdims: { int: 0 } });
    return { name: y, shape: [v.shape[2]], layout: 'NHWC' };
  };
}

const batchNormalization: LayerConverter = (cx, { name, config: c }, v) => {
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
  // A disabled gamma or beta is stored as nothing: the file gets its neutral value.
  const param = (p: string, enabled: boolean, fill: number) =>
    enabled
      ? cx.g.constant(`${name}/${p}`, cx.weight(name, p, [ch]).values, [ch])
      : cx.g.constant(`${name}/${p}`, new Float32Array(ch).fill(fill), [ch]);
  const x = cx.toNCHW(v, name);
  const inputs = [
    x.name,
    param('gamma', c.scale !== false, 1),
    param('beta', c.center !== false, 0),
    param('moving_mean', true, 0),
    param('moving_variance', true, 1),
  ];
  const epsilon = Number(c.epsilon ?? 1e-3);
  return { ...x, name: cx.g.node('BatchNormalization', inputs, name, { epsilon: { float: epsilon } }) };
};

const relu: LayerConverter = (cx, { name, config }, x) =>
  config.max_value === null || config.max_value === undefined
    ? cx.op(x, 'Relu', name)
    : cx.clip(x, 0, Number(config.max_value), name);

const softmax: LayerConverter = (cx, { name, config }, x) => {
  const axis = config.axis ?? -1;
  if (axis !== -1 && axis !== x.shape.length)
    throw new Unsupported(`softmax over axis ${JSON.stringify(axis)} is not supported (only the last)`);
  return cx.op(x, 'Softmax', name, { axis: { int: cx.channelAxis(x) } });
};

const BUILT_IN: Record<string, LayerConverter> = {
  InputLayer: identity,
  // Dropout and noise do nothing at inference.
  Dropout: identity,
  SpatialDropout1D: identity,
  SpatialDropout2D: identity,
  GaussianNoise: identity,
  GaussianDropout: identity,
  AlphaDropout: identity,
  Flatten: flatten,
  Dense: dense,
  Conv2D: conv2d,
  MaxPooling2D: pooling('MaxPool'),
  AveragePooling2D: pooling('AveragePool'),
  GlobalAveragePooling2D: globalPooling('ReduceMean'),
  GlobalMaxPooling2D: globalPooling('ReduceMax'),
  BatchNormalization: batchNormalization,
  Activation: (cx, { name, config }, x) => activation(cx, x, config.activation, name),
  ReLU: relu,
  LeakyReLU: (cx, { name, config }, x) =>
    cx.op(x, 'LeakyRelu', name, { alpha: { float: Number(config.alpha ?? 0.3) } }),
  ELU: (cx, { name, config }, x) => cx.op(x, 'Elu', name, { alpha: { float: Number(config.alpha ?? 1) } }),
  Softmax: softmax,
};
for (const [className, convert] of Object.entries(BUILT_IN)) registerLayerConverter(className, convert);

// ---------------------------------------------------------------------------------------------
// The walk over a sequential model.

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

/** One layer through its class's converter; what it cannot map becomes a line naming the layer. */
function convertLayer(cx: ExportContext, json: LayerJson, x: Value): Value {
  try {
    const layer = {
      className: json.class_name,
      name: String(json.config.name ?? json.class_name),
      config: json.config,
    };
    const convert = converters.get(layer.className);
    if (!convert) throw new Unsupported(`no ONNX mapping for ${layer.className}`);
    return convert(cx, layer, x);
  } catch (err) {
    if (!(err instanceof Unsupported)) throw err;
    throw new UserError(
      `cannot export layer '${String(json.config?.name ?? '?')}' (class ${json.class_name}) of ${cx.source} to ONNX: ${err.message}`,
    );
  }
}

/** A sequential tfjs layers model (what model.json's `layers-model` format holds). */
export const exportLayersModel: ModelExporter = (cx, topology, recordedShape) => {
  const layers = layersOf(topology, cx.source);
  const fromTopology = topologyInputShape(layers);
  const inputShape = recordedShape ?? (fromTopology as number[]);
  if (!inputShape || inputShape.some((d) => typeof d !== 'number' || d < 1))
    throw new UserError(
      `cannot export ${cx.source} to ONNX: its input shape is not known (got ${JSON.stringify(inputShape)})`,
    );
  if (fromTopology && fromTopology.join('x') !== inputShape.join('x'))
    throw new UserError(
      `cannot export ${cx.source} to ONNX: the model takes ${fromTopology.join('x')} inputs but the run records ${inputShape.join('x')}`,
    );
  let x: Value = { name: INPUT_NAME, shape: [...inputShape], layout: 'NHWC' };
  for (const layer of layers) x = convertLayer(cx, layer, x);
  return { inputShape, logits: x };
};
