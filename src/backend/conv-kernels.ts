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
 * - Conv2DBackpropFilter: dW = im2col(x)^T * dy. The patches are gathered in JavaScript on the
 *   wasm heap, ROWS_PER_PRODUCT output positions at a time, and multiplied with the XNNPACK
 *   BatchMatMul as dy^T * cols ([Cout, R] x [R, K]), so only dy (the smaller operand) needs
 *   transposing; the partial products are summed in JavaScript.
 *
 * Anything these do not cover (strides > 1 for the input gradient, dilations, NCHW) falls back to
 * the backend's own kernel, or for the filter gradient to the same im2col route, which handles
 * every stride and padding.
 */
import * as tf from '@tensorflow/tfjs-core';
import { transpose2d, type WasmBackendLike } from './wasm-kernels.js';

type KernelArgs = Parameters<tf.KernelFunc>[0];
type Backend = WasmBackendLike & { disposeData(id: object): void };

interface ConvAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  dilations?: [number, number] | number;
  inputShape?: [number, number, number, number];
  filterShape?: [number, number, number, number];
}

function kernel(name: string): (args: KernelArgs) => tf.TensorInfo {
  const k = tf.getKernel(name, 'wasm');
  if (!k) throw new Error(`internal: wasm kernel ${name} is not registered`);
  return k.kernelFunc as (args: KernelArgs) => tf.TensorInfo;
}

/**
 * Output positions per partial product. XNNPACK's GEMM is about twice as fast on many products
 * with a short reduction (dy^T chunk [Cout, R] times patches [R, K]) as on one product whose
 * reduction runs over the whole batch, and the patch buffer stays in cache.
 */
const ROWS_PER_PRODUCT = 2048;
/** Patch elements per product (4 MB of float32) when that allows more than ROWS_PER_PRODUCT rows. */
const PATCH_ELEMENTS = 1 << 20;

/** dW for NHWC x [N,H,W,Cin] and dy [N,Ho,Wo,Cout], as [kh,kw,Cin,Cout]. */
export function conv2dBackpropFilter(args: KernelArgs): tf.TensorInfo {
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
  const rows = n * ho * wo;
  // Narrow patches (a first layer on grey images has K = 9 or 25) take longer chunks: the GEMM
  // is then limited by per-call overhead, not by the size of the packed operand.
  const chunk = Math.min(rows, Math.max(ROWS_PER_PRODUCT, Math.floor(PATCH_ELEMENTS / k)));
  const acc = new Float32Array(cout * k);
  const matmul = kernel('BatchMatMul');
  // dy^T is reused for every chunk (the last, shorter one views a prefix). The patch buffer is
  // not: the wasm BatchMatMul caches its packed right-hand operand by tensor id, so each chunk's
  // patches need a fresh tensor.
  const dyTBuf = backend.makeOutput([1, cout, chunk], 'float32');
  const runLen = kw * cin;
  try {
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      const m = Math.min(chunk, rows - r0);
      const colsBuf = backend.makeOutput([1, m, k], 'float32');
      // Views are taken after every allocation: growing the wasm heap detaches older ones.
      const c = backend.typedArrayFromHeap(colsBuf) as Float32Array;
      const xs = backend.typedArrayFromHeap(x) as Float32Array;
      const dys = backend.typedArrayFromHeap(dy) as Float32Array;
      // cols [m, k]: one row per output position, holding its kh x kw x Cin input patch.
      for (let r = 0; r < m; r++) {
        const g = r0 + r;
        const b = Math.floor(g / (ho * wo));
        const rem = g - b * ho * wo;
        const oy = Math.floor(rem / wo);
        const ox = rem - oy * wo;
        const iy0 = oy * sh - top;
        const ix0 = ox * sw - left;
        const xBase = b * h * w * cin;
        let p = r * k;
        const inside = ix0 >= 0 && ix0 + kw <= w;
        for (let i = 0; i < kh; i++) {
          const iy = iy0 + i;
          if (iy < 0 || iy >= h) {
            c.fill(0, p, p + runLen);
            p += runLen;
            continue;
          }
          const rowBase = xBase + iy * w * cin;
          if (inside) {
            // The whole kernel row is inside the image: one contiguous run of kw * Cin values.
            const s = rowBase + ix0 * cin;
            if (runLen < 32) for (let t = 0; t < runLen; t++) c[p + t] = xs[s + t];
            else c.set(xs.subarray(s, s + runLen), p);
            p += runLen;
            continue;
          }
          for (let j = 0; j < kw; j++) {
            const ix = ix0 + j;
            if (ix < 0 || ix >= w) {
              for (let t = 0; t < cin; t++) c[p + t] = 0;
            } else {
              const s = rowBase + ix * cin;
              for (let t = 0; t < cin; t++) c[p + t] = xs[s + t];
            }
            p += cin;
          }
        }
      }
      transpose2d(
        dys.subarray(r0 * cout, (r0 + m) * cout),
        (backend.typedArrayFromHeap(dyTBuf) as Float32Array).subarray(0, cout * m),
        m,
        cout,
      );
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
 * step). This routes each dy to the arg-max of its window in one pass over the input, taking the
 * first maximum in window order on ties, as the cpu backend does.
 */
export function maxPoolGrad(args: KernelArgs): tf.TensorInfo {
  const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
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
  dx.fill(0);
  if (fh === 2 && fw === 2 && sh === 2 && sw === 2 && top === 0 && left === 0 && h >= 2 * ho && w >= 2 * wo) {
    // The common 2x2 / stride 2 / no-padding pool: compare the four inputs directly.
    let d = 0;
    for (let b = 0; b < n; b++) {
      for (let oy = 0; oy < ho; oy++) {
        for (let ox = 0; ox < wo; ox++, d += ch) {
          const p00 = ((b * h + 2 * oy) * w + 2 * ox) * ch;
          const p01 = p00 + ch;
          const p10 = p00 + w * ch;
          const p11 = p10 + ch;
          for (let c = 0; c < ch; c++) {
            let at = p00 + c;
            let v = xs[at];
            if (xs[p01 + c] > v) v = xs[(at = p01 + c)];
            if (xs[p10 + c] > v) v = xs[(at = p10 + c)];
            if (xs[p11 + c] > v) at = p11 + c;
            dx[at] += dys[d + c];
          }
        }
      }
    }
    return out;
  }
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
  const xs = backend.typedArrayFromHeap(x) as Float32Array;
  const acc = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) acc[c] += xs[base + c];
  }
  (backend.typedArrayFromHeap(out) as Float32Array).set(acc);
  return out;
}

let registered = false;

/** Adds Conv2DBackpropFilter; replaces Conv2DBackpropInput, MaxPoolGrad and Sum on wasm. Safe to call twice. */
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
  const sum = tf.getKernel('Sum', 'wasm');
  if (sum) {
    tf.unregisterKernel('Sum', 'wasm');
    tf.registerKernel({
      kernelName: 'Sum',
      backendName: 'wasm',
      setupFunc: sum.setupFunc,
      kernelFunc: (args) => sumLeadingAxes(args) ?? sum.kernelFunc(args),
    });
  }
  const original = tf.getKernel('Conv2DBackpropInput', 'wasm');
  if (original) {
    tf.unregisterKernel('Conv2DBackpropInput', 'wasm');
    tf.registerKernel({
      kernelName: 'Conv2DBackpropInput',
      backendName: 'wasm',
      setupFunc: original.setupFunc,
      kernelFunc: (args) => conv2dBackpropInputStride1(args) ?? original.kernelFunc(args),
    });
  }
}
