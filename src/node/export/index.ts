/**
 * Exporting a run directory: its model as an ONNX file (onnx.ts), written atomically, and the
 * optional check against ONNX Runtime on the run's own test images (parity.ts).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pixelsAsFloat } from '../../core/data/dataset.js';
import { writeFileAtomic } from '../fs.js';
import { loadRunData } from '../run/data.js';
import { type LoadedRun, WEIGHTS_FILE } from '../run/rundir.js';
import { convertToOnnx, type OnnxExport } from './onnx.js';
import { onnxParity, type Parity } from './parity.js';

export { convertToOnnx, INPUT_NAME, OUTPUT_NAME, type ExportInfo, type OnnxExport } from './onnx.js';
export { loadOnnxRuntime, onnxParity, PARITY_TOLERANCE, parityOk, type Parity } from './parity.js';
export { decodeModel, IR_VERSION, OPSET } from './graph.js';
// What a converter for another layer class, or another model outside tfjs-layers, is written against.
export { ExportContext, Unsupported, type ModelExporter, type ModelGraph, type Value } from './context.js';
export { registerLayerConverter, type ConverterOptions, type Layer, type LayerConverter } from './layers.js';
export { registerModelExporter } from './models.js';

/** Where `imgclf export` writes by default: DIR/model.onnx. */
export function defaultOnnxPath(runDir: string): string {
  return path.join(runDir, 'model.onnx');
}

/**
 * Converts a loaded run's model to ONNX, with the run's class names and preprocessing, and the
 * SHA-256 of its weights.bin (`weights_sha256`): an export left beside a run that was trained
 * again since no longer matches it.
 */
export async function runToOnnx(run: LoadedRun): Promise<OnnxExport> {
  const m = run.metadata;
  const weights = await readFile(path.join(run.dir, WEIGHTS_FILE));
  // A head on a backbone: the backbone's graph goes in front of it (backbone.ts).
  const backbone = run.backbone ? await run.backbone.onnxGraph() : undefined;
  // A fine-tuned run's model holds its backbone; the file still says which one it started from.
  const recorded = m.backbone ?? m.fineTuned?.backbone;
  return convertToOnnx(await run.model.artifacts(), {
    model: m.model,
    classNames: m.classNames,
    inputShape: m.inputShape,
    preprocessing: m.preprocessing,
    source: run.dir,
    extraMetadata: {
      weights_sha256: createHash('sha256').update(weights).digest('hex'),
      ...(recorded ? { backbone: recorded.source, backbone_sha256: recorded.sha256 } : {}),
    },
    ...(backbone ? { backbone } : {}),
  });
}

/** Converts a loaded run and writes the file atomically to `out`. */
export async function exportRunOnnx(run: LoadedRun, out: string): Promise<OnnxExport> {
  const result = await runToOnnx(run);
  await writeFileAtomic(out, result.bytes);
  return result;
}

/** ONNX Runtime vs tfjs on the first `limit` test images of the run's own data. */
export async function checkRunParity(
  run: LoadedRun,
  onnxBytes: Uint8Array,
  opts: { dataDir?: string; limit?: number } = {},
): Promise<Parity> {
  const dataset = await loadRunData(run.metadata, opts.dataDir, { runDir: run.dir });
  const shape = run.metadata.inputShape;
  const count = Math.min(opts.limit ?? 1000, dataset.test.count);
  const size = shape[0] * shape[1] * shape[2];
  return onnxParity(run.model, onnxBytes, pixelsAsFloat(dataset.test.images, 0, count * size), count, shape, {
    labels: dataset.test.labels.subarray(0, count),
  });
}
