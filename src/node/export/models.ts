/**
 * Models outside tfjs-layers. Such a model's topology names its own kind (`{ imgclf:
 * 'softmax-scratch', ... }`, what a run's model.json stores as format 'imgclf-net'), and its
 * exporter is registered here under that kind: exporting another such model is one function
 * and one `registerModelExporter` call in this file. The models themselves (src/core/models)
 * stay free of ONNX. A kind without an exporter (knn: a lookup over stored images, not a
 * graph of standard ops) stops the export with one line.
 */
import { UserError } from '../../core/errors.js';
import { type ExportContext, type ModelExporter } from './context.js';

const exporters = new Map<string, ModelExporter>();

/** Makes models whose topology says `imgclf: kind` exportable; a kind has one exporter. */
export function registerModelExporter(kind: string, exporter: ModelExporter): void {
  if (exporters.has(kind)) throw new Error(`an ONNX exporter for model '${kind}' is already registered`);
  exporters.set(kind, exporter);
}

/** The exporter of models whose topology says `imgclf: kind`. */
export function modelExporter(kind: unknown, source: string): ModelExporter {
  const exporter = typeof kind === 'string' ? exporters.get(kind) : undefined;
  if (!exporter)
    throw new UserError(`cannot export ${source} to ONNX: no ONNX mapping for model '${String(kind)}'`);
  return exporter;
}

/** softmax-scratch (core/models/softmax-scratch.ts): its W and b become Flatten + MatMul + Add. */
const softmaxScratch: ModelExporter = (cx: ExportContext, topology, recordedShape) => {
  const inputShape = (recordedShape ?? topology.inputShape) as number[];
  const n = inputShape.reduce((a, b) => a * b, 1);
  const k = Number(topology.numClasses);
  const scope = 'softmax-scratch';
  // Its weights are named W and b, without a layer prefix.
  const param = (p: string, shape: number[]) => {
    const w = cx.named(p);
    if (!w || w.shape.join(',') !== shape.join(','))
      throw new UserError(
        `cannot export ${cx.source} to ONNX: softmax-scratch weight ${p} is ${w ? `[${w.shape}]` : 'missing'} where [${shape}] was expected`,
      );
    return w;
  };
  const W = param('W', [n, k]);
  const b = param('b', [k]);
  const g = cx.g;
  const flat = g.node('Flatten', [cx.input], scope, { axis: { int: 1 } });
  const mm = g.node('MatMul', [flat, g.constant(`${scope}/W`, W.values, [n, k])], scope);
  const logits = g.node('Add', [mm, g.constant(`${scope}/b`, b.values, [k])], scope);
  return { inputShape, logits: { name: logits, shape: [k], layout: 'NHWC' } };
};

registerModelExporter('softmax-scratch', softmaxScratch);
