/**
 * How an ONNX backbone is read, the same in Node (node/backbone/onnx.ts, ONNX Runtime) and in
 * the page (web/src/backbone.ts, ONNX Runtime Web): which input takes the images and in which
 * layout, the input size and scaling from preprocessor_config.json (as transformers' image
 * processors read it), the output that holds the features, and the scaling as one multiply-add
 * per channel. Plain functions over the graph's declared inputs and outputs and the parsed
 * JSON; each refusal is a UserError of one line. `feeder` names who feeds the graph in messages
 * ("imgclf", "the page").
 */
import { UserError } from './errors.js';

/** How pictures become the graph's input, as a run records it. */
export interface OnnxPreprocessing {
  /** Where it came from. */
  from: 'preprocessor_config.json' | 'flags' | 'graph';
  /** What preprocessor_config.json asks for before the crop ("shortest_edge 256", "224x224"). */
  resize?: string;
  /** The centre crop, when it asks for one. */
  crop?: number;
  /** Multiplies each pixel value in 0..255 (rescale_factor; 1/255 by default). */
  rescale: number;
  /** Subtracted per channel (R, G, B) after rescaling, then divided by std. */
  mean: number[];
  std: number[];
}

/** A graph input or output as both runtimes declare it: -1 where a dimension is free. */
export interface GraphValue {
  name: string;
  float: boolean;
  shape: number[];
}

/** The input size where neither the graph nor preprocessor_config.json gives one. */
export const DEFAULT_BACKBONE_SIDE = 224;
/** Output names transformers' vision models use for the pooled features, in preference order. */
export const POOLED_NAMES = ['pooler_output', 'image_embeds', 'pooled_output', 'embeddings', 'features'];

export const shapeText = (s: readonly number[]): string => `[${s.map((d) => (d < 0 ? '?' : d)).join(', ')}]`;

/** The image input: its layout, its side when the graph fixes one, and its channels. */
export interface ImageInput {
  info: GraphValue;
  layout: 'NCHW' | 'NHWC';
  /** The fixed side, or undefined where H and W are free. */
  graphSide: number | undefined;
  channels: 1 | 3;
}

/**
 * The input that takes the images: the one float input (or `pixel_values` among several), 4-D,
 * its channel axis the one of size 1 or 3 ([N, 3, H, W] is NCHW, [N, H, W, 3] NHWC; a graph that
 * leaves both free is NCHW, ONNX's convention), square. `layout` overrides the layout found.
 */
export function imageInput(
  inputs: GraphValue[],
  source: string,
  feeder: string,
  layout?: 'NCHW' | 'NHWC',
): ImageInput {
  const info = inputs.length === 1 ? inputs[0] : inputs.find((i) => i.float && i.name === 'pixel_values');
  if (!info)
    throw new UserError(
      `backbone ${source} takes ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); ${feeder} feeds one image tensor (pixel_values)`,
    );
  if (!info.float)
    throw new UserError(
      `backbone ${source}: its input '${info.name}' is not float32; ${feeder} feeds float32 images`,
    );
  const s = info.shape;
  if (s.length !== 4)
    throw new UserError(
      `backbone ${source}: its input '${info.name}' has shape ${shapeText(s)}, not an image batch [N, C, H, W] or [N, H, W, C]`,
    );
  const isChannels = (d: number) => d === 1 || d === 3;
  const found = isChannels(s[3]) && !isChannels(s[1]) ? 'NHWC' : 'NCHW';
  const c = found === 'NCHW' ? s[1] : s[3];
  if (c >= 0 && !isChannels(c))
    throw new UserError(`backbone ${source} takes ${c}-channel images; ${feeder} gives 1 (gray) or 3 (RGB)`);
  const used = layout ?? found;
  const [h, w, channels] = used === 'NCHW' ? [s[2], s[3], s[1]] : [s[1], s[2], s[3]];
  if (h >= 0 && w >= 0 && h !== w)
    throw new UserError(`backbone ${source} takes ${h}x${w} images; only square inputs are supported`);
  return {
    info,
    layout: used,
    graphSide: h >= 0 ? h : w >= 0 ? w : undefined,
    channels: channels === 1 ? 1 : 3,
  };
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** A size field of preprocessor_config.json: a number, {height, width} or {shortest_edge}. */
function sizeField(v: unknown): { h?: number; w?: number; shortest?: number } | undefined {
  if (num(v) !== undefined) return { h: v as number, w: v as number };
  if (!v || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  if (num(o.height) !== undefined && num(o.width) !== undefined) return { h: num(o.height), w: num(o.width) };
  if (num(o.shortest_edge) !== undefined) return { shortest: num(o.shortest_edge) };
  return undefined;
}

/** Three per-channel values from a number or a list. */
function perChannel(v: unknown, fallback: number, what: string, where: string): number[] {
  if (v === undefined) return [fallback, fallback, fallback];
  const list = typeof v === 'number' ? [v, v, v] : v;
  if (
    !Array.isArray(list) ||
    !list.every((x) => num(x) !== undefined) ||
    (list.length !== 3 && list.length !== 1)
  )
    throw new UserError(`backbone ${where}: its preprocessor_config.json ${what} is not 1 or 3 numbers`);
  return list.length === 1 ? [list[0], list[0], list[0]] : (list as number[]);
}

/** What the user asked for instead of the files (Node's --backbone-range, --backbone-size). */
export interface PreprocessingFlags {
  range?: '0,1' | '-1,1';
  size?: number;
}

/**
 * The input size and scaling from preprocessor_config.json (`p`, parsed), or the flags, or the
 * graph. A size the graph does not take (fixed H, W) is one line.
 */
export function resolveOnnxPreprocessing(
  p: Record<string, unknown> | undefined,
  graphSide: number | undefined,
  where: string,
  flags: PreprocessingFlags = {},
): { side: number; pre: OnnxPreprocessing } {
  let side: number | undefined;
  let said: string;
  let pre: OnnxPreprocessing;
  if (p && flags.range === undefined) {
    const resize = p.do_resize === false ? undefined : sizeField(p.size);
    const crop = p.do_center_crop === false ? undefined : sizeField(p.crop_size);
    const rescale = p.do_rescale === false ? 1 : (num(p.rescale_factor) ?? 1 / 255);
    const normalize = p.do_normalize !== false && (p.image_mean !== undefined || p.image_std !== undefined);
    pre = {
      from: 'preprocessor_config.json',
      rescale,
      mean: normalize ? perChannel(p.image_mean, 0, 'image_mean', where) : [0, 0, 0],
      std: normalize ? perChannel(p.image_std, 1, 'image_std', where) : [1, 1, 1],
    };
    if (resize)
      pre.resize =
        resize.shortest !== undefined ? `shortest_edge ${resize.shortest}` : `${resize.h}x${resize.w}`;
    const final = crop?.h !== undefined ? crop : resize;
    if (crop?.h !== undefined) pre.crop = crop.h;
    if (final && final.h !== undefined && final.w !== undefined && final.h !== final.w)
      throw new UserError(
        `backbone ${where}: its preprocessor_config.json gives ${final.h}x${final.w} images; only square inputs are supported`,
      );
    side = final?.h ?? final?.shortest;
    said = 'its preprocessor_config.json asks for';
    if (flags.size !== undefined) {
      side = flags.size;
      said = '--backbone-size gives';
    }
  } else {
    const [rescale, mean] = flags.range === '-1,1' ? [1 / 127.5, 1] : [1 / 255, 0];
    pre = { from: flags.range ? 'flags' : 'graph', rescale, mean: [mean, mean, mean], std: [1, 1, 1] };
    side = flags.size;
    said = '--backbone-size gives';
  }
  if (side !== undefined && graphSide !== undefined && side !== graphSide)
    throw new UserError(
      `backbone ${where} takes ${graphSide}x${graphSide} images but ${said} ${side}x${side}; ${said.startsWith('--') ? 'remove --backbone-size' : 'fix its preprocessor_config.json'}`,
    );
  return { side: side ?? graphSide ?? DEFAULT_BACKBONE_SIDE, pre };
}

/**
 * The output that holds the features: the one `layer` names, else a pooled one by name, else
 * the first 2-D, else the first 4-D (a feature map), else the first output.
 */
export function featureOutput(outputs: GraphValue[], layer: string | undefined, source: string): GraphValue {
  if (layer !== undefined) {
    const named = outputs.find((o) => o.name === layer);
    if (!named)
      throw new UserError(
        `backbone ${source} has no output '${layer}'; its outputs: ${outputs.map((o) => `${o.name} ${shapeText(o.shape)}`).join(', ')}`,
      );
    return named;
  }
  const floats = outputs.filter((o) => o.float);
  return (
    POOLED_NAMES.map((n) => floats.find((o) => o.name === n)).find(Boolean) ??
    floats.find((o) => o.shape.length === 2) ??
    floats.find((o) => o.shape.length === 4) ??
    outputs[0]
  );
}

/**
 * The preprocessing as one multiply-add per channel of a value x in [0, 1] (pixels / 255):
 * ((x * 255) * rescale - mean[c]) / std[c] = x * scale[c] + shift[c].
 */
export function affineOf(pre: OnnxPreprocessing, channels: number): { scale: number[]; shift: number[] } {
  return {
    scale: pre.std.slice(0, channels).map((sd) => (255 * pre.rescale) / sd),
    shift: pre.mean.slice(0, channels).map((m, c) => -m / pre.std[c]),
  };
}

/**
 * `n` images packed NHWC in [0, 1] (imgclf's pixels) as the graph's input: each value scaled by
 * `affine` (affineOf) and, for an NCHW graph, moved to its channel plane. Written into `out`.
 */
export function graphInput(
  images: Float32Array,
  n: number,
  side: number,
  channels: number,
  layout: 'NCHW' | 'NHWC',
  affine: { scale: number[]; shift: number[] },
  out: Float32Array,
): void {
  const { scale, shift } = affine;
  const plane = side * side;
  const row = plane * channels;
  if (layout === 'NHWC') {
    for (let i = 0; i < n * row; i++) {
      const c = i % channels;
      out[i] = images[i] * scale[c] + shift[c];
    }
    return;
  }
  for (let b = 0; b < n; b++)
    for (let c = 0; c < channels; c++) {
      const a = scale[c];
      const z = shift[c];
      const dst = b * row + c * plane;
      for (let p = 0, q = b * row + c; p < plane; p++, q += channels) out[dst + p] = images[q] * a + z;
    }
}

/**
 * The features of `k` images from the graph's output `data` of shape `dims`: copied when it is
 * [k, dim], the mean over H and W when it is a feature map (laid out as the input is). Written
 * into `out` from image `at` on.
 */
export function featuresOf(
  data: Float32Array,
  dims: number[],
  k: number,
  dim: number,
  layout: 'NCHW' | 'NHWC',
  out: Float32Array,
  at: number,
): void {
  if (dims.length !== 4) {
    out.set(data.subarray(0, k * dim), at * dim);
    return;
  }
  const [, a, b, c] = dims;
  const cells = layout === 'NCHW' ? b * c : a * b;
  for (let i = 0; i < k; i++) {
    const base = i * dim * cells;
    for (let ch = 0; ch < dim; ch++) {
      let sum = 0;
      if (layout === 'NCHW') for (let p = 0; p < cells; p++) sum += data[base + ch * cells + p];
      else for (let p = 0; p < cells; p++) sum += data[base + p * dim + ch];
      out[(at + i) * dim + ch] = sum / cells;
    }
  }
}
