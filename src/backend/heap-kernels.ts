/**
 * Our WebAssembly kernels that run in tfjs-backend-wasm's own memory (wasm/heap-kernels.c):
 * 3x3 convolutions by Winograd (conv3x3.ts), the 2x2 max-pool gradient (conv-kernels.ts) and
 * element-wise kernels of the training step (elementwise.ts).
 *
 * The module imports the backend's WebAssembly.Memory, so a kernel reads its inputs and writes
 * its output where tfjs keeps the tensors: no copies in or out. Pointers are the tensors' heap
 * offsets; scratch space comes from the backend's own malloc. The module keeps no data or stack
 * in that memory (the build checks), so it writes only where it is pointed.
 *
 * This reaches into two internals of tfjs-backend-wasm 4.x that its public API does not offer:
 * the Emscripten module's memory (`wasm.asm.memory`) and a tensor's `memoryOffset`. Where either
 * is missing (another version, the threaded build's shared memory) or the module cannot be
 * compiled synchronously (a browser's main thread), `heapKernels` returns undefined and callers
 * fall back to tfjs's kernels.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { HEAP_KERNELS_WASM } from './heap-kernels-wasm.js';

/** n, H, W, C, K, Ho, Wo, padTop, padLeft, as the convolution functions take them. */
export type ConvShape = [number, number, number, number, number, number, number, number, number];

/** Output tile size of the Winograd kernels: F(2x2, 3x3) or F(4x4, 3x3). */
export type WinogradTile = 2 | 4;

/** The module's exports; every pointer is a byte offset into the backend's memory. */
export interface HeapKernels {
  /** m: the Winograd tile size, 2 for F(2x2, 3x3) or 4 for F(4x4, 3x3). */
  wg_filter(g: number, u: number, c: number, k: number, m: WinogradTile): void;
  wg_forward(
    ...args: [
      x: number,
      u: number,
      y: number,
      scratch: number,
      ...shape: ConvShape,
      bias: number,
      relu: 0 | 1,
      m: WinogradTile,
    ]
  ): void;
  direct_forward(
    ...args: [x: number, g: number, y: number, padded: number, ...shape: ConvShape, bias: number, relu: 0 | 1]
  ): void;
  wg_filter_grad(
    ...args: [x: number, dy: number, s: number, scratch: number, ...shape: ConvShape, m: WinogradTile]
  ): void;
  wg_filter_grad_out(s: number, dg: number, c: number, k: number, m: WinogradTile): void;
  wg_filter_grad_direct(...args: [x: number, dy: number, dg: number, row: number, ...shape: ConvShape]): void;
  simd_peak(rounds: number, scale: number, step: number): number;
  bias_add(x: number, bias: number, y: number, rows: number, cols: number): void;
  sum_rows(x: number, out: number, acc: number, rows: number, cols: number): void;
  relu_grad(dy: number, x: number, dx: number, n: number): void;
  mp_grad_2x2(
    ...args: [
      x: number,
      y: number,
      dy: number,
      dx: number,
      n: number,
      h: number,
      w: number,
      c: number,
      ho: number,
      wo: number,
    ]
  ): void;
}

/** What the wasm backend has and its typings do not show. */
interface BackendInternals {
  wasm?: {
    asm?: { memory?: WebAssembly.Memory };
    _malloc?(bytes: number): number;
    _free?(ptr: number): void;
  };
  dataIdMap?: { get(id: object): { memoryOffset?: number } | undefined };
}

/** The kernels bound to one backend's memory, with the helpers to point them at tensors. */
export interface Heap {
  kernels: HeapKernels;
  /** The tensor's byte offset in the heap. */
  offset(t: tf.TensorInfo): number;
  /** Runs `fn` with `bytes` of scratch space from the backend's malloc, freed afterwards. */
  withScratch<T>(bytes: number, fn: (ptr: number) => T): T;
  /** The heap as floats, for the parts a kernel's caller fills or clears in JavaScript. */
  floats(): Float32Array;
}

let compiled: WebAssembly.Module | null | undefined;
const heaps = new WeakMap<WebAssembly.Memory, Heap | null>();

function compile(): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(Uint8Array.from(atob(HEAP_KERNELS_WASM), (c) => c.charCodeAt(0)));
    } catch {
      compiled = null; // no SIMD, or a browser's main thread refusing a synchronous compile
    }
  }
  return compiled;
}

/** The kernels in `backend`'s memory, or undefined where they cannot run there. */
export function heapKernels(backend: object): Heap | undefined {
  const { wasm, dataIdMap } = backend as BackendInternals;
  const memory = wasm?.asm?.memory;
  if (!wasm?._malloc || !wasm._free || !dataIdMap || !(memory instanceof WebAssembly.Memory))
    return undefined;
  let heap = heaps.get(memory);
  if (heap === undefined) {
    heap = null;
    const mod = compile();
    try {
      if (mod) {
        const kernels = new WebAssembly.Instance(mod, { env: { memory } }).exports as unknown as HeapKernels;
        const malloc = wasm._malloc.bind(wasm);
        const free = wasm._free.bind(wasm);
        heap = {
          kernels,
          offset(t) {
            const at = dataIdMap.get(t.dataId)?.memoryOffset;
            if (at === undefined)
              throw new Error('internal: a tensor without a heap offset on the wasm backend');
            return at;
          },
          withScratch(bytes, fn) {
            const ptr = malloc(Math.max(16, bytes));
            if (!ptr) throw new Error('the wasm backend ran out of memory for kernel scratch space');
            try {
              return fn(ptr);
            } finally {
              free(ptr);
            }
          },
          floats: () => new Float32Array(memory.buffer),
        };
      }
    } catch {
      heap = null; // the import does not fit this memory (shared, or too small a maximum)
    }
    heaps.set(memory, heap);
  }
  return heap ?? undefined;
}
