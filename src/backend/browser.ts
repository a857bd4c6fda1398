/**
 * `imgclf/backend`: imgclf's own kernels for a page that trains with `imgclf/core`, the ones the
 * CLI registers too (backend/index.ts). Browser-safe: TensorFlow.js and src/core only, no Node
 * API and no threads. Setting up the tfjs backends themselves (which to load, where the wasm
 * binaries are served from, which to choose) stays with the page.
 */
import { registerConvKernels } from './conv-kernels.js';
import { registerElementwiseKernels } from './elementwise.js';
import { registerFusedDense } from './fused-dense.js';
import { registerFusedXent } from './fused-xent.js';
import { registerWasmKernels } from './wasm-kernels.js';

/**
 * Registers imgclf's kernels (safe to call more than once). Call it after importing
 * `@tensorflow/tfjs-backend-wasm`, whose kernels the wasm ones replace (without it they are
 * left out), and before the first training step:
 *
 * - wasm: faster transposes, transposed matrix products and Identity (wasm-kernels.ts);
 * - wasm: the convolution gradients (conv-kernels.ts); tfjs-backend-wasm has no
 *   Conv2DBackpropFilter, so without them a CNN cannot train on wasm at all;
 * - wasm: bias adds and the ReLU gradient in SIMD (elementwise.ts), where its module loads;
 * - wasm and cpu: the fused softmax cross-entropy (fused-xent.ts). WebGL and WebGPU use the
 *   composed ops instead;
 * - wasm: the fused training step of softmax regression (fused-dense.ts), which `fit` uses
 *   unless the plan says `fused: false`.
 */
export function registerBrowserKernels(): void {
  registerWasmKernels();
  registerConvKernels();
  registerElementwiseKernels();
  registerFusedXent();
  registerFusedDense();
}
