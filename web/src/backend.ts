/**
 * Picks the best TensorFlow.js backend this browser offers: WebGPU, then WebGL, then wasm, then
 * plain JavaScript. WebGL drawn in software (SwiftShader, llvmpipe: a machine without a usable
 * GPU) is passed over: it trained a small model about 18x slower than wasm here. `?backend=NAME`
 * in the page address forces one, software WebGL included.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreaded from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import { registerBrowserKernels } from 'imgclf/backend';

export const PREFERENCE = ['webgpu', 'webgl', 'wasm', 'cpu'] as const;

/** The WebGL renderer's name when it draws in software, else undefined. */
export function softwareWebgl(): string | undefined {
  try {
    const gl =
      document.createElement('canvas').getContext('webgl2') ??
      document.createElement('canvas').getContext('webgl');
    if (!gl) return undefined;
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    const renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
    return /swiftshader|llvmpipe|softpipe|software/i.test(renderer) ? renderer : undefined;
  } catch {
    return undefined;
  }
}

/** Activates the first backend that starts and returns its name. */
export async function chooseBackend(forced?: string | null): Promise<string> {
  setWasmPaths({
    'tfjs-backend-wasm.wasm': wasmPlain,
    'tfjs-backend-wasm-simd.wasm': wasmSimd,
    'tfjs-backend-wasm-threaded-simd.wasm': wasmThreaded,
  });
  // imgclf's kernels: the wasm ones replace kernels of tfjs-backend-wasm, imported above; among
  // them the convolution gradients, without which a CNN cannot train on wasm.
  registerBrowserKernels();
  const order = forced && (PREFERENCE as readonly string[]).includes(forced) ? [forced] : [...PREFERENCE];
  const software = forced ? undefined : softwareWebgl();
  if (software) document.body.dataset.softwareWebgl = software;
  for (const name of order) {
    if (name === 'webgpu' && !('gpu' in navigator)) continue;
    if (name === 'webgl' && software) continue;
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
  const shown = document.getElementById('backend')!;
  shown.textContent = name;
  const software = document.body.dataset.softwareWebgl;
  if (software) shown.title = `WebGL is drawn in software here (${software}); ${name} is faster`;
  document.body.dataset.backend = name;
  return name;
}
