/**
 * 3x3 stride-1 convolutions on wasm by Winograd's F(4x4, 3x3) and F(2x2, 3x3) (the arithmetic and its
 * derivation are in wasm/heap-kernels.c): the forward Conv2D, and through it the input gradient
 * (conv-kernels.ts turns that into a forward convolution), and the filter gradient, with direct
 * kernels for first layers (input channels not a multiple of 4).
 *
 * Why our own kernels: XNNPACK's direct convolution already runs near the peak of 128-bit wasm
 * SIMD without fused multiply-add (bench/conv-kernels.ts), so going faster needs fewer
 * multiplies, not better scheduling. F(2x2, 3x3) takes 16 where the direct convolution takes 36
 * per four outputs, F(4x4, 3x3) 36 per sixteen (winogradTile picks per output shape);
 * tfjs-backend-wasm has no Winograd path. The kernels run on the tensors in tfjs's heap
 * (heap-kernels.ts), with about 36 * 32 * (C + K) floats of scratch.
 *
 * Applies to NHWC float32, 3x3 filters, stride and dilation 1, any padding, with output channels
 * a multiple of 8 (the 4x8 product blocks); Winograd where the input channels are a multiple of 4
 * (the SIMD lanes of the transforms), the direct kernels otherwise. Everything else returns
 * undefined and the caller falls back.
 */
import * as tf from '@tensorflow/tfjs-core';
import { heapKernels, type ConvShape, type WinogradTile } from './heap-kernels.js';
import type { WasmBackendLike } from './wasm-kernels.js';

type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Tiles per transformed block in the C code (TB there), and the floats each plane adds (PLANE). */
const TB = 32;
const PLANE_PAD = 16;

/** The attributes tfjs's convolution kernels (forward and both gradients) are called with. */
export interface ConvAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  dilations?: [number, number] | number;
  /** Conv2DBackpropInput's. */
  inputShape?: [number, number, number, number];
  /** Conv2DBackpropFilter's. */
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

let forcedTile: WinogradTile | undefined;

/**
 * Makes every Winograd call use tile size `m` (undefined: choose per shape). For the tests and
 * the kernel benchmark, which check and time both tile sizes on the same shapes.
 */
export function forceWinogradTile(m: WinogradTile | undefined): void {
  forcedTile = m;
}

/**
 * The tile size for an output of ho x wo: the one with fewer products. F(4x4, 3x3) takes 36
 * products per 16 outputs where F(2x2, 3x3) takes 16 per 4 (1.78x fewer), and its transformed
 * blocks are smaller per output by the same factor; but its tiles overhang an edge that is not a
 * multiple of 4 (a 14x14 output is 4x4 tiles of 16x16, 1.36x fewer products than F(2x2) instead
 * of 1.78x).
 */
export function winogradTile(ho: number, wo: number): WinogradTile {
  if (forcedTile) return forcedTile;
  const products = (m: number) => Math.ceil(ho / m) * Math.ceil(wo / m) * (m + 2) ** 2;
  return products(4) < products(2) ? 4 : 2;
}

/** Bytes of floats, each region rounded up to 16 bytes. */
const bytes = (...floats: number[]) => floats.reduce((sum, n) => sum + Math.ceil(n / 4) * 16, 0);

/**
 * The Winograd layout for an output of ho x wo with c input and k output channels: the tile size,
 * the bytes of the transformed filter (or the summed frequencies of the filter gradient) that
 * start the scratch space, and the whole scratch space (that, then one block's transformed tiles).
 */
function winogradScratch(ho: number, wo: number, c: number, k: number) {
  const m = winogradTile(ho, wo);
  const freqs = (m + 2) ** 2;
  const filterBytes = bytes(freqs * c * k);
  return { m, freqs, filterBytes, total: filterBytes + bytes(freqs * (TB * (c + k) + 2 * PLANE_PAD)) };
}

/**
 * Conv2D (forward) of a 3x3 stride-1 layer, or undefined when it does not apply: by F(2x2, 3x3)
 * where the input channels are a multiple of 4, directly otherwise (first layers). Also
 * FusedConv2D (the inference path of conv layers) when its bias is one value per output channel
 * and its activation is linear or relu, which the kernels apply as they write.
 */
export function conv2d3x3(args: KernelArgs): tf.TensorInfo | undefined {
  const { x, filter, bias, preluActivationWeights } = args.inputs as Record<
    string,
    tf.TensorInfo | undefined
  >;
  const activation = (args.attrs as { activation?: string } | undefined)?.activation ?? 'linear';
  if (!x || !filter || x.dtype !== 'float32' || filter.dtype !== 'float32') return undefined;
  if (preluActivationWeights || (activation !== 'linear' && activation !== 'relu')) return undefined;
  const info = geometry(x.shape, filter.shape, args.attrs as unknown as ConvAttrs);
  if (
    !info ||
    (bias && (bias.dtype !== 'float32' || tf.util.sizeFromShape(bias.shape) !== info.outChannels))
  ) {
    return undefined;
  }
  const heap = heapKernels(args.backend);
  if (!heap) return undefined;
  const backend = args.backend as unknown as WasmBackendLike;
  const [n, h, w, c] = x.shape;
  const { outHeight: ho, outWidth: wo, outChannels: kk } = info;
  const out = backend.makeOutput([n, ho, wo, kk], 'float32');
  const shape: ConvShape = [n, h, w, c, kk, ho, wo, info.padInfo.top, info.padInfo.left];
  const epilogue = [bias ? heap.offset(bias) : 0, activation === 'relu' ? 1 : 0] as const;
  const [xAt, filterAt, outAt] = [heap.offset(x), heap.offset(filter), heap.offset(out)];
  if (c % 4 !== 0) {
    heap.withScratch(bytes((ho + 2) * (wo + 2) * c), (padded) =>
      heap.kernels.direct_forward(xAt, filterAt, outAt, padded, ...shape, ...epilogue),
    );
    return out;
  }
  const { m, filterBytes, total } = winogradScratch(ho, wo, c, kk);
  heap.withScratch(total, (u) => {
    heap.kernels.wg_filter(filterAt, u, c, kk, m);
    heap.kernels.wg_forward(xAt, u, outAt, u + filterBytes, ...shape, ...epilogue, m);
  });
  return out;
}

/**
 * Conv2DBackpropFilter of a 3x3 stride-1 convolution, or undefined when it does not apply: by
 * F(2x2, 3x3) in its transposed form where the input channels are a multiple of 4, directly
 * otherwise (first layers).
 */
export function conv2dBackpropFilter3x3(args: KernelArgs): tf.TensorInfo | undefined {
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') return undefined;
  const attrs = args.attrs as unknown as ConvAttrs;
  const info = attrs.filterShape && geometry(x.shape, attrs.filterShape, attrs);
  const heap = info && heapKernels(args.backend);
  if (!info || !heap) return undefined;
  const backend = args.backend as unknown as WasmBackendLike;
  const [n, h, w, c] = x.shape;
  const { outHeight: ho, outWidth: wo, outChannels: kk } = info;
  const out = backend.makeOutput([3, 3, c, kk], 'float32');
  const shape: ConvShape = [n, h, w, c, kk, ho, wo, info.padInfo.top, info.padInfo.left];
  const [xAt, dyAt, outAt] = [heap.offset(x), heap.offset(dy), heap.offset(out)];
  if (c % 4 !== 0) {
    heap.floats().fill(0, outAt / 4, outAt / 4 + 9 * c * kk);
    heap.withScratch(bytes(wo + 2), (row) =>
      heap.kernels.wg_filter_grad_direct(xAt, dyAt, outAt, row, ...shape),
    );
    return out;
  }
  const { m, freqs, filterBytes, total } = winogradScratch(ho, wo, c, kk);
  heap.withScratch(total, (s) => {
    heap.floats().fill(0, s / 4, s / 4 + freqs * c * kk);
    heap.kernels.wg_filter_grad(xAt, dyAt, s, s + filterBytes, ...shape, m);
    heap.kernels.wg_filter_grad_out(s, outAt, c, kk, m);
  });
  return out;
}
