/** Kaggle-style CSV: parsing, its errors, a round trip, and training through the CLI. */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { csvClassNames, csvLabelIndices, parseImageCsv, toImageCsv } from '../src/core/data/csv.js';
import { loadDataset } from '../src/node/data/load.js';
import { cli, expectCleanError, tempDir } from './helpers.js';

const DEBIAN = '/usr/share/datasets/fashion-mnist';

describe('parseImageCsv', () => {
  it('reads rows with or without a header, gray or RGB', () => {
    const gray = parseImageCsv('label,p1,p2,p3,p4\n3,0,255,10,20\n1,1,2,3,4\n', 'g.csv');
    expect(gray.shape).toEqual([2, 2, 1]);
    expect(gray.labels).toEqual(['3', '1']);
    expect(Array.from(gray.pixels)).toEqual([0, 255, 10, 20, 1, 2, 3, 4]);
    const noHeader = parseImageCsv('3,0,255,10,20\r\n1,1,2,3,4\r\n\r\n', 'h.csv');
    expect(noHeader.count).toBe(2);
    expect(noHeader.pixels).toEqual(gray.pixels);
    const rgb = parseImageCsv(`cat,${Array(12).fill(7).join(',')}\n`, 'c.csv');
    expect(rgb.shape).toEqual([2, 2, 3]);
  });

  it('round-trips through toImageCsv', () => {
    const pixels = Uint8Array.from({ length: 3 * 9 }, (_, i) => (i * 37) % 256);
    const text = toImageCsv(pixels, ['a', 'b', 'a'], [3, 3, 1]);
    expect(text.split('\n')[0]).toBe('label,pixel1,pixel2,pixel3,pixel4,pixel5,pixel6,pixel7,pixel8,pixel9');
    const back = parseImageCsv(text, 'x.csv');
    expect(back.pixels).toEqual(pixels);
    expect(back.labels).toEqual(['a', 'b', 'a']);
    expect(back.shape).toEqual([3, 3, 1]);
  });

  it('orders class names numerically for numbers, else by text', () => {
    expect(csvClassNames(['10', '2', '1', '2'])).toEqual(['1', '2', '10']);
    expect(csvClassNames(['dog', 'cat'])).toEqual(['cat', 'dog']);
    expect(Array.from(csvLabelIndices(['10', '1'], ['1', '2', '10'], 'x'))).toEqual([2, 0]);
    expect(() => csvLabelIndices(['7'], ['1', '2'], 'test.csv')).toThrow(
      /test\.csv: label '7' \(row 1\) is not one of the training labels/,
    );
  });

  it('rejects ragged rows, non-numeric values, out-of-range pixels and non-square rows', () => {
    expect(() => parseImageCsv('1,0,0,0,0\n2,0,0,0\n', 'r.csv')).toThrow(
      /r\.csv: line 2 has 4 values but the first row has 5 \(ragged row\)/,
    );
    expect(() => parseImageCsv('label,a,b,c,d\n1,0,x,0,0\n', 'n.csv')).toThrow(
      /n\.csv: line 2, column 3: 'x' is not a number/,
    );
    expect(() => parseImageCsv('1,0,0,256,0\n', 'o.csv')).toThrow(
      /o\.csv: line 1, column 4: pixel value 256 is outside 0\.\.255/,
    );
    expect(() => parseImageCsv('1,0,0,-1,0\n', 'o.csv')).toThrow(/pixel value -1 is outside/);
    expect(() => parseImageCsv('1,0,0,0,0,0\n', 's.csv')).toThrow(
      /5 pixel values, which is neither a square gray/,
    );
    expect(() => parseImageCsv('\n\n', 'e.csv')).toThrow(/e\.csv: the CSV file is empty/);
    expect(() => parseImageCsv('label,a,b,c,d\n', 'h.csv')).toThrow(/has a header but no rows/);
    expect(() => parseImageCsv('1,0,0,0,0\n,0,0,0,0\n', 'l.csv')).toThrow(/line 2 has an empty label/);
  });
});

describe('train --data file.csv', () => {
  let work = '';
  let trainCsv = '';
  let testCsv = '';

  beforeAll(() => {
    work = tempDir();
    // Real images: the first Fashion-MNIST examples, written as Kaggle does (label,pixel1..784).
    const images = gunzipSync(readFileSync(path.join(DEBIAN, 'train-images-idx3-ubyte.gz'))).subarray(16);
    const labels = gunzipSync(readFileSync(path.join(DEBIAN, 'train-labels-idx1-ubyte.gz'))).subarray(8);
    const rows = (from: number, n: number) =>
      toImageCsv(
        images.subarray(from * 784, (from + n) * 784),
        Array.from(labels.subarray(from, from + n), String),
        [28, 28, 1],
      );
    trainCsv = path.join(work, 'train.csv');
    testCsv = path.join(work, 'test.csv');
    writeFileSync(trainCsv, rows(0, 3000));
    writeFileSync(testCsv, rows(3000, 500));
  });

  it('trains with a test CSV; evaluate and predict reload both files', () => {
    const run = path.join(work, 'run');
    const r = cli([
      'train',
      '--data',
      trainCsv,
      '--test-data',
      testCsv,
      '--epochs',
      '5',
      '--out',
      run,
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json!.data).toMatchObject({ source: 'csv', train: 3000, test: 500, shape: [28, 28, 1] });
    expect((r.json!.data as { classes: string[] }).classes).toEqual([
      '0',
      '1',
      '2',
      '3',
      '4',
      '5',
      '6',
      '7',
      '8',
      '9',
    ]);
    expect(r.json!.test_accuracy).toBeGreaterThan(0.65);
    const meta = JSON.parse(readFileSync(path.join(run, 'metadata.json'), 'utf8'));
    // Light strokes on black, as MNIST: light-background photos are inverted for prediction.
    expect(meta.preprocessing.invertLightBackground).toBe(true);
    expect(meta.data).toMatchObject({ kind: 'csv', path: trainCsv, testPath: testCsv });
    const ev = cli(['evaluate', '--model', run, '--json']);
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.json!.test_accuracy).toBe(r.json!.test_accuracy);
    const p = cli(['predict', '--model', run, '-n', '2', '--json']);
    expect(p.code, p.stderr).toBe(0);
    expect((p.json!.predictions as { true: string }[])[0].true).toBe(
      String(readFileSync(testCsv, 'utf8').split('\n')[1][0]),
    );
  });

  it('holds out a stratified --val-split without a test CSV', async () => {
    const loaded = await loadDataset({ source: { kind: 'csv', path: trainCsv, valSplit: 0.2, seed: 1 } });
    expect(loaded.dataset.train.count + loaded.dataset.test.count).toBe(3000);
    expect(loaded.dataset.test.count).toBeGreaterThan(570);
    expect(loaded.dataset.test.count).toBeLessThan(630);
    expect(loaded.heldOut).toBe(true);
  });

  it('bad CSVs fail with one line naming the file and the row', () => {
    const ragged = path.join(work, 'ragged.csv');
    writeFileSync(ragged, 'label,a,b,c,d\n1,0,0,0,0\n2,0,0,0\n');
    expectCleanError(
      cli(['train', '--data', ragged]),
      /ragged\.csv: line 3 has 4 values but the first row has 5/,
    );
    const text = path.join(work, 'text.csv');
    writeFileSync(text, '1,0,0,0,0\n2,0,zero,0,0\n');
    expectCleanError(cli(['train', '--data', text]), /text\.csv: line 2, column 3: 'zero' is not a number/);
    const big = path.join(work, 'big.csv');
    writeFileSync(big, '1,0,0,0,0\n2,0,0,0,999\n');
    expectCleanError(
      cli(['train', '--data', big]),
      /big\.csv: line 2, column 5: pixel value 999 is outside 0\.\.255/,
    );
    const one = path.join(work, 'one.csv');
    writeFileSync(one, '1,0,0,0,0\n1,0,0,0,9\n');
    expectCleanError(
      cli(['train', '--data', one]),
      /every row has label '1'; a classifier needs at least two classes/,
    );
    expectCleanError(
      cli(['train', '--data', path.join(work, 'missing.csv')]),
      /missing\.csv: cannot read the file/,
    );
    const small = path.join(work, 'small.csv');
    writeFileSync(small, '1,0,0,0,0\n2,0,0,0,9\n');
    expectCleanError(
      cli(['train', '--data', trainCsv, '--test-data', small]),
      /small\.csv holds 2x2x1 images but .*train\.csv holds 28x28x1/,
    );
  });
});
