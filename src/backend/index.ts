/**
 * Choosing the TensorFlow.js backend. `auto` prefers @tensorflow/tfjs-node (native TensorFlow,
 * an optional dependency that needs a download at install time), then wasm (XNNPACK SIMD
 * kernels, plus ours in wasm-kernels.ts), then the plain JavaScript cpu backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BACKENDS, type BackendName } from '../core/backends.js';
import { UserError } from '../core/errors.js';
import { registerBatchNormKernels } from './bn-kernels.js';
import { registerConvKernels } from './conv-kernels.js';
import { registerElementwiseKernels } from './elementwise.js';
import { registerFusedDense } from './fused-dense.js';
import { registerFusedXent } from './fused-xent.js';
import { registerWasmKernels } from './wasm-kernels.js';

export { BACKENDS, type BackendName } from '../core/backends.js';

async function tryTfjsNode(): Promise<boolean> {
  try {
    // A variable specifier keeps bundlers and tsc from requiring the optional package.
    const name = '@tensorflow/tfjs-node';
    await import(name);
    return tf.findBackend('tensorflow') !== null;
  } catch {
    return false;
  }
}

async function tryWasm(): Promise<boolean> {
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    registerWasmKernels();
    registerConvKernels();
    registerElementwiseKernels();
    registerBatchNormKernels();
    registerFusedDense();
    return await tf.setBackend('wasm');
  } catch {
    return false;
  }
}

async function useCpu(): Promise<boolean> {
  await import('@tensorflow/tfjs-backend-cpu');
  return tf.setBackend('cpu');
}

/** Activates a backend and returns the name of the one in use. */
export async function selectBackend(name: BackendName = 'auto'): Promise<string> {
  registerFusedXent();
  if (!(BACKENDS as readonly string[]).includes(name)) {
    throw new UserError(`unknown backend '${name}'; choose one of ${BACKENDS.join(', ')}`);
  }
  if (tf.getBackend() && name !== 'auto' && tf.getBackend() === name) return name;
  if (name === 'tensorflow') {
    if (!((await tryTfjsNode()) && (await tf.setBackend('tensorflow')))) {
      throw new UserError(
        "backend 'tensorflow' needs @tensorflow/tfjs-node, which is not installed; run 'npm install @tensorflow/tfjs-node' or use --backend wasm",
      );
    }
  } else if (name === 'wasm') {
    if (!(await tryWasm())) throw new UserError('the wasm backend failed to start; use --backend cpu');
  } else if (name === 'cpu') {
    await useCpu();
  } else if (!((await tryTfjsNode()) && (await tf.setBackend('tensorflow'))) && !(await tryWasm())) {
    await useCpu();
  }
  await tf.ready();
  return tf.getBackend();
}
