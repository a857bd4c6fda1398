// eslint-disable-next-line @typescript-eslint/triple-slash-reference -- an ambient declaration (the `?url` module) is brought in by reference, not by import
/// <reference path="./asset-url.d.ts" />
/**
 * ONNX Runtime in the page (onnxruntime-web), loaded only when a backbone needs it: this module
 * is imported dynamically, so the page's first load carries none of it. The WebAssembly file is
 * part of the page's own build (vite emits it as an asset, `?url`), never fetched from a CDN, so
 * the page works offline and under its Content-Security-Policy. The default build of
 * onnxruntime-web runs on wasm and, where the browser has it, on WebGPU (one .wasm file for
 * both).
 */
import type * as Ort from 'onnxruntime-web';

let loading: Promise<typeof Ort> | undefined;

/** onnxruntime-web, its wasm file served by the page and one thread unless cross-origin isolated. */
export function loadOrt(): Promise<typeof Ort> {
  loading ??= (async () => {
    const [ort, wasm] = await Promise.all([
      import('onnxruntime-web'),
      import('onnxruntime-web/ort-wasm-simd-threaded.jsep.wasm?url'),
    ]);
    ort.env.wasm.wasmPaths = { wasm: new URL(wasm.default, location.href).href };
    // Threads need SharedArrayBuffer, which browsers give cross-origin isolated pages only;
    // elsewhere onnxruntime-web would try and warn.
    ort.env.wasm.numThreads = globalThis.crossOriginIsolated
      ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1))
      : 1;
    ort.env.logLevel = 'error';
    return ort;
  })();
  loading.catch(() => (loading = undefined));
  return loading;
}

/** The execution providers to ask for: WebGPU first where the browser offers an adapter. */
export async function executionProviders(): Promise<string[]> {
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (gpu) {
    try {
      if (await gpu.requestAdapter()) return ['webgpu', 'wasm'];
    } catch {
      // No adapter: wasm alone.
    }
  }
  return ['wasm'];
}
