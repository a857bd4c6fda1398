/**
 * Convolution gradients for the wasm backend, registered with tf.registerKernel.
 *
 * tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter at all, and its Conv2DBackpropInput is a
 * naive loop about 10x slower than the XNNPACK forward Conv2D. Both are rewritten here in terms
 * of kernels that are fast on wasm:
 *
 * - Conv2DBackpropInput (stride 1): the input gradient of a stride-1 convolution is itself a
 *   stride-1 convolution of dy with the filter flipped in space and with its in/out channels
 *   swapped, padded by (k - 1 - pad). That runs on the XNNPACK forward Conv2D.
 * - Conv2DBackpropFilter, stride 1 (conv-filter-grad.ts): dW is itself a forward convolution
 *   whose "image" is x with the batch as channels and whose "filter" is dy, so XNNPACK's
 *   indirect GEMM gathers the patches instead of JavaScript. Stacking the kh x Cin shifted
 *   input planes in one tall image, read with a vertical stride of Ho, makes every output pixel
 *   of that convolution one useful row of dW, so the GEMM tiles are full.
 * - Conv2DBackpropFilter otherwise (strides > 1, and first layers with few input values per
 *   patch and many output channels): dW = im2col(x)^T * dy. The patches are gathered in
 *   JavaScript on the wasm heap, ROWS_PER_PRODUCT output positions at a time, and multiplied
 *   with the XNNPACK BatchMatMul as dy^T * cols ([Cout, R] x [R, K]), so only dy needs
 *   transposing; the partial products are summed in JavaScript.
 *
 * The choice between the two filter-gradient routes, measured on 256-image batches
 * (bench/conv-kernels.ts): XNNPACK packs the right-hand operand of a product, and the filter of a
 * convolution, on every call (about 3 ns a value here, the operand being new each time), so the
 * stacked convolution costs about N*Ho*Wo*Cout packed values and im2col about N*Ho*Wo*K plus
 * the transpose of dy. [256,14,14,32] -> 64: 57 ms stacked against 87 ms by im2col (forward:
 * 42 ms); [256,28,28,1] -> 6 (5x5): 8 against 24 ms. For [256,28,28,1] -> 32 (3x3, K = 9)
 * im2col wins, 17 against 26 to 31 ms. Not worth it: the im2col product the other way round
 * (cols^T [K, R] x dy [R, Cout], packing the smaller dy) measured 74 ms on the 32 -> 64 layer,
 * the transposed gather in JavaScript costing what the packing saved.
 *
 * Anything these do not cover (strides > 1 for the input gradient, dilations, NCHW) falls back to
 * the backend's own kernel, or for the filter gradient to the im2col route, which handles every
 * stride and padding.
 */
import * as tf from '@tensorflow/tfjs-core';
import { overrideWasmKernel, transpose2d, type WasmBackendLike } from './wasm-kernels.js';
import { conv2dBackpropFilterStacked } from './conv-filter-grad.js';
import { conv2dBackpropFilter3x3, conv2d3x3, type ConvAttrs } from './conv3x3.js';
import { sumRows } from './elementwise.js';
import { heapKernels } from './heap-kernels.js';

type KernelArgs = Parameters<tf.KernelFunc>[0];
type Backend = WasmBackendLike & { disposeData(id: object): void };

function kernel(name: string): (args: KernelArgs) => tf.TensorInfo {
  const k = tf.getKernel(name, 'wasm');
  if (!k) throw new Error(`internal: wasm kernel ${name} is not registered`);
  return k.kernelFunc as (args: KernelArgs) => tf.TensorInfo;
}

/**
 * Output positions per partial product, rounded down to whole images (at least one). 8192 rows
 * measured best for [256,28,28,1] -> 32 (16.5 ms; 2048: 19.3, 65536: 18.1): dy^T [Cout, rows]
 * and the patches stay in the 2 MB L2 cache between their writing and the product.
 */
const ROWS_PER_PRODUCT = 8192;
/** At most this many patch values per product (4 MB of float32), for wide patches. */
const PATCH_ELEMENTS = 1 << 20;

/** Zero-padded input chunk [nb, Hp, Wp, Cin], reused across calls. */
let paddedScratch = new Float32Array(0);

/** dW for NHWC x [N,H,W,Cin] and dy [N,Ho,Wo,Cout], as [kh,kw,Cin,Cout]: the registered kernel. */
export function conv2dBackpropFilter(args: KernelArgs): tf.TensorInfo {
  return (
    conv2dBackpropFilter3x3(args) ?? conv2dBackpropFilterStacked(args) ?? conv2dBackpropFilterIm2col(args)
  );
}

/** dW by im2col and XNNPACK products; any stride and padding. */
export function conv2dBackpropFilterIm2col(args: KernelArgs): tf.TensorInfo {
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs as unknown as ConvAttrs;
  const backend = args.backend as unknown as Backend;
  if (attrs.dataFormat === 'NCHW') throw new Error('Conv2DBackpropFilter on wasm supports NHWC only');
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape!,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const [n, h, w, cin] = x.shape;
  const { filterHeight: kh, filterWidth: kw, outHeight: ho, outWidth: wo, outChannels: cout } = info;
  const { strideHeight: sh, strideWidth: sw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const k = kh * kw * cin;
  const howo = ho * wo;
  // The padded chunk covers every input row and column a patch reads, so the gather below
  // needs no bounds checks (and no divisions: it walks images, rows and columns in order).
  const hp = Math.max(h + top, (ho - 1) * sh + kh);
  const wp = Math.max(w + left, (wo - 1) * sw + kw);
  const nb = Math.max(1, Math.floor(Math.min(ROWS_PER_PRODUCT, PATCH_ELEMENTS / k) / howo));
  const chunk = Math.min(n, nb) * howo;
  if (paddedScratch.length < nb * hp * wp * cin) paddedScratch = new Float32Array(nb * hp * wp * cin);
  const xp = paddedScratch;
  const acc = new Float32Array(cout * k);
  const matmul = kernel('BatchMatMul');
  // dy^T is reused for every chunk (the last, shorter one views a prefix). The patch buffer is
  // not: the wasm BatchMatMul caches its packed right-hand operand by tensor id, so each chunk's
  // patches need a fresh tensor.
  const dyTBuf = backend.makeOutput([1, cout, chunk], 'float32');
  const runLen = kw * cin;
  try {
    for (let b0 = 0; b0 < n; b0 += nb) {
      const bn = Math.min(nb, n - b0);
      const m = bn * howo;
      const colsBuf = backend.makeOutput([1, m, k], 'float32');
      // Views are taken after every allocation: growing the wasm heap detaches older ones.
      const c = backend.typedArrayFromHeap(colsBuf) as Float32Array;
      const xs = backend.typedArrayFromHeap(x) as Float32Array;
      const dys = backend.typedArrayFromHeap(dy) as Float32Array;
      xp.fill(0, 0, bn * hp * wp * cin);
      for (let b = 0; b < bn; b++) {
        for (let y = 0; y < h; y++) {
          const s = ((b0 + b) * h + y) * w * cin;
          xp.set(xs.subarray(s, s + w * cin), ((b * hp + y + top) * wp + left) * cin);
        }
      }
      // cols [m, k]: one row per output position, holding its kh x kw x Cin input patch as kh
      // runs of kw * Cin values.
      let d = 0;
      for (let b = 0; b < bn; b++) {
        for (let oy = 0; oy < ho; oy++) {
          const rowBase = (b * hp + oy * sh) * wp;
          for (let ox = 0; ox < wo; ox++) {
            for (let i = 0; i < kh; i++) {
              const s = (rowBase + i * wp + ox * sw) * cin;
              if (runLen < 32) for (let t = 0; t < runLen; t++) c[d + t] = xp[s + t];
              else c.set(xp.subarray(s, s + runLen), d);
              d += runLen;
            }
          }
        }
      }
      transpose2d(dys, backend.typedArrayFromHeap(dyTBuf) as Float32Array, m, cout, b0 * howo * cout, 0);
      const prod = matmul({
        inputs: {
          a: { ...dyTBuf, shape: [1, cout, m] },
          b: colsBuf,
        },
        backend: args.backend,
        attrs: { transposeA: false, transposeB: false } as unknown as tf.NamedAttrMap,
      });
      const pv = backend.typedArrayFromHeap(prod) as Float32Array;
      for (let i = 0; i < acc.length; i++) acc[i] += pv[i];
      backend.disposeData(prod.dataId);
      backend.disposeData(colsBuf.dataId);
    }
  } finally {
    backend.disposeData(dyTBuf.dataId);
  }
  // acc is [Cout, K]; the filter layout is [kh, kw, Cin, Cout] = [K, Cout].
  const out = backend.makeOutput([kh, kw, cin, cout], 'float32');
  transpose2d(acc, backend.typedArrayFromHeap(out) as Float32Array, cout, k);
  return out;
}

function pair(v: [number, number] | number | undefined): [number, number] {
  if (v === undefined) return [1, 1];
  return typeof v === 'number' ? [v, v] : v;
}

/**
 * dx for a stride-1 convolution as a forward convolution, or undefined when the attributes need
 * the general (slow) kernel.
 */
export function conv2dBackpropInputStride1(args: KernelArgs): tf.TensorInfo | undefined {
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const attrs = args.attrs as unknown as ConvAttrs;
  const backend = args.backend as unknown as Backend;
  const [sh, sw] = pair(attrs.strides);
  const [dh, dw] = pair(attrs.dilations);
  if (sh !== 1 || sw !== 1 || dh !== 1 || dw !== 1 || attrs.dataFormat === 'NCHW') return undefined;
  if (dy.dtype !== 'float32' || filter.dtype !== 'float32') return undefined;
  const inputShape = attrs.inputShape!;
  const [kh, kw, cin, cout] = filter.shape;
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    1,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const { top, bottom, left, right } = info.padInfo;
  const pads = [kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right];
  if (pads.some((p) => p < 0)) return undefined;
  // Flip in space, swap in/out channels: W'[i, j, co, ci] = W[kh-1-i, kw-1-j, ci, co].
  const flipped = backend.makeOutput([kh, kw, cout, cin], 'float32');
  const src = backend.typedArrayFromHeap(filter) as Float32Array;
  const dst = backend.typedArrayFromHeap(flipped) as Float32Array;
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const s = ((kh - 1 - i) * kw + (kw - 1 - j)) * cin * cout;
      transpose2d(src.subarray(s, s + cin * cout), dst.subarray((i * kw + j) * cout * cin), cin, cout);
    }
  }
  try {
    return kernel('Conv2D')({
      inputs: { x: dy, filter: flipped },
      backend: args.backend,
      attrs: {
        strides: [1, 1],
        dilations: [1, 1],
        pad: [
          [0, 0],
          [pads[0], pads[1]],
          [pads[2], pads[3]],
          [0, 0],
        ],
        dataFormat: 'NHWC',
      } as unknown as tf.NamedAttrMap,
    });
  } finally {
    backend.disposeData(flipped.dataId);
  }
}

/**
 * MaxPoolGrad: the wasm kernel takes ~0.5 s for a 256x28x28x32 input (most of a small CNN's
 * step). This routes each dy to the arg-max of its window, taking the first maximum in window
 * order on ties, as the cpu backend does.
 */
export function maxPoolGrad(args: KernelArgs): tf.TensorInfo {
  const { dy, input, output } = args.inputs as {
    dy: tf.TensorInfo;
    input: tf.TensorInfo;
    output?: tf.TensorInfo;
  };
  const attrs = args.attrs as unknown as {
    filterSize: [number, number] | number;
    strides: [number, number] | number;
    pad: 'valid' | 'same' | number;
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  const backend = args.backend as unknown as Backend;
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const [n, h, w, ch] = input.shape;
  const { outHeight: ho, outWidth: wo, filterHeight: fh, filterWidth: fw } = info;
  const { strideHeight: sh, strideWidth: sw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const out = backend.makeOutput(input.shape, 'float32');
  const dx = backend.typedArrayFromHeap(out) as Float32Array;
  const xs = backend.typedArrayFromHeap(input) as Float32Array;
  const dys = backend.typedArrayFromHeap(dy) as Float32Array;
  const fast =
    fh === 2 && fw === 2 && sh === 2 && sw === 2 && top === 0 && left === 0 && h >= 2 * ho && w >= 2 * wo;
  if (fast && output && output.dtype === 'float32' && input.dtype === 'float32' && dy.dtype === 'float32') {
    const heap = ch % 4 === 0 ? heapKernels(backend) : undefined;
    if (heap) {
      // The same rule in wasm SIMD, four channels at a time, on the tensors in place.
      if (h > 2 * ho || w > 2 * wo) dx.fill(0);
      heap.kernels.mp_grad_2x2(
        heap.offset(input),
        heap.offset(output),
        heap.offset(dy),
        heap.offset(out),
        n,
        h,
        w,
        ch,
        ho,
        wo,
      );
      return out;
    }
    maxPoolGrad2x2(
      int32View(xs),
      int32View(backend.typedArrayFromHeap(output) as Float32Array),
      int32View(dys),
      int32View(dx),
      [n, h, w, ch],
      ho,
      wo,
    );
    return out;
  }
  dx.fill(0);
  const best = new Float32Array(ch);
  const arg = new Int32Array(ch);
  let o = 0;
  for (let b = 0; b < n; b++) {
    for (let oy = 0; oy < ho; oy++) {
      for (let ox = 0; ox < wo; ox++, o += ch) {
        best.fill(-Infinity);
        arg.fill(-1);
        for (let i = 0; i < fh; i++) {
          const iy = oy * sh - top + i;
          if (iy < 0 || iy >= h) continue;
          for (let j = 0; j < fw; j++) {
            const ix = ox * sw - left + j;
            if (ix < 0 || ix >= w) continue;
            const base = ((b * h + iy) * w + ix) * ch;
            for (let c = 0; c < ch; c++) {
              const v = xs[base + c];
              if (v > best[c] || arg[c] < 0) {
                best[c] = v;
                arg[c] = base + c;
              }
            }
          }
        }
        for (let c = 0; c < ch; c++) if (arg[c] >= 0) dx[arg[c]] += dys[o + c];
      }
    }
  }
  return out;
}

function int32View(a: Float32Array): Int32Array {
  return new Int32Array(a.buffer, a.byteOffset, a.length);
}

/**
 * The common 2x2 / stride 2 / unpadded pool, on the float bits. The forward output y is the
 * window maximum, bit for bit one of its four inputs, so the first input equal to it is the
 * arg-max: equal as floats means the same bits, or both zeros of either sign. Tests and writes
 * are integer arithmetic without branches, and every dx value is written once (no zero-fill
 * pass). For 256x28x28x32: 14 ms against 27 ms for compare-and-branch with a zero-fill and a
 * scattered add on random ReLU outputs (unpredictable branches), 15 against 20 ms on activations
 * captured from cnn training. Windows holding NaN may send their gradient elsewhere than the cpu
 * backend, which skips NaN (as did the compare-and-branch loop).
 */
function maxPoolGrad2x2(
  x: Int32Array,
  y: Int32Array,
  g: Int32Array,
  o: Int32Array,
  [n, h, w, ch]: number[],
  ho: number,
  wo: number,
): void {
  // An odd input height or width leaves a last row or column outside every window.
  if (h > 2 * ho || w > 2 * wo) o.fill(0);
  const rowLen = w * ch;
  let d = 0;
  for (let b = 0; b < n; b++) {
    for (let oy = 0; oy < ho; oy++) {
      let p = (b * h + 2 * oy) * rowLen;
      for (let ox = 0; ox < wo; ox++, p += 2 * ch) {
        const q = p + rowLen;
        for (let c = 0; c < ch; c++, d++) {
          const m = y[d];
          const v = g[d];
          const x0 = x[p + c];
          const x1 = x[p + ch + c];
          const x2 = x[q + c];
          // e = 1 when (x ^ m) == 0 or (x | m) has only the sign bit: (t | -t) >>> 31 is 0 only
          // for t == 0.
          let t = x0 ^ m;
          let z = (x0 | m) & 0x7fffffff;
          const e0 = (((t | -t) & (z | -z)) >>> 31) ^ 1;
          t = x1 ^ m;
          z = (x1 | m) & 0x7fffffff;
          const e1 = ((((t | -t) & (z | -z)) >>> 31) ^ 1) & ~e0;
          t = x2 ^ m;
          z = (x2 | m) & 0x7fffffff;
          const e2 = ((((t | -t) & (z | -z)) >>> 31) ^ 1) & ~(e0 | e1);
          const e3 = 1 ^ (e0 | e1 | e2);
          o[p + c] = v & -e0;
          o[p + ch + c] = v & -e1;
          o[q + c] = v & -e2;
          o[q + ch + c] = v & -e3;
        }
      }
    }
  }
}

/**
 * Sum over leading axes (a conv bias gradient sums dy over N, H, W): the wasm kernel first
 * transposes the reduced axes to the end; adding rows in place reads the data once instead.
 * Returns undefined for other reductions.
 */
export function sumLeadingAxes(args: KernelArgs): tf.TensorInfo | undefined {
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
  if (x.dtype !== 'float32') return undefined;
  const rank = x.shape.length;
  const axes = tf.util.parseAxisParam(axis, x.shape).sort((a, b) => a - b);
  if (axes.length === 0 || axes.length === rank || axes.some((a, i) => a !== i)) return undefined;
  const backend = args.backend as unknown as Backend;
  const rows = x.shape.slice(0, axes.length).reduce((a, b) => a * b, 1);
  const kept = x.shape.slice(axes.length);
  const cols = kept.reduce((a, b) => a * b, 1);
  const out = backend.makeOutput(keepDims ? [...axes.map(() => 1), ...kept] : kept, 'float32');
  // The same sums in wasm SIMD where the kernels load (elementwise.ts): 1 ms against 3 for a
  // cnn layer's 256x28x28 rows of 16.
  if (sumRows(args.backend, x, out, rows, cols)) return out;
  const xs = backend.typedArrayFromHeap(x) as Float32Array;
  const acc = new Float64Array(cols);
  // Four rows per pass over the accumulators: 3.4 ms against 9.2 ms row by row for
  // 256x28x28 rows of 32 (the accumulator's load and store, not the reading, was the cost).
  const rows4 = rows - (rows % 4);
  for (let r = 0; r < rows4; r += 4) {
    const b = r * cols;
    for (let c = 0; c < cols; c++) {
      acc[c] += xs[b + c] + xs[b + cols + c] + xs[b + 2 * cols + c] + xs[b + 3 * cols + c];
    }
  }
  for (let r = rows4; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) acc[c] += xs[base + c];
  }
  (backend.typedArrayFromHeap(out) as Float32Array).set(acc);
  return out;
}

let registered = false;

/** tfjs-backend-wasm's own (XNNPACK) Conv2D, which the 3x3 kernels replace where they apply: for benchmarks. */
export let xnnpackConv2d: ((args: KernelArgs) => tf.TensorInfo) | undefined;

/**
 * Adds Conv2DBackpropFilter; replaces Conv2D and FusedConv2D (3x3 layers), Conv2DBackpropInput,
 * MaxPoolGrad and Sum on wasm. Safe to call twice.
 */
export function registerConvKernels(): void {
  if (registered) return;
  registered = true;
  if (!tf.getKernel('Conv2DBackpropFilter', 'wasm')) {
    tf.registerKernel({
      kernelName: 'Conv2DBackpropFilter',
      backendName: 'wasm',
      kernelFunc: conv2dBackpropFilter,
    });
  }
  if (tf.getKernel('MaxPoolGrad', 'wasm')) tf.unregisterKernel('MaxPoolGrad', 'wasm');
  tf.registerKernel({ kernelName: 'MaxPoolGrad', backendName: 'wasm', kernelFunc: maxPoolGrad });
  overrideWasmKernel('Sum', (sum) => (args) => sumLeadingAxes(args) ?? sum.kernelFunc(args));
  for (const name of ['Conv2D', 'FusedConv2D']) {
    overrideWasmKernel(name, (conv) => {
      if (name === 'Conv2D') xnnpackConv2d = conv.kernelFunc as (args: KernelArgs) => tf.TensorInfo;
      return (args) => conv2d3x3(args) ?? conv.kernelFunc(args);
    });
  }
  overrideWasmKernel(
    'Conv2DBackpropInput',
    (original) => (args) => conv2dBackpropInputStride1(args) ?? original.kernelFunc(args),
  );
}
