/**
 * Conv2DBackpropFilter for stride-1 NHWC convolutions on wasm, as one XNNPACK forward
 * convolution per chunk of the batch (see conv-kernels.ts for the choice between this and the
 * im2col route).
 *
 * dW[i, j, ci, co] = sum over b, oy, ox of x[b, oy + i - top, ox + j - left, ci] * dy[b, oy, ox, co]
 *
 * That sum is a convolution with the batch as its channels and dy as its filter:
 * - image: one tall picture of kh * Cin planes, each Ho rows of W pixels with the chunk's nb images
 *   as channels. Plane (i, ci) row oy holds input row oy + i - top of channel ci (zeros outside
 *   the input), so the vertical shift by i is done once per plane by a block copy;
 * - filter: dy laid out as [Ho, Wo, nb, Cout];
 * - a vertical stride of Ho, so output row i * Cin + ci reads exactly plane (i, ci), and the
 *   layer's own left/right padding, so output column j is the horizontal shift.
 * The output [kh * Cin, kw, Cout] holds dW for the chunk; the chunks' results are summed here.
 *
 * Why this shape: a convolution with batch Cin and kh x kw output pixels per image (the textbook
 * "dW = conv(x^T, dy^T)") leaves XNNPACK's GEMM tiles a quarter empty for 3x3 filters, since each
 * image's 9 output pixels fill 4- or 6-row tiles unevenly; measured 75 ms against 56 ms for this
 * single-image layout on [256,14,14,32] -> 64. An im2col product with the patches as the
 * streamed operand (cols^T [K, R] x dy [R, Cout]) measured 74 ms: the transposed gather of
 * N*Ho*Wo*K values in JavaScript costs what XNNPACK's indirection does for free here.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { WasmBackendLike } from './wasm-kernels.js';

type KernelArgs = Parameters<tf.KernelFunc>[0];
type Backend = WasmBackendLike & { disposeData(id: object): void };

/**
 * Images per convolution (the image's channels). 32 to 48 measured best on [256,14,14,32] -> 64
 * (56 ms; 8: 66 ms, 64: 73 ms): fewer make the per-tap work of the indirect GEMM short, more
 * make its packed filter outgrow the cache.
 */
const BATCH_PER_PRODUCT = 32;
/**
 * At most this many dy values per convolution (4 MB of float32): XNNPACK keeps the filter, a
 * transposed copy and its packed copy at once, so large images take fewer images per chunk.
 */
const FILTER_ELEMENTS = 1 << 20;

/** Transposed input chunk [Cin, H, W, nb], reused across calls. */
let scratch = new Float32Array(0);

/**
 * dW [kh, kw, Cin, Cout] by the stacked-plane convolution, or undefined when it does not apply
 * (strides > 1, NCHW, non-float inputs) or when the im2col route is cheaper: with few values per
 * patch and many output channels (K = kh*kw*Cin < Cout / 2, a first layer on grey images) the
 * packed dy outweighs the patches.
 */
export function conv2dBackpropFilterStacked(args: KernelArgs): tf.TensorInfo | undefined {
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs as unknown as {
    strides: [number, number] | number;
    pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
    dataFormat: 'NHWC' | 'NCHW';
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
    filterShape: [number, number, number, number];
  };
  if (attrs.dataFormat === 'NCHW' || x.dtype !== 'float32' || dy.dtype !== 'float32') return undefined;
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  if (info.strideHeight !== 1 || info.strideWidth !== 1) return undefined;
  const [n, h, w, cin] = x.shape;
  const { filterHeight: kh, filterWidth: kw, outHeight: ho, outWidth: wo, outChannels: cout } = info;
  if (2 * kh * kw * cin < cout) return undefined;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  // Output width kw: (w + left + right) - wo + 1 = kw, which is the layer's own right padding.
  const right = kw - 1 - w - left + wo;
  if (right < 0 || n === 0 || ho <= 0 || wo <= 0) return undefined;
  const backend = args.backend as unknown as Backend;
  const conv = tf.getKernel('Conv2D', 'wasm')!.kernelFunc as (a: KernelArgs) => tf.TensorInfo;
  const hw = h * w;
  const howo = ho * wo;
  const planeRows = kh * cin;
  const acc = new Float64Array(kh * kw * cin * cout);
  const nb = Math.min(n, BATCH_PER_PRODUCT, Math.max(1, Math.floor(FILTER_ELEMENTS / (howo * cout))));
  if (scratch.length < cin * hw * nb) scratch = new Float32Array(cin * hw * nb);
  const xt = scratch;
  for (let b0 = 0; b0 < n; b0 += nb) {
    const m = Math.min(nb, n - b0);
    const rowLen = w * m;
    const image = backend.makeOutput([1, planeRows * ho, w, m], 'float32');
    const filter = backend.makeOutput([ho, wo, m, cout], 'float32');
    let out: tf.TensorInfo | undefined;
    try {
      // Views are taken after the allocations: growing the wasm heap detaches older ones.
      const xs = backend.typedArrayFromHeap(x) as Float32Array;
      transposeChunk(xs, xt, b0, m, hw, cin);
      const img = backend.typedArrayFromHeap(image) as Float32Array;
      for (let i = 0; i < kh; i++) {
        // Plane rows oy read input rows oy + i - top; those outside the input are zeros.
        const y0 = Math.min(ho, Math.max(0, top - i));
        const y1 = Math.max(y0, Math.min(ho, h + top - i));
        for (let c = 0; c < cin; c++) {
          const base = (i * cin + c) * ho * rowLen;
          if (y0 > 0) img.fill(0, base, base + y0 * rowLen);
          if (y1 < ho) img.fill(0, base + y1 * rowLen, base + ho * rowLen);
          if (y1 > y0) {
            const s = (c * h + y0 + i - top) * rowLen;
            img.set(xt.subarray(s, s + (y1 - y0) * rowLen), base + y0 * rowLen);
          }
        }
      }
      copyDyAsFilter(backend, dy, filter, b0, m, howo, cout);
      out = conv({
        inputs: { x: image, filter },
        backend: args.backend,
        attrs: {
          strides: [ho, 1],
          dilations: [1, 1],
          pad: [
            [0, 0],
            [0, 0],
            [left, right],
            [0, 0],
          ],
          dataFormat: 'NHWC',
        } as unknown as tf.NamedAttrMap,
      });
      // out [i, ci, j, co] -> acc [i, j, ci, co].
      const o = backend.typedArrayFromHeap(out) as Float32Array;
      for (let i = 0; i < kh; i++) {
        for (let c = 0; c < cin; c++) {
          for (let j = 0; j < kw; j++) {
            const s = ((i * cin + c) * kw + j) * cout;
            const d = ((i * kw + j) * cin + c) * cout;
            for (let co = 0; co < cout; co++) acc[d + co] += o[s + co];
          }
        }
      }
    } finally {
      if (out) backend.disposeData(out.dataId);
      backend.disposeData(image.dataId);
      backend.disposeData(filter.dataId);
    }
  }
  const result = backend.makeOutput([kh, kw, cin, cout], 'float32');
  (backend.typedArrayFromHeap(result) as Float32Array).set(acc);
  return result;
}

/**
 * xt[ci, p, b] = x[b0 + b, p, ci] for the chunk's m images and hw positions p: its images become
 * the channels. Eight images at a time, so each write is a run of eight: 1.2 ms for 256x14x14x32
 * against 1.6 ms image by image and 6.2 ms one image value at a time.
 */
function transposeChunk(
  xs: Float32Array,
  xt: Float32Array,
  b0: number,
  m: number,
  hw: number,
  cin: number,
): void {
  const st = hw * cin;
  const m8 = m - (m % 8);
  for (let p = 0; p < hw; p++) {
    const src = b0 * st + p * cin;
    for (let b = 0; b < m8; b += 8) {
      const s0 = src + b * st;
      for (let c = 0; c < cin; c++) {
        const d = (c * hw + p) * m + b;
        const s = s0 + c;
        xt[d] = xs[s];
        xt[d + 1] = xs[s + st];
        xt[d + 2] = xs[s + 2 * st];
        xt[d + 3] = xs[s + 3 * st];
        xt[d + 4] = xs[s + 4 * st];
        xt[d + 5] = xs[s + 5 * st];
        xt[d + 6] = xs[s + 6 * st];
        xt[d + 7] = xs[s + 7 * st];
      }
    }
    for (let b = m8; b < m; b++) {
      const s = src + b * st;
      for (let c = 0; c < cin; c++) xt[(c * hw + p) * m + b] = xs[s + c];
    }
  }
}

/** filter[p, b, co] = dy[b0 + b, p, co] for the chunk's m images and howo positions p. */
function copyDyAsFilter(
  backend: Backend,
  dy: tf.TensorInfo,
  filter: tf.TensorInfo,
  b0: number,
  m: number,
  howo: number,
  cout: number,
): void {
  const fd = backend.typedArrayFromHeap(filter) as Float32Array;
  const dys = backend.typedArrayFromHeap(dy) as Float32Array;
  if (cout >= 16) {
    // Runs of 16 or more values: copyWithin on the heap (one memmove each) beats an element
    // loop, 1.2 ms against 4.7 ms for 256x14x14x64; for 6 channels it is twice as slow.
    const heap = new Float32Array(fd.buffer);
    const fo = fd.byteOffset >> 2;
    const so = dys.byteOffset >> 2;
    for (let b = 0; b < m; b++) {
      let s = so + (b0 + b) * howo * cout;
      for (let p = 0; p < howo; p++, s += cout) heap.copyWithin(fo + (p * m + b) * cout, s, s + cout);
    }
    return;
  }
  for (let b = 0; b < m; b++) {
    let s = (b0 + b) * howo * cout;
    for (let p = 0; p < howo; p++, s += cout) {
      const d = (p * m + b) * cout;
      for (let c = 0; c < cout; c++) fd[d + c] = dys[s + c];
    }
  }
}
