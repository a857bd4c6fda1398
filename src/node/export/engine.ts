/**
 * Inference engines for `imgclf serve --engine`: the run's own tfjs model, or its ONNX export
 * run by ONNX Runtime (onnxruntime-node, an optional dependency, on all cores by its own thread
 * pool). Both take the model's input (NHWC, scaled as the run's preprocessing says) and give
 * the class probabilities, so the routes do not know which one answers.
 */
import { predictProbabilities } from '../../core/predict.js';
import type { LoadedRun } from '../run/rundir.js';
import { INPUT_NAME, OUTPUT_NAME } from './onnx.js';
import { runToOnnx } from './index.js';
import { loadOnnxRuntime } from './parity.js';

export const ENGINES = ['tfjs', 'onnx'] as const;
export type EngineName = (typeof ENGINES)[number];

export interface Engine {
  readonly name: EngineName;
  /** Probabilities of `n` images packed in `input` (n * H * W * C values). */
  probabilities(input: Float32Array, n: number): Promise<Float32Array[]>;
  dispose(): Promise<void>;
}

/** The run's tfjs model on the current backend. */
export function tfjsEngine(run: LoadedRun): Engine {
  const shape = run.metadata.inputShape;
  return {
    name: 'tfjs',
    probabilities: async (input, n) => predictProbabilities(run.model, input, n, shape),
    dispose: async () => {},
  };
}

/** The run's model exported to ONNX in memory and run by ONNX Runtime. */
export async function onnxEngine(run: LoadedRun): Promise<Engine> {
  const ort = await loadOnnxRuntime();
  const exported = await runToOnnx(run);
  const session = await ort.InferenceSession.create(exported.bytes);
  const [h, w, c] = run.metadata.inputShape;
  const k = run.metadata.classNames.length;
  return {
    name: 'onnx',
    async probabilities(input, n) {
      const feeds = { [INPUT_NAME]: new ort.Tensor('float32', input, [n, h, w, c]) };
      const out = (await session.run(feeds))[OUTPUT_NAME].data as Float32Array;
      return Array.from({ length: n }, (_, i) => out.slice(i * k, (i + 1) * k));
    },
    dispose: () => session.release(),
  };
}

/** The engine named `name` for `run`. */
export function createEngine(name: EngineName, run: LoadedRun): Promise<Engine> {
  return name === 'onnx' ? onnxEngine(run) : Promise.resolve(tfjsEngine(run));
}
