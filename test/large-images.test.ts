/** Bigger images: a folder at --image-size 224 trains within memory (pixels are held as bytes). */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeShapesFolder } from '../src/node/data/shapes.js';
import { cli, tempDir } from './helpers.js';

describe('--image-size 224', () => {
  it('a folder of photos-sized images trains, reports its peak memory, and stays within bounds', async () => {
    const folder = path.join(tempDir(), 'big');
    await writeShapesFolder(folder, { perClass: 40, seed: 9, minSize: 160, maxSize: 320 });
    const out = path.join(tempDir(), 'run');
    const r = cli(
      [
        'train',
        '--data',
        folder,
        '--image-size',
        '224',
        '--epochs',
        '1',
        '--batch-size',
        '32',
        '--out',
        out,
        '--json',
      ],
      { XDG_CACHE_HOME: tempDir() },
    );
    expect(r.code, r.stderr).toBe(0);
    expect((r.json!.data as { shape: number[] }).shape).toEqual([224, 224, 3]);
    // 160 images of 224x224x3 are 24 MB as bytes (96 MB as floats); Node, tfjs and the wasm
    // heap take about 200 MB before any data. Measured here: 319 MB.
    expect(r.json!.peak_rss_mb).toBeLessThan(700);
  });
});
