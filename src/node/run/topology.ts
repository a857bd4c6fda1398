/**
 * Checks a model.json's layers topology against its weights before tfjs builds it. Building a
 * layers model creates (and initializes) every weight the topology implies before any saved
 * weight is compared with it: a 1 KB model.json declaring Dense(500000) would allocate gigabytes
 * first and fail after. So the topology is walked here, shape by shape, for the layer classes
 * imgclf's models are made of, and refused when it implies more parameters than the weights
 * hold, or activations beyond any image imgclf trains on. Anything else is not a model imgclf
 * wrote and is refused too.
 */
import { UserError } from '../../core/errors.js';

/** Values of one example's activations at any layer: far above any model imgclf trains. */
export const MAX_ACTIVATION_VALUES = 2 ** 26;

type Config = Record<string, unknown>;
interface LayerJson {
  class_name?: unknown;
  config?: Config;
}

/** Layers that keep their input's shape and hold no weights. */
// Rescaling: the first layer of a fine-tuned [-1, 1] backbone (node/backbone/fine-tune.ts).
const SHAPE_KEEPING = new Set(['Dropout', 'ReLU', 'Activation', 'LeakyReLU', 'Softmax', 'Rescaling']);

function ints(value: unknown, n: number): number[] | undefined {
  const list = typeof value === 'number' ? Array<number>(n).fill(value) : value;
  if (!Array.isArray(list) || list.length !== n) return undefined;
  return list.every((v) => Number.isSafeInteger(v) && v > 0 && v <= MAX_ACTIVATION_VALUES)
    ? (list as number[])
    : undefined;
}

/** Output length of a window of `size` (dilated by `dilation`) sliding by `stride`. */
function slide(length: number, size: number, stride: number, dilation: number, padding: unknown): number {
  if (padding === 'same') return Math.ceil(length / stride);
  const span = (size - 1) * dilation + 1;
  return length >= span ? Math.floor((length - span) / stride) + 1 : 0;
}

/**
 * Walks the layers of a Sequential topology and returns the parameters it implies, or throws
 * a UserError (naming `file`) for a topology that is not one imgclf writes or that needs more
 * than `declared` parameters (the weight specs' total) or huge activations.
 */
export function checkTopology(topology: unknown, declared: number, file: string): number {
  const refuse = (why: string) =>
    new UserError(
      `${file}: ${why}; it is not a model imgclf wrote (or it was changed): restore the run directory or retrain`,
    );
  const topo = topology as { class_name?: unknown; config?: unknown } | undefined;
  if (!topo || topo.class_name !== 'Sequential')
    throw refuse(`the topology is '${String(topo?.class_name)}', not a Sequential model`);
  const cfg = topo.config as { layers?: unknown } | unknown[] | undefined;
  const layers = (Array.isArray(cfg) ? cfg : cfg?.layers) as LayerJson[] | undefined;
  if (!Array.isArray(layers) || layers.length === 0) throw refuse('the topology has no layers');

  let shape: number[] | undefined;
  let params = 0;
  for (const [i, layer] of layers.entries()) {
    const kind = String(layer?.class_name);
    const c = (layer?.config ?? {}) as Config;
    const where = `layer ${i + 1} (${kind})`;
    const batchShape = c.batch_input_shape as unknown[] | undefined;
    if (Array.isArray(batchShape)) {
      const dims = ints(batchShape.slice(1), batchShape.length - 1);
      if (!dims || batchShape[0] !== null)
        throw refuse(`${where} has the input shape ${JSON.stringify(batchShape)}`);
      shape = dims;
    }
    if (!shape) throw refuse(`${where} comes before any input shape`);
    const last = shape[shape.length - 1];
    if (kind === 'InputLayer' || SHAPE_KEEPING.has(kind)) {
      // Same shape, no weights.
    } else if (kind === 'Flatten') {
      shape = [shape.reduce((a, b) => a * b, 1)];
    } else if (kind === 'Dense') {
      const units = ints(c.units, 1)?.[0];
      if (!units) throw refuse(`${where} has ${JSON.stringify(c.units)} units`);
      params += last * units + (c.use_bias === false ? 0 : units);
      shape = [...shape.slice(0, -1), units];
    } else if (
      kind === 'Conv2D' ||
      kind === 'DepthwiseConv2D' ||
      kind === 'MaxPooling2D' ||
      kind === 'AveragePooling2D'
    ) {
      if (shape.length !== 3 || (c.data_format !== undefined && c.data_format !== 'channels_last'))
        throw refuse(`${where} takes ${shape.join('x')} images in ${String(c.data_format)} order`);
      const conv = kind === 'Conv2D';
      const depthwise = kind === 'DepthwiseConv2D';
      const size = ints(conv || depthwise ? c.kernel_size : c.pool_size, 2);
      const strides = ints(c.strides ?? size, 2);
      const dilation = conv || depthwise ? ints(c.dilation_rate ?? 1, 2) : [1, 1];
      const multiplier = depthwise ? ints(c.depth_multiplier ?? 1, 1)?.[0] : 1;
      const filters = conv ? ints(c.filters, 1)?.[0] : multiplier && last * multiplier;
      if (!size || !strides || !dilation || !filters || (c.padding !== 'same' && c.padding !== 'valid'))
        throw refuse(`${where} has a kernel, stride, padding or filter count imgclf does not write`);
      if (conv) params += size[0] * size[1] * last * filters + (c.use_bias === false ? 0 : filters);
      // Fine-tuned MobileNet-style backbones (node/backbone/fine-tune.ts).
      if (depthwise) params += size[0] * size[1] * filters + (c.use_bias === false ? 0 : filters);
      shape = [
        slide(shape[0], size[0], strides[0], dilation[0], c.padding),
        slide(shape[1], size[1], strides[1], dilation[1], c.padding),
        filters,
      ];
    } else if (kind === 'GlobalAveragePooling2D' || kind === 'GlobalMaxPooling2D') {
      if (shape.length !== 3) throw refuse(`${where} pools ${shape.join('x')} values, not an image`);
      shape = [last];
    } else if (kind === 'ZeroPadding2D') {
      const p = c.padding ?? 1;
      // An int, (height, width) each on both sides, or ((top, bottom), (left, right)).
      const sides = (v: unknown): number[] | undefined => {
        if (typeof v === 'number') return [v, v];
        return Array.isArray(v) && v.length === 2 && v.every((d) => Number.isSafeInteger(d) && d >= 0)
          ? (v as number[])
          : undefined;
      };
      const [rows, cols] = Array.isArray(p) ? [sides(p[0]), sides(p[1])] : [sides(p), sides(p)];
      if (shape.length !== 3 || !rows || !cols) throw refuse(`${where} pads by ${JSON.stringify(p)}`);
      shape = [shape[0] + rows[0] + rows[1], shape[1] + cols[0] + cols[1], last];
    } else if (kind === 'BatchNormalization') {
      const axis = c.axis ?? -1;
      if (axis !== -1 && axis !== shape.length)
        throw refuse(`${where} normalizes axis ${JSON.stringify(axis)}`);
      // Moving mean and variance, plus gamma and beta unless turned off.
      params += last * (2 + (c.scale === false ? 0 : 1) + (c.center === false ? 0 : 1));
    } else {
      throw refuse(`${where} is a layer class imgclf's models do not use`);
    }
    const values = shape.reduce((a, b) => a * b, 1);
    if (values > MAX_ACTIVATION_VALUES || values < 1)
      throw refuse(`${where} outputs ${shape.join('x')} values per image`);
    if (params > declared)
      throw refuse(
        `its layers need at least ${params} parameters by ${where} but its weights hold ${declared}`,
      );
  }
  return params;
}
