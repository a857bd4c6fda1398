/**
 * Times the wasm convolution kernels on the shapes the models train, one thread: the forward
 * Conv2D, input gradient and filter gradient as registered (3x3 layers by our Winograd and
 * direct kernels, backend/conv3x3.ts; others on XNNPACK and backend/conv-kernels.ts), beside
 * XNNPACK's own forward convolution on the same shapes ("XNN" columns; for dx, the forward
 * convolution the input gradient amounts to), the filter-gradient route before the 3x3 kernels
 * ("dW before") and the im2col route; plus MaxPoolGrad and the bias-gradient Sum. Milliseconds
 * per call, median of ROUNDS rounds (each a warm-up and 5 timed calls, median taken) with the
 * variants interleaved, so noise from other work on the machine hits them alike. It first
 * measures the plain-SIMD ceiling (simd_peak in wasm/heap-kernels.c) that `npm run bench`
 * compares each kernel's GFLOP/s with.
 *
 * With a second argument, the kernels of another version (its src/backend/conv-kernels.ts) are
 * called directly in the same rounds, as "base" columns: old against new in one process.
 *
 *   npx tsx bench/conv-kernels.ts [rounds] [baseline conv-kernels.ts] [--json]
 *
 *   mkdir /tmp/base && git archive HEAD src | tar -x -C /tmp/base && ln -s "$PWD/node_modules" /tmp/base/
 *   npx tsx bench/conv-kernels.ts 5 /tmp/base/src/backend/conv-kernels.ts
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/backend/index.js';
import { conv2dBackpropFilterIm2col, xnnpackConv2d } from '../src/backend/conv-kernels.js';
import { conv2dBackpropFilterStacked } from '../src/backend/conv-filter-grad.js';
import { heapKernels } from '../src/backend/heap-kernels.js';
import { forceWinogradTile, winogradTile } from '../src/backend/conv3x3.js';

const positional = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const ROUNDS = Number(positional[0] ?? 3);
/** `--json`: also print the figures as one JSON line at the end (`npm run bench` reads it). */
const JSON_OUT = process.argv.includes('--json');

/** One convolution shape's kernel times in ms (undefined: not measured for that shape). */
export interface ConvKernelRow {
  name: string;
  x: number[];
  filter: number[];
  pad: string;
  /** Multiply-adds of the direct convolution, times 2: the count GFLOP/s figures use. */
  flops: number;
  fwdXnn: number;
  fwd: number;
  dxXnn?: number;
  dx: number;
  dw: number;
  /** Forward and filter gradient with F(2x2, 3x3) tiles where the kernels choose F(4x4, 3x3). */
  fwdF2?: number;
  dwF2?: number;
  dwBefore: number;
  im2col: number;
}

/** What `--json` prints. */
export interface KernelBench {
  rounds: number;
  /** GFLOP/s of simd_peak: independent 4-lane multiplies and adds, no memory, one thread. */
  peakGflops: number;
  conv: ConvKernelRow[];
  pool: { shape: number[]; maxPoolGrad: number; sum: number }[];
}

/** The kernel functions a baseline version exports (all versions being compared have them). */
interface KernelModule {
  conv2dBackpropFilter(args: KernelArgs): tf.TensorInfo;
  conv2dBackpropInputStride1(args: KernelArgs): tf.TensorInfo | undefined;
  maxPoolGrad(args: KernelArgs): tf.TensorInfo;
  sumLeadingAxes(args: KernelArgs): tf.TensorInfo | undefined;
}
type KernelArgs = Parameters<tf.KernelFunc>[0];

function medianOf(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function time(fn: () => tf.TensorInfo): number {
  // Kernel results through the engine are tensors; a route called directly returns bare data.
  const dispose = (t: tf.TensorInfo) =>
    t instanceof tf.Tensor ? t.dispose() : tf.engine().backend.disposeData(t.dataId);
  dispose(fn());
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    dispose(fn());
    times.push(performance.now() - t);
  }
  return medianOf(times);
}

/** Runs the named variants ROUNDS times, interleaved, and returns each one's median. */
function compare(variants: Record<string, () => tf.TensorInfo>): Record<string, number> {
  const runs: Record<string, number[]> = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of Object.entries(variants)) (runs[name] ??= []).push(time(fn));
  }
  return Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, medianOf(v)]));
}

/** `fn` with the Winograd kernels held to F(2x2, 3x3) tiles. */
const withTile2 = (fn: () => tf.TensorInfo) => () => {
  forceWinogradTile(2);
  try {
    return fn();
  } finally {
    forceWinogradTile(undefined);
  }
};

const kernel = (name: string, inputs: tf.NamedTensorMap, attrs: object) => () =>
  tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;

async function main(): Promise<void> {
  await selectBackend('wasm');
  const backend = tf.engine().backend;
  const base = positional[1] ? ((await import(path.resolve(positional[1]))) as KernelModule) : undefined;
  const result: KernelBench = { rounds: ROUNDS, peakGflops: simdPeak(backend), conv: [], pool: [] };
  console.log(
    `plain SIMD peak (independent multiplies and adds, one thread): ${result.peakGflops.toFixed(1)} GFLOP/s`,
  );
  /** A baseline kernel called directly on the wasm backend. */
  const direct =
    (fn: (args: KernelArgs) => tf.TensorInfo | undefined, inputs: tf.NamedTensorMap, attrs: object) => () =>
      fn({ inputs, backend, attrs: attrs as tf.NamedAttrMap })!;
  const cases: [
    string,
    [number, number, number, number],
    [number, number, number, number],
    'same' | 'valid',
  ][] = [
    ['lenet conv1', [256, 28, 28, 1], [5, 5, 1, 6], 'same'],
    ['lenet conv2', [256, 14, 14, 6], [5, 5, 6, 16], 'valid'],
    // The default cnn's four convolutions, then the wider 32/64 network's second.
    ['cnn conv1', [256, 28, 28, 1], [3, 3, 1, 16], 'same'],
    ['cnn conv2', [256, 28, 28, 16], [3, 3, 16, 16], 'same'],
    ['cnn conv3', [256, 14, 14, 16], [3, 3, 16, 32], 'same'],
    ['cnn conv4', [256, 14, 14, 32], [3, 3, 32, 32], 'same'],
    ['32->64 at 14x14', [256, 14, 14, 32], [3, 3, 32, 64], 'same'],
  ];
  const f1 = (v: number, width = 7) => v.toFixed(1).padStart(width);
  console.log(
    'case               x                  filter       fwd XNN  fwd ms  fwd F2  dx XNN   dx ms   dW ms   dW F2  dW before  dW im2col  dW/fwd' +
      (base ? '  dx base  dW base  base dW/fwd' : ''),
  );
  for (const [name, xs, fs, pad] of cases) {
    const x = tf.randomUniform(xs, 0, 1) as tf.Tensor4D;
    const f = tf.randomUniform(fs, -0.1, 0.1) as tf.Tensor4D;
    const y = tf.conv2d(x, f, 1, pad);
    const dy = tf.randomUniform(y.shape, -1, 1);
    // The input gradient's forward convolution (dy against the flipped, swapped filter) on
    // XNNPACK: what dx cost before the 3x3 kernels, for 'same' padding.
    const swapped = tf.randomUniform([fs[0], fs[1], fs[3], fs[2]], -0.1, 0.1);
    const attrs = { strides: 1, pad, dataFormat: 'NHWC', dilations: 1 };
    const dxAttrs = { ...attrs, inputShape: xs };
    const dwAttrs = { ...attrs, filterShape: fs };
    const t = compare({
      fwdXnn: direct(xnnpackConv2d!, { x, filter: f }, attrs),
      fwd: () => tf.conv2d(x, f, 1, pad),
      ...(pad === 'same' && { dxXnn: direct(xnnpackConv2d!, { x: dy, filter: swapped }, attrs) }),
      dx: kernel('Conv2DBackpropInput', { dy, filter: f }, dxAttrs),
      dw: kernel('Conv2DBackpropFilter', { x, dy }, dwAttrs),
      ...(fs[0] === 3 &&
        xs[3] % 4 === 0 &&
        winogradTile(y.shape[1], y.shape[2]) === 4 && {
          fwdF2: withTile2(() => tf.conv2d(x, f, 1, pad)),
          dwF2: withTile2(kernel('Conv2DBackpropFilter', { x, dy }, dwAttrs)),
        }),
      // The route before the 3x3 kernels: stacked XNNPACK convolution, else im2col.
      stacked: direct(
        (a) => conv2dBackpropFilterStacked(a) ?? conv2dBackpropFilterIm2col(a),
        { x, dy },
        dwAttrs,
      ),
      im2col: direct(conv2dBackpropFilterIm2col, { x, dy }, dwAttrs),
      ...(base && {
        dxBase: direct(base.conv2dBackpropInputStride1, { dy, filter: f }, dxAttrs),
        dwBase: direct(base.conv2dBackpropFilter, { x, dy }, dwAttrs),
      }),
    });
    const [n, , , cin] = xs;
    const [ho, wo, cout] = y.shape.slice(1);
    result.conv.push({
      name,
      x: xs,
      filter: fs,
      pad,
      flops: 2 * n * ho * wo * cout * cin * fs[0] * fs[1],
      fwdXnn: t.fwdXnn,
      fwd: t.fwd,
      dxXnn: t.dxXnn,
      dx: t.dx,
      dw: t.dw,
      fwdF2: t.fwdF2,
      dwF2: t.dwF2,
      dwBefore: t.stacked,
      im2col: t.im2col,
    });
    const opt = (v: number | undefined, width = 7) => (v === undefined ? '-'.padStart(width) : f1(v, width));
    console.log(
      `${name.padEnd(18)} ${JSON.stringify(xs).padEnd(18)} ${JSON.stringify(fs).padEnd(12)} ${f1(t.fwdXnn)} ${f1(t.fwd)} ${opt(t.fwdF2)} ${opt(t.dxXnn)} ${f1(t.dx)} ${f1(t.dw)} ${opt(t.dwF2)} ${opt(t.stacked, 11)} ${f1(t.im2col, 10)} ${(t.dw / t.fwd).toFixed(2).padStart(7)}` +
        (base ? ` ${f1(t.dxBase, 8)} ${f1(t.dwBase, 8)} ${(t.dwBase / t.fwd).toFixed(2).padStart(12)}` : ''),
    );
    tf.dispose([x, f, y, dy, swapped]);
  }
  for (const shape of [
    [256, 28, 28, 16],
    [256, 14, 14, 32],
  ] as [number, number, number, number][]) {
    // ReLU outputs, as in the models: many zeros, so many tied windows.
    const x = tf.relu(tf.randomUniform(shape, -1, 1)) as tf.Tensor4D;
    const y = tf.maxPool(x, 2, 2, 'valid');
    const dy = tf.randomUniform(y.shape);
    const poolInputs = { dy, input: x, output: y };
    const poolAttrs = { filterSize: 2, strides: 2, pad: 'valid' };
    const sumAttrs = { axis: [0, 1, 2], keepDims: false };
    const t = compare({
      maxPoolGrad: kernel('MaxPoolGrad', poolInputs, poolAttrs),
      sum: kernel('Sum', { x }, sumAttrs),
      ...(base && {
        maxPoolGradBase: direct(base.maxPoolGrad, poolInputs, poolAttrs),
        sumBase: direct(base.sumLeadingAxes, { x }, sumAttrs),
      }),
    });
    console.log(
      `${JSON.stringify(shape).padEnd(18)} MaxPoolGrad 2x2/2 ${f1(t.maxPoolGrad)} ms   Sum over N,H,W ${f1(t.sum)} ms` +
        (base ? `   (base: ${f1(t.maxPoolGradBase, 5)} and ${f1(t.sumBase, 5)} ms)` : ''),
    );
    result.pool.push({ shape, maxPoolGrad: t.maxPoolGrad, sum: t.sum });
    tf.dispose([x, y, dy]);
  }
  if (JSON_OUT) console.log(JSON.stringify(result));
}

/** GFLOP/s of the plain-SIMD ceiling loop (wasm/heap-kernels.c simd_peak), median of 5. */
function simdPeak(backend: object): number {
  const heap = heapKernels(backend);
  if (!heap) throw new Error('the heap kernels do not load on this backend');
  const rounds = 50_000_000;
  heap.kernels.simd_peak(rounds / 10, 1, 0);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    heap.kernels.simd_peak(rounds, 1, 0);
    times.push((performance.now() - t) / 1000);
  }
  return (48 * rounds) / medianOf(times) / 1e9;
}

main().catch((err: unknown) => {
  console.error(`bench failed: ${(err as Error).message}`);
  process.exit(1);
});
