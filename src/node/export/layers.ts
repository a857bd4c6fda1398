/**
 * TensorFlow.js layers models -> ONNX (opset 13). A sequential model's layers are walked in
 * order; a functional one's (class Model or Functional) from its output back along each layer's
 * inbound nodes, so every layer is converted after the layers it reads, and a layer may read
 * several. A model used as a layer is walked the same way. Each layer becomes standard ONNX ops
 * through the converter registered for its class:
 *
 *   Flatten            Flatten(axis 1) of the NHWC tensor: the H, W, C order tfjs flattens in
 *   Dense              MatMul + Add (+ activation)
 *   Conv2D             Conv with explicit pads ('same' as TensorFlow pads: the odd pixel at
 *                      the bottom/right), kernel HWIO -> OIHW
 *   DepthwiseConv2D    Conv with one group per input channel (depth_multiplier outputs each;
 *                      no dilation)
 *   ZeroPadding2D      Pad (zeros)
 *   Add, Multiply, Average, Maximum, Minimum  Add, Mul, Mean, Max, Min
 *   Concatenate        Concat over the axis as the stored layout holds it
 *   Reshape            Reshape of the NHWC values (tfjs' row-major order)
 *   Max/AveragePooling2D  MaxPool / AveragePool (count_include_pad 0, as TensorFlow averages)
 *   GlobalAverage/MaxPooling2D  ReduceMean / ReduceMax over H, W
 *   BatchNormalization BatchNormalization in inference form (moving mean and variance, epsilon)
 *   Activation, ReLU, LeakyReLU, ELU, Softmax  their ONNX ops (ReLU with max_value: Clip)
 *   Rescaling          Mul + Add by its scale and offset (a fine-tuned [-1, 1] backbone's first layer)
 *   Dropout and the noise layers  nothing (identity at inference)
 *
 * The graph input is the tensor the tfjs model takes: float32 NHWC [N, H, W, C] with a dynamic
 * batch. Conv, pooling and batch normalization want NCHW, so each value carries its layout and
 * a converter asks for the one it needs (ExportContext.toNCHW / toNHWC): a Transpose appears
 * only where the layout changes (into the first conv, back before Flatten or Dense), and
 * consecutive convolutions and pools stay in NCHW.
 *
 * Another layer class is one `registerLayerConverter` call; a class without a converter stops
 * the export with one line naming the layer. A model has one input and one output.
 */
import { UserError } from '../../core/errors.js';
import { type ExportContext, type ModelExporter, Unsupported, type Value } from './context.js';
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
 * Adds the ONNX nodes of one layer reading `x` and returns the value the layer outputs. A layer
 * reading several values (Add, Concatenate) gets them all as `inputs`, `x` being the first.
 * It throws `Unsupported` for a setting it cannot map; the message is told with the layer's
 * name.
 */
export type LayerConverter = (cx: ExportContext, layer: Layer, x: Value, inputs: Value[]) => Value;

export interface ConverterOptions {
  /** The layer reads several values (a merge); otherwise a layer given more than one is refused. */
  multipleInputs?: boolean;
}

const converters = new Map<string, { convert: LayerConverter; multipleInputs: boolean }>();

/** Makes layers of class `className` exportable; a class has one converter. */
export function registerLayerConverter(
  className: string,
  convert: LayerConverter,
  options: ConverterOptions = {},
): void {
  if (converters.has(className))
    throw new Error(`an ONNX converter for layer class ${className} is already registered`);
  converters.set(className, { convert, multipleInputs: options.multipleInputs ?? false });
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

/**
 * The Conv node of Conv2D and DepthwiseConv2D: TensorFlow's output size and pads, the bias,
 * then the layer's activation. `kernel` is in ONNX's [out, in / group, kh, kw] order.
 */
function convolution(
  cx: ExportContext,
  name: string,
  c: Record<string, unknown>,
  v: Value,
  kernel: { base: string; values: Float32Array; shape: number[] },
  group: number,
): Value {
  const [h, w] = v.shape;
  const [filters, , kh, kw] = kernel.shape;
  const [sh, sw] = pair(c.strides, 1);
  const [dh, dw] = pair(c.dilation_rate, 1);
  const padding = String(c.padding ?? 'valid');
  const rows = window(h, kh, sh, dh, padding);
  const cols = window(w, kw, sw, dw, padding);
  const inputs = [
    cx.toNCHW(v, name).name,
    cx.g.constant(`${name}/${kernel.base}`, kernel.values, kernel.shape),
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
    group: { int: group },
  });
  const out: Value = { name: y, shape: [rows.out, cols.out, filters], layout: 'NCHW' };
  return activation(cx, out, c.activation, name);
}

const conv2d: LayerConverter = (cx, { name, config: c }, v) => {
  checkChannelsLast(c);
  checkImage(v);
  if (c.groups !== undefined && c.groups !== null && c.groups !== 1)
    throw new Unsupported('grouped convolution is not supported');
  const cin = v.shape[2];
  const filters = Number(c.filters);
  const [kh, kw] = pair(c.kernel_size, 1);
  const kernel = cx.weight(name, 'kernel', [kh, kw, cin, filters]);
  const oihw = hwioToOihw(kernel.values, kernel.shape);
  return convolution(cx, name, c, v, { base: 'kernel', values: oihw, shape: [filters, cin, kh, kw] }, 1);
};

const depthwiseConv2d: LayerConverter = (cx, { name, config: c }, v) => {
  checkChannelsLast(c);
  checkImage(v);
  // tfjs-layers reads the dilation and then convolves without it, so tfjs and Keras compute
  // different things with one: neither is a safe guess.
  if (pair(c.dilation_rate, 1).some((d) => d !== 1))
    throw new Unsupported('a dilation_rate other than 1 is not supported (tfjs ignores it, Keras does not)');
  const cin = v.shape[2];
  const multiplier = Number(c.depth_multiplier ?? 1);
  const [kh, kw] = pair(c.kernel_size, 1);
  const kernel = cx.weight(name, 'depthwise_kernel', [kh, kw, cin, multiplier]);
  // Output channel c * multiplier + m is input channel c's m-th filter, in TensorFlow as in a
  // Conv with one group per input channel: the kernel [kh, kw, cin, m] is, value for value, a
  // [kh, kw, 1, cin * m] one.
  const filters = cin * multiplier;
  const oihw = hwioToOihw(kernel.values, [kh, kw, 1, filters]);
  return convolution(
    cx,
    name,
    c,
    v,
    { base: 'depthwise_kernel', values: oihw, shape: [filters, 1, kh, kw] },
    cin,
  );
};

/** [[top, bottom], [left, right]] from one number, [rows, cols] or the pairs themselves. */
function paddings(v: unknown): [[number, number], [number, number]] {
  if (Array.isArray(v) && v.length === 2) {
    const [rows, cols] = v.map((p: unknown) => (typeof p === 'number' ? [p, p] : p));
    const ok = (p: unknown) =>
      Array.isArray(p) && p.length === 2 && p.every((n) => Number.isInteger(n) && n >= 0);
    if (ok(rows) && ok(cols)) return [rows as [number, number], cols as [number, number]];
  }
  if (Number.isInteger(v) && (v as number) >= 0)
    return [
      [v as number, v as number],
      [v as number, v as number],
    ];
  throw new Unsupported(`cannot read padding ${JSON.stringify(v)}`);
}

const zeroPadding2d: LayerConverter = (cx, { name, config }, v) => {
  checkChannelsLast(config);
  checkImage(v);
  const [[top, bottom], [left, right]] = paddings(config.padding);
  // NCHW: a padding sits before a convolution, which wants that layout anyway.
  const x = cx.toNCHW(v, name);
  const pads = cx.g.intConstant(`${name}/pads`, [0, 0, top, left, 0, 0, bottom, right], [8]);
  const [h, w, c] = x.shape;
  return {
    name: cx.g.node('Pad', [x.name, pads], name),
    shape: [h + top + bottom, w + left + right, c],
    layout: 'NCHW',
  };
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

/** x * scale + offset, both scalars (Keras' Rescaling; per-channel lists are not mapped). */
const rescaling: LayerConverter = (cx, { name, config }, x) => {
  const scale = Number(config.scale ?? 1);
  const offset = Number(config.offset ?? 0);
  if (!Number.isFinite(scale) || !Number.isFinite(offset))
    throw new Unsupported(
      `scale ${JSON.stringify(config.scale)} and offset ${JSON.stringify(config.offset)} are not numbers`,
    );
  let y = x;
  if (scale !== 1) y = cx.op(y, 'Mul', name, {}, [cx.g.constant(`${name}/scale`, [scale], [])]);
  if (offset !== 0) y = cx.op(y, 'Add', name, {}, [cx.g.constant(`${name}/offset`, [offset], [])]);
  return y;
};

const relu: LayerConverter = (cx, { name, config }, x) => {
  // Keras' ReLU also has a slope below the threshold; tfjs' has only max_value.
  if (Number(config.negative_slope ?? 0) !== 0 || Number(config.threshold ?? 0) !== 0)
    throw new Unsupported('a negative_slope or threshold other than 0 is not supported');
  return config.max_value === null || config.max_value === undefined
    ? cx.op(x, 'Relu', name)
    : cx.clip(x, 0, Number(config.max_value), name);
};

// ---------------------------------------------------------------------------------------------
// Layers reading several values.

/** NCHW when an image input is stored so (two convolution branches meeting), else NHWC. */
function commonLayout(inputs: Value[]): Value['layout'] {
  return inputs.some((v) => v.shape.length === 3 && v.layout === 'NCHW') ? 'NCHW' : 'NHWC';
}

function inLayout(cx: ExportContext, v: Value, layout: Value['layout'], scope: string): Value {
  return layout === 'NCHW' ? cx.toNCHW(v, scope) : cx.toNHWC(v, scope);
}

/**
 * Add, Multiply, ...: inputs of one shape, element by element. `op` combines two at a time;
 * Mean takes them all at once (averaging pairs would weigh them unequally).
 */
function merge(op: 'Add' | 'Mul' | 'Max' | 'Min' | 'Mean'): LayerConverter {
  return (cx, { name }, first, inputs) => {
    if (inputs.length < 2) throw new Unsupported(`it needs 2 inputs or more, not ${inputs.length}`);
    const other = inputs.find((v) => v.shape.join(',') !== first.shape.join(','));
    if (other) throw new Unsupported(`its inputs differ in shape ([${first.shape}], [${other.shape}])`);
    const layout = commonLayout(inputs);
    const names = inputs.map((v) => inLayout(cx, v, layout, name).name);
    const y =
      op === 'Mean' ? cx.g.node(op, names, name) : names.reduce((a, b) => cx.g.node(op, [a, b], name));
    return { name: y, shape: first.shape, layout };
  };
}

const concatenate: LayerConverter = (cx, { name, config }, first, inputs) => {
  const rank = first.shape.length;
  // Keras counts the batch axis: -1 and rank are the last (the channels of an image).
  const raw = Number(config.axis ?? -1);
  const axis = raw < 0 ? raw + rank + 1 : raw;
  if (!Number.isInteger(axis) || axis < 1 || axis > rank)
    throw new Unsupported(`concatenation over axis ${raw} is not supported`);
  const fits = (v: Value) =>
    v.shape.length === rank && v.shape.every((d, i) => i === axis - 1 || d === first.shape[i]);
  const other = inputs.find((v) => !fits(v));
  if (other)
    throw new Unsupported(`its inputs [${first.shape}] and [${other.shape}] do not fit over axis ${raw}`);
  const layout = commonLayout(inputs);
  const names = inputs.map((v) => inLayout(cx, v, layout, name).name);
  // NCHW holds an image's channels (NHWC axis 3) at 1, and H and W one further on.
  const stored = rank === 3 && layout === 'NCHW' ? [0, 2, 3, 1][axis] : axis;
  const shape = [...first.shape];
  shape[axis - 1] = inputs.reduce((sum, v) => sum + v.shape[axis - 1], 0);
  return { name: cx.g.node('Concat', names, name, { axis: { int: stored } }), shape, layout };
};

const reshape: LayerConverter = (cx, { name, config }, v) => {
  const raw: unknown = config.target_shape;
  // The size left to infer is -1 in Keras' files and null in tfjs'.
  const target = Array.isArray(raw) ? raw.map((d: unknown) => (d === null ? -1 : d)) : [];
  const isSize = (d: unknown): d is number => Number.isInteger(d) && ((d as number) >= 1 || d === -1);
  if (target.length === 0 || !target.every(isSize))
    throw new Unsupported(`cannot read target_shape ${JSON.stringify(raw)}`);
  const size = v.shape.reduce((a, b) => a * b, 1);
  const known = target.reduce((a: number, d) => (d === -1 ? a : a * d), 1);
  const free = target.filter((d) => d === -1).length;
  if (free > 1 || (free === 1 ? size % known !== 0 : known !== size))
    throw new Unsupported(`cannot reshape [${v.shape}] to [${target.join(',')}]`);
  const shape = target.map((d) => (d === -1 ? size / known : d));
  // tfjs reshapes the NHWC values in row-major order; -1 leaves the batch as it comes.
  const x = cx.toNHWC(v, name);
  const dims = cx.g.intConstant(`${name}/shape`, [-1, ...shape], [shape.length + 1]);
  return { name: cx.g.node('Reshape', [x.name, dims], name), shape, layout: 'NHWC' };
};

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
  DepthwiseConv2D: depthwiseConv2d,
  ZeroPadding2D: zeroPadding2d,
  Reshape: reshape,
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
  Rescaling: rescaling,
};
for (const [className, convert] of Object.entries(BUILT_IN)) registerLayerConverter(className, convert);

const MERGES: Record<string, LayerConverter> = {
  Add: merge('Add'),
  Multiply: merge('Mul'),
  Average: merge('Mean'),
  Maximum: merge('Max'),
  Minimum: merge('Min'),
  Concatenate: concatenate,
};
for (const [className, convert] of Object.entries(MERGES))
  registerLayerConverter(className, convert, { multipleInputs: true });

// ---------------------------------------------------------------------------------------------
// The walk over a model.

/** A model's class and config, as model.json (or a layer that is a model) holds them. */
interface ModelJson {
  class_name?: string;
  config?: unknown;
}

/** A layer of a functional model, with the values each of its calls reads. */
interface GraphLayerJson extends LayerJson {
  name?: string;
  inbound_nodes?: unknown[];
}

/** One value in a functional topology: the layer, which call of it, which of its outputs. */
type TensorRef = [layer: string, node: number, tensor: number];

const FUNCTIONAL = new Set(['Model', 'Functional']);

const failure = (cx: ExportContext, message: string) =>
  new UserError(`cannot export ${cx.source} to ONNX: ${message}`);

function sequentialLayers(cx: ExportContext, m: ModelJson): LayerJson[] {
  const layers = Array.isArray(m.config) ? m.config : (m.config as { layers?: unknown })?.layers;
  if (!Array.isArray(layers) || layers.length === 0) throw failure(cx, 'its topology lists no layers');
  return layers as LayerJson[];
}

/** [[name, node, tensor], ...]; Keras also writes one value without the outer list. */
function tensorRefs(cx: ExportContext, v: unknown, what: string): TensorRef[] {
  const list: unknown = Array.isArray(v) && typeof v[0] === 'string' ? [v] : v;
  const isRef = (r: unknown) =>
    Array.isArray(r) && typeof r[0] === 'string' && Number.isInteger(r[1]) && Number.isInteger(r[2]);
  if (!Array.isArray(list) || !list.every(isRef))
    throw failure(cx, `cannot read ${what} ${JSON.stringify(v)} in its topology`);
  return list.map((r: TensorRef) => [r[0], r[1], r[2]]);
}

/** A functional model's layers by name, and its input and output, one of each. */
function functionalGraph(cx: ExportContext, m: ModelJson) {
  const c = (m.config ?? {}) as { layers?: unknown; input_layers?: unknown; output_layers?: unknown };
  if (!Array.isArray(c.layers) || c.layers.length === 0) throw failure(cx, 'its topology lists no layers');
  const layers = new Map<string, GraphLayerJson>();
  for (const l of c.layers as GraphLayerJson[]) layers.set(String(l.name ?? l.config?.name), l);
  const inputs = tensorRefs(cx, c.input_layers, 'input_layers');
  const outputs = tensorRefs(cx, c.output_layers, 'output_layers');
  if (inputs.length !== 1 || outputs.length !== 1)
    throw failure(
      cx,
      `it has ${inputs.length} inputs (${inputs.map((r) => r[0]).join(', ')}) and ${outputs.length} outputs (${outputs.map((r) => r[0]).join(', ')}); only models with one input and one output are supported`,
    );
  return { layers, input: inputs[0], output: outputs[0] };
}

function isModel(json: ModelJson): boolean {
  return json.class_name === 'Sequential' || FUNCTIONAL.has(json.class_name ?? '');
}

/** The [H, W, C] a model declares it takes, when it does. */
function declaredInputShape(cx: ExportContext, m: ModelJson): number[] | undefined {
  let first: LayerJson | undefined;
  if (m.class_name === 'Sequential') first = sequentialLayers(cx, m)[0];
  else if (FUNCTIONAL.has(m.class_name ?? '')) {
    const graph = functionalGraph(cx, m);
    first = graph.layers.get(graph.input[0]);
  }
  if (!first) return undefined;
  // A model whose first layer is a model takes what that one takes.
  if (isModel(first)) return declaredInputShape(cx, first);
  const c = first.config;
  const shape = (c.batch_input_shape ?? c.batchInputShape ?? c.batch_shape) as (number | null)[] | undefined;
  return shape ? (shape.slice(1) as number[]) : undefined;
}

/** One layer through its class's converter; what it cannot map becomes a line naming the layer. */
function convertLayer(cx: ExportContext, json: LayerJson, inputs: Value[]): Value {
  try {
    const layer = {
      className: json.class_name,
      name: String(json.config.name ?? json.class_name),
      config: json.config,
    };
    const entry = converters.get(layer.className);
    if (!entry) throw new Unsupported(`no ONNX mapping for ${layer.className}`);
    if (inputs.length !== 1 && !entry.multipleInputs)
      throw new Unsupported(`it reads ${inputs.length} values where its converter takes one`);
    return entry.convert(cx, layer, inputs[0], inputs);
  } catch (err) {
    if (!(err instanceof Unsupported)) throw err;
    throw new UserError(
      `cannot export layer '${String(json.config?.name ?? '?')}' (class ${json.class_name}) of ${cx.source} to ONNX: ${err.message}`,
    );
  }
}

/**
 * A functional model from its output back: each layer call is converted once its inputs are,
 * so the ONNX nodes come in an order that computes every value before it is read.
 */
function walkFunctional(cx: ExportContext, m: ModelJson, input: Value): Value {
  const graph = functionalGraph(cx, m);
  const key = ([layer, node]: TensorRef) => `${layer}#${node}`;
  const values = new Map<string, Value>([[key(graph.input), input]]);
  const pending = new Set<string>();
  const valueOf = (ref: TensorRef): Value => {
    const [name, node, tensor] = ref;
    const json = graph.layers.get(name);
    if (!json) throw failure(cx, `its topology reads layer '${name}', which it does not list`);
    // Every converter gives one value: a layer with several outputs has no mapping.
    if (tensor !== 0)
      throw failure(
        cx,
        `output ${tensor} of layer '${name}' is read; only layers with one output are supported`,
      );
    const done = values.get(key(ref));
    if (done) return done;
    const call = json.inbound_nodes?.[node];
    if (call === undefined || (Array.isArray(call) && call.length === 0))
      throw failure(cx, `layer '${name}' has no inputs in its topology and is not the model's input`);
    if (pending.has(key(ref))) throw failure(cx, `its topology loops through layer '${name}'`);
    pending.add(key(ref));
    const inputs = tensorRefs(cx, call, `the inputs of layer '${name}'`).map(valueOf);
    pending.delete(key(ref));
    const out = convertLayer(cx, json, inputs);
    values.set(key(ref), out);
    return out;
  };
  return valueOf(graph.output);
}

/** The value model `m` (a Sequential, Model or Functional) computes from `input`. */
function walkModel(cx: ExportContext, m: ModelJson, input: Value): Value {
  if (FUNCTIONAL.has(m.class_name ?? '')) return walkFunctional(cx, m, input);
  let x = input;
  for (const layer of sequentialLayers(cx, m)) x = convertLayer(cx, layer, [x]);
  return x;
}

// A model used as a layer (a backbone inside a Sequential with a classifier on top): its own
// layers, reading the value the outer model gives it.
for (const className of ['Sequential', ...FUNCTIONAL])
  registerLayerConverter(className, (cx, layer, x) =>
    walkModel(cx, { class_name: layer.className, config: layer.config }, x),
  );

/** A tfjs layers model (what model.json's `layers-model` format holds). */
export const exportLayersModel: ModelExporter = (cx, topology, recordedShape) => {
  // Keras-converted files wrap the model config with its training config.
  const m = (topology.model_config ?? topology) as ModelJson;
  if (!isModel(m))
    throw failure(
      cx,
      `it is a ${m.class_name ?? 'model without a class name'}, not a Sequential, Model or Functional layers model`,
    );
  const fromTopology = declaredInputShape(cx, m);
  const inputShape = recordedShape ?? (fromTopology as number[]);
  if (!inputShape || inputShape.some((d) => typeof d !== 'number' || d < 1))
    throw new UserError(
      `cannot export ${cx.source} to ONNX: its input shape is not known (got ${JSON.stringify(inputShape)})`,
    );
  // A size the topology leaves free (null: a MobileNet takes any size) fits any recorded one.
  const fits = (d: number | null, i: number) => d === null || d === undefined || d === inputShape[i];
  if (fromTopology && (fromTopology.length !== inputShape.length || !fromTopology.every(fits)))
    throw new UserError(
      `cannot export ${cx.source} to ONNX: the model takes ${fromTopology.join('x')} inputs but the run records ${inputShape.join('x')}`,
    );
  const input: Value = { name: cx.input, shape: [...inputShape], layout: 'NHWC' };
  return { inputShape, logits: walkModel(cx, m, input) };
};
