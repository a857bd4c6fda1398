/**
 * 3x3 stride-1 convolutions on wasm by Winograd's F(2x2, 3x3) (the arithmetic and its
 * derivation are in wasm/conv3x3.c): the forward Conv2D, and through it the input gradient
 * (conv-kernels.ts turns that into a forward convolution), and the filter gradient.
 *
 * Why our own kernels: XNNPACK's direct convolution already runs near the peak of 128-bit wasm
 * SIMD without fused multiply-add (bench/conv-kernels.ts), so going faster needs fewer
 * multiplies, not better scheduling. F(2x2, 3x3) takes 16 where the direct convolution takes 36
 * per four outputs; tfjs-backend-wasm has no Winograd path.
 *
 * The module is separate from tfjs-backend-wasm's, with its own memory: tensors are copied in
 * and out, IMAGE_FLOATS at most per chunk, so its memory stays a few MB whatever the batch
 * (an evaluation batch of thousands of images included). The copies cost about a tenth of the
 * arithmetic they feed.
 *
 * Applies to NHWC float32, 3x3 filters, stride and dilation 1, any padding, with input
 * channels a multiple of 4 and output channels a multiple of 8 (the SIMD lanes and the 4x8
 * product blocks); everything else returns undefined and the caller falls back.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CONV3X3_WASM } from './conv3x3-wasm.js';
import type { WasmBackendLike } from './wasm-kernels.js';

type KernelArgs = Parameters<tf.KernelFunc>[0];

/** The module's exports (wasm/conv3x3.c); pointers are byte offsets into its memory. */
interface Kernels {
  memory: WebAssembly.Memory;
  wg_reserve(bytes: number): number;
  wg_filter(g: number, u: number, c: number, k: number): void;
  wg_forward(...args: [x: number, u: number, y: number, scratch: number, ...shape: Shape]): void;
  wg_filter_grad(...args: [x: number, dy: number, s: number, scratch: number, ...shape: Shape]): void;
  wg_filter_grad_out(s: number, dg: number, c: number, k: number): void;
  wg_filter_grad_direct(...args: [x: number, dy: number, dg: number, row: number, ...shape: Shape]): void;
}

/** n, H, W, C, K, Ho, Wo, padTop, padLeft, as the C functions take them. */
type Shape = [number, number, number, number, number, number, number, number, number];

/** Tiles per transformed block in the C code (TB there). */
const TB = 32;
/** Input plus output floats per chunk of images (4 MB): whole images, at least one. */
const IMAGE_FLOATS = 1 << 20;

let instance: Kernels | null | undefined;

/** This thread's instance, or null where WebAssembly SIMD is not available. */
function kernels(): Kernels | null {
  if (instance !== undefined) return instance;
  try {
    const bytes = Uint8Array.from(atob(CONV3X3_WASM), (c) => c.charCodeAt(0));
    instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports as unknown as Kernels;
  } catch {
    // No SIMD, or a browser's main thread refusing a synchronous compile: XNNPACK it is.
    instance = null;
  }
  return instance;
}

interface ConvAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  dilations?: [number, number] | number;
  filterShape?: [number, number, number, number];
}

/**
 * The convolution's geometry when these kernels apply to it (3x3, stride 1, output channels a
 * multiple of 8), else undefined. Winograd also needs the input channels a multiple of 4; the
 * filter gradient has a direct kernel for the others.
 */
function geometry(
  xShape: number[],
  filterShape: number[],
  attrs: ConvAttrs,
): tf.backend_util.Conv2DInfo | undefined {
  if (attrs.dataFormat === 'NCHW') return undefined;
  const [kh, kw, , cout] = filterShape;
  if (kh !== 3 || kw !== 3 || cout % 8 !== 0) return undefined;
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    attrs.dilations ?? 1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  if (info.strideHeight !== 1 || info.strideWidth !== 1) return undefined;
  if (info.dilationHeight !== 1 || info.dilationWidth !== 1) return undefined;
  if (info.padInfo.top < 0 || info.padInfo.left < 0 || info.outHeight < 1 || info.outWidth < 1)
    return undefined;
  return info;
}

/** The module's memory laid out from its base: each named region in floats, in order. */
function layout(k: Kernels, floats: Record<string, number>): Record<string, number> {
  const at: Record<string, number> = {};
  let total = 0;
  for (const [name, n] of Object.entries(floats)) {
    at[name] = total;
    total += Math.ceil(n / 4) * 16; // 16-byte aligned regions
  }
  const base = k.wg_reserve(total);
  if (base === 0) throw new Error('the 3x3 convolution kernels ran out of WebAssembly memory');
  for (const name of Object.keys(at)) at[name] += base;
  return at;
}

function imagesPerChunk(n: number, perImage: number, chunkFloats: number): number {
  return Math.max(1, Math.min(n, Math.floor(chunkFloats / perImage)));
}

/**
 * Conv2D (forward) by F(2x2, 3x3), or undefined when it does not apply. `chunkFloats` bounds the
 * input and output floats copied per chunk (tests make it small to cross chunk boundaries).
 */
export function conv2dWinograd(args: KernelArgs, chunkFloats = IMAGE_FLOATS): tf.TensorInfo | undefined {
  const { x, filter } = args.inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
  if (x.dtype !== 'float32' || filter.dtype !== 'float32') return undefined;
  const info = geometry(x.shape, filter.shape, args.attrs as unknown as ConvAttrs);
  const k = info && x.shape[3] % 4 === 0 && kernels();
  if (!info || !k) return undefined;
  const backend = args.backend as unknown as WasmBackendLike;
  const [n, h, w, c] = x.shape;
  const { outHeight: ho, outWidth: wo, outChannels: kk } = info;
  const inImage = h * w * c;
  const outImage = ho * wo * kk;
  const nb = imagesPerChunk(n, inImage + outImage, chunkFloats);
  const at = layout(k, {
    g: 9 * c * kk,
    u: 16 * c * kk,
    scratch: 16 * TB * (c + kk),
    x: nb * inImage,
    y: nb * outImage,
  });
  const out = backend.makeOutput([n, ho, wo, kk], 'float32');
  // Views after every allocation: growing either memory detaches older ones.
  const mem = () => new Float32Array(k.memory.buffer);
  mem().set(backend.typedArrayFromHeap(filter) as Float32Array, at.g / 4);
  k.wg_filter(at.g, at.u, c, kk);
  const xs = backend.typedArrayFromHeap(x) as Float32Array;
  const ys = backend.typedArrayFromHeap(out) as Float32Array;
  for (let b0 = 0; b0 < n; b0 += nb) {
    const bn = Math.min(nb, n - b0);
    const m = mem();
    m.set(xs.subarray(b0 * inImage, (b0 + bn) * inImage), at.x / 4);
    k.wg_forward(at.x, at.u, at.y, at.scratch, bn, h, w, c, kk, ho, wo, info.padInfo.top, info.padInfo.left);
    ys.set(m.subarray(at.y / 4, at.y / 4 + bn * outImage), b0 * outImage);
  }
  return out;
}

/**
 * Conv2DBackpropFilter of a 3x3 stride-1 convolution, or undefined when it does not apply: by
 * F(2x2, 3x3) in its transposed form where the input channels are a multiple of 4, directly
 * otherwise (first layers).
 */
export function conv2dBackpropFilter3x3(
  args: KernelArgs,
  chunkFloats = IMAGE_FLOATS,
): tf.TensorInfo | undefined {
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') return undefined;
  const attrs = args.attrs as unknown as ConvAttrs;
  const info = attrs.filterShape && geometry(x.shape, attrs.filterShape, attrs);
  const k = info && kernels();
  if (!info || !k) return undefined;
  const backend = args.backend as unknown as WasmBackendLike;
  const [n, h, w, c] = x.shape;
  const { outHeight: ho, outWidth: wo, outChannels: kk } = info;
  const winograd = c % 4 === 0;
  const inImage = h * w * c;
  const outImage = ho * wo * kk;
  const nb = imagesPerChunk(n, inImage + outImage, chunkFloats);
  const at = layout(k, {
    s: winograd ? 16 * c * kk : 0,
    dg: 9 * c * kk,
    scratch: winograd ? 16 * TB * (c + kk) : wo + 2,
    x: nb * inImage,
    dy: nb * outImage,
  });
  const out = backend.makeOutput([3, 3, c, kk], 'float32');
  const xs = backend.typedArrayFromHeap(x) as Float32Array;
  const dys = backend.typedArrayFromHeap(dy) as Float32Array;
  const sums = winograd ? at.s : at.dg;
  new Float32Array(k.memory.buffer).fill(0, sums / 4, sums / 4 + (winograd ? 16 : 9) * c * kk);
  for (let b0 = 0; b0 < n; b0 += nb) {
    const bn = Math.min(nb, n - b0);
    const m = new Float32Array(k.memory.buffer);
    m.set(xs.subarray(b0 * inImage, (b0 + bn) * inImage), at.x / 4);
    m.set(dys.subarray(b0 * outImage, (b0 + bn) * outImage), at.dy / 4);
    const shape: Shape = [bn, h, w, c, kk, ho, wo, info.padInfo.top, info.padInfo.left];
    if (winograd) k.wg_filter_grad(at.x, at.dy, at.s, at.scratch, ...shape);
    else k.wg_filter_grad_direct(at.x, at.dy, at.dg, at.scratch, ...shape);
  }
  if (winograd) k.wg_filter_grad_out(at.s, at.dg, c, kk);
  (backend.typedArrayFromHeap(out) as Float32Array).set(new Float32Array(k.memory.buffer, at.dg, 9 * c * kk));
  return out;
}
