/**
 * Picks the best TensorFlow.js backend this browser offers: WebGPU, then WebGL, then wasm, then
 * plain JavaScript. `?backend=NAME` in the page address forces one.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreaded from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import { registerConvKernels } from '../../src/backend/conv-kernels.js';
import { registerFusedXent } from '../../src/backend/fused-xent.js';
import { registerWasmKernels } from '../../src/backend/wasm-kernels.js';

export const PREFERENCE = ['webgpu', 'webgl', 'wasm', 'cpu'] as const;

/** Activates the first backend that starts and returns its name. */
export async function chooseBackend(forced?: string | null): Promise<string> {
  setWasmPaths({
    'tfjs-backend-wasm.wasm': wasmPlain,
    'tfjs-backend-wasm-simd.wasm': wasmSimd,
    'tfjs-backend-wasm-threaded-simd.wasm': wasmThreaded,
  });
  registerWasmKernels();
  // Convolution gradients: tfjs-backend-wasm has no Conv2DBackpropFilter (a CNN cannot train without).
  registerConvKernels();
  registerFusedXent();
  const order = forced && (PREFERENCE as readonly string[]).includes(forced) ? [forced] : [...PREFERENCE];
  for (const name of order) {
    if (name === 'webgpu' && !('gpu' in navigator)) continue;
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        // A context that exists but cannot run a kernel (blocklisted GPU) counts as absent.
        tf.tidy(() => tf.add(tf.scalar(1), tf.scalar(1)).dataSync());
        return name;
      }
    } catch {
      // try the next one
    }
  }
  await tf.setBackend('cpu');
  return 'cpu';
}

/** Starts the backend (`?backend=` forces one) and shows its name in the header and on <body>. */
export async function startBackend(forced?: string | null): Promise<string> {
  const name = await chooseBackend(forced);
  document.getElementById('backend')!.textContent = name;
  document.body.dataset.backend = name;
  return name;
}
