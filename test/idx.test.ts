import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { checkPair, parseIdx } from '../src/core/data/idx.js';
import { readMaybeGzip } from '../src/node/data/datasets.js';
import { UserError } from '../src/core/errors.js';
import { idx, tempDir } from './helpers.js';

describe('parseIdx', () => {
  it('reads dimensions and data of idx3 and idx1 files', () => {
    const images = parseIdx(idx([2, 3, 4]), 'img', 3);
    expect(images.dims).toEqual([2, 3, 4]);
    expect(images.data.length).toBe(24);
    expect(images.data[5]).toBe(5);
    const labels = parseIdx(idx([2]), 'lab', 1);
    expect(labels.dims).toEqual([2]);
  });

  it('rejects a bad magic number, naming the file', () => {
    const bytes = idx([2]);
    bytes[0] = 0x1f;
    expect(() => parseIdx(bytes, 'labels.idx', 1)).toThrow(/labels\.idx: bad IDX magic number/);
  });

  it('rejects an unsupported data type', () => {
    const bytes = idx([2]);
    bytes[2] = 0x0d;
    expect(() => parseIdx(bytes, 'f', 1)).toThrow(/data type 0xd is not supported/);
  });

  it('rejects the wrong rank', () => {
    expect(() => parseIdx(idx([2]), 'f', 3)).toThrow(/expected an idx3 file/);
  });

  it('rejects truncated data and trailing bytes', () => {
    const good = idx([3, 2, 2]);
    expect(() => parseIdx(good.subarray(0, good.length - 1), 'img', 3)).toThrow(
      /img: truncated: header \[3x2x2\] needs 12 data bytes but the file has 11/,
    );
    const longer = new Uint8Array(good.length + 2);
    longer.set(good);
    expect(() => parseIdx(longer, 'img', 3)).toThrow(/has trailing bytes/);
    expect(() => parseIdx(good.subarray(0, 6), 'img', 3)).toThrow(/truncated IDX header/);
    expect(() => parseIdx(new Uint8Array(2), 'img')).toThrow(/too short/);
  });

  it('rejects images and labels of different counts', () => {
    expect(() => checkPair(parseIdx(idx([3, 2, 2]), 'a', 3), parseIdx(idx([2]), 'b', 1), 'a', 'b')).toThrow(
      /a has 3 images but b has 2 labels/,
    );
  });

  it('errors are UserErrors (one line, no stack in the CLI)', () => {
    try {
      parseIdx(new Uint8Array(1), 'x');
    } catch (e) {
      expect(e).toBeInstanceOf(UserError);
      expect((e as Error).message).not.toContain('\n');
    }
  });
});

describe('readMaybeGzip', () => {
  it('reads gzip by its magic bytes and raw files as they are', async () => {
    const dir = tempDir();
    const data = idx([2]);
    writeFileSync(path.join(dir, 'a.gz'), gzipSync(data));
    writeFileSync(path.join(dir, 'b'), data);
    expect(new Uint8Array(await readMaybeGzip(path.join(dir, 'a.gz')))).toEqual(data);
    expect(new Uint8Array(await readMaybeGzip(path.join(dir, 'b')))).toEqual(data);
  });

  it('reports corrupt gzip clearly', async () => {
    const dir = tempDir();
    const gz = gzipSync(idx([100]));
    writeFileSync(path.join(dir, 'c.gz'), gz.subarray(0, gz.length - 10));
    await expect(readMaybeGzip(path.join(dir, 'c.gz'))).rejects.toThrow(/c\.gz: corrupt gzip data/);
  });
});
