/**
 * A frozen backbone (Node only): a TensorFlow.js layers or graph model cut at a feature layer,
 * turning images into feature vectors, and the net a transfer run loads (backbone, then head).
 *
 * Input size and normalization are known per model family (each can be overridden with
 * --backbone-size and --backbone-range):
 *
 *   | family            | recognised by                                  | input             | range  |
 *   | imgclf-run        | metadata.json beside model.json (an imgclf     | the run's         | [0, 1] |
 *   |                   | run), or model.json generatedBy "imgclf ..."   | inputShape        |        |
 *   | teachable-machine | metadata.json with tmVersion / packageName     | 224x224x3         | [-1,1] |
 *   |                   | "@teachablemachine/image"                      | (its imageSize)   |        |
 *   | layers            | any other tfjs layers model                    | the model's input | [0, 1] |
 *   | graph             | a tfjs graph model (e.g. TF Hub MobileNet      | the model's input,| [0, 1] |
 *   |                   | feature vectors)                               | 224 when free     |        |
 *
 * Images reach the backbone in [0, 1] (pixels / 255, as imgclf prepares every picture); a
 * [-1, 1] backbone gets x * 2 - 1 (pixels / 127.5 - 1).
 *
 * The feature layer: for layers models, the output of --backbone-layer NAME, by default the
 * input of the last Dense layer (the penultimate output; the model's output when it has no
 * Dense layer); for graph models, the node --backbone-layer names, by default the model's
 * output. Features are flattened to one vector per image.
 *
 * An ONNX graph (an .onnx file, a Hugging Face folder or repo: `hf:OWNER/NAME`) is run by ONNX
 * Runtime instead (onnx.ts, its files from onnx-files.ts), with its own preprocessing; it
 * gives the same `Backbone`, so the session, the feature cache and loaded runs treat both alike.
 *
 * The engine of a layers model: where imgclf's exporter converts it (convert.ts), ONNX Runtime
 * runs the conversion exactly as it runs an ONNX backbone (faster than tfjs, on all cores);
 * otherwise tfjs runs it, and the log says why. --backbone-engine (train) or
 * IMGCLF_BACKBONE_ENGINE (every command) chooses: auto (that rule), onnx (fail where it does
 * not convert) or tfjs. Graph models always run on tfjs: the exporter reads layers models only.
 * The run records the backbone, not the engine; either engine gives the same features within
 * 1e-4 (test/backbone-export.test.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';
import * as tfl from '@tensorflow/tfjs-layers';
import type { ImageShape } from '../../core/data/dataset.js';
import { UserError } from '../../core/errors.js';
import type { Net } from '../../core/models/index.js';
import type { BackboneRange } from '../../core/plan.js';
import {
  allLayers,
  defaultFeatureLayer,
  isModel,
  type LayerPath,
  upTo,
} from '../../core/models/layer-paths.js';
import { BACKBONE_ENGINES, type BackboneEngine } from '../../core/settings.js';
import type { BackboneGraph } from '../export/backbone.js';
import { convertedBackbone } from './convert.js';
import { artifactsOf, type BackboneFiles, backboneFiles, recordedBackboneFiles, shortHash } from './files.js';
import type { BackboneFamily, BackboneRecord } from '../../core/backbone-record.js';
import { affineOf, type OnnxPreprocessing } from '../../core/onnx-rules.js';
import { buildOnnxBackbone, type OnnxBackbone } from './onnx.js';
import { isOnnxSource, type OnnxFiles, onnxFiles, recordedOnnxFiles } from './onnx-files.js';
import { ortThreads } from './ort.js';

export type { BackboneFamily, BackboneRecord } from '../../core/backbone-record.js';

/** What the user asks for (core/plan.ts: --backbone and its flags). */
export interface BackboneOptions {
  source: string;
  layer?: string;
  size?: number;
  range?: BackboneRange;
  /** What runs a layers model (default IMGCLF_BACKBONE_ENGINE, else auto). */
  engine?: BackboneEngine;
  /** Only the cache for downloads (ONNX sources; also HF_HUB_OFFLINE=1). */
  offline?: boolean;
}

export interface Backbone {
  record: BackboneRecord;
  /** Where the files came from this time. */
  origin: BackboneFiles['origin'];
  /** Feature vectors [n, features] of images [n, H, W, C] in [0, 1], a few images at a time. */
  features(x: tf.Tensor): tf.Tensor2D;
  /**
   * The same from packed NHWC values, without tensors, where the backbone is not tfjs (ONNX):
   * the feature cache computes with it.
   */
  extract?(images: Float32Array, n: number): Float32Array;
  /** Images per backbone call (bounded by input size). */
  readonly chunk: number;
  /** What computes the features, and why, for the log: "ONNX Runtime (converted from tfjs layers, 2 threads)". */
  engine: string;
  /** A layers model run by ONNX Runtime on its conversion: the feature cache keeps its rows apart. */
  converted?: boolean;
  /** The backbone as an ONNX graph, for `imgclf export`; a one-line error where it has none. */
  onnxGraph(): Promise<BackboneGraph>;
  /**
   * A TensorFlow.js layers backbone: a fresh copy of the whole model, built from its files, for
   * fine-tuning (node/backbone/fine-tune.ts); the caller disposes it. Graph models and ONNX
   * have none: they are not trainable in tfjs.
   */
  layersModel?(): Promise<tfl.LayersModel>;
  dispose(): void;
}

/**
 * The source the page records for a backbone opened from files (web/src/backbone.ts): the
 * file's name after this prefix. The page cannot know where the file is on disk.
 */
export const PAGE_FILE_PREFIX = 'page-file:';

/** Default input size of models that leave it free (MobileNet and most TF Hub image models). */
const DEFAULT_SIZE = 224;
/** Input values per backbone call: about 24 images of 224x224x3, 256 of 28x28. */
const CHUNK_VALUES = 1 << 22;

function familyOf(b: BackboneFiles, format: BackboneRecord['format']): BackboneFamily {
  const side = b.sidecar;
  if (typeof side?.format === 'string' && side.format.startsWith('imgclf-run')) return 'imgclf-run';
  if (typeof b.modelJson.generatedBy === 'string' && b.modelJson.generatedBy.startsWith('imgclf'))
    return 'imgclf-run';
  if (side && ('tmVersion' in side || String(side.packageName ?? '').includes('teachablemachine')))
    return 'teachable-machine';
  return format === 'graph-model' ? 'graph' : 'layers';
}

function formatOf(b: BackboneFiles): BackboneRecord['format'] {
  const f = b.modelJson.format;
  if (f === 'imgclf-net') {
    const name = (b.modelJson.modelTopology as { imgclf?: string } | undefined)?.imgclf ?? 'this model';
    throw new UserError(
      `backbone ${b.source} is a ${name} run, which is not a TensorFlow.js layers model; train the backbone with softmax, mlp, lenet or cnn`,
    );
  }
  if (f === 'graph-model') return 'graph-model';
  if (f === 'layers-model') return 'layers-model';
  const topo = b.modelJson.modelTopology ?? {};
  if ('node' in topo) return 'graph-model';
  return 'layers-model';
}

/** The feature layer of a layers model: named, or the one feeding the last Dense layer. */
function featureLayer(
  model: tfl.LayersModel,
  name: string | undefined,
  source: string,
): LayerPath | undefined {
  const layers = allLayers(model);
  if (name !== undefined) {
    const found = layers.find((l) => l.layer.name === name);
    if (!found) {
      const names = layers.map((l) => l.layer.name);
      const shown = names.length > 30 ? [...names.slice(0, 15), '...', ...names.slice(-15)] : names;
      throw new UserError(`backbone ${source} has no layer '${name}'; its layers: ${shown.join(', ')}`);
    }
    return found;
  }
  return defaultFeatureLayer(model, source, 'name a feature layer with --backbone-layer');
}

/** Known sizes of a [batch, H, W, C] input (null or -1 = free). */
function declaredShape(shape: readonly (number | null | undefined)[] | undefined): (number | undefined)[] {
  if (!shape || shape.length !== 4)
    return shape === undefined ? [undefined, undefined, undefined] : [NaN, NaN, NaN];
  return shape.slice(1).map((d) => (d === null || d === undefined || d < 0 ? undefined : d));
}

function inputShapeOf(
  declared: (number | undefined)[],
  family: BackboneFamily,
  sidecar: Record<string, unknown> | undefined,
  size: number | undefined,
  source: string,
): ImageShape {
  const [h, w, c] = declared;
  if ([h, w, c].some((d) => Number.isNaN(d)))
    throw new UserError(
      `backbone ${source} does not take images (its input is not [batch, height, width, channels])`,
    );
  let side: number;
  if (h !== undefined || w !== undefined) {
    if (h === undefined || w === undefined || h !== w)
      throw new UserError(
        `backbone ${source} takes ${h ?? '?'}x${w ?? '?'} images; only square inputs are supported`,
      );
    if (size !== undefined && size !== h)
      throw new UserError(
        `backbone ${source} takes ${h}x${w} images; --backbone-size ${size} does not fit it`,
      );
    side = h;
  } else {
    const tmSize = family === 'teachable-machine' ? Number(sidecar?.imageSize) || undefined : undefined;
    side = size ?? tmSize ?? DEFAULT_SIZE;
  }
  const channels = c ?? 3;
  if (channels !== 1 && channels !== 3)
    throw new UserError(
      `backbone ${source} takes ${channels}-channel images; imgclf gives 1 (gray) or 3 (RGB)`,
    );
  return [side, side, channels];
}

/** The engine asked for: the option, else IMGCLF_BACKBONE_ENGINE, else auto; and who asked. */
function engineChoice(option: BackboneEngine | undefined): { engine: BackboneEngine; said: string } {
  if (option !== undefined) return { engine: option, said: `--backbone-engine ${option}` };
  const env = process.env.IMGCLF_BACKBONE_ENGINE?.trim();
  if (!env) return { engine: 'auto', said: 'auto' };
  if (!(BACKBONE_ENGINES as readonly string[]).includes(env))
    throw new UserError(
      `IMGCLF_BACKBONE_ENGINE is '${env}'; it must be one of ${BACKBONE_ENGINES.join(', ')}`,
    );
  return { engine: env as BackboneEngine, said: `IMGCLF_BACKBONE_ENGINE=${env}` };
}

/** The pixel scaling of a tfjs backbone's range as ONNX preprocessing (x, or x * 2 - 1). */
function rangePreprocessing(range: BackboneRange): OnnxPreprocessing {
  return range === '-1,1'
    ? { from: 'flags', rescale: 1 / 127.5, mean: [1, 1, 1], std: [1, 1, 1] }
    : { from: 'flags', rescale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1] };
}

/** The description of an ONNX graph a Backbone runs (or exports). */
function graphOf(
  source: string,
  model: Uint8Array,
  o: Pick<
    OnnxBackbone,
    'input' | 'layout' | 'output' | 'pooled' | 'features' | 'inputShape' | 'preprocessing'
  >,
): BackboneGraph {
  return {
    source,
    model,
    input: o.input,
    layout: o.layout,
    output: o.output,
    pooled: o.pooled,
    features: o.features,
    inputShape: o.inputShape,
    ...affineOf(o.preprocessing, o.inputShape[2]),
  };
}

/**
 * The exporter's reason a model does not convert, without the sentence around it:
 * "layer 'sep' (class SeparableConv2D): no ONNX mapping for SeparableConv2D".
 */
function notConvertible(err: unknown): string {
  const message = ((err as Error)?.message ?? String(err)).split('\n')[0];
  const layer = /^cannot export (layer .*) of .* to ONNX: (.*)$/.exec(message);
  if (layer) return `${layer[1]}: ${layer[2]}`;
  return /^cannot export .* to ONNX: (.*)$/.exec(message)?.[1] ?? message;
}

/** The names of the layers on `path`, outermost first (convert.ts cuts the topology by them). */
function namesOn(model: tfl.LayersModel, path: number[]): string[] {
  const names: string[] = [];
  let m: tfl.LayersModel = model;
  for (const i of path) {
    const layer = m.layers[i];
    names.push(layer.name);
    if (isModel(layer)) m = layer;
  }
  return names;
}

/** Builds the backbone from its files under the given options. */
async function build(
  files: BackboneFiles,
  opts: Omit<BackboneOptions, 'source'> & { log?: (m: string) => void },
): Promise<Backbone> {
  const source = files.source;
  const format = formatOf(files);
  const family = familyOf(files, format);
  if (family === 'imgclf-run' && files.sidecar && 'backbone' in files.sidecar && files.sidecar.backbone) {
    throw new UserError(
      `backbone ${source} is itself a transfer run (its model is a head on another backbone); use that backbone instead`,
    );
  }
  const artifacts = await artifactsOf(files);
  let run: (x: tf.Tensor) => tf.Tensor;
  let layer: string;
  let declared: (number | undefined)[];
  let release: () => void;
  /** Layers models: the names down to the feature layer (none: the model's output). */
  let cutPath: string[] | undefined;
  if (format === 'graph-model') {
    let model: tfconv.GraphModel;
    try {
      model = await tfconv.loadGraphModel(tf.io.fromMemory(artifacts));
    } catch (err) {
      throw new UserError(
        `backbone ${source}: cannot build the graph model (${(err as Error).message.split('\n')[0]})`,
      );
    }
    declared = declaredShape(model.inputs[0]?.shape);
    layer = opts.layer ?? model.outputNodes[0];
    run = (x) => model.execute(x, layer) as tf.Tensor;
    release = () => model.dispose();
  } else {
    let model: tfl.LayersModel;
    try {
      model = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
    } catch (err) {
      throw new UserError(
        `backbone ${source}: cannot build the layers model (${(err as Error).message.split('\n')[0]})`,
      );
    }
    declared = declaredShape(model.inputs[0]?.shape);
    const picked = featureLayer(model, opts.layer, source);
    if (picked) {
      layer = picked.layer.name;
      cutPath = namesOn(model, picked.path);
      run = upTo(
        model,
        picked.path,
        `backbone layer ${layer} is inside a nested model of a functional model; choose a layer of the outer model (--backbone-layer)`,
      );
    } else {
      layer = model.outputNames[0] ?? model.layers.at(-1)!.name;
      run = (x) => model.apply(x, { training: false }) as tf.Tensor;
    }
    release = () => model.dispose();
  }
  let inputShape: ImageShape;
  try {
    inputShape = inputShapeOf(declared, family, files.sidecar, opts.size, source);
  } catch (err) {
    release();
    throw err;
  }
  const range: BackboneRange = opts.range ?? (family === 'teachable-machine' ? '-1,1' : '0,1');
  const base = { source, format, family, sha256: files.sha256, inputShape, range, layer };

  // The layers model as ONNX (from the cache when converted before), run by ONNX Runtime.
  const convert = async (log?: (m: string) => void) => {
    const converted = await convertedBackbone(files, cutPath, layer, inputShape, log);
    const o = await buildOnnxBackbone(
      { source, model: converted.bytes, sha256: files.sha256, family: 'onnx', origin: files.origin },
      { size: inputShape[0], layout: 'NHWC', preprocessing: rangePreprocessing(range) },
    );
    return { o, bytes: converted.bytes };
  };
  const { engine, said } = engineChoice(opts.engine);
  const layersModel =
    format === 'layers-model' ? { layersModel: () => tfl.loadLayersModel(tf.io.fromMemory(artifacts)) } : {};
  let why: string;
  if (format === 'graph-model') {
    if (engine === 'onnx') {
      release();
      throw new UserError(
        `backbone ${source} is a TensorFlow.js graph model, which imgclf does not convert to ONNX (${said}); use --backbone-engine auto or tfjs`,
      );
    }
    why = 'graph models are not converted to ONNX';
  } else if (engine === 'tfjs') {
    why = said;
  } else {
    try {
      const { o, bytes } = await convert(opts.log);
      // ONNX Runtime computes from here on: the tfjs model is not needed.
      release();
      return {
        record: { ...base, features: o.features },
        origin: files.origin,
        features: (x) => {
          const n = x.shape[0];
          return tf.tensor2d(o.extract(x.dataSync() as Float32Array, n), [n, o.features]);
        },
        extract: (images, n) => o.extract(images, n),
        chunk: o.chunk,
        engine: `ONNX Runtime (converted from tfjs layers, ${ortThreads()} threads)`,
        converted: true,
        onnxGraph: async () => graphOf(source, bytes, o),
        ...layersModel,
        dispose: () => o.dispose(),
      };
    } catch (err) {
      if (engine === 'onnx') {
        release();
        if (err instanceof UserError)
          throw new UserError(
            `backbone ${source} does not run on ONNX Runtime (${said}): ${notConvertible(err)}`,
          );
        throw err;
      }
      why = `not convertible: ${notConvertible(err)}`;
    }
  }
  const rowValues = inputShape[0] * inputShape[1] * inputShape[2];
  const chunk = Math.max(1, Math.min(256, Math.floor(CHUNK_VALUES / rowValues)));
  const once = (x: tf.Tensor): tf.Tensor2D =>
    tf.tidy(() => {
      const input = range === '-1,1' ? tf.sub(tf.mul(x, 2), 1) : x;
      const y = run(input);
      return tf.reshape(y, [x.shape[0], -1]) as tf.Tensor2D;
    });
  const features = (x: tf.Tensor): tf.Tensor2D => {
    const n = x.shape[0];
    if (n <= chunk) return once(x);
    return tf.tidy(() => {
      const parts: tf.Tensor2D[] = [];
      // Each call's activations are freed before the next (once() is its own tidy scope).
      for (let i = 0; i < n; i += chunk) {
        const part = tf.slice(x, [i, 0, 0, 0], [Math.min(chunk, n - i), -1, -1, -1]);
        parts.push(once(part));
        part.dispose();
      }
      return tf.concat(parts, 0);
    });
  };
  let dim: number;
  try {
    dim = tf.tidy(() => features(tf.zeros([1, ...inputShape])).shape[1]);
  } catch (err) {
    release();
    const what = format === 'graph-model' ? `node '${layer}'` : `layer '${layer}'`;
    throw new UserError(
      `backbone ${source}: cannot compute features at ${what} for ${inputShape.join('x')} images (${(err as Error).message.split('\n')[0]})`,
    );
  }
  return {
    record: { ...base, features: dim },
    origin: files.origin,
    features,
    chunk,
    engine: `tfjs ${tf.getBackend()} (${why})`,
    onnxGraph: async () => {
      if (format === 'graph-model')
        throw new UserError(
          `cannot export the backbone ${source} to ONNX: it is a TensorFlow.js graph model, which imgclf does not convert`,
        );
      let converted: Awaited<ReturnType<typeof convert>>;
      try {
        converted = await convert();
      } catch (err) {
        throw new UserError(`cannot export the backbone ${source} to ONNX: ${notConvertible(err)}`);
      }
      converted.o.dispose();
      return graphOf(source, converted.bytes, converted.o);
    },
    ...layersModel,
    dispose: release,
  };
}

/** An ONNX backbone as a `Backbone`: ONNX Runtime computes, tfjs only holds the result. */
async function buildOnnx(
  files: OnnxFiles,
  opts: Omit<BackboneOptions, 'source'> & { preprocessing?: OnnxPreprocessing },
): Promise<Backbone> {
  const o = await buildOnnxBackbone(files, opts);
  const dim = o.features;
  return {
    record: {
      source: files.source,
      format: 'onnx',
      family: files.family,
      sha256: files.sha256,
      inputShape: o.inputShape,
      range: opts.range ?? '0,1',
      layer: o.output,
      features: dim,
      ...(files.url ? { url: files.url } : {}),
      layout: o.layout,
      input: o.input,
      preprocessing: o.preprocessing,
    },
    origin: files.origin,
    // Synchronous, as tfjs nets are (ort.ts says why): evaluate, predict and serve call it as one.
    features: (x) => {
      const n = x.shape[0];
      return tf.tensor2d(o.extract(x.dataSync() as Float32Array, n), [n, dim]);
    },
    extract: (images, n) => o.extract(images, n),
    chunk: o.chunk,
    engine: `ONNX Runtime (${ortThreads()} threads)`,
    onnxGraph: async () => graphOf(files.source, files.model, o),
    dispose: () => o.dispose(),
  };
}

function describePreprocessing(p: OnnxPreprocessing): string {
  const r = +(1 / p.rescale).toFixed(3);
  const list = (v: number[]) => v.map((x) => +x.toFixed(4)).join(',');
  const resize = [p.resize ? `resize ${p.resize}` : '', p.crop ? `crop ${p.crop}` : '']
    .filter(Boolean)
    .join(', ');
  return `${resize ? `${resize}, ` : ''}pixels / ${r}, mean ${list(p.mean)}, std ${list(p.std)} (from ${p.from})`;
}

/** Loads the backbone a training run asks for (reading or downloading it now). */
export async function loadBackbone(opts: BackboneOptions, log?: (m: string) => void): Promise<Backbone> {
  if (await isOnnxSource(opts.source, { offline: opts.offline })) {
    const backbone = await buildOnnx(await onnxFiles(opts.source, { log, offline: opts.offline }), opts);
    const r = backbone.record;
    log?.(
      `backbone ${r.source}: onnx (${r.family}), sha256 ${shortHash(r.sha256)}, input ${r.inputShape.join('x')} ` +
        `as ${r.layout} '${r.input}', ${describePreprocessing(r.preprocessing!)}; ${r.features} features from output ${r.layer}` +
        ` (ONNX Runtime, ${ortThreads()} threads)`,
    );
    return backbone;
  }
  const files = await backboneFiles(opts.source, { log });
  const backbone = await build(files, { ...opts, log });
  const r = backbone.record;
  log?.(
    `backbone ${r.source}: ${backbone.engine}; ${r.format} (${r.family}), sha256 ${shortHash(r.sha256)}, ` +
      `input ${r.inputShape.join('x')} in [${r.range}], ${r.features} features from ${r.format === 'graph-model' ? 'node' : 'layer'} ${r.layer}`,
  );
  return backbone;
}

/**
 * Loads the backbone a run was trained with, as its metadata records it. A backbone that is
 * missing, changed (another hash) or now gives other features is a one-line error naming it.
 */
export async function loadRecordedBackbone(
  record: BackboneRecord,
  log?: (m: string) => void,
): Promise<Backbone> {
  if (!record || typeof record.source !== 'string' || typeof record.sha256 !== 'string')
    throw new UserError('the run records a backbone without its source and hash; retrain it');
  if (record.source.startsWith(PAGE_FILE_PREFIX))
    throw new UserError(
      `the run's backbone ${record.source.slice(PAGE_FILE_PREFIX.length)} was opened from files in the page (sha256 ${shortHash(record.sha256)}), so there is nothing to fetch it from; train in the page with the backbone given by URL, or with imgclf train --backbone FILE`,
    );
  const options = { layer: record.layer, size: record.inputShape[0], range: record.range };
  const backbone =
    record.format === 'onnx'
      ? await buildOnnx(await recordedOnnxFiles(record.source, record.url, record.sha256, { log }), {
          ...options,
          preprocessing: record.preprocessing,
        })
      : await build(await recordedBackboneFiles(record.source, record.sha256, { log }), { ...options, log });
  const r = backbone.record;
  if (r.inputShape.join('x') !== record.inputShape.join('x') || r.features !== record.features) {
    backbone.dispose();
    throw new UserError(
      `backbone ${record.source} now gives ${r.features} features for ${r.inputShape.join('x')} images, but the run was trained on ${record.features} for ${record.inputShape.join('x')}`,
    );
  }
  log?.(`backbone ${record.source}: ${backbone.engine}`);
  return backbone;
}

/**
 * The net a transfer run is: images of the backbone's input shape -> features -> head. It
 * is the head for everything that saves or trains (weights, artifacts, variables); `apply`
 * runs both. `owns` says whether dispose() releases the two (false: they belong to a caller).
 */
export function backboneNet(backbone: Backbone, head: Net, owns = true): Net {
  const dim = backbone.record.features;
  return {
    name: head.name,
    apply: (x, kwargs) =>
      tf.tidy(() => head.apply(tf.reshape(backbone.features(x), [-1, 1, 1, dim]), kwargs)),
    get trainableVariables() {
      return head.trainableVariables;
    },
    countParams: () => head.countParams(),
    artifacts: () => head.artifacts(),
    setWeights: (w) => head.setWeights(w),
    getWeights: () => head.getWeights(),
    dispose: () => {
      if (!owns) return;
      head.dispose();
      backbone.dispose();
    },
    ...(head.loss ? { loss: head.loss.bind(head) } : {}),
  };
}
