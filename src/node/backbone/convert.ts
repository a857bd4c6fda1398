/**
 * A TensorFlow.js layers backbone converted to ONNX (Node only), so ONNX Runtime computes its
 * features (onnx.ts) as it does an ONNX backbone's, on all cores and faster than tfjs.
 *
 * The model.json topology is cut at the feature layer, by layer names (a Sequential keeps its
 * layers up to it, a functional model takes it as its output, a nested model is cut the same
 * way inside), and imgclf's own exporter (node/export) turns what is left into a graph from
 * NHWC images to the features flattened as tfjs flattens them. A layer the exporter cannot map
 * throws its one-line UserError, and the caller runs the backbone on tfjs instead.
 *
 * The graph is cached (node/cache.ts, converted/) by the backbone's SHA-256, the feature
 * layer, the input size and imgclf's version: a later run, evaluate, predict and serve load it
 * without converting again.
 */
import type { ImageShape } from '../../core/data/dataset.js';
import { UserError } from '../../core/errors.js';
import { VERSION } from '../../core/version.js';
import { readConvertedCache, writeConvertedCache } from '../cache.js';
import { convertFeatureGraph } from '../export/onnx.js';
import { artifactsOf, type BackboneFiles } from './files.js';

/** A layer (or a model used as one) as model.json describes it. */
interface LayerJson {
  class_name?: string;
  name?: string;
  config?: unknown;
  [key: string]: unknown;
}

const nameOf = (l: LayerJson) => String(l.name ?? (l.config as { name?: unknown } | undefined)?.name ?? '');

/**
 * Model `m` computing up to the layer named by `path` (a name per nesting level, outermost
 * first). Returns undefined when a name is not found, which the tfjs loader has checked.
 */
function cutModel(m: LayerJson, path: string[]): LayerJson | undefined {
  const [name, ...rest] = path;
  const config = m.config as Record<string, unknown> | LayerJson[] | undefined;
  const layers = (Array.isArray(config) ? config : (config?.layers as LayerJson[] | undefined)) ?? [];
  const i = layers.findIndex((l) => nameOf(l) === name);
  if (i < 0) return undefined;
  if (m.class_name === 'Sequential') {
    const kept = layers.slice(0, i + 1);
    if (rest.length) {
      const inner = cutModel(kept[i], rest);
      if (!inner) return undefined;
      kept[i] = inner;
    }
    return { ...m, config: Array.isArray(config) ? kept : { ...config, layers: kept } };
  }
  // A functional model ends at the layer instead (tfjs cuts it so: backbone.ts `upTo`).
  if (rest.length || Array.isArray(config)) return undefined;
  return { ...m, config: { ...config, output_layers: [[name, 0, 0]] } };
}

/** The topology up to the feature layer; Keras' `model_config` wrapper is kept. */
function cutTopology(topology: Record<string, unknown>, path: string[]): Record<string, unknown> | undefined {
  if (topology.model_config) {
    const inner = cutModel(topology.model_config as LayerJson, path);
    return inner && { ...topology, model_config: inner };
  }
  return cutModel(topology as LayerJson, path);
}

/**
 * The ONNX graph of a layers backbone from NHWC images of `inputShape` (as tfjs takes them) to
 * the output of the layer at `path` (undefined: the model's output), flattened. From the cache
 * when it has it; `layer` names the feature layer in the cache.
 */
export async function convertedBackbone(
  files: BackboneFiles,
  path: string[] | undefined,
  layer: string,
  inputShape: ImageShape,
  log?: (m: string) => void,
): Promise<{ bytes: Uint8Array; cached: boolean }> {
  const key = { sha256: files.sha256, layer, inputShape, version: VERSION };
  const cached = await readConvertedCache(key, log);
  if (cached) return { bytes: cached, cached: true };
  const artifacts = await artifactsOf(files);
  const topology = artifacts.modelTopology as Record<string, unknown>;
  const cut = path ? cutTopology(topology, path) : topology;
  if (!cut)
    throw new UserError(
      `cannot export ${files.source} to ONNX: its model.json topology has no layer ${path!.join('/')} to cut at`,
    );
  const { bytes } = convertFeatureGraph(
    {
      modelTopology: cut,
      weightSpecs: artifacts.weightSpecs ?? [],
      weightData: artifacts.weightData as ArrayBuffer,
    },
    { inputShape, source: files.source },
  );
  await writeConvertedCache(key, bytes, log);
  return { bytes, cached: false };
}
