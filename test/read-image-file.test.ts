/**
 * Reading image files for batch prediction: synchronous reads (readImageFileSync) with the same
 * refusals as the asynchronous ones, and the switch to asynchronous reads on slow storage
 * (node/predict/decode.ts fileReader).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MAX_IMAGE_FILE_BYTES } from '../src/node/image.js';
import { readImageFile, readImageFileSync } from '../src/node/data/folder.js';
import { fileReader, SLOW_READ_MS, SLOW_READS } from '../src/node/predict/decode.js';
import { tempDir } from './helpers.js';

describe('readImageFileSync', () => {
  it('reads what readImageFile reads, and refuses what it refuses, in one line each', async () => {
    const dir = tempDir('imgclf-read-');
    const file = path.join(dir, 'a.png');
    writeFileSync(file, Buffer.from('not really a png, but bytes'));
    expect(readImageFileSync(file).equals(await readImageFile(file))).toBe(true);
    expect(() => readImageFileSync(path.join(dir, 'missing.png'))).toThrow(
      expect.objectContaining({ code: 'ENOENT' }),
    );
    mkdirSync(path.join(dir, 'folder.png'));
    expect(() => readImageFileSync(path.join(dir, 'folder.png'))).toThrow(
      expect.objectContaining({ code: 'EISDIR' }),
    );
    const big = path.join(dir, 'big.png');
    writeFileSync(big, '');
    truncateSync(big, MAX_IMAGE_FILE_BYTES + 1);
    expect(() => readImageFileSync(big)).toThrow(/more than the 64 MB imgclf reads for one image/);
    // A FIFO with no writer: opened non-blocking and refused, not waited on.
    const fifo = path.join(dir, 'fifo.png');
    execFileSync('mkfifo', [fifo]);
    expect(() => readImageFileSync(fifo)).toThrow(/not a regular file/);
  });
});

describe('fileReader', () => {
  afterEach(() => vi.restoreAllMocks());

  it('reads synchronously until reads turn slow, then asynchronously', async () => {
    const dir = tempDir('imgclf-read-');
    const file = path.join(dir, 'a.png');
    writeFileSync(file, 'x');
    const reads = fileReader();
    await reads.read(file);
    expect(reads.slow).toBe(false);
    // Each read now seems to take longer than SLOW_READ_MS: after SLOW_READS of them, the reader
    // turns asynchronous, and stays so.
    let t = 0;
    vi.spyOn(performance, 'now').mockImplementation(() => (t += SLOW_READ_MS + 1));
    for (let i = 0; i < SLOW_READS - 1; i++) await reads.read(file);
    expect(reads.slow).toBe(false);
    await reads.read(file);
    expect(reads.slow).toBe(true);
    vi.restoreAllMocks();
    expect((await reads.read(file)).toString()).toBe('x');
    expect(reads.slow).toBe(true);
  });
});
