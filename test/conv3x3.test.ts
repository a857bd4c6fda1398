/**
 * The 3x3 convolution kernels (src/backend/conv3x3.ts, wasm/heap-kernels.c) against the cpu
 * backend: the forward convolution, the input gradient (which runs through it) and the filter
 * gradient, within 1e-4 of the largest value (relative). Shapes cover the cnn's layers, odd
 * heights and widths (tiles cut at the edges), outputs smaller than a tile, 'valid' and explicit
 * padding, blocks of tiles cut short or spanning images, and the direct kernels of first layers
 * (one, three or six input channels). Shapes the kernels do not take fall back to the
 * other routes.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-layers';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import {
  conv2dBackpropFilter3x3,
  conv2d3x3,
  forceWinogradTile,
  winogradTile,
} from '../src/backend/conv3x3.js';
import { onCpuAndWasm, relDiff } from './helpers.js';
import { runKernel } from './kernel-helpers.js';

type Shape4 = [number, number, number, number];
type Pad = 'same' | 'valid' | tf.backend_util.ExplicitPadding;

function random(shape: number[], seed: number): Float32Array {
  return tf.tidy(() => tf.randomUniform(shape, -1, 1, 'float32', seed).dataSync() as Float32Array);
}

beforeAll(async () => {
  expect(await selectBackend('wasm')).toBe('wasm');
});

afterEach(() => forceWinogradTile(undefined));

const cases: { x: Shape4; f: Shape4; pad: Pad; note: string }[] = [
  { x: [2, 28, 28, 16], f: [3, 3, 16, 16], pad: 'same', note: 'cnn conv2' },
  { x: [2, 14, 14, 16], f: [3, 3, 16, 32], pad: 'same', note: 'cnn conv3 (4x4 tiles overhang 14)' },
  { x: [2, 14, 14, 32], f: [3, 3, 32, 32], pad: 'same', note: 'cnn conv4' },
  { x: [2, 14, 14, 32], f: [3, 3, 32, 64], pad: 'same', note: "the wider network's conv2" },
  { x: [2, 14, 14, 64], f: [3, 3, 64, 32], pad: 'same', note: 'its input gradient, as a convolution' },
  { x: [3, 7, 9, 8], f: [3, 3, 8, 16], pad: 'same', note: 'odd height and width' },
  { x: [3, 7, 9, 8], f: [3, 3, 8, 16], pad: 'valid', note: "odd sizes, 'valid'" },
  { x: [2, 3, 3, 4], f: [3, 3, 4, 8], pad: 'valid', note: 'a 1x1 output, less than a tile' },
  { x: [3, 5, 5, 4], f: [3, 3, 4, 8], pad: 'same', note: '27 tiles: a block cut short of four rows' },
  {
    x: [1, 5, 6, 4],
    f: [3, 3, 4, 8],
    pad: [
      [0, 0],
      [2, 1],
      [0, 2],
      [0, 0],
    ],
    note: 'explicit uneven padding',
  },
  // Filter gradients by the direct kernel (input channels not a multiple of 4).
  { x: [2, 28, 28, 1], f: [3, 3, 1, 32], pad: 'same', note: 'cnn conv1 (direct filter gradient)' },
  { x: [3, 7, 9, 3], f: [3, 3, 3, 8], pad: 'valid', note: "RGB, odd sizes, 'valid' (direct)" },
  { x: [2, 5, 6, 6], f: [3, 3, 6, 16], pad: 'same', note: '6 input channels (direct)' },
];

// Each tile size on every shape (the direct kernels, for input channels not a multiple of 4, once).
describe.each([2, 4] as const)(
  '3x3 convolutions by Winograd with output tiles of side %i match the cpu backend (relative 1e-4)',
  (tile) => {
    for (const { x: xs, f: fs, pad, note } of cases.filter(({ x }) => tile === 2 || x[3] % 4 === 0)) {
      it(`${note}: x ${xs} filter ${fs}`, async () => {
        forceWinogradTile(tile);
        const xv = random(xs, 1);
        const fv = random(fs, 2);
        const [cpuY, wasmY] = await onCpuAndWasm(() =>
          tf.conv2d(tf.tensor4d(xv, xs), tf.tensor4d(fv, fs), 1, pad),
        );
        expect(relDiff(cpuY, wasmY)).toBeLessThanOrEqual(1e-4);
        const outShape = tf.tidy(() => tf.conv2d(tf.tensor4d(xv, xs), tf.tensor4d(fv, fs), 1, pad).shape);
        const dyv = random(outShape, 3);
        const attrs = { strides: 1, pad, dataFormat: 'NHWC', dilations: 1 };
        const [cpuDx, wasmDx] = await onCpuAndWasm(() =>
          runKernel(
            'Conv2DBackpropInput',
            { dy: tf.tensor(dyv, outShape), filter: tf.tensor(fv, fs) },
            { ...attrs, inputShape: xs },
          ),
        );
        expect(relDiff(cpuDx, wasmDx)).toBeLessThanOrEqual(1e-4);
        const [cpuDw, wasmDw] = await onCpuAndWasm(() =>
          runKernel(
            'Conv2DBackpropFilter',
            { x: tf.tensor(xv, xs), dy: tf.tensor(dyv, outShape) },
            { ...attrs, filterShape: fs },
          ),
        );
        expect(relDiff(cpuDw, wasmDw)).toBeLessThanOrEqual(1e-4);
        // The kernels above were these (not a fallback): called directly, they give the same bits.
        const backend = tf.engine().backend;
        const values = (t: tf.TensorInfo | undefined) =>
          t && (tf.engine().makeTensorFromTensorInfo(t).dataSync() as Float32Array);
        const y = tf.tidy(() =>
          values(
            conv2d3x3({
              inputs: { x: tf.tensor4d(xv, xs), filter: tf.tensor4d(fv, fs) },
              backend,
              attrs: attrs as unknown as tf.NamedAttrMap,
            }),
          ),
        );
        expect(y).toEqual(wasmY);
        const dw = tf.tidy(() =>
          values(
            conv2dBackpropFilter3x3({
              inputs: { x: tf.tensor4d(xv, xs), dy: tf.tensor(dyv, outShape) },
              backend,
              attrs: { ...attrs, filterShape: fs } as unknown as tf.NamedAttrMap,
            }),
          ),
        );
        expect(dw).toEqual(wasmDw);
      });
    }

    for (const cin of tile === 2 ? [8, 1] : [8]) {
      it(`a batch gives each image what it gives that image alone (${cin} input channels)`, () => {
        forceWinogradTile(tile);
        // 7 images of 5x5 (9 tiles each): blocks of 32 tiles span images and end mid-image.
        const xs: Shape4 = [7, 5, 5, cin];
        const fs: Shape4 = [3, 3, cin, 16];
        const attrs = { strides: 1, pad: 'same', dataFormat: 'NHWC', dilations: 1, filterShape: fs } as never;
        const backend = tf.engine().backend;
        const values = (t: tf.TensorInfo | undefined) =>
          t && (tf.engine().makeTensorFromTensorInfo(t).dataSync() as Float32Array);
        const [xv, fv, dyv] = [random(xs, 4), random(fs, 5), random([7, 5, 5, 16], 6)];
        const run = (from: number, to: number) =>
          tf.tidy(() => {
            const x = tf.tensor4d(xv.subarray(from * 25 * cin, to * 25 * cin), [to - from, 5, 5, cin]);
            const dy = tf.tensor4d(dyv.subarray(from * 400, to * 400), [to - from, 5, 5, 16]);
            const y = values(conv2d3x3({ inputs: { x, filter: tf.tensor4d(fv, fs) }, backend, attrs }));
            const dw = values(conv2dBackpropFilter3x3({ inputs: { x, dy }, backend, attrs }))!;
            return { y, dw };
          });
        const whole = run(0, 7);
        const parts = [0, 1, 2, 3, 4, 5, 6].map((i) => run(i, i + 1));
        expect(whole.y).toEqual(Float32Array.from(parts.flatMap((p) => [...p.y!])));
        const summed = new Float32Array(whole.dw.length);
        for (const p of parts) p.dw.forEach((v, i) => (summed[i] += v));
        expect(relDiff(summed, whole.dw)).toBeLessThanOrEqual(1e-5);
      });
    }

    for (const cin of tile === 2 ? [8, 3] : [8])
      it(`FusedConv2D (inference: bias and relu as the kernel writes) matches, and declines other activations (${cin} input channels)`, async () => {
        forceWinogradTile(tile);
        const xs: Shape4 = [3, 7, 9, cin];
        const fs: Shape4 = [3, 3, cin, 16];
        const [xv, fv, bv] = [random(xs, 7), random(fs, 8), random([16], 9)];
        const backend = tf.engine().backend;
        /** The kernel called directly with FusedConv2D's inputs, or undefined when it declines. */
        const direct = (activation: string, withBias: boolean) => {
          const [x, filter, bias] = [tf.tensor4d(xv, xs), tf.tensor4d(fv, fs), tf.tensor1d(bv)];
          const attrs = { strides: 1, pad: 'same', dataFormat: 'NHWC', dilations: 1, activation } as never;
          const out = conv2d3x3({ inputs: { x, filter, ...(withBias && { bias }) }, backend, attrs });
          tf.dispose([x, filter, bias]);
          return out && tf.engine().makeTensorFromTensorInfo(out).dataSync();
        };
        for (const activation of ['linear', 'relu'] as const) {
          for (const withBias of [true, false]) {
            const [cpu, wasm] = await onCpuAndWasm(() =>
              tf.fused.conv2d({
                x: tf.tensor4d(xv, xs),
                filter: tf.tensor4d(fv, fs),
                strides: 1,
                pad: 'same',
                bias: withBias ? tf.tensor1d(bv) : undefined,
                activation,
              }),
            );
            expect(relDiff(cpu, wasm)).toBeLessThanOrEqual(1e-4);
            expect(direct(activation, withBias)).toEqual(wasm);
          }
        }
        expect(direct('elu', true)).toBeUndefined();
      });
  },
);

it('shapes the kernels do not take are left to the other routes', () => {
  const backend = tf.engine().backend;
  const tryShape = (xs: Shape4, fs: Shape4, strides = 1) => {
    const [x, filter] = [tf.zeros(xs), tf.zeros(fs)];
    const attrs = { strides, pad: 'same', dataFormat: 'NHWC', dilations: 1, filterShape: fs } as never;
    const y = conv2d3x3({ inputs: { x, filter }, backend, attrs });
    // The filter gradient takes any input channel count; it needs dy of the output's shape.
    const dy = tf.zeros([xs[0], xs[1] / strides, xs[2] / strides, fs[3]]);
    const dw = conv2dBackpropFilter3x3({ inputs: { x, dy }, backend, attrs });
    tf.dispose([x, filter, dy]);
    return [y, dw].map((t) => (t ? 'taken' : undefined));
  };
  expect(tryShape([1, 8, 8, 1], [3, 3, 1, 32])).toEqual(['taken', 'taken']); // 1 input channel: direct
  expect(tryShape([1, 8, 8, 8], [3, 3, 8, 12])).toEqual([undefined, undefined]); // 12 output channels
  expect(tryShape([1, 8, 8, 8], [5, 5, 8, 16])).toEqual([undefined, undefined]); // 5x5
  expect(tryShape([1, 8, 8, 8], [3, 3, 8, 16], 2)).toEqual([undefined, undefined]); // stride 2
});

it('chooses the tile size with fewer products for the output', () => {
  expect(winogradTile(28, 28)).toBe(4); // 49 tiles of 36 products against 196 of 16
  expect(winogradTile(14, 14)).toBe(4); // 16 x 36 against 49 x 16, though the tiles overhang
  expect(winogradTile(5, 5)).toBe(2); // 4 x 36 against 9 x 16: a tie keeps F(2x2)
  expect(winogradTile(2, 2)).toBe(2);
});
