/** Holding out part of a split, stratified by class, with a seeded RNG. */
import { type ImageShape, imageSize, type Split } from './dataset.js';
import { permutation, Rng } from './rng.js';

/** The examples at `indices`, copied into a new split. */
export function subset(split: Split, shape: ImageShape, indices: ArrayLike<number>): Split {
  const row = imageSize(shape);
  const images =
    split.images instanceof Float32Array
      ? new Float32Array(indices.length * row)
      : new Uint8Array(indices.length * row);
  const labels = new Uint8Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i];
    // Same type in and out: a plain row copy.
    (images as Uint8Array).set((split.images as Uint8Array).subarray(j * row, (j + 1) * row), i * row);
    labels[i] = split.labels[j];
  }
  const out: Split = { images, labels, count: indices.length };
  if (split.files) out.files = Array.from(indices, (j) => split.files![j]);
  return out;
}

/**
 * Splits off `fraction` of each class (rounded, at least one example of every class that has
 * two or more) as a validation set. The rest keeps its original order, so the training data
 * order for a given seed does not depend on which examples were held out beyond their removal.
 */
export function stratifiedSplit(
  split: Split,
  shape: ImageShape,
  numClasses: number,
  fraction: number,
  seed: number,
): { train: Split; val: Split } {
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < split.count; i++) byClass[split.labels[i]].push(i);
  const rng = new Rng(seed ^ 0x5eed);
  const held = new Uint8Array(split.count);
  for (const members of byClass) {
    if (members.length < 2) continue;
    const k = Math.min(members.length - 1, Math.max(1, Math.round(members.length * fraction)));
    const order = permutation(members.length, rng);
    for (let i = 0; i < k; i++) held[members[order[i]]] = 1;
  }
  const trainIdx: number[] = [];
  const valIdx: number[] = [];
  for (let i = 0; i < split.count; i++) (held[i] ? valIdx : trainIdx).push(i);
  return { train: subset(split, shape, trainIdx), val: subset(split, shape, valIdx) };
}

/**
 * For data without a test split of its own (a flat image folder, a lone CSV, the page's
 * pictures): `fraction` of each class held out as the test split, as stratifiedSplit holds
 * out validation data, seeded.
 */
export function heldOutSplit(
  all: Split,
  shape: ImageShape,
  numClasses: number,
  fraction: number,
  seed: number,
): { train: Split; test: Split } {
  const { train, val } = stratifiedSplit(all, shape, numClasses, fraction, seed);
  return { train, test: val };
}
