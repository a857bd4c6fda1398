/**
 * ONNX export (src/node/export): every registered model, trained for one short pass on
 * Fashion-MNIST, gives the same class probabilities in ONNX Runtime as in tfjs (max |diff| at
 * most 1e-4 and the same top class on 1000 test images); RGB input; layers beyond the built-in
 * models (batch norm with real statistics, strides, dilation, 'same' pooling, every activation);
 * functional models (a small MobileNetV2-style network, merges, a model nested as a layer) and
 * quantized weights; the metadata_props; the one-line error for what has no ONNX mapping; and a
 * layer class made exportable by registering its converter.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { type ImageShape, pixelsAsFloat, type Split } from '../src/core/data/dataset.js';
import { Rng } from '../src/core/data/rng.js';
import { UserError } from '../src/core/errors.js';
import { create, layersNet, type Net } from '../src/core/models/index.js';
import { loadLayersNet, type NetArtifacts } from '../src/core/models/net.js';
import { optimizerFor, resolveConfig } from '../src/core/plan.js';
import { trainEpoch } from '../src/core/train/loop.js';
import { VERSION } from '../src/core/version.js';
import { loadDataset } from '../src/node/data/load.js';
import {
  convertToOnnx,
  decodeModel,
  type LayerConverter,
  loadOnnxRuntime,
  onnxParity,
  type OnnxExport,
  type Parity,
  registerLayerConverter,
  registerModelExporter,
} from '../src/node/export/index.js';
import { mobileNetLike } from './fixtures/mobilenet.js';

const TOLERANCE = 1e-4;
const SHAPE: ImageShape = [28, 28, 1];
const CHECK_IMAGES = 1000;
let train: Split;
let test: Split;
let classNames: string[];
const measured: { label: string; parity: Parity; bytes: number; trained: number }[] = [];

beforeAll(async () => {
  expect(await selectBackend('wasm')).toBe('wasm');
  const { dataset } = await loadDataset({ dataset: 'fashion-mnist' });
  train = dataset.train;
  test = dataset.test;
  classNames = dataset.classNames;
});

afterAll(() => {
  // The figures docs/deploy.md quotes.
  const rows = measured.map(
    (m) =>
      `| ${m.label} | ${m.trained} | ${m.parity.maxAbsDiff.toExponential(1)} | ${m.parity.argmaxAgree}/${m.parity.images} | ${m.parity.onnxAccuracy?.toFixed(3) ?? '-'} | ${(m.bytes / 1024).toFixed(1)} KiB |`,
  );
  if (rows.length)
    console.log(['| model | trained on | max abs diff | argmax | ONNX acc | size |', ...rows].join('\n'));
});

function subset(split: Split, n: number, shape: ImageShape = SHAPE): Split {
  const size = shape[0] * shape[1] * shape[2];
  return { images: split.images.subarray(0, n * size), labels: split.labels.subarray(0, n), count: n };
}

/** `n` images of `shape` with pixels uniform in [lo, hi). */
function randomImages(n: number, shape: ImageShape, seed: number, lo = 0, hi = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n * shape[0] * shape[1] * shape[2] }, () => lo + (hi - lo) * rng.next());
}

/**
 * Gives batch normalization statistics and affine parameters values far from their initial
 * ones (mean 0, variance 1, gamma 1, beta 0), which a converter could ignore and still match.
 */
async function randomizeBatchNorm(net: Net, seed: number): Promise<void> {
  const specs = (await net.artifacts()).weightSpecs;
  const rng = new Rng(seed);
  const range = (lo: number, hi: number) => () => lo + (hi - lo) * rng.next();
  const fill: Record<string, () => number> = {
    moving_mean: range(-0.5, 0.5),
    moving_variance: range(0.2, 3),
    gamma: range(0.5, 1.5),
    beta: range(-0.5, 0.5),
  };
  // A layers model's getWeights() hands out its live variables: they are not disposed here.
  const fresh: tf.Tensor[] = [];
  const weights = net.getWeights().map((w, i) => {
    const f = fill[specs[i].name.split('/').at(-1)!];
    if (!f) return w;
    const t = tf.tensor(Float32Array.from({ length: w.size }, f), w.shape);
    fresh.push(t);
    return t;
  });
  net.setWeights(weights);
  fresh.forEach((t) => t.dispose());
}

async function parityOf(
  net: Net,
  exported: OnnxExport,
  images: Float32Array,
  count: number,
  shape: ImageShape,
  labels?: Uint8Array,
): Promise<Parity> {
  const p = await onnxParity(net, exported.bytes, images, count, shape, { labels });
  expect(p.maxAbsDiff).toBeLessThanOrEqual(TOLERANCE);
  expect(p.argmaxAgree).toBe(count);
  return p;
}

describe('ONNX export of every registered model matches tfjs in ONNX Runtime', () => {
  // minAccuracy: a floor showing the pass trained the model (chance is 0.1; cnn's dropout is
  // unseeded, so its figures vary run to run). Sigmoid LeNet barely moves in a few steps (d2l
  // trains it at lr 0.9 for 10 epochs). Batch-norm training is slow on wasm, so that cnn gets
  // 4 steps: enough to move its moving statistics.
  const cases: {
    label: string;
    model: string;
    options?: Record<string, unknown>;
    trainOn: number;
    minAccuracy?: number;
  }[] = [
    { label: 'softmax', model: 'softmax', trainOn: 8192, minAccuracy: 0.6 },
    { label: 'softmax-scratch', model: 'softmax-scratch', trainOn: 8192, minAccuracy: 0.6 },
    { label: 'mlp', model: 'mlp', trainOn: 4096, minAccuracy: 0.6 },
    { label: 'lenet (relu, max pool)', model: 'lenet', trainOn: 2048, minAccuracy: 0.5 },
    {
      label: 'lenet (sigmoid, avg pool)',
      model: 'lenet',
      options: { activation: 'sigmoid', pool: 'avg' },
      trainOn: 2048,
    },
    { label: 'cnn', model: 'cnn', trainOn: 1024, minAccuracy: 0.4 },
    { label: 'cnn (batchNorm)', model: 'cnn', options: { batchNorm: true }, trainOn: 512, minAccuracy: 0.2 },
  ];
  for (const c of cases) {
    it(`${c.label}: one short training pass, then ${CHECK_IMAGES} Fashion-MNIST test images`, async () => {
      const net = create(c.model, { inputShape: SHAPE, numClasses: 10, seed: 1, options: c.options });
      const opt = optimizerFor(resolveConfig({ model: c.model }));
      await trainEpoch(net, opt, subset(train, c.trainOn), { batchSize: 128, shape: SHAPE, rng: new Rng(1) });
      opt.dispose();
      const artifacts = await net.artifacts();
      const exported = convertToOnnx(artifacts, {
        model: c.model,
        classNames,
        inputShape: SHAPE,
        preprocessing: { scale: 255, invertLightBackground: true, resize: 'contain' },
      });
      expect(exported.ops.at(-1)).toBe('Softmax');
      if (c.options?.batchNorm) {
        // One batch normalization after every convolution.
        const convs = exported.ops.filter((op) => op === 'Conv').length;
        expect(convs).toBeGreaterThan(0);
        expect(exported.ops.filter((op) => op === 'BatchNormalization')).toHaveLength(convs);
        // Training moved the moving statistics, so the check exercises them.
        const means = artifacts.weightSpecs.findIndex((s) => s.name.endsWith('/moving_mean'));
        const mean = net.getWeights()[means].dataSync();
        expect(Math.max(...Array.from(mean, Math.abs))).toBeGreaterThan(1e-3);
      }
      const t = subset(test, CHECK_IMAGES);
      const parity = await parityOf(net, exported, pixelsAsFloat(t.images), CHECK_IMAGES, SHAPE, t.labels);
      if (c.minAccuracy) expect(parity.onnxAccuracy).toBeGreaterThan(c.minAccuracy);
      measured.push({ label: c.label, parity, bytes: exported.bytes.length, trained: c.trainOn });
      if (!c.minAccuracy) {
        // Still near chance, so its probabilities are near uniform and differ little whatever
        // the graph: check again with the class scores spread out (last layer x10).
        const last = net.getWeights().length - 2;
        const scaled = net.getWeights().map((w, i) => (i >= last ? tf.mul(w, 10) : w));
        net.setWeights(scaled);
        scaled.slice(last).forEach((w) => w.dispose());
        const sharp = convertToOnnx(await net.artifacts(), { model: c.model, classNames, inputShape: SHAPE });
        const spread = await parityOf(net, sharp, pixelsAsFloat(t.images), CHECK_IMAGES, SHAPE, t.labels);
        measured.push({
          label: `${c.label}, last layer x10`,
          parity: spread,
          bytes: sharp.bytes.length,
          trained: c.trainOn,
        });
      }
      net.dispose();
    });
  }
});

describe('ONNX export beyond the built-in 28x28 models', () => {
  it('RGB input: cnn (with and without batch norm) on 16x16x3 with 3 classes', async () => {
    const shape: ImageShape = [16, 16, 3];
    const images = randomImages(200, shape, 5);
    for (const options of [{}, { batchNorm: true }]) {
      const net = create('cnn', { inputShape: shape, numClasses: 3, seed: 2, options });
      await randomizeBatchNorm(net, 9);
      const exported = convertToOnnx(await net.artifacts(), { model: 'cnn', classNames: ['a', 'b', 'c'] });
      expect(exported.inputShape).toEqual(shape);
      expect(exported.numClasses).toBe(3);
      const parity = await parityOf(net, exported, images, 200, shape);
      measured.push({
        label: `cnn 16x16x3${'batchNorm' in options ? ' (batchNorm)' : ''}, random init`,
        parity,
        bytes: exported.bytes.length,
        trained: 0,
      });
      net.dispose();
    }
  });

  it('BatchNormalization in inference form: after a conv and after a dense layer, epsilon, center/scale off', async () => {
    const shape: ImageShape = [9, 9, 2];
    const model = tfl.sequential({
      layers: [
        tfl.layers.conv2d({
          inputShape: shape,
          filters: 4,
          kernelSize: 3,
          strides: 2,
          padding: 'same',
          useBias: false,
        }),
        tfl.layers.batchNormalization({ epsilon: 0.01 }),
        tfl.layers.activation({ activation: 'relu' }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 6 }),
        tfl.layers.batchNormalization({ center: false, epsilon: 1e-5 }),
        tfl.layers.batchNormalization({ scale: false }),
        tfl.layers.dense({ units: 3 }),
      ],
    });
    const net = layersNet('bn', model);
    await randomizeBatchNorm(net, 3);
    const exported = convertToOnnx(await net.artifacts(), { model: 'bn' });
    expect(exported.ops.filter((op) => op === 'BatchNormalization')).toHaveLength(3);
    await parityOf(net, exported, randomImages(100, shape, 4, -1, 2), 100, shape);
    net.dispose();
  });

  it("strides, dilation, non-square kernels, 'same' pooling, softmax over channels, ReLU/LeakyReLU/ELU layers", async () => {
    const shape: ImageShape = [21, 21, 3];
    const model = tfl.sequential({
      layers: [
        tfl.layers.inputLayer({ inputShape: shape }),
        // 21 -> 11 with TensorFlow's uneven 'same' pads.
        tfl.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', activation: 'elu' }),
        tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }),
        tfl.layers.conv2d({
          filters: 5,
          kernelSize: [3, 2],
          dilationRate: 2,
          padding: 'same',
          activation: 'softplus',
        }),
        // 6 -> 3; the border windows reach into the padding, which TensorFlow does not count.
        tfl.layers.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same' }),
        tfl.layers.leakyReLU({ alpha: 0.2 }),
        tfl.layers.conv2d({ filters: 4, kernelSize: 2, padding: 'valid', activation: 'softmax' }),
        tfl.layers.reLU({ maxValue: 0.3 }),
        tfl.layers.flatten(),
        tfl.layers.dropout({ rate: 0.5 }),
        tfl.layers.dense({ units: 8, activation: 'tanh' }),
        // tfjs' ELU layer takes only alpha 1.
        tfl.layers.elu({}),
        tfl.layers.dense({ units: 4 }),
      ],
    });
    const net = layersNet('zoo', model);
    const exported = convertToOnnx(await net.artifacts(), { model: 'zoo' });
    // NCHW from the first conv to the flatten: one transpose in, one out.
    expect(exported.ops.filter((op) => op === 'Transpose')).toHaveLength(2);
    await parityOf(net, exported, randomImages(100, shape, 6, -1, 2), 100, shape);
    net.dispose();
  });

  it('valid pooling with a stride other than its size, rectangular strides, global pooling', async () => {
    const shape: ImageShape = [12, 10, 2];
    for (const global of ['avg', 'max'] as const) {
      const model = tfl.sequential({
        layers: [
          tfl.layers.conv2d({
            inputShape: shape,
            filters: 3,
            kernelSize: 3,
            strides: [2, 1],
            activation: 'selu',
          }),
          tfl.layers.maxPooling2d({ poolSize: 2, strides: 1 }),
          tfl.layers.averagePooling2d({ poolSize: [2, 3], strides: [1, 2] }),
          global === 'avg' ? tfl.layers.globalAveragePooling2d({}) : tfl.layers.globalMaxPooling2d({}),
          tfl.layers.dense({ units: 3 }),
        ],
      });
      const net = layersNet(`global-${global}`, model);
      const exported = convertToOnnx(await net.artifacts(), { model: net.name });
      expect(exported.ops).toContain(global === 'avg' ? 'ReduceMean' : 'ReduceMax');
      await parityOf(net, exported, randomImages(50, shape, 8), 50, shape);
      net.dispose();
    }
  });

  const activations = [
    'linear',
    'relu',
    'relu6',
    'sigmoid',
    'tanh',
    'softmax',
    'logSoftmax',
    'elu',
    'selu',
    'softplus',
    'softsign',
    'hardSigmoid',
    'swish',
    'mish',
  ];
  it(`every mapped activation (${activations.join(', ')}), as a Dense activation and an Activation layer`, async () => {
    const shape: ImageShape = [4, 4, 2];
    const images = randomImages(64, shape, 11, -4, 4);
    for (const activation of activations) {
      const act = activation as 'relu';
      const model = tfl.sequential({
        layers: [
          tfl.layers.flatten({ inputShape: shape }),
          tfl.layers.dense({ units: 12, activation: act }),
          tfl.layers.dense({ units: 12 }),
          tfl.layers.activation({ activation: act }),
          tfl.layers.dense({ units: 5 }),
        ],
      });
      const net = layersNet(activation, model);
      const exported = convertToOnnx(await net.artifacts(), { model: activation });
      await parityOf(net, exported, images, 64, shape);
      net.dispose();
    }
  });
});

describe('functional models: MobileNet-style layers, merges, nesting, quantized weights', () => {
  /**
   * Every weight drawn from a seeded stream: kernels with about unit gain through a ReLU (uniform
   * with variance 2 / fan-in), biases and batch-norm parameters away from their initial values.
   */
  async function randomizeWeights(net: Net, seed: number): Promise<void> {
    const specs = (await net.artifacts()).weightSpecs;
    const rng = new Rng(seed);
    const uniform = (lo: number, hi: number) => () => lo + (hi - lo) * rng.next();
    const fresh = specs.map((spec) => {
      const param = spec.name.split('/').at(-1)!;
      const size = spec.shape.reduce((a, b) => a * b, 1);
      // A kernel's last axis is its outputs; a depthwise kernel reads its window of one channel.
      const fanIn = param === 'depthwise_kernel' ? spec.shape[0] * spec.shape[1] : size / spec.shape.at(-1)!;
      // He's gain: the ReLUs halve the variance.
      const a = Math.sqrt(6 / fanIn);
      const draw =
        param === 'moving_variance'
          ? uniform(0.3, 2)
          : param === 'gamma'
            ? uniform(0.5, 1.5)
            : param.endsWith('kernel')
              ? uniform(-a, a)
              : uniform(-0.3, 0.3);
      return tf.tensor(Float32Array.from({ length: size }, draw), spec.shape);
    });
    net.setWeights(fresh);
    fresh.forEach((t) => t.dispose());
  }

  const SMALL: ImageShape = [24, 24, 3];

  /**
   * Noise images that differ as wholes too (a brightness per channel, a contrast per image):
   * the global pooling averages plain noise to about the same features for every image.
   */
  function variedImages(n: number, shape: ImageShape, seed: number): Float32Array {
    const rng = new Rng(seed);
    const [h, w, c] = shape;
    const out = new Float32Array(n * h * w * c);
    for (let i = 0; i < n; i++) {
      const contrast = 0.2 + 2 * rng.next();
      const brightness = Array.from({ length: c }, () => 2 * rng.next() - 1);
      for (let p = 0; p < h * w * c; p++)
        out[i * h * w * c + p] = brightness[p % c] + contrast * (2 * rng.next() - 1);
    }
    return out;
  }

  /** The Conv nodes' group attribute, in graph order. */
  function convGroups(exported: OnnxExport): number[] {
    const nodes = decodeModel(exported.bytes).graph!.node!.filter((n) => n.opType === 'Conv');
    return nodes.map((n) => Number(n.attribute!.find((a) => a.name === 'group')!.i));
  }

  it('a small MobileNetV2-style model (depthwise, ZeroPadding2D, ReLU6, Add, Concatenate) matches tfjs within 1e-4', async () => {
    const net = layersNet('mobile', mobileNetLike(SMALL, 5));
    await randomizeWeights(net, 21);
    const exported = convertToOnnx(await net.artifacts(), { model: 'mobile' });
    const ops = exported.ops;
    // Stem, expand, depthwise, project, expand, depthwise, project, the branch, the top conv.
    expect(convGroups(exported)).toEqual([1, 1, 24, 1, 1, 36, 1, 12, 1]);
    expect(ops.filter((op) => op === 'Clip')).toHaveLength(6);
    for (const op of ['Pad', 'Add', 'Concat', 'ReduceMean']) expect(ops).toContain(op);
    // NCHW from the input to the global pooling: one Transpose in, none between the blocks.
    expect(ops.filter((op) => op === 'Transpose')).toHaveLength(1);
    const n = 200;
    const images = variedImages(n, SMALL, 22);
    // Each class score varies from image to image (its standard deviation over the images),
    // so the probabilities compared are neither the same for every image nor uniform.
    const logits = tf.tidy(() => net.apply(tf.tensor(images, [n, ...SMALL])));
    const spread = tf.tidy(() => tf.min(tf.sqrt(tf.moments(logits, 0).variance)).dataSync()[0]);
    logits.dispose();
    expect(spread).toBeGreaterThan(0.2);
    const parity = await parityOf(net, exported, images, n, SMALL);
    measured.push({
      label: 'MobileNetV2-style, random weights',
      parity,
      bytes: exported.bytes.length,
      trained: 0,
    });
    net.dispose();
  });

  /** A float as IEEE half-precision bits (truncated; tiny values flush to zero). */
  function float16Bits(x: number): number {
    const bits = new Uint32Array(Float32Array.of(x).buffer)[0];
    const sign = (bits >>> 16) & 0x8000;
    const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
    if (exponent <= 0) return sign;
    if (exponent >= 31) return sign | 0x7c00;
    return sign | (exponent << 10) | ((bits >>> 13) & 0x3ff);
  }

  /** The artifacts with every weight quantized as tfjs-converter stores it. */
  function quantize(a: NetArtifacts, dtype: 'uint8' | 'uint16' | 'float16'): NetArtifacts {
    const chunks: ArrayBuffer[] = [];
    let offset = 0;
    const weightSpecs = a.weightSpecs.map((spec) => {
      const size = spec.shape.reduce((x, y) => x * y, 1);
      const values = new Float32Array(a.weightData.slice(offset, offset + size * 4));
      offset += size * 4;
      if (dtype === 'float16') {
        chunks.push(Uint16Array.from(values, float16Bits).buffer);
        return { ...spec, quantization: { dtype } };
      }
      const min = Math.min(...values);
      const levels = dtype === 'uint8' ? 255 : 65535;
      const scale = (Math.max(...values) - min) / levels || 1;
      const q = values.map((v) => Math.round((v - min) / scale));
      chunks.push((dtype === 'uint8' ? Uint8Array.from(q) : Uint16Array.from(q)).buffer);
      return { ...spec, quantization: { dtype, min, scale } };
    });
    return { ...a, weightSpecs, weightData: tf.io.concatenateArrayBuffers(chunks) };
  }

  it('quantized weights (uint8, uint16, float16) export as tfjs dequantizes them', async () => {
    const net = layersNet('mobile', mobileNetLike(SMALL, 5));
    await randomizeWeights(net, 23);
    const artifacts = await net.artifacts();
    const images = variedImages(100, SMALL, 24);
    for (const dtype of ['uint8', 'uint16', 'float16'] as const) {
      const quantized = quantize(artifacts, dtype);
      const loaded = await loadLayersNet('mobile', quantized);
      // tfjs computes with the dequantized weights, which differ from the originals.
      const kernel = loaded.getWeights()[0].dataSync();
      const original = net.getWeights()[0].dataSync();
      expect(Math.max(...kernel.map((v, i) => Math.abs(v - original[i])))).toBeGreaterThan(1e-6);
      const exported = convertToOnnx(quantized, { model: 'mobile' });
      const parity = await parityOf(loaded, exported, images, 100, SMALL);
      measured.push({
        label: `MobileNetV2-style, ${dtype} weights`,
        parity,
        bytes: exported.bytes.length,
        trained: 0,
      });
      loaded.dispose();
    }
    net.dispose();
  });

  it('Add (3 inputs), Multiply, Average, Maximum, Minimum, Concatenate over H, W, C and features, Reshape; inputs of both layouts', async () => {
    const shape: ImageShape = [6, 6, 2];
    const input = tfl.input({ shape });
    const apply = (layer: tfl.layers.Layer, x: tfl.SymbolicTensor | tfl.SymbolicTensor[]) =>
      layer.apply(x) as tfl.SymbolicTensor;
    const a = apply(
      tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }),
      input,
    );
    const b = apply(tfl.layers.conv2d({ filters: 4, kernelSize: 1 }), input);
    const c = apply(tfl.layers.conv2d({ filters: 4, kernelSize: 2, padding: 'same' }), input);
    // Three distinct inputs: tfjs' merges fail when one tensor comes twice.
    const sum = apply(tfl.layers.add({}), [a, b, c]);
    const product = apply(tfl.layers.multiply({}), [a, b]);
    const mean = apply(tfl.layers.average({}), [a, b, sum]);
    const high = apply(tfl.layers.maximum({}), [product, mean]);
    const low = apply(tfl.layers.minimum({}), [b, mean, sum]);
    // [12, 6, 4] reshaped row-major to [6, 12, 4], beside a concatenation over W.
    const rows = apply(
      tfl.layers.reshape({ targetShape: [6, 12, 4] }),
      apply(tfl.layers.concatenate({ axis: 1 }), [high, low]),
    );
    const cols = apply(tfl.layers.concatenate({ axis: 2 }), [sum, low]);
    const both = apply(tfl.layers.concatenate({}), [rows, cols]);
    // The NHWC input beside an NCHW convolution.
    const withInput = apply(tfl.layers.concatenate({ axis: 3 }), [input, a]);
    const features = apply(tfl.layers.concatenate({}), [
      apply(tfl.layers.globalAveragePooling2d({}), both),
      // tfjs leaves -1 unresolved in the symbolic shape, so the pooling after it is one that
      // needs only the channels.
      apply(
        tfl.layers.globalMaxPooling2d({}),
        apply(tfl.layers.reshape({ targetShape: [-1, 12, 6] }), withInput),
      ),
    ]);
    const folded = apply(tfl.layers.reshape({ targetShape: [7, 2] }), features);
    const logits = apply(tfl.layers.dense({ units: 3 }), apply(tfl.layers.flatten(), folded));
    const net = layersNet('merges', tfl.model({ inputs: input, outputs: logits }));
    const exported = convertToOnnx(await net.artifacts(), { model: 'merges' });
    for (const op of ['Add', 'Mul', 'Mean', 'Max', 'Min', 'Reshape']) expect(exported.ops).toContain(op);
    expect(exported.ops.filter((op) => op === 'Concat')).toHaveLength(5);
    const parity = await parityOf(net, exported, randomImages(100, shape, 25, -2, 2), 100, shape);
    measured.push({ label: 'merges, random init', parity, bytes: exported.bytes.length, trained: 0 });
    net.dispose();
  });

  it('a functional backbone nested in a Sequential with a dense head, as transfer models usually are', async () => {
    const backbone = mobileNetLike(SMALL, 5);
    const model = tfl.sequential({
      layers: [backbone, tfl.layers.dense({ units: 3, activation: 'relu' }), tfl.layers.dense({ units: 2 })],
    });
    const net = layersNet('nested', model);
    await randomizeWeights(net, 26);
    const exported = convertToOnnx(await net.artifacts(), { model: 'nested' });
    expect(exported.inputShape).toEqual(SMALL);
    const parity = await parityOf(net, exported, variedImages(100, SMALL, 27), 100, SMALL);
    measured.push({
      label: 'MobileNetV2-style nested in a Sequential',
      parity,
      bytes: exported.bytes.length,
      trained: 0,
    });
    net.dispose();
  });
});

describe('the ONNX file', () => {
  it('records class names, preprocessing, input shape, model and version in metadata_props', async () => {
    const names = ['T-shirt/top', '衬衫', 'say "hi"'];
    const preprocessing = { scale: 255, invertLightBackground: false, resize: 'fill' as const };
    const net = create('softmax', { inputShape: SHAPE, numClasses: 3, seed: 1 });
    const exported = convertToOnnx(await net.artifacts(), {
      model: 'softmax',
      classNames: names,
      inputShape: SHAPE,
      preprocessing,
    });
    const m = decodeModel(exported.bytes);
    const props = Object.fromEntries(m.metadataProps.map((p) => [p.key, p.value]));
    expect(JSON.parse(props.class_names!)).toEqual(names);
    expect(JSON.parse(props.preprocessing!)).toEqual(preprocessing);
    expect(JSON.parse(props.input_shape!)).toEqual(SHAPE);
    expect(props.input_layout).toBe('NHWC');
    expect(props.model).toBe('softmax');
    expect(props.imgclf_version).toBe(VERSION);
    expect(m.producerName).toBe('imgclf');
    expect(m.producerVersion).toBe(VERSION);
    expect(Number(m.irVersion)).toBe(8);
    expect(m.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 13]]);
    expect(m.docString).toMatch(/NHWC/);
    const inputs = m.graph!.input!;
    const outputs = m.graph!.output!;
    const dims = (v: (typeof inputs)[number]) =>
      v.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || Number(d.dimValue));
    expect(inputs.map((i) => i.name)).toEqual(['input']);
    expect(dims(inputs[0])).toEqual(['N', 28, 28, 1]);
    expect(outputs.map((o) => o.name)).toEqual(['probabilities']);
    expect(dims(outputs[0])).toEqual(['N', 3]);

    // ONNX Runtime loads it with those names and any batch size; each row sums to 1.
    const ort = await loadOnnxRuntime();
    const session = await ort.InferenceSession.create(exported.bytes);
    expect(session.inputNames).toEqual(['input']);
    expect(session.outputNames).toEqual(['probabilities']);
    for (const n of [1, 3]) {
      const out = await session.run({
        input: new ort.Tensor('float32', randomImages(n, SHAPE, n), [n, ...SHAPE]),
      });
      expect(out.probabilities.dims).toEqual([n, 3]);
      const p = out.probabilities.data as Float32Array;
      for (let i = 0; i < n; i++) expect(p[3 * i] + p[3 * i + 1] + p[3 * i + 2]).toBeCloseTo(1, 5);
    }
    await session.release();
    net.dispose();
  });
});

describe('what cannot be exported fails with one line naming it', () => {
  function failure(f: () => unknown): string {
    try {
      f();
    } catch (err) {
      expect(err).toBeInstanceOf(UserError);
      const message = (err as Error).message;
      expect(message).not.toContain('\n');
      return message;
    }
    throw new Error('expected an error');
  }

  it('a layer class without a mapping', async () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.upSampling2d({ inputShape: [8, 8, 1], size: [2, 2], name: 'my_upsample' }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 2 }),
      ],
    });
    const artifacts = await layersNet('custom', model).artifacts();
    expect(failure(() => convertToOnnx(artifacts, { model: 'custom', source: 'runs/x' }))).toBe(
      "cannot export layer 'my_upsample' (class UpSampling2D) of runs/x to ONNX: no ONNX mapping for UpSampling2D",
    );
    model.dispose();
  });

  it('an activation without a mapping, a channels_first layer, a model with two inputs, a mismatched class list, a dilated depthwise convolution', async () => {
    const gelu = tfl.sequential({
      layers: [
        tfl.layers.flatten({ inputShape: [4, 4, 1] }),
        tfl.layers.dense({ units: 2, activation: 'gelu', name: 'g' }),
      ],
    });
    const a = await layersNet('gelu', gelu).artifacts();
    expect(failure(() => convertToOnnx(a, { model: 'gelu' }))).toBe(
      "cannot export layer 'g' (class Dense) of the model to ONNX: activation 'gelu' has no ONNX mapping",
    );
    expect(failure(() => convertToOnnx(a, { model: 'gelu', classNames: ['a', 'b', 'c'] }))).toMatch(
      /activation 'gelu'/,
    );

    const conv = tfl.sequential({
      layers: [
        tfl.layers.conv2d({ inputShape: [6, 6, 1], filters: 2, kernelSize: 3, name: 'c' }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 2 }),
      ],
    });
    const b = await layersNet('conv', conv).artifacts();
    const topology = JSON.parse(JSON.stringify(b.modelTopology));
    topology.config.layers[0].config.data_format = 'channels_first';
    expect(failure(() => convertToOnnx({ ...b, modelTopology: topology }, { model: 'conv' }))).toMatch(
      /^cannot export layer 'c' \(class Conv2D\) of the model to ONNX: data_format 'channels_first' is not supported/,
    );
    expect(failure(() => convertToOnnx(b, { model: 'conv', classNames: ['a', 'b', 'c'] }))).toMatch(
      /names 3 classes but the model has 2 outputs/,
    );

    const left = tfl.input({ shape: [4, 4, 1], name: 'left' });
    const right = tfl.input({ shape: [4, 4, 1], name: 'right' });
    const sum = tfl.layers.add({}).apply([left, right]) as tfl.SymbolicTensor;
    const flat = tfl.layers.flatten().apply(sum) as tfl.SymbolicTensor;
    const functional = tfl.model({
      inputs: [left, right],
      outputs: tfl.layers.dense({ units: 2, name: 'out' }).apply(flat) as tfl.SymbolicTensor,
    });
    const f = await layersNet('functional', functional).artifacts();
    expect(failure(() => convertToOnnx(f, { model: 'functional' }))).toBe(
      'cannot export the model to ONNX: it has 2 inputs (left, right) and 1 outputs (out); only models with one input and one output are supported',
    );

    // tfjs-layers ignores a depthwise dilation that Keras applies: refused rather than guessed.
    const dw = tfl.sequential({
      layers: [
        tfl.layers.depthwiseConv2d({ inputShape: [6, 6, 2], kernelSize: 3, name: 'dw' }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 2 }),
      ],
    });
    const d = await layersNet('dw', dw).artifacts();
    const dilated = JSON.parse(JSON.stringify(d.modelTopology));
    dilated.config.layers[0].config.dilation_rate = [2, 2];
    expect(failure(() => convertToOnnx({ ...d, modelTopology: dilated }, { model: 'dw' }))).toBe(
      "cannot export layer 'dw' (class DepthwiseConv2D) of the model to ONNX: a dilation_rate other than 1 is not supported (tfjs ignores it, Keras does not)",
    );
    [gelu, conv, functional, dw].forEach((m) => m.dispose());
  });

  it('weights quantized in a way tfjs does not read', async () => {
    const model = tfl.sequential({
      layers: [tfl.layers.flatten({ inputShape: [2, 2, 1] }), tfl.layers.dense({ units: 2, name: 'd' })],
    });
    const a = await layersNet('q', model).artifacts();
    const weightSpecs = a.weightSpecs.map((spec, i) =>
      i === 0 ? { ...spec, quantization: { dtype: 'int8' } } : spec,
    ) as typeof a.weightSpecs;
    expect(failure(() => convertToOnnx({ ...a, weightSpecs }, { model: 'q' }))).toBe(
      'cannot export the model to ONNX: weight d/kernel is quantized as int8; only float32 weights (plain, or quantized as uint8, uint16 or float16) are supported',
    );
    model.dispose();
  });
});

describe('a layer class is made exportable by registering its converter', () => {
  /** Cropping2D, which has no built-in converter, as ONNX's Slice of the H and W axes. */
  const cropping2d: LayerConverter = (cx, { name, config }, v) => {
    const [[top, bottom], [left, right]] = config.cropping as [number, number][];
    // NCHW: a crop usually sits between convolutions, which want that layout anyway.
    const x = cx.toNCHW(v, name);
    const [h, w, c] = x.shape;
    const int = (what: string, values: number[]) => cx.g.intConstant(`${name}/${what}`, values, [2]);
    const slice = [
      x.name,
      int('starts', [top, left]),
      int('ends', [h - bottom, w - right]),
      int('axes', [2, 3]),
    ];
    return {
      name: cx.g.node('Slice', slice, name),
      shape: [h - top - bottom, w - left - right, c],
      layout: 'NCHW',
    };
  };

  it('Cropping2D -> Slice: exports once registered and matches tfjs within 1e-5; a class has one converter', async () => {
    const shape: ImageShape = [9, 8, 2];
    const model = tfl.sequential({
      layers: [
        // Uneven crops of the NHWC input, then symmetric ones between NCHW layers.
        tfl.layers.cropping2D({
          inputShape: shape,
          cropping: [
            [1, 2],
            [0, 3],
          ],
          name: 'crop_in',
        }),
        tfl.layers.conv2d({ filters: 3, kernelSize: 2, activation: 'relu' }),
        tfl.layers.cropping2D({ cropping: 1 }),
        tfl.layers.maxPooling2d({ poolSize: 2 }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 4 }),
      ],
    });
    const net = layersNet('cropped', model);
    const artifacts = await net.artifacts();
    expect(() => convertToOnnx(artifacts, { model: 'cropped' })).toThrow(
      "cannot export layer 'crop_in' (class Cropping2D) of the model to ONNX: no ONNX mapping for Cropping2D",
    );

    registerLayerConverter('Cropping2D', cropping2d);
    const exported = convertToOnnx(artifacts, { model: 'cropped' });
    expect(exported.ops.filter((op) => op === 'Slice')).toHaveLength(2);
    const parity = await onnxParity(net, exported.bytes, randomImages(100, shape, 12, -1, 2), 100, shape);
    expect(parity.maxAbsDiff).toBeLessThanOrEqual(1e-5);
    expect(parity.argmaxAgree).toBe(100);
    net.dispose();

    expect(() => registerLayerConverter('Cropping2D', cropping2d)).toThrow(
      'an ONNX converter for layer class Cropping2D is already registered',
    );
    expect(() => registerLayerConverter('Dense', cropping2d)).toThrow(/Dense is already registered/);
    expect(() => registerModelExporter('softmax-scratch', () => ({}) as never)).toThrow(
      "an ONNX exporter for model 'softmax-scratch' is already registered",
    );
  });
});
