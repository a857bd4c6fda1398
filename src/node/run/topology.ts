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

/** Layers that combine several values of one shape into one (a functional model's merges). */
const MERGING = new Set(['Add', 'Multiply', 'Average', 'Maximum', 'Minimum', 'Subtract']);

type Refuse = (why: string) => UserError;

/** Models used as layers. */
const NESTED = new Set(['Sequential', 'Model', 'Functional']);

/**
 * Walks a topology layer by layer, shape by shape, adding up the parameters the layers imply:
 * a Sequential model, and the models nested in it (Sequential, or functional: a fine-tuned
 * MobileNet-style backbone, node/backbone/fine-tune.ts).
 */
class Walker {
  params = 0;
  constructor(
    private readonly declared: number,
    private readonly refuse: Refuse,
  ) {}

  /** After each layer: its activations are an image's, and the parameters are all there. */
  private check(shape: number[], where: string): void {
    const values = shape.reduce((a, b) => a * b, 1);
    if (values > MAX_ACTIVATION_VALUES || values < 1)
      throw this.refuse(`${where} outputs ${shape.join('x')} values per image`);
    if (this.params > this.declared)
      throw this.refuse(
        `its layers need at least ${this.params} parameters by ${where} but its weights hold ${this.declared}`,
      );
  }

  /** The shape of a batch_input_shape, or undefined when the layer has none. */
  private inputShape(c: Config, where: string): number[] | undefined {
    const batchShape = c.batch_input_shape as unknown[] | undefined;
    if (!Array.isArray(batchShape)) return undefined;
    const dims = ints(batchShape.slice(1), batchShape.length - 1);
    if (!dims || batchShape[0] !== null)
      throw this.refuse(`${where} has the input shape ${JSON.stringify(batchShape)}`);
    return dims;
  }

  /** A Sequential model's layers in order, from `input` (or its first layer's input shape). */
  sequential(config: unknown, input: number[] | undefined, prefix: string): number[] {
    const cfg = config as { layers?: unknown } | unknown[] | undefined;
    const layers = (Array.isArray(cfg) ? cfg : cfg?.layers) as LayerJson[] | undefined;
    if (!Array.isArray(layers) || layers.length === 0)
      throw this.refuse(`${prefix}the topology has no layers`);
    let shape = input;
    for (const [i, layer] of layers.entries()) {
      const kind = String(layer?.class_name);
      const c = (layer?.config ?? {}) as Config;
      const where = `${prefix}layer ${i + 1} (${kind})`;
      const declared = this.inputShape(c, where);
      if (declared) {
        if (shape && shape.join('x') !== declared.join('x'))
          throw this.refuse(
            `${where} takes ${declared.join('x')} values, not the ${shape.join('x')} it gets`,
          );
        shape = declared;
      }
      // A nested model may bring its input shape itself (its own input layer).
      if (!shape && !NESTED.has(kind)) throw this.refuse(`${where} comes before any input shape`);
      shape = this.layer(kind, c, shape, where);
      this.check(shape, where);
    }
    return shape!;
  }

  /**
   * A functional model (class Model or Functional): each layer called once on layers before it
   * (model.json lists them in that order), one output.
   */
  functional(config: unknown, input: number[] | undefined, prefix: string): number[] {
    const c = (config ?? {}) as Config;
    const layers = c.layers as (LayerJson & { name?: unknown; inbound_nodes?: unknown })[] | undefined;
    if (!Array.isArray(layers) || layers.length === 0) throw this.refuse(`${prefix}the model has no layers`);
    const shapes = new Map<string, number[]>();
    for (const [i, layer] of layers.entries()) {
      const kind = String(layer?.class_name);
      const lc = (layer?.config ?? {}) as Config;
      const name = String(layer?.name ?? lc.name);
      const where = `${prefix}layer ${i + 1} (${kind} '${name}')`;
      if (shapes.has(name)) throw this.refuse(`${where} repeats a layer name`);
      if (kind === 'InputLayer') {
        const dims = this.inputShape(lc, where);
        if (!dims || (input && input.join('x') !== dims.join('x')))
          throw this.refuse(`${where} takes ${JSON.stringify(lc.batch_input_shape)}`);
        shapes.set(name, dims);
        continue;
      }
      const nodes = layer.inbound_nodes;
      if (!Array.isArray(nodes) || nodes.length !== 1 || !Array.isArray(nodes[0]) || nodes[0].length === 0)
        throw this.refuse(`${where} is not called exactly once`);
      const ins = (nodes[0] as unknown[]).map((n) =>
        Array.isArray(n) ? shapes.get(String(n[0])) : undefined,
      );
      if (ins.some((x) => x === undefined))
        throw this.refuse(`${where} reads a layer that does not come before it`);
      const inputs = ins as number[][];
      let out: number[];
      if (inputs.length === 1) out = this.layer(kind, lc, inputs[0], where);
      else if (MERGING.has(kind)) {
        if (!inputs.every((x) => x.join('x') === inputs[0].join('x')))
          throw this.refuse(`${where} merges values of different shapes`);
        out = inputs[0];
      } else if (kind === 'Concatenate') {
        const rank = inputs[0].length;
        const axis = lc.axis ?? -1;
        const same = (x: number[]) =>
          x.length === rank && x.slice(0, -1).join('x') === inputs[0].slice(0, -1).join('x');
        if ((axis !== -1 && axis !== rank) || !inputs.every(same))
          throw this.refuse(`${where} concatenates values it cannot join on their last axis`);
        out = [...inputs[0].slice(0, -1), inputs.reduce((a, x) => a + x[rank - 1], 0)];
      } else throw this.refuse(`${where} reads several values`);
      this.check(out, where);
      shapes.set(name, out);
    }
    const outputs = c.output_layers as unknown[][] | undefined;
    const out =
      Array.isArray(outputs) && outputs.length === 1 ? shapes.get(String(outputs[0]?.[0])) : undefined;
    if (!out) throw this.refuse(`${prefix}the model does not have one output among its layers`);
    return out;
  }

  /** The output shape of one layer of class `kind` reading `shape`, counting its parameters. */
  layer(kind: string, c: Config, input: number[] | undefined, where: string): number[] {
    if (kind === 'Sequential') return this.sequential(c, input, `${where}: `);
    if (kind === 'Model' || kind === 'Functional') return this.functional(c, input, `${where}: `);
    const refuse = this.refuse;
    if (!input) throw refuse(`${where} comes before any input shape`);
    let shape = input;
    const last = shape[shape.length - 1];
    let params = 0;
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
    this.params += params;
    return shape;
  }
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
  const walker = new Walker(declared, refuse);
  walker.sequential(topo.config, undefined, '');
  return walker.params;
}
