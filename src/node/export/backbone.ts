/**
 * A backbone in front of a head, in one ONNX graph: what `imgclf export` writes for a run
 * trained with --backbone. The backbone arrives as an ONNX graph (an ONNX backbone's own file,
 * or a TensorFlow.js layers backbone converted by this exporter: node/backbone/convert.ts), and
 * its nodes and initializers are copied into the graph being built, each name prefixed with
 * `backbone/` (made unique), so nothing clashes with the head's names.
 *
 * The exported file takes what every imgclf export takes: NHWC images, pixel values / 255.
 * In front of the backbone's nodes come its preprocessing, as the run applies it (per channel
 * x * scale + shift: a [-1, 1] range, or a Hugging Face processor's rescale, mean and std),
 * and the Transpose to NCHW when the backbone wants that layout. After them, a feature map is
 * average-pooled over its spatial axes (as node/backbone/onnx.ts does), and the features are
 * reshaped to the [1, 1, D] "images" the head was trained on.
 *
 * Opsets: the graph keeps the backbone's opset (the head's ops, Flatten, MatMul, Add, Relu,
 * Softmax over a 2-D input, Reshape, Transpose, Mul, GlobalAveragePool, mean the same from
 * opset 11 on), and OPSET when the backbone's is older than that is refused.
 */
import type { ImageShape } from '../../core/data/dataset.js';
import { UserError } from '../../core/errors.js';
import { VERSION } from '../../core/version.js';
import { decodeModel, encodeModel, floatValueInfo, GraphBuilder, IR_VERSION, onnx, OPSET } from './graph.js';

/** A backbone as an ONNX graph, and how pixels reach it and features leave it. */
export interface BackboneGraph {
  /** What errors call it (its source). */
  source: string;
  /** The ONNX model's bytes. */
  model: Uint8Array;
  /** The graph input fed with images, and its layout. */
  input: string;
  layout: 'NCHW' | 'NHWC';
  /** The graph output taken as features. */
  output: string;
  /** Whether that output is a feature map (average-pooled over H, W) rather than [N, D]. */
  pooled: boolean;
  features: number;
  /** The images it takes, [H, W, C]: the run's input shape. */
  inputShape: ImageShape;
  /** Per channel: the graph's input is x * scale[c] + shift[c] of a pixel x in [0, 1]. */
  scale: number[];
  shift: number[];
}

export interface MergedBackbone {
  /** The value holding the features as the head reads them, [N, 1, 1, D]. */
  features: string;
  opsetImports: { domain: string; version: number }[];
  irVersion: number;
}

/** Oldest backbone opset merged: the head's ops (see above) mean the same from 11 on. */
const MIN_OPSET = 11;
const PREFIX = 'backbone/';

const refuse = (bb: BackboneGraph, why: string) =>
  new UserError(`cannot export the backbone ${bb.source} to ONNX: ${why}`);

/**
 * Adds the backbone's nodes to `g`, reading the images at `input` (NHWC, in [0, 1]); returns
 * the features value and the opsets the whole graph is written against.
 */
export function prependBackbone(g: GraphBuilder, bb: BackboneGraph, input: string): MergedBackbone {
  let model: ReturnType<typeof decodeModel>;
  try {
    model = decodeModel(bb.model);
  } catch (err) {
    throw refuse(bb, `its graph does not parse (${(err as Error).message.split('\n')[0]})`);
  }
  const graph = model.graph;
  if (!graph) throw refuse(bb, 'its file holds no graph');
  const imports = (model.opsetImport ?? []).map((o) => ({
    domain: o.domain === 'ai.onnx' ? '' : (o.domain ?? ''),
    version: Number(o.version ?? 0),
  }));
  const standard = imports.find((o) => o.domain === '')?.version ?? OPSET;
  if (standard < MIN_OPSET)
    throw refuse(bb, `its graph uses opset ${standard}; only opset ${MIN_OPSET} and later can be merged`);
  if ((graph.sparseInitializer ?? []).length > 0) throw refuse(bb, 'sparse initializers are not supported');
  for (const n of graph.node ?? [])
    for (const a of n.attribute ?? [])
      if (a.g || (a.graphs ?? []).length > 0)
        throw refuse(
          bb,
          `node ${n.name || n.opType} holds a subgraph (${n.opType}); control flow is not supported`,
        );

  const [, , c] = bb.inputShape;
  const scope = `${PREFIX}preprocess`;
  // The images as the backbone's graph takes them: scaled per channel, in its layout.
  let x = input;
  if (bb.scale.some((s) => s !== 1))
    x = g.node('Mul', [x, g.constant(`${scope}/scale`, bb.scale, [c])], scope);
  if (bb.shift.some((s) => s !== 0))
    x = g.node('Add', [x, g.constant(`${scope}/shift`, bb.shift, [c])], scope);
  if (bb.layout === 'NCHW') x = g.node('Transpose', [x], scope, { perm: { ints: [0, 3, 1, 2] } });

  // Every name of the backbone's graph gets the prefix; its input becomes the scaled images.
  const renamed = new Map<string, string>([[bb.input, x]]);
  const nameOf = (name: string): string => {
    if (name === '') return name; // an optional input left out
    let r = renamed.get(name);
    if (r === undefined) {
      r = g.unique(PREFIX + name);
      renamed.set(name, r);
    }
    return r;
  };
  const initialized = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  for (const i of graph.input ?? []) {
    // Graphs from before IR 4 list their initializers as inputs too.
    if (i.name !== bb.input && !initialized.has(i.name ?? ''))
      throw refuse(bb, `it has the input '${i.name}' besides the images '${bb.input}'`);
  }
  for (const t of graph.initializer ?? []) {
    if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL || (t.externalData ?? []).length > 0)
      throw refuse(
        bb,
        `initializer ${t.name} keeps its data in another file; only self-contained graphs are supported`,
      );
    t.name = nameOf(t.name ?? '');
    g.initializers.push(onnx.TensorProto.create(t));
  }
  for (const n of graph.node ?? []) {
    n.input = (n.input ?? []).map(nameOf);
    n.output = (n.output ?? []).map(nameOf);
    n.name = g.unique(PREFIX + (n.name || n.opType));
    g.nodes.push(onnx.NodeProto.create(n));
  }
  if (!renamed.has(bb.output) || !(graph.output ?? []).some((o) => o.name === bb.output))
    throw refuse(bb, `its graph has no output '${bb.output}'`);
  let y = renamed.get(bb.output)!;
  if (bb.pooled) {
    // The mean over H and W, as node/backbone/onnx.ts pools a feature map.
    const pool = `${PREFIX}pool`;
    if (bb.layout === 'NHWC') y = g.node('Transpose', [y], pool, { perm: { ints: [0, 3, 1, 2] } });
    y = g.node('GlobalAveragePool', [y], pool);
  }
  // The head reads [1, 1, D] "images" (what the feature cache stores).
  const dims = g.intConstant(`${PREFIX}features/shape`, [-1, 1, 1, bb.features], [4]);
  const features = g.node('Reshape', [y, dims], `${PREFIX}features`);

  const opsetImports = [
    { domain: '', version: Math.max(standard, MIN_OPSET) },
    ...imports.filter((o) => o.domain !== ''),
  ];
  return { features, opsetImports, irVersion: Math.max(IR_VERSION, Number(model.irVersion ?? 0)) };
}

/** The input and output of `featureGraph`. */
export const FEATURE_GRAPH_INPUT = 'pixels';
export const FEATURE_GRAPH_OUTPUT = 'features';

/**
 * The backbone as a graph from what imgclf holds, NHWC pixels in [0, 1], to its features [N, D]:
 * its preprocessing, layout change and pooling (prependBackbone) run inside ONNX Runtime, on its
 * threads, instead of in JavaScript between its calls (node/backbone/onnx.ts feeds this graph
 * when it can be built). Throws prependBackbone's UserError when the graph cannot be merged.
 */
export function featureGraph(bb: BackboneGraph): Uint8Array {
  const g = new GraphBuilder();
  g.reserve(FEATURE_GRAPH_INPUT);
  const merged = prependBackbone(g, bb, FEATURE_GRAPH_INPUT);
  const dims = g.intConstant(`${PREFIX}flat/shape`, [-1, bb.features], [2]);
  g.node('Reshape', [merged.features, dims], `${PREFIX}flat`, {}, FEATURE_GRAPH_OUTPUT);
  return encodeModel(g, {
    graphName: 'features',
    docString: `${bb.source}: NHWC pixels in [0, 1] to ${bb.features} features`,
    producerVersion: VERSION,
    input: floatValueInfo(FEATURE_GRAPH_INPUT, ['N', ...bb.inputShape]),
    output: floatValueInfo(FEATURE_GRAPH_OUTPUT, ['N', bb.features]),
    metadata: {},
    opsetImports: merged.opsetImports,
    irVersion: merged.irVersion,
  });
}
