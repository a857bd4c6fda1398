import { describe, expect, it } from 'vitest';
import { batchCount, batches } from '../src/core/data/batches.js';
import { pixelsAsFloat, splitFromBytes } from '../src/core/data/dataset.js';
import { permutation, Rng } from '../src/core/data/rng.js';

const n = 10;
const row = 3;
const split = splitFromBytes(
  Uint8Array.from({ length: n * row }, (_, i) => Math.floor(i / row) * 10),
  Uint8Array.from({ length: n }, (_, i) => i % 4),
  4,
  'test',
);

describe('batches', () => {
  it('keeps pixels as bytes and scales each batch to [0, 1], exactly as b * (1 / 255)', () => {
    expect(split.images).toBeInstanceOf(Uint8Array);
    expect(split.images[row * 2]).toBe(20);
    const [first] = batches(split, { batchSize: 4, rowSize: row });
    expect(first.x[row * 2]).toBe(Math.fround(20 * (1 / 255)));
    expect(pixelsAsFloat(split.images, row * 2, 1)[0]).toBe(first.x[row * 2]);
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

describe('stratifiedSplit', () => {
  it('holds out the same fraction of every class, deterministically', async () => {
    const { stratifiedSplit } = await import('../src/core/data/split.js');
    const labels = Uint8Array.from({ length: 100 }, (_, i) => (i < 60 ? 0 : 1));
    const s = splitFromBytes(
      Uint8Array.from({ length: 100 }, (_, i) => i),
      labels,
      2,
      't',
    );
    const a = stratifiedSplit(s, [1, 1, 1], 2, 0.1, 4);
    expect(a.val.count).toBe(10);
    expect(Array.from(a.val.labels).filter((l) => l === 0)).toHaveLength(6);
    expect(a.train.count).toBe(90);
    const b = stratifiedSplit(s, [1, 1, 1], 2, 0.1, 4);
    expect(Array.from(b.val.images)).toEqual(Array.from(a.val.images));
    const all = [...a.train.images, ...a.val.images].sort((x, y) => x - y);
    expect(all).toEqual([...Array(100).keys()]);
  });
});
