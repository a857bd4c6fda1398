/**
 * Kaggle-style CSV: parsing, its errors, a round trip, streaming (the same images as the whole
 * text, past V8's string limit), and training through the CLI.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type CsvImages,
  csvClassNames,
  csvLabelIndices,
  ImageCsvParser,
  parseImageCsv,
  toImageCsv,
} from '../src/core/data/csv.js';
import { loadDataset, readImageCsv } from '../src/node/data/load.js';
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
      /n\.csv: line 2, column 3: 'x' is not a pixel value \(a whole number 0\.\.255\)/,
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

describe('quoted fields and pixel values', () => {
  it('reads quoted labels and pixels as RFC 4180 says, a quoted line break included', () => {
    const q = parseImageCsv(
      '"label","p1","p2","p3","p4"\n"T-shirt, top","0",255," 10 ",20\n"say ""hi""",1,2,3,"4"\n',
      'q.csv',
    );
    expect(q.labels).toEqual(['T-shirt, top', 'say "hi"']);
    expect(Array.from(q.pixels)).toEqual([0, 255, 10, 20, 1, 2, 3, 4]);
    expect(q.shape).toEqual([2, 2, 1]);
    const multi = parseImageCsv('l,a,b,c,d\n"two\nlines",1,2,3,4\nx,5,6,7,8\n', 'm.csv');
    expect(multi.labels).toEqual(['two\nlines', 'x']);
    expect(Array.from(multi.pixels)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // Line numbers count the lines a quoted field spans.
    expect(() => parseImageCsv('l,a,b,c,d\n"two\nlines",1,2,3,4\nx,5,6,7\n', 'm.csv')).toThrow(
      /m\.csv: line 4 has 4 values but the first row has 5 \(ragged row\)/,
    );
    expect(() => parseImageCsv('l,a,b,c,d\n"open,1,2,3,4\nx,5,6,7,8\n', 'u.csv')).toThrow(
      /^u\.csv: line 2 opens a quoted field that is never closed; check its quotes$/,
    );
  });

  it('refuses pixels that are not whole numbers 0..255, naming the line and column', () => {
    const cases: [string, RegExp][] = [
      ['1.7', /^p\.csv: line 3, column 4: '1\.7' is not a pixel value \(a whole number 0\.\.255\)$/],
      ['0x10', /^p\.csv: line 3, column 4: '0x10' is not a pixel value/],
      ['1e2', /^p\.csv: line 3, column 4: '1e2' is not a pixel value/],
      ['+3', /^p\.csv: line 3, column 4: '\+3' is not a pixel value/],
      ['', /^p\.csv: line 3, column 4: '' is not a pixel value/],
      ['-1', /^p\.csv: line 3, column 4: pixel value -1 is outside 0\.\.255$/],
      ['256', /^p\.csv: line 3, column 4: pixel value 256 is outside 0\.\.255$/],
      ['"1.7"', /^p\.csv: line 3, column 4: '1\.7' is not a pixel value/],
      ['" 256"', /^p\.csv: line 3, column 4: pixel value 256 is outside 0\.\.255$/],
    ];
    for (const [value, message] of cases) {
      const text = `label,a,b,c,d\n1,0,0,0,0\n2,0,0,${value},0\n`;
      expect(() => parseImageCsv(text, 'p.csv'), value).toThrow(message);
    }
  });
});

/** Parses `text` fed to the incremental parser in pieces of `size` characters. */
function parseInPieces(text: string, size: number, name: string): CsvImages {
  const parser = new ImageCsvParser(name);
  for (let i = 0; i < text.length; i += size) parser.push(text.slice(i, i + size));
  return parser.finish();
}

/** The error message `f` throws (undefined when it returns). */
async function messageOf(f: () => unknown): Promise<string | undefined> {
  try {
    await f();
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

describe('streaming a CSV', () => {
  const work = tempDir();
  const rgbRow = (l: string, k: number) =>
    `${l},${Array.from({ length: 12 }, (_, i) => (i * k) % 256).join(',')}`;
  const texts: Record<string, string> = {
    'header, LF, trailing newline': 'label,p1,p2,p3,p4\n3,0,255,10,20\n1,1,2,3,4\n',
    'header, CRLF, no trailing newline': 'label,p1,p2,p3,p4\r\n3,0,255,10,20\r\n1,1,2,3,4',
    'no header, CRLF, blank lines': '\r\n3,0,255,10,20\r\n\r\n1,1,2,3,4\r\n\r\n',
    'a last line ending in CR alone': '3,0,255,10,20\n1,1,2,3,4\r',
    'spaces, leading zeros': 'l,a,b,c,d\n 7 , 1,3 ,20, 016\n8,255,0,00255,9\n',
    'quoted labels and pixels, a quoted header':
      '"label","p1","p2","p3","p4"\n"T-shirt, top","0",255," 10 ",20\n"say ""hi""",1,2,3,"4"\n',
    'a quoted label over two lines, CRLF elsewhere':
      'l,a,b,c,d\r\n"two\nlines",1,2,3,4\r\n"x",5,6,7,8\r\nx,9,9,9,9',
    'multi-byte labels, RGB': `${rgbRow('猫', 3)}\n${rgbRow('chat é', 5)}\n${rgbRow('🐈', 7)}\n`,
    'a header with a BOM': '\uFEFFlabel,p1,p2,p3,p4\n3,0,255,10,20\n',
  };

  it('parses more text than one string can hold (V8 caps strings at 2^29 - 24 characters)', () => {
    // 64x64 gray images of zero-padded values: 9 characters a pixel keeps the pixels small
    // (~60 MB) while the text passes 512 MiB, so this runs in about 2 s. It runs first: after
    // the tests that stream 1-byte chunks, V8 has seen every kind of string in the parser and
    // the same work takes 2-3 times longer.
    const side = 64;
    const row = (label: number) =>
      `${label},${Array(side * side)
        .fill('00000000')
        .join(',')}\n`;
    const block = (row(0) + row(1)).repeat(64);
    const parser = new ImageCsvParser('huge.csv');
    parser.push(`label,${Array.from({ length: side * side }, (_, i) => `pixel${i + 1}`).join(',')}\n`);
    let total = 0;
    let rows = 0;
    while (total <= 2 ** 29) {
      parser.push(block);
      total += block.length;
      rows += 128;
    }
    expect(() => 'x'.repeat(total)).toThrow(RangeError);
    const images = parser.finish();
    expect(images.count).toBe(rows);
    expect(images.shape).toEqual([side, side, 1]);
    expect(images.pixels.length).toBe(rows * side * side);
    expect(images.labels.at(-1)).toBe('1');
  });

  it('gives exactly the arrays parseImageCsv gives, however the text is cut', async () => {
    for (const [what, text] of Object.entries(texts)) {
      const whole = parseImageCsv(text, 'x.csv');
      for (const size of [1, 2, 3, 5, 8, 13, text.length]) {
        expect(parseInPieces(text, size, 'x.csv'), `${what}, pieces of ${size}`).toEqual(whole);
      }
      // From a file: bytes cut anywhere, multi-byte characters included.
      const file = path.join(work, 'stream.csv');
      writeFileSync(file, text);
      for (const chunkSize of [1, 2, 3, 7, undefined]) {
        expect(await readImageCsv(file, { chunkSize }), `${what}, file chunks of ${chunkSize}`).toEqual(
          whole,
        );
      }
    }
    expect(parseImageCsv(texts['spaces, leading zeros'], 'x').pixels).toEqual(
      Uint8Array.from([1, 3, 20, 16, 255, 0, 255, 9]),
    );
  });

  it('a real file streamed in small chunks matches the whole text, row for row', async () => {
    const images = gunzipSync(readFileSync(path.join(DEBIAN, 't10k-images-idx3-ubyte.gz'))).subarray(16);
    const labels = gunzipSync(readFileSync(path.join(DEBIAN, 't10k-labels-idx1-ubyte.gz'))).subarray(8);
    const text = toImageCsv(
      images.subarray(0, 300 * 784),
      Array.from(labels.subarray(0, 300), String),
      [28, 28, 1],
    ).replaceAll('\n', '\r\n');
    const file = path.join(work, 'fashion.csv');
    writeFileSync(file, text);
    const streamed = await readImageCsv(file, { chunkSize: 997 });
    expect(streamed).toEqual(parseImageCsv(text, file));
    expect(streamed.pixels).toEqual(new Uint8Array(images.subarray(0, 300 * 784)));
    expect(streamed.count).toBe(300);
  });

  it('reports the same errors, with the same line numbers, as the whole text', async () => {
    const bad = [
      '1,0,0,0,0\n2,0,0,0\n',
      'label,a,b,c,d\r\n1,0,x,0,0\r\n',
      '\n\n1,0,0,256,0\n',
      '1,0,0,0,0,0\n',
      '\n \r\n',
      'label,a,b,c,d\n\n',
      '1,0,0,0,0\n,0,0,0,0',
      'just-a-label\n',
      '',
      'l,a,b,c,d\n1,0,1.7,0,0\n',
      '1,0,0,0,"0x10"\n',
      '"1\n,0,0,0,0\n',
      '1,2,3,4,5\n"a,b",1,2,3\n',
    ];
    for (const text of bad) {
      const whole = await messageOf(() => parseImageCsv(text, 'bad.csv'));
      expect(whole, JSON.stringify(text)).toMatch(/^bad\.csv: /);
      for (const size of [1, 2, 4])
        expect(await messageOf(() => parseInPieces(text, size, 'bad.csv'))).toBe(whole);
      const file = path.join(work, 'bad.csv');
      writeFileSync(file, text);
      expect(await messageOf(() => readImageCsv(file, { chunkSize: 3 }))).toBe(
        whole?.replace('bad.csv', file),
      );
    }
  });

  it('a missing file, a folder and an unreadable file each say what is wrong', async () => {
    const missing = path.join(work, 'missing.csv');
    await expect(readImageCsv(missing)).rejects.toThrow(`${missing} does not exist`);
    const folder = path.join(work, 'folder.csv');
    mkdirSync(folder);
    await expect(readImageCsv(folder)).rejects.toThrow(`${folder} is a folder, not a CSV file`);
    expectCleanError(cli(['train', '--data', folder]), /folder\.csv is a folder, not a CSV file$/);
    expectCleanError(cli(['train', '--data', missing]), /missing\.csv does not exist$/);
    if (process.getuid?.() !== 0) {
      // root reads any file: the permission case only shows for other users.
      const locked = path.join(work, 'locked.csv');
      writeFileSync(locked, '1,0,0,0,0\n');
      chmodSync(locked, 0);
      await expect(readImageCsv(locked)).rejects.toThrow(
        `${locked}: cannot read the file (permission denied)`,
      );
    }
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
    expectCleanError(
      cli(['train', '--data', text]),
      /text\.csv: line 2, column 3: 'zero' is not a pixel value \(a whole number 0\.\.255\)/,
    );
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
      /missing\.csv does not exist$/,
    );
    const small = path.join(work, 'small.csv');
    writeFileSync(small, '1,0,0,0,0\n2,0,0,0,9\n');
    expectCleanError(
      cli(['train', '--data', trainCsv, '--test-data', small]),
      /small\.csv holds 2x2x1 images but .*train\.csv holds 28x28x1/,
    );
  });
});
