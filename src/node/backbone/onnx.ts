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
import {
  affineOf,
  DEFAULT_BACKBONE_SIDE,
  featureOutput,
  featuresOf,
  graphInput,
  imageInput,
  type OnnxPreprocessing,
  resolveOnnxPreprocessing,
  shapeText,
} from '../../core/onnx-rules.js';
import type { OnnxFiles } from './onnx-files.js';
import { createOrtSession, type OrtSession } from './ort.js';

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

/** The input size and scaling for `opts`: the recorded preprocessing, or the files' rules. */
function preprocessingFor(
  files: OnnxFiles,
  graphSide: number | undefined,
  opts: OnnxOptions,
): { side: number; pre: OnnxPreprocessing } {
  if (opts.preprocessing)
    return { side: opts.size ?? graphSide ?? DEFAULT_BACKBONE_SIDE, pre: opts.preprocessing };
  return resolveOnnxPreprocessing(files.preprocessor, graphSide, files.source, opts);
}

/** Loads the graph and works out how to feed it and where its features are. */
export async function buildOnnxBackbone(files: OnnxFiles, opts: OnnxOptions): Promise<OnnxBackbone> {
  const source = files.source;
  const session = await createOrtSession(files.model, source);
  try {
    const { info, layout, graphSide, channels } = imageInput(session.inputs, source, 'imgclf', opts.layout);
    const { side, pre } = preprocessingFor(files, graphSide, opts);
    const inputShape: ImageShape = [side, side, channels];
    const out = featureOutput(session.outputs, opts.layer, source);
    const affine = affineOf(pre, channels);
    const { scale, shift } = affine;
    const plane = side * side;
    const row = plane * channels;
    const feed = new Float32Array(ONNX_BATCH * row);
    const runBatch = (images: Float32Array, from: number, n: number) => {
      const x = feed.subarray(0, n * row);
      graphInput(images.subarray(from * row, (from + n) * row), n, side, channels, layout, affine, x);
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
    const described = {
      inputShape,
      layout,
      input: info.name,
      output: out.name,
      pooled,
      features: dim,
      preprocessing: pre,
      chunk: ONNX_BATCH,
    };
    // Features of n images, a batch of ONNX_BATCH at a time: `batch` writes k images' from `from`.
    const inBatches = (n: number, batch: (from: number, k: number, result: Float32Array) => void) => {
      const result = new Float32Array(n * dim);
      for (let from = 0; from < n; from += ONNX_BATCH) batch(from, Math.min(ONNX_BATCH, n - from), result);
      return result;
    };
    if (merged) {
      session.dispose();
      return {
        ...described,
        extract: (images, n) =>
          inBatches(n, (from, k, result) => {
            const x = images.subarray(from * row, (from + k) * row);
            const y = merged.run(FEATURE_GRAPH_INPUT, x, [k, side, side, channels], FEATURE_GRAPH_OUTPUT);
            result.set(y.data.subarray(0, k * dim), from * dim);
          }),
        dispose: () => merged.dispose(),
      };
    }
    return {
      ...described,
      extract: (images, n) =>
        inBatches(n, (from, k, result) => {
          const y = runBatch(images, from, k);
          featuresOf(y.data, y.dims, k, dim, layout, result, from);
        }),
      dispose: () => session.dispose(),
    };
  } catch (err) {
    session.dispose();
    throw err;
  }
}
