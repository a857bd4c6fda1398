/**
 * Kernels that replace or add to tfjs-backend-wasm's own, registered with tf.registerKernel.
 *
 * Transpose: the wasm kernel moves ~9 ns per element (1.8 ms for a 256x784 batch), and every
 * dense layer's weight gradient (X^T * dY) transposes its input, so it dominated a softmax step.
 * A cache-blocked loop in JS over the wasm heap does the same in a fraction of that.
 *
 * BatchMatMul / _FusedMatMul: with either transpose flag set, the wasm kernel leaves XNNPACK for
 * a naive loop, 5 to 15x slower (256x784^T * 256x10: 2.3 ms against 0.3 ms untransposed).
 * Every matmul gradient sets one of the flags. We materialize the transposed operand with the
 * fast transpose and call the kernel untransposed.
 *
 * Identity: the wasm kernel copies its input, and the engine calls it (through `clone`) for
 * every tensor a kernel saves for its gradient, so each training step copied its 256x784 input
 * batch (0.6 ms). Tensors are immutable, so sharing the data with a reference count, as the
 * cpu backend's Identity does, is equivalent.
 *
 * _FusedMatMul with a bias on batched (rank 3) inputs gives wrong results in tfjs-backend-wasm
 * 4.22 (max error 2.2 against the cpu backend on random 3x9x17 * 3x17x11). For that case we run
 * the plain product and add the bias and activation here.
 */
import * as tf from '@tensorflow/tfjs-core';

/** The parts of the wasm backend's (untyped) interface the kernels use. */
export interface WasmBackendLike {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): tf.TypedArray;
}

/** Shape and permutation with size-1 dimensions dropped (they do not move data). */
export function squeezePerm(shape: number[], perm: number[]): { shape: number[]; perm: number[] } {
  const keep = shape.map((s) => s !== 1);
  const newIndex: number[] = [];
  let k = 0;
  for (let i = 0; i < shape.length; i++) newIndex.push(keep[i] ? k++ : -1);
  return {
    shape: shape.filter((_, i) => keep[i]),
    perm: perm.filter((p) => keep[p]).map((p) => newIndex[p]),
  };
}

/**
 * dst[dOff + c * rows + r] = src[sOff + r * cols + c]. Eight source rows at a time, so each
 * source column is written as eight consecutive floats: 0.19 ms for 256x784 here, against
 * 0.7 ms for a 32x32-tiled loop and 1.8 ms for the wasm kernel. Offsets instead of subarrays,
 * and Float32Array only, keep the loop monomorphic for the JIT.
 */
export function transpose2d(
  src: Float32Array,
  dst: Float32Array,
  rows: number,
  cols: number,
  sOff = 0,
  dOff = 0,
): void {
  const full = rows - (rows % 8);
  for (let r0 = 0; r0 < full; r0 += 8) {
    for (let c = 0; c < cols; c++) {
      const o = dOff + c * rows + r0;
      const i = sOff + r0 * cols + c;
      dst[o] = src[i];
      dst[o + 1] = src[i + cols];
      dst[o + 2] = src[i + 2 * cols];
      dst[o + 3] = src[i + 3 * cols];
      dst[o + 4] = src[i + 4 * cols];
      dst[o + 5] = src[i + 5 * cols];
      dst[o + 6] = src[i + 6 * cols];
      dst[o + 7] = src[i + 7 * cols];
    }
  }
  for (let r = full; r < rows; r++) {
    const rowBase = sOff + r * cols;
    for (let c = 0; c < cols; c++) dst[dOff + c * rows + r] = src[rowBase + c];
  }
}

/**
 * Transposes with a 2-D core: any permutation that, after dropping size-1 dims, swaps two
 * blocks of axes [A, B] -> [B, A] is a 2-D transpose of an (A, B) matrix, optionally batched
 * over leading axes that stay in place.
 */
function asBatched2d(
  shape: number[],
  perm: number[],
): { batch: number; rows: number; cols: number } | undefined {
  const n = perm.length;
  let lead = 0;
  while (lead < n && perm[lead] === lead) lead++;
  if (lead === n) return undefined;
  const rest = perm.slice(lead);
  // rest must be [k..n-1, lead..k-1] for some split point k.
  const k = rest[0];
  for (let i = 0; i < rest.length; i++) {
    const expected = i < n - k ? k + i : lead + (i - (n - k));
    if (rest[i] !== expected) return undefined;
  }
  const prod = (a: number, b: number) => shape.slice(a, b).reduce((x, y) => x * y, 1);
  return { batch: prod(0, lead), rows: prod(lead, k), cols: prod(k, n) };
}

type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Our transpose on the wasm heap, or undefined when the permutation is not a (batched) 2-D one. */
function fastTranspose(
  x: tf.TensorInfo,
  perm: number[],
  backend: WasmBackendLike,
): tf.TensorInfo | undefined {
  if (x.dtype !== 'float32') return undefined;
  const squeezed = squeezePerm(x.shape, perm);
  // Moving only size-1 axes (a [1, 784] matrix, the last batch of one image) keeps the memory
  // order: the transpose is a copy.
  const identity = squeezed.perm.every((p, i) => p === i);
  const plan = identity ? undefined : asBatched2d(squeezed.shape, squeezed.perm);
  if (!plan && !identity) return undefined;
  const out = backend.makeOutput(
    perm.map((p) => x.shape[p]),
    x.dtype,
  );
  const src = backend.typedArrayFromHeap(x) as Float32Array;
  const dst = backend.typedArrayFromHeap(out) as Float32Array;
  if (!plan) {
    dst.set(src);
    return out;
  }
  const { batch, rows, cols } = plan;
  const stride = rows * cols;
  for (let b = 0; b < batch; b++) transpose2d(src, dst, rows, cols, b * stride, b * stride);
  return out;
}

/** Swaps the last two axes of a rank >= 2 tensor. */
function swapLastTwo(x: tf.TensorInfo, backend: WasmBackendLike): tf.TensorInfo {
  const r = x.shape.length;
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  const out = fastTranspose(x, perm, backend);
  if (!out) throw new Error(`internal: cannot transpose ${x.dtype} tensor of shape ${x.shape}`);
  return out;
}

/**
 * Replaces a registered wasm kernel with `make(original)`, keeping the original's setup; the new
 * function usually tries its own route and calls the original where that does not apply.
 * Nothing happens where tfjs-backend-wasm has no such kernel.
 */
export function overrideWasmKernel(name: string, make: (original: tf.KernelConfig) => tf.KernelFunc): void {
  const original = tf.getKernel(name, 'wasm');
  if (!original) return;
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({
    kernelName: name,
    backendName: 'wasm',
    setupFunc: original.setupFunc,
    kernelFunc: make(original),
  });
}

const ACTIVATIONS: Record<string, ((v: number) => number) | undefined> = {
  linear: (v) => v,
  relu: (v) => (v > 0 ? v : 0),
  relu6: (v) => Math.min(Math.max(v, 0), 6),
  sigmoid: (v) => 1 / (1 + Math.exp(-v)),
};

/** Batched matmul + per-column bias + simple activation, sidestepping the wasm bug above. */
function batchedFusedWithBias(args: KernelArgs, original: tf.KernelConfig): tf.TensorInfo | undefined {
  const { a, b, bias } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo; bias?: tf.TensorInfo };
  const attrs = args.attrs as unknown as { activation: string; transposeA: boolean; transposeB: boolean };
  const act = ACTIVATIONS[attrs.activation];
  if (!bias || (a.shape.length <= 2 && b.shape.length <= 2) || !act) return undefined;
  const backend = args.backend as unknown as WasmBackendLike;
  const product = getMatMul()({
    ...args,
    inputs: { a, b },
    attrs: { transposeA: attrs.transposeA, transposeB: attrs.transposeB },
  });
  const cols = product.shape[product.shape.length - 1];
  const biasSize = bias.shape.reduce((x, y) => x * y, 1);
  if (biasSize !== cols && biasSize !== 1) {
    (backend as unknown as { disposeData(id: object): void }).disposeData(product.dataId);
    return original.kernelFunc(args) as tf.TensorInfo;
  }
  const out = backend.typedArrayFromHeap(product);
  const bv = backend.typedArrayFromHeap(bias);
  for (let i = 0; i < out.length; i++) out[i] = act(out[i] + bv[biasSize === 1 ? 0 : i % cols]);
  return product;
}

/** The (already overridden) BatchMatMul kernel. */
function getMatMul(): (args: KernelArgs) => tf.TensorInfo {
  return tf.getKernel('BatchMatMul', 'wasm')!.kernelFunc as (args: KernelArgs) => tf.TensorInfo;
}

let registered = false;

/** Registers the faster kernels on the wasm backend. Safe to call more than once. */
export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  overrideWasmKernel('Identity', () => (args: KernelArgs) => {
    const x = args.inputs.x as tf.TensorInfo;
    (args.backend as unknown as { incRef(id: object): void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  });
  overrideWasmKernel('Transpose', (original) => (args: KernelArgs) => {
    const x = args.inputs.x as tf.TensorInfo;
    const perm = (args.attrs as unknown as { perm: number[] }).perm;
    return fastTranspose(x, perm, args.backend as unknown as WasmBackendLike) ?? original.kernelFunc(args);
  });
  for (const name of ['BatchMatMul', '_FusedMatMul']) {
    overrideWasmKernel(name, (original) => (args: KernelArgs) => {
      if (name === '_FusedMatMul') {
        const fixed = batchedFusedWithBias(args, original);
        if (fixed) return fixed;
      }
      const attrs = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      if ((!attrs.transposeA && !attrs.transposeB) || a.dtype !== 'float32' || b.dtype !== 'float32') {
        return original.kernelFunc(args);
      }
      const backend = args.backend as unknown as WasmBackendLike & { disposeData(id: object): void };
      const size = (t: tf.TensorInfo) => t.shape.reduce((x, y) => x * y, 1);
      const outSize =
        (size(a) / (attrs.transposeA ? a.shape.at(-2)! : a.shape.at(-1)!)) *
        (attrs.transposeB ? b.shape.at(-2)! : b.shape.at(-1)!);
      // XNNPACK packs the right-hand operand into its own layout on every call with a new
      // tensor (~6 ns an element here), while our transpose moves ~1 ns an element: count both.
      const PACK = 6;
      const direct = (attrs.transposeA ? size(a) : 0) + (attrs.transposeB ? size(b) : 0) + PACK * size(b);
      const swapped =
        (attrs.transposeA ? 0 : size(a)) + (attrs.transposeB ? 0 : size(b)) + outSize + PACK * size(a);
      const untransposed = (x: tf.TensorInfo, y: tf.TensorInfo) =>
        original.kernelFunc({
          ...args,
          inputs: { ...args.inputs, a: x, b: y },
          attrs: { ...args.attrs, transposeA: false, transposeB: false },
        }) as tf.TensorInfo;
      if (name === 'BatchMatMul' && swapped < direct) {
        // C = op(A) op(B) = (op(B)^T op(A)^T)^T: cheaper when A is the smaller operand to pack
        // and to leave untransposed.
        const left = attrs.transposeB ? b : swapLastTwo(b, backend);
        const right = attrs.transposeA ? a : swapLastTwo(a, backend);
        try {
          const ct = untransposed(left, right);
          const c = swapLastTwo(ct, backend);
          backend.disposeData(ct.dataId);
          return c;
        } finally {
          if (left !== b) backend.disposeData(left.dataId);
          if (right !== a) backend.disposeData(right.dataId);
        }
      }
      const a2 = attrs.transposeA ? swapLastTwo(a, backend) : a;
      const b2 = attrs.transposeB ? swapLastTwo(b, backend) : b;
      try {
        return untransposed(a2, b2);
      } finally {
        if (a2 !== a) backend.disposeData(a2.dataId);
        if (b2 !== b) backend.disposeData(b2.dataId);
      }
    });
  }
}
