/**
 * A dataset's images as a frozen backbone's features (Node only), computed once per image and
 * cached (node/cache.ts, features/): a head then trains on [1, 1, D] "images" in seconds.
 *
 * Each image's cache key is a hash of its pixels as loaded (so, of the file, decoded at the
 * backbone's input size) and the entry's label names the backbone (its SHA-256 and how features
 * are taken) and the data: a second run on the same folder reads one file, and adding a few
 * images computes only theirs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import {
  copyPixels,
  type Dataset,
  type ImageShape,
  type Pixels,
  type Split,
} from '../../core/data/dataset.js';
import type { DataSource } from '../../core/data/source.js';
import {
  type FeatureRows,
  featureCachePath,
  IMAGE_KEY_BYTES,
  otherEntries,
  readFeatureCache,
  writeFeatureCache,
} from '../cache.js';
import type { Backbone } from './backbone.js';
import { sourceEntry } from '../data/load.js';

/** An image's key: a truncated SHA-256 of its pixels as bytes (the same for either storage). */
function imageKey(images: Pixels, from: number, to: number): Uint8Array {
  let bytes: Uint8Array;
  if (images instanceof Uint8Array) bytes = images.subarray(from, to);
  else {
    bytes = new Uint8Array(to - from);
    for (let i = from; i < to; i++) bytes[i - from] = Math.round(Math.min(1, Math.max(0, images[i])) * 255);
  }
  return createHash('sha256').update(bytes).digest().subarray(0, IMAGE_KEY_BYTES);
}

/** What the data is, for the cache entry's label: a folder, a CSV, a built-in set. */
function dataIdentity(source: DataSource): object {
  return sourceEntry(source.kind).cacheIdentity(source);
}

export interface FeatureOptions {
  log?: (message: string) => void;
  /** A progress display for the images whose features are computed. */
  progress?: (total: number) => { update(done: number): void | Promise<void>; stop(): void } | undefined;
}

export interface FeatureDataset {
  /** The dataset with each image replaced by its features, shape [1, 1, D]. */
  dataset: Dataset;
  cache: 'hit' | 'partial' | 'miss';
  /** Images whose features were computed now. */
  computed: number;
  seconds: number;
}

/** Computes the features of `rows` (indices into `images`) into `out` at the same rows. */
async function compute(
  backbone: Backbone,
  images: Pixels,
  shape: ImageShape,
  rows: number[],
  out: Float32Array,
  dim: number,
  onDone: (n: number) => void | Promise<void>,
): Promise<void> {
  const row = shape[0] * shape[1] * shape[2];
  const batch = backbone.chunk;
  const input = new Float32Array(batch * row);
  for (let b = 0; b < rows.length; b += batch) {
    const n = Math.min(batch, rows.length - b);
    // The same floats a batch of evaluate or a prepared picture gives the backbone.
    for (let i = 0; i < n; i++) copyPixels(images, rows[b + i] * row, row, input, i * row);
    let values: Float32Array;
    if (backbone.extract) {
      // ONNX Runtime computes while this thread waits; the progress bar redraws between batches.
      values = backbone.extract(input.subarray(0, n * row), n);
      await new Promise<void>((resolve) => setImmediate(resolve));
    } else {
      const f = tf.tidy(() => backbone.features(tf.tensor4d(input.subarray(0, n * row), [n, ...shape])));
      values = (await f.data()) as Float32Array;
      f.dispose();
    }
    for (let i = 0; i < n; i++) out.set(values.subarray(i * dim, (i + 1) * dim), rows[b + i] * dim);
    await onDone(b + n);
  }
}

/**
 * The features of every image of `dataset` (train, then test) under `backbone`, from the cache
 * where it has them. `source` is the data's recorded source (for the cache label).
 */
export async function featureDataset(
  backbone: Backbone,
  dataset: Dataset,
  source: DataSource,
  opts: FeatureOptions = {},
): Promise<FeatureDataset> {
  const start = performance.now();
  const { shape } = dataset;
  const row = shape[0] * shape[1] * shape[2];
  const dim = backbone.record.features;
  const parts: Split[] = [dataset.train, dataset.test];
  const count = parts.reduce((s, p) => s + p.count, 0);
  // All images in one array of keys; the images themselves stay where they are.
  const keys = new Uint8Array(count * IMAGE_KEY_BYTES);
  const where: { images: Pixels; index: number }[] = [];
  for (const p of parts) {
    const images = p.images;
    for (let i = 0; i < p.count; i++) {
      keys.set(imageKey(images, i * row, (i + 1) * row), where.length * IMAGE_KEY_BYTES);
      where.push({ images, index: i });
    }
  }
  const r = backbone.record;
  const label = {
    backbone: r.sha256,
    spec: {
      format: r.format,
      layer: r.layer,
      inputShape: r.inputShape,
      range: r.range,
      ...(r.preprocessing ? { preprocessing: r.preprocessing } : {}),
      // A converted layers model's rows differ from tfjs' in the last digits: kept apart, so
      // forcing one engine computes with it.
      ...(backbone.converted ? { engine: 'onnx' } : {}),
    },
    data: dataIdentity(source),
  };
  const file = featureCachePath(label, keys);
  let rows = await readFeatureCache(file, r.sha256, opts.log);
  let cache: FeatureDataset['cache'] = 'hit';
  let computed = 0;
  if (rows && rows.dim !== dim) rows = undefined;
  if (!rows) {
    const features = new Float32Array(count * dim);
    // Rows the previous entry of this data and backbone already has (images added, removed
    // or reordered since) are copied; only the others are computed.
    const known = new Map<string, number>();
    let previous: FeatureRows | undefined;
    for (const other of await otherEntries(file)) {
      previous = await readFeatureCache(other, r.sha256, opts.log);
      if (previous?.dim === dim) break;
      previous = undefined;
    }
    if (previous) {
      for (let i = 0; i < previous.count; i++) {
        const k = Buffer.from(
          previous.keys.subarray(i * IMAGE_KEY_BYTES, (i + 1) * IMAGE_KEY_BYTES),
        ).toString('hex');
        known.set(k, i);
      }
    }
    const missing: number[] = [];
    for (let i = 0; i < count; i++) {
      const k = Buffer.from(keys.subarray(i * IMAGE_KEY_BYTES, (i + 1) * IMAGE_KEY_BYTES)).toString('hex');
      const j = known.get(k);
      if (j === undefined) missing.push(i);
      else features.set(previous!.features.subarray(j * dim, (j + 1) * dim), i * dim);
    }
    // Computed per part: the images live in their split's array.
    const bar = missing.length ? opts.progress?.(missing.length) : undefined;
    let done = 0;
    for (const p of parts) {
      const images = p.images;
      const mine = missing.filter((i) => where[i].images === images);
      if (!mine.length) continue;
      const first = mine[0] - where[mine[0]].index; // this part's offset among all images
      const local = new Float32Array(p.count * dim);
      await compute(
        backbone,
        images,
        shape,
        mine.map((i) => where[i].index),
        local,
        dim,
        (n) => bar?.update(done + n),
      );
      done += mine.length;
      for (const i of mine) {
        const j = where[i].index;
        features.set(local.subarray(j * dim, (j + 1) * dim), (first + j) * dim);
      }
    }
    bar?.stop();
    computed = missing.length;
    cache = computed === count ? 'miss' : 'partial';
    rows = { keys, features, count, dim };
    await writeFeatureCache(file, r.sha256, rows, opts.log);
  }
  const seconds = (performance.now() - start) / 1000;
  const perImage = `${dim} features per image`;
  if (cache === 'hit') opts.log?.(`features: cache hit ${file} (${count} images, ${perImage})`);
  else if (cache === 'partial')
    opts.log?.(
      `features: ${count - computed} of ${count} images from the cache, ${computed} computed in ${seconds.toFixed(2)}s (${perImage}); cached in ${file}`,
    );
  else
    opts.log?.(
      `features: computed for ${count} images in ${seconds.toFixed(2)}s (${(count / seconds).toFixed(1)} images/s, ${perImage}); cached in ${file}`,
    );
  // The splits, as features: the same labels, files and order.
  let offset = 0;
  const [train, test] = parts.map((p) => {
    const s: Split = {
      images: rows.features.slice(offset * dim, (offset + p.count) * dim),
      labels: p.labels,
      count: p.count,
    };
    if (p.files) s.files = p.files;
    offset += p.count;
    return s;
  });
  return {
    dataset: { ...dataset, shape: [1, 1, dim], train, test },
    cache,
    computed,
    seconds,
  };
}
