/**
 * Element-wise work of a training step in our wasm SIMD kernels (wasm/heap-kernels.c), on
 * tfjs's heap (heap-kernels.ts):
 *
 * - Add of a [..., C] tensor and a [C] bias: every layer's bias in training (tfjs fuses the bias
 *   into the convolution or product only when no gradient is being recorded). tfjs-backend-wasm
 *   broadcasts element by element without SIMD: 8.9 ms a cnn step.
 * - Sum over the leading axes (a bias gradient), in double as the JavaScript loop before it
 *   summed (conv-kernels.ts falls back to that loop), to the same bits.
 * - The ReLU gradient, dy * step(x): tfjs-core's gradient runs Step, Cast and Multiply, three
 *   passes over the activations. Here one kernel gives the same products, so the same bits; the
 *   gradient is registered for every backend and uses the kernel only where it runs.
 *
 * Each returns undefined where it does not apply (other dtypes or shapes, a channel count not a
 * multiple of 4, no heap kernels), and the caller runs tfjs's own kernel.
 */
import * as tf from '@tensorflow/tfjs-core';
import { heapKernels } from './heap-kernels.js';
import { overrideWasmKernel, type WasmBackendLike } from './wasm-kernels.js';

type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Add of x [..., C] and bias [C] (either order), C a multiple of 4, else undefined. */
export function biasAdd(args: KernelArgs): tf.TensorInfo | undefined {
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return undefined;
  const [x, bias] = a.shape.length >= b.shape.length ? [a, b] : [b, a];
  const cols = x.shape.at(-1);
  if (bias.shape.length !== 1 || x.shape.length < 2 || bias.shape[0] !== cols || cols % 4 !== 0 || cols === 0)
    return undefined;
  const heap = heapKernels(args.backend);
  if (!heap) return undefined;
  const out = (args.backend as unknown as WasmBackendLike).makeOutput(x.shape, 'float32');
  heap.kernels.bias_add(
    heap.offset(x),
    heap.offset(bias),
    heap.offset(out),
    tf.util.sizeFromShape(x.shape) / cols,
    cols,
  );
  return out;
}

/**
 * Sums x, seen as [rows, cols], over its rows into out (cols floats, a multiple of 4) on the
 * heap; false where the kernels cannot run, and the caller sums in JavaScript.
 */
export function sumRows(
  backend: object,
  x: tf.TensorInfo,
  out: tf.TensorInfo,
  rows: number,
  cols: number,
): boolean {
  const heap = cols % 4 === 0 ? heapKernels(backend) : undefined;
  if (!heap) return false;
  heap.withScratch(cols * 8, (acc) =>
    heap.kernels.sum_rows(heap.offset(x), heap.offset(out), acc, rows, cols),
  );
  return true;
}

/** The kernel of the ReLU gradient: dx = dy * step(x). Registered on wasm only. */
export const RELU_GRAD = 'ImgclfReluGrad';

function reluGradKernel(args: KernelArgs): tf.TensorInfo {
  const { dy, x } = args.inputs as { dy: tf.TensorInfo; x: tf.TensorInfo };
  const heap = heapKernels(args.backend)!;
  const out = (args.backend as unknown as WasmBackendLike).makeOutput(x.shape, 'float32');
  heap.kernels.relu_grad(heap.offset(dy), heap.offset(x), heap.offset(out), tf.util.sizeFromShape(x.shape));
  return out;
}

let registered = false;

/**
 * Replaces Add on wasm (bias adds), adds the ReLU-gradient kernel there, and registers a ReLU
 * gradient that uses it on wasm and tfjs-core's own formula on every other backend. Safe to call
 * twice.
 */
export function registerElementwiseKernels(): void {
  if (registered) return;
  registered = true;
  overrideWasmKernel('Add', (add) => (args) => biasAdd(args) ?? add.kernelFunc(args));
  tf.registerKernel({ kernelName: RELU_GRAD, backendName: 'wasm', kernelFunc: reluGradKernel });
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved;
      const d = dy as tf.Tensor;
      return {
        x: () =>
          tf.getBackend() === 'wasm' &&
          x.dtype === 'float32' &&
          d.dtype === 'float32' &&
          heapKernels(tf.backend())
            ? (tf.engine().runKernel(RELU_GRAD, { dy: d, x }) as tf.Tensor)
            : tf.mul(d, tf.cast(tf.step(x), 'float32')),
      };
    },
  });
}
