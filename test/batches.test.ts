import { describe, expect, it } from 'vitest';
import { batchCount, batches } from '../src/data/batches.js';
import { splitFromBytes } from '../src/data/dataset.js';
import { permutation, Rng } from '../src/data/rng.js';

const n = 10;
const row = 3;
const split = splitFromBytes(
  Uint8Array.from({ length: n * row }, (_, i) => Math.floor(i / row) * 10),
  Uint8Array.from({ length: n }, (_, i) => i % 4),
  4,
  'test',
);

describe('batches', () => {
  it('scales pixels to [0, 1] once', () => {
    expect(split.images[row * 2]).toBeCloseTo(20 / 255, 6);
  });

  it('yields every example once per epoch, keeping the short last batch', () => {
    const seen: number[] = [];
    let count = 0;
    for (const b of batches(split, { batchSize: 4, rowSize: row, rng: new Rng(1) })) {
      count++;
      for (let i = 0; i < b.size; i++) {
        const example = Math.round((b.x[i * row] * 255) / 10);
        expect(b.y[i]).toBe(example % 4); // labels travel with their images
        seen.push(example);
      }
    }
    expect(count).toBe(batchCount(n, 4));
    expect(count).toBe(3);
    expect(seen.sort((a, b) => a - b)).toEqual([...Array(n).keys()]);
  });

  it('the same seed gives the same order; another seed another', () => {
    const order = (seed: number) => Array.from(permutation(100, new Rng(seed)));
    expect(order(7)).toEqual(order(7));
    expect(order(7)).not.toEqual(order(8));
    expect(order(0)).toEqual(order(0));
  });

  it('without an rng keeps the split order (evaluation is never shuffled)', () => {
    const ys = [...batches(split, { batchSize: 4, rowSize: row })].flatMap((b) => Array.from(b.y));
    expect(ys).toEqual(Array.from(split.labels));
  });
});
