/**
 * A model (topology + weights, as a run directory stores them) -> an ONNX file (opset 13).
 *
 * Which exporter builds the graph depends on the topology: a tfjs layers model goes layer by
 * layer through the per-class converters of layers.ts; a model outside tfjs-layers names its
 * own kind in its topology (`imgclf: 'softmax-scratch'`) and has its exporter in models.ts.
 * Either way the graph takes the NHWC images the tfjs model takes and ends in the class
 * scores; this file adds the final Softmax, so the ONNX output is the class probabilities, and
 * writes the file with its metadata. Anything without a mapping stops with one line (a
 * UserError) naming it.
 *
 * A head trained on a backbone's features is exported with the backbone in front of it
 * (backbone.ts), so the file still takes the images; and a TensorFlow.js layers backbone alone
 * becomes a graph from images to features (`convertFeatureGraph`), which node/backbone runs
 * with ONNX Runtime.
 */
import type { ImageShape } from '../../core/data/dataset.js';
import type { Preprocessing } from '../../core/data/source.js';
import { UserError } from '../../core/errors.js';
import type { NetArtifacts } from '../../core/models/net.js';
import { VERSION } from '../../core/version.js';
import { ExportContext, INPUT_NAME, type ModelExporter, OUTPUT_NAME, type Value } from './context.js';
import { type BackboneGraph, type MergedBackbone, prependBackbone } from './backbone.js';
import { encodeModel, floatValueInfo, OPSET } from './graph.js';
import { exportLayersModel } from './layers.js';
import { modelExporter } from './models.js';

export { INPUT_NAME, OUTPUT_NAME } from './context.js';

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
  /** The backbone the model is a head on: put in front of it, so the file takes images. */
  backbone?: BackboneGraph;
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

/** A model outside tfjs-layers names its kind in its topology; a layers model does not. */
function exporterFor(topology: Record<string, unknown>, source: string): ModelExporter {
  return 'imgclf' in topology ? modelExporter(topology.imgclf, source) : exportLayersModel;
}

/** The checks every model's graph passes: an image in, one score per named class out. */
function checkShapes(inputShape: number[], logits: Value, info: ExportInfo, source: string): void {
  if (inputShape.length !== 3)
    throw new UserError(
      `cannot export ${source} to ONNX: the input is [${inputShape}], not an image [H, W, C]`,
    );
  if (logits.shape.length !== 1)
    throw new UserError(
      `cannot export ${source} to ONNX: its output has shape [${logits.shape}], not one score per class`,
    );
  const numClasses = logits.shape[0];
  if (info.classNames && info.classNames.length !== numClasses)
    throw new UserError(
      `cannot export ${source} to ONNX: it names ${info.classNames.length} classes but the model has ${numClasses} outputs`,
    );
}

/** The metadata_props: what a user of the file needs to feed it and read its output. */
function fileMetadata(info: ExportInfo, shape: ImageShape, numClasses: number): Record<string, string> {
  return {
    model: info.model,
    class_names: JSON.stringify(info.classNames ?? Array.from({ length: numClasses }, (_, i) => String(i))),
    input_shape: JSON.stringify(shape),
    input_layout: 'NHWC',
    preprocessing: JSON.stringify(info.preprocessing ?? { scale: 255 }),
    output: 'probabilities',
    imgclf_version: VERSION,
    ...info.extraMetadata,
  };
}

/** Converts a model (as `Net.artifacts()` or a run directory gives it) to an ONNX file. */
export function convertToOnnx(artifacts: NetArtifacts, info: ExportInfo): OnnxExport {
  const source = info.source ?? 'the model';
  const topology = artifacts.modelTopology as Record<string, unknown>;
  const cx = new ExportContext(artifacts, source);
  const g = cx.g;
  g.reserve(INPUT_NAME);
  let merged: MergedBackbone | undefined;
  let headShape = info.inputShape;
  if (info.backbone) {
    merged = prependBackbone(g, info.backbone, INPUT_NAME);
    cx.input = merged.features;
    headShape = [1, 1, info.backbone.features];
  }
  const graph = exporterFor(topology, source)(cx, topology, headShape);
  const { logits } = graph;
  const inputShape = info.backbone ? info.backbone.inputShape : graph.inputShape;
  checkShapes(inputShape, logits, info, source);
  const numClasses = logits.shape[0];
  // The models output logits; the file outputs probabilities.
  g.node('Softmax', [logits.name], 'probabilities', { axis: { int: -1 } }, OUTPUT_NAME);

  const shape = inputShape as ImageShape;
  const metadata = fileMetadata(info, shape, numClasses);
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
    ...(merged ? { opsetImports: merged.opsetImports, irVersion: merged.irVersion } : {}),
  });
  const opset = merged?.opsetImports[0].version ?? OPSET;
  return { bytes, opset, inputShape: shape, numClasses, ops: g.nodes.map((n) => n.opType), metadata };
}

/** The output of a backbone's feature graph. */
export const FEATURES_NAME = 'features';

/**
 * A TensorFlow.js layers model (cut at its feature layer) as an ONNX graph from NHWC images
 * [N, H, W, C], fed as the model takes them, to its features flattened as tfjs flattens them
 * (row-major NHWC): FEATURES_NAME [N, D]. Throws the exporter's one-line UserError for what
 * it cannot map.
 */
export function convertFeatureGraph(
  artifacts: NetArtifacts,
  opts: { inputShape: ImageShape; source: string },
): { bytes: Uint8Array; features: number } {
  const topology = artifacts.modelTopology as Record<string, unknown>;
  const cx = new ExportContext(artifacts, opts.source);
  const g = cx.g;
  g.reserve(INPUT_NAME);
  const { logits: out } = exporterFor(topology, opts.source)(cx, topology, opts.inputShape);
  const x = cx.toNHWC(out, FEATURES_NAME);
  const features = x.shape.reduce((a, b) => a * b, 1);
  g.node('Flatten', [x.name], FEATURES_NAME, { axis: { int: 1 } }, FEATURES_NAME);
  const bytes = encodeModel(g, {
    graphName: 'backbone',
    producerVersion: VERSION,
    docString: `A TensorFlow.js backbone (${opts.source}) converted by imgclf: images in, features out.`,
    input: floatValueInfo(INPUT_NAME, ['N', ...opts.inputShape]),
    output: floatValueInfo(FEATURES_NAME, ['N', features]),
    metadata: { imgclf_version: VERSION },
  });
  return { bytes, features };
}
