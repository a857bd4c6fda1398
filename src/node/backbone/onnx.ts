/**
 * A frozen ONNX backbone run by ONNX Runtime (Node only): what its graph takes (layout, size,
 * scaling), which output is the features, and the function from images to feature vectors.
 *
 * Everything is read from the graph and its Hugging Face files:
 *
 *   - the input: the one float input (or `pixel_values` among several), 4-D; its channel axis
 *     is the one of size 1 or 3, so [N, 3, H, W] is NCHW and [N, H, W, 3] NHWC (a graph that
 *     leaves both free is taken as NCHW, ONNX's convention);
 *   - the size and scaling: preprocessor_config.json (do_resize + size {height, width} or
 *     {shortest_edge}, do_center_crop + crop_size, do_rescale + rescale_factor, do_normalize +
 *     image_mean + image_std; RGB), else --backbone-size / --backbone-range, else the graph's
 *     input size (224 where it is free) and pixels in [0, 1];
 *   - the features: the output --backbone-layer names, else `pooler_output` (or another pooled
 *     name), else the first 2-D output, else the first 4-D output, which is then average-pooled
 *     over its spatial axes (a feature map). Anything else is one line naming the outputs.
 *
 * The graph run is the backbone's own with its preprocessing before it and the pooling after
 * it (node/export/backbone.ts featureGraph, what `imgclf export` puts in front of a head), so it
 * takes imgclf's NHWC pixels in [0, 1] as they are; a graph that cannot be merged is run as it
 * is, with the scaling and layout change done here.
 *
 * imgclf decodes pictures to the input size itself (node/image.ts, with --resize-mode), so
 * `size` + `crop_size` say what that size is; the resolved preprocessing is recorded in the run
 * and applied to every picture the same way in training, evaluate, predict and serve.
 */
import type { ImageShape } from '../../core/data/dataset.js';
import { UserError } from '../../core/errors.js';
import type { BackboneRange } from '../../core/plan.js';
import {
  type BackboneGraph,
  FEATURE_GRAPH_INPUT,
  FEATURE_GRAPH_OUTPUT,
  featureGraph,
} from '../export/backbone.js';
import type { OnnxFiles } from './onnx-files.js';
import { createOrtSession, type OrtSession, type ValueInfo } from './ort.js';

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

export interface OnnxOptions {
  layer?: string;
  size?: number;
  range?: BackboneRange;
  /** A recorded run's preprocessing: used as it is, not resolved again. */
  preprocessing?: OnnxPreprocessing;
  /** The input layout when it is known (a converted tfjs backbone is NHWC at any size). */
  layout?: 'NCHW' | 'NHWC';
}

export interface OnnxBackbone {
  inputShape: ImageShape;
  layout: 'NCHW' | 'NHWC';
  /** The graph input fed. */
  input: string;
  /** The output taken as features. */
  output: string;
  /** Whether that output is a feature map, average-pooled. */
  pooled: boolean;
  features: number;
  preprocessing: OnnxPreprocessing;
  /** Features [n, D] of n images packed NHWC in [0, 1] (pixels / 255), in batches. */
  extract(images: Float32Array, n: number): Float32Array;
  /** Images per ONNX Runtime call. */
  chunk: number;
  dispose(): void;
}

/** A session on the backbone's feature graph, or undefined when the graph cannot be merged. */
async function mergedFeatureGraph(
  source: string,
  model: Uint8Array,
  o: Omit<BackboneGraph, 'source' | 'model'>,
): Promise<OrtSession | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = featureGraph({ source, model, ...o });
  } catch (err) {
    if (err instanceof UserError) return undefined;
    throw err;
  }
  return createOrtSession(bytes, source);
}

/** Images per session.run: enough to fill ORT's threads, few enough to keep activations small. */
export const ONNX_BATCH = 32;
const DEFAULT_SIZE = 224;
/** Output names transformers' vision models use for the pooled features, in preference order. */
const POOLED_NAMES = ['pooler_output', 'image_embeds', 'pooled_output', 'embeddings', 'features'];

const shapeText = (s: number[]) => `[${s.map((d) => (d < 0 ? '?' : d)).join(', ')}]`;

/** The image input and its layout. */
function imageInput(session: OrtSession, source: string): { info: ValueInfo; layout: 'NCHW' | 'NHWC' } {
  const floats = session.inputs.filter((i) => i.float);
  const info =
    session.inputs.length === 1 ? session.inputs[0] : floats.find((i) => i.name === 'pixel_values');
  if (!info)
    throw new UserError(
      `backbone ${source} takes ${session.inputs.length} inputs (${session.inputs.map((i) => i.name).join(', ')}); imgclf feeds one image tensor (pixel_values)`,
    );
  if (!info.float)
    throw new UserError(
      `backbone ${source}: its input '${info.name}' is not float32; imgclf feeds float32 images`,
    );
  const s = info.shape;
  if (s.length !== 4)
    throw new UserError(
      `backbone ${source}: its input '${info.name}' has shape ${shapeText(s)}, not an image batch [N, C, H, W] or [N, H, W, C]`,
    );
  const isChannels = (d: number) => d === 1 || d === 3;
  const layout = isChannels(s[3]) && !isChannels(s[1]) ? 'NHWC' : 'NCHW';
  const c = layout === 'NCHW' ? s[1] : s[3];
  if (c >= 0 && !isChannels(c))
    throw new UserError(`backbone ${source} takes ${c}-channel images; imgclf gives 1 (gray) or 3 (RGB)`);
  return { info, layout };
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

/**
 * The input size and scaling from preprocessor_config.json, or the flags, or the graph. A size
 * the graph does not take (fixed H, W) is one line.
 */
function resolvePreprocessing(
  files: OnnxFiles,
  graphSide: number | undefined,
  opts: OnnxOptions,
): { side: number; pre: OnnxPreprocessing } {
  const where = files.source;
  let side: number | undefined;
  let said: string;
  let pre: OnnxPreprocessing;
  const p = files.preprocessor;
  if (p && opts.range === undefined) {
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
    if (opts.size !== undefined) {
      side = opts.size;
      said = '--backbone-size gives';
    }
  } else {
    const [rescale, mean] = opts.range === '-1,1' ? [1 / 127.5, 1] : [1 / 255, 0];
    pre = { from: opts.range ? 'flags' : 'graph', rescale, mean: [mean, mean, mean], std: [1, 1, 1] };
    side = opts.size;
    said = '--backbone-size gives';
  }
  if (side !== undefined && graphSide !== undefined && side !== graphSide)
    throw new UserError(
      `backbone ${where} takes ${graphSide}x${graphSide} images but ${said} ${side}x${side}; ${said.startsWith('--') ? 'remove --backbone-size' : 'fix its preprocessor_config.json'}`,
    );
  return { side: side ?? graphSide ?? DEFAULT_SIZE, pre };
}

/** The output that holds the features: named, pooled by name, 2-D, or 4-D. */
function featureOutput(session: OrtSession, layer: string | undefined, source: string): ValueInfo {
  const list = () => session.outputs.map((o) => `${o.name} ${shapeText(o.shape)}`).join(', ');
  if (layer !== undefined) {
    const named = session.outputs.find((o) => o.name === layer);
    if (!named) throw new UserError(`backbone ${source} has no output '${layer}'; its outputs: ${list()}`);
    return named;
  }
  const floats = session.outputs.filter((o) => o.float);
  return (
    POOLED_NAMES.map((n) => floats.find((o) => o.name === n)).find(Boolean) ??
    floats.find((o) => o.shape.length === 2) ??
    floats.find((o) => o.shape.length === 4) ??
    session.outputs[0]
  );
}

/** Loads the graph and works out how to feed it and where its features are. */
export async function buildOnnxBackbone(files: OnnxFiles, opts: OnnxOptions): Promise<OnnxBackbone> {
  const source = files.source;
  const session = await createOrtSession(files.model, source);
  try {
    const found = imageInput(session, source);
    const info = found.info;
    const layout = opts.layout ?? found.layout;
    const s = info.shape;
    const [gh, gw, gc] = layout === 'NCHW' ? [s[2], s[3], s[1]] : [s[1], s[2], s[3]];
    if (gh >= 0 && gw >= 0 && gh !== gw)
      throw new UserError(`backbone ${source} takes ${gh}x${gw} images; only square inputs are supported`);
    const graphSide = gh >= 0 ? gh : gw >= 0 ? gw : undefined;
    const resolved = opts.preprocessing
      ? { side: opts.size ?? graphSide ?? DEFAULT_SIZE, pre: opts.preprocessing }
      : resolvePreprocessing(files, graphSide, opts);
    const { side, pre } = resolved;
    const channels = gc === 1 ? 1 : 3;
    const inputShape: ImageShape = [side, side, channels];
    const out = featureOutput(session, opts.layer, source);
    const { scale, shift } = affineOf(pre, channels);
    const plane = side * side;
    const row = plane * channels;
    const feed = new Float32Array(ONNX_BATCH * row);
    const runBatch = (images: Float32Array, from: number, n: number) => {
      const x = feed.subarray(0, n * row);
      const src = images.subarray(from * row, (from + n) * row);
      if (layout === 'NHWC') {
        for (let i = 0; i < src.length; i++) {
          const c = i % channels;
          x[i] = src[i] * scale[c] + shift[c];
        }
      } else {
        // NHWC (imgclf's pixels) to NCHW.
        for (let b = 0; b < n; b++)
          for (let c = 0; c < channels; c++) {
            const a = scale[c];
            const z = shift[c];
            const dst = b * row + c * plane;
            for (let p = 0, q = b * row + c; p < plane; p++, q += channels) x[dst + p] = src[q] * a + z;
          }
      }
      const dims = layout === 'NCHW' ? [n, channels, side, side] : [n, side, side, channels];
      let y: { data: Float32Array; dims: number[] };
      try {
        y = session.run(info.name, x, dims, out.name);
      } catch (err) {
        if (err instanceof UserError) throw err;
        throw new UserError(
          `backbone ${source} cannot run on ${shapeText(dims)} input (${(err as Error).message.split('\n')[0]}); check --backbone-size or its preprocessor_config.json`,
        );
      }
      return y;
    };
    // One image of zeros: the output's real shape, and a clear line when it is not features.
    const probe = runBatch(new Float32Array(row), 0, 1).dims;
    const pooled = probe.length === 4;
    if (probe.length !== 2 && !pooled)
      throw new UserError(
        `backbone ${source}: its output '${out.name}' has shape ${shapeText(probe)}, not a feature vector [N, D] or a feature map [N, C, H, W]; name another output with --backbone-layer (its outputs: ${session.outputs.map((o) => `${o.name} ${shapeText(o.shape)}`).join(', ')})`,
      );
    // A feature map is laid out as the input is.
    const dim = !pooled ? probe[1] : layout === 'NCHW' ? probe[1] : probe[3];
    // The graph that takes the pixels as they are and does the scaling, the layout change and
    // the pooling on ONNX Runtime's threads: this thread then only copies, and both cores work
    // on every batch (node/export/backbone.ts featureGraph). A graph that cannot be merged
    // (an opset before 11) runs as it is, prepared here.
    const merged = await mergedFeatureGraph(source, files.model, {
      input: info.name,
      layout,
      output: out.name,
      pooled,
      features: dim,
      inputShape,
      scale,
      shift,
    });
    if (merged) {
      session.dispose();
      return {
        inputShape,
        layout,
        input: info.name,
        output: out.name,
        pooled,
        features: dim,
        preprocessing: pre,
        extract: (images, n) => {
          const result = new Float32Array(n * dim);
          for (let from = 0; from < n; from += ONNX_BATCH) {
            const k = Math.min(ONNX_BATCH, n - from);
            const x = images.subarray(from * row, (from + k) * row);
            const y = merged.run(FEATURE_GRAPH_INPUT, x, [k, side, side, channels], FEATURE_GRAPH_OUTPUT);
            result.set(y.data.subarray(0, k * dim), from * dim);
          }
          return result;
        },
        chunk: ONNX_BATCH,
        dispose: () => merged.dispose(),
      };
    }
    const extract = (images: Float32Array, n: number): Float32Array => {
      const result = new Float32Array(n * dim);
      for (let from = 0; from < n; from += ONNX_BATCH) {
        const k = Math.min(ONNX_BATCH, n - from);
        const y = runBatch(images, from, k);
        if (!pooled) {
          result.set(y.data.subarray(0, k * dim), from * dim);
          continue;
        }
        // Global average pool over the spatial axes.
        const [, a, b, c] = y.dims;
        const cells = layout === 'NCHW' ? b * c : a * b;
        for (let i = 0; i < k; i++) {
          const base = i * dim * cells;
          for (let ch = 0; ch < dim; ch++) {
            let sum = 0;
            if (layout === 'NCHW') for (let p = 0; p < cells; p++) sum += y.data[base + ch * cells + p];
            else for (let p = 0; p < cells; p++) sum += y.data[base + p * dim + ch];
            result[(from + i) * dim + ch] = sum / cells;
          }
        }
      }
      return result;
    };
    return {
      inputShape,
      layout,
      input: info.name,
      output: out.name,
      pooled,
      features: dim,
      preprocessing: pre,
      extract,
      chunk: ONNX_BATCH,
      dispose: () => session.dispose(),
    };
  } catch (err) {
    session.dispose();
    throw err;
  }
}
