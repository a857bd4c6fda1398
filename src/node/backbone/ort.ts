/**
 * ONNX Runtime for backbones (Node only): loading onnxruntime-node, and a session whose `run` is
 * synchronous.
 *
 * Why synchronous: a transfer run is one net (backbone, then head; backbone.ts `backboneNet`)
 * whose `apply` evaluate, predict, report, serve and the library call as they call any tfjs
 * model, synchronously. onnxruntime-node's public `session.run` is asynchronous in name only:
 * it waits for setImmediate and then calls its native binding's `run`, which computes on ORT's
 * own thread pool while the JavaScript thread waits. Calling that binding directly does the
 * same work without the promise, so an ONNX backbone fits everywhere a tfjs one does, and no
 * caller needs an asynchronous step. The binding is onnxruntime-node's `dist/binding.js`
 * (present since 1.14 and unchanged in shape through 1.30, the version package.json asks for);
 * if a later version moves it, loading fails with one line saying so.
 */
import os from 'node:os';
import type { InferenceSession, OnnxValue, Tensor } from 'onnxruntime-node';
import { UserError } from '../../core/errors.js';

/** What the native binding reports about each input or output. */
interface RawMetadata {
  name: string;
  isTensor: boolean;
  symbolicDimensions: string[];
  /** -1 for a dimension the graph leaves free. */
  shape: number[];
  /** ONNX TensorProto.DataType: 1 is float32. */
  type: number;
}

interface NativeSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: object): void;
  readonly inputMetadata: RawMetadata[];
  readonly outputMetadata: RawMetadata[];
  run(
    feeds: Record<string, OnnxValue>,
    fetches: Record<string, null>,
    options: object,
  ): Record<string, OnnxValue>;
  dispose(): void;
}

interface Binding {
  binding: { InferenceSession: new () => NativeSession };
  initOrt: () => void;
}

/** An input or output of the graph: its name, element type and shape (-1 where free). */
export interface ValueInfo {
  name: string;
  /** float32 is the only type imgclf feeds or reads. */
  float: boolean;
  shape: number[];
}

/** A loaded ONNX graph, run synchronously on all cores. */
export interface OrtSession {
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  /** Runs the graph on one float32 input and returns the named output's values and shape. */
  run(
    input: string,
    data: Float32Array,
    dims: number[],
    output: string,
  ): { data: Float32Array; dims: number[] };
  dispose(): void;
}

const FLOAT = 1;

/** The one-line reason onnxruntime-node cannot be used, with the fix. */
function notLoaded(err: unknown): UserError {
  return new UserError(
    `onnxruntime-node is not installed or failed to load (${((err as Error)?.message ?? String(err)).split('\n')[0]}); run npm install onnxruntime-node — offline installs need its install script skipped: npm config set onnxruntime-node-install skip`,
  );
}

let loaded: Promise<{ Tensor: typeof Tensor; native: Binding }> | undefined;

/** onnxruntime-node's Tensor class and its native binding, loaded once. */
function loadOrt(): Promise<{ Tensor: typeof Tensor; native: Binding }> {
  loaded ??= (async () => {
    try {
      const ort = await import('onnxruntime-node');
      const native = (await import('onnxruntime-node/dist/binding.js')) as unknown as Binding & {
        default?: Binding;
      };
      const b = native.binding ? native : native.default;
      if (!b?.binding?.InferenceSession || typeof b.initOrt !== 'function')
        throw new Error('its native binding (dist/binding.js) has another shape than 1.30 had');
      b.initOrt();
      return { Tensor: ort.Tensor, native: b };
    } catch (err) {
      loaded = undefined; // the next call tries again (an install in between)
      throw notLoaded(err);
    }
  })();
  return loaded;
}

/** Threads for one session: every core (ORT's default pool is sized the same way). */
export function ortThreads(): number {
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

/**
 * Loads an ONNX graph from its bytes. `where` names it in errors: bytes that are not an ONNX
 * graph ORT can run are one line saying so.
 */
export async function createOrtSession(bytes: Uint8Array, where: string): Promise<OrtSession> {
  const { Tensor: OrtTensor, native } = await loadOrt();
  const session = new native.binding.InferenceSession();
  const options: InferenceSession.SessionOptions = {
    intraOpNumThreads: ortThreads(),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  };
  try {
    session.loadModel(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength, options);
  } catch (err) {
    throw new UserError(
      `backbone ${where} is not an ONNX graph ONNX Runtime can load (${(err as Error).message.split('\n')[0]})`,
    );
  }
  const info = (m: RawMetadata): ValueInfo => ({
    name: m.name,
    float: m.isTensor && m.type === FLOAT,
    shape: m.isTensor ? m.shape.map((d) => (d >= 0 ? d : -1)) : [],
  });
  return {
    inputs: session.inputMetadata.map(info),
    outputs: session.outputMetadata.map(info),
    run(input, data, dims, output) {
      const feeds = { [input]: new OrtTensor('float32', data, dims) };
      const out = session.run(feeds, { [output]: null }, {})[output] as Tensor;
      if (out.type !== 'float32')
        throw new UserError(`backbone ${where}: its output '${output}' is ${out.type}, not float32 features`);
      return { data: out.data as Float32Array, dims: [...out.dims] };
    },
    dispose: () => session.dispose(),
  };
}
