/**
 * Pictures that already have the model's size: a plain PNG is decoded without sharp
 * (node/png.ts, node/image.ts `atModelSize`), and the model's input must be the very one the
 * sharp path gives. The sharp path is reached with the same pixels stored interlaced, which the
 * fast path declines.
 */
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { Rng } from '../src/core/data/rng.js';
import type { ImageShape } from '../src/core/data/dataset.js';
import type { Preprocessing } from '../src/core/data/source.js';
import { inputAtSize, prepareImage, resizedInput } from '../src/node/image.js';
import { jpegSize, pngSize } from '../src/node/image-header.js';
import { decodePlainPng } from '../src/node/png.js';

const MNIST_LIKE: Preprocessing = { scale: 255, invertLightBackground: true, resize: 'contain' };
const FOLDER: Preprocessing = { scale: 255, invertLightBackground: false, resize: 'fill' };

/** Random pixels: a light or dark border, noise inside, so both sides of the probe are seen. */
function picture(rng: Rng, w: number, h: number, channels: 1 | 2 | 3 | 4, light: boolean, greyRgb = false) {
  const px = new Uint8Array(w * h * channels);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const edge = x < 2 || y < 2 || x >= w - 2 || y >= h - 2;
      const at = (y * w + x) * channels;
      const colours = channels >= 3 ? 3 : 1;
      const base = Math.floor(rng.next() * 256);
      for (let k = 0; k < colours; k++) {
        const v = greyRgb ? base : Math.floor(rng.next() * 256);
        px[at + k] = edge ? (light ? 200 + (v % 56) : v % 56) : v;
      }
      if (channels === 2 || channels === 4) px[at + channels - 1] = 255;
    }
  }
  return px;
}

async function png(px: Uint8Array, w: number, h: number, channels: 1 | 2 | 3 | 4, progressive = false) {
  const img = sharp(px, { raw: { width: w, height: h, channels } });
  // Raw gray would be stored as RGB unless said to be gray.
  return (channels <= 2 ? img.toColourspace('b-w') : img)
    .png({ progressive, compressionLevel: 6, adaptiveFiltering: true })
    .toBuffer();
}

async function bothPaths(
  px: Uint8Array,
  w: number,
  h: number,
  c: 1 | 2 | 3 | 4,
  shape: ImageShape,
  pre: Preprocessing,
) {
  const plain = await png(px, w, h, c);
  const interlaced = await png(px, w, h, c, true);
  expect(decodePlainPng(plain, w * h)).toBeDefined();
  expect(decodePlainPng(interlaced, w * h)).toBeUndefined();
  const fast = await prepareImage(plain, shape, pre, 'plain.png');
  const slow = await prepareImage(interlaced, shape, pre, 'interlaced.png');
  return { fast, slow };
}

describe('plain PNG decoding', () => {
  it('gives the stored pixels, for every colour type and row filter', async () => {
    const rng = new Rng(1);
    for (const c of [1, 2, 3, 4] as const) {
      for (const [w, h] of [
        [28, 28],
        [5, 3],
        [64, 33],
      ]) {
        const px = picture(rng, w, h, c, rng.next() < 0.5);
        const bytes = await png(px, w, h, c);
        const mine = decodePlainPng(bytes, w * h)!;
        expect(mine, `${w}x${h}x${c}`).toBeDefined();
        expect([mine.width, mine.height, mine.channels]).toEqual([w, h, c]);
        // PNG is lossless: the stored samples are the ones written.
        expect(Buffer.from(mine.pixels).equals(px), `${w}x${h}x${c}`).toBe(true);
      }
    }
  });

  it('declines what it does not take, and damage, and leaves them to sharp', async () => {
    const px = picture(new Rng(2), 8, 8, 3, true);
    const good = await png(px, 8, 8, 3);
    expect(decodePlainPng(good, 64)).toBeDefined();
    // More pixels than allowed.
    expect(decodePlainPng(good, 63)).toBeUndefined();
    // A flipped bit in the image data: its CRC no longer matches.
    const bad = Buffer.from(good);
    bad[bad.length - 20] ^= 1;
    expect(decodePlainPng(bad, 64)).toBeUndefined();
    // Cut short.
    expect(decodePlainPng(good.subarray(0, good.length - 16), 64)).toBeUndefined();
    // A palette PNG, a 16-bit one, one with a colour profile.
    expect(
      decodePlainPng(
        await sharp(px, { raw: { width: 8, height: 8, channels: 3 } })
          .png({ palette: true })
          .toBuffer(),
        64,
      ),
    ).toBeUndefined();
    expect(
      decodePlainPng(
        await sharp(px, { raw: { width: 8, height: 8, channels: 3 } })
          .toColourspace('rgb16')
          .png()
          .toBuffer(),
        64,
      ),
    ).toBeUndefined();
    expect(decodePlainPng(await sharp(good).withIccProfile('p3').png().toBuffer(), 64)).toBeUndefined();
    // A JPEG.
    expect(decodePlainPng(await sharp(good).jpeg().toBuffer(), 64)).toBeUndefined();
  });

  it('stops inflating at the size the header declares (a 4x4 header over 64 MB of zeros)', () => {
    const chunk = (type: string, data: Uint8Array) => {
      const out = Buffer.alloc(12 + data.length);
      out.writeUInt32BE(data.length, 0);
      out.write(type, 4, 'latin1');
      Buffer.from(data).copy(out, 8);
      out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
      return out;
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(4, 0);
    ihdr.writeUInt32BE(4, 4);
    ihdr.set([8, 0, 0, 0, 0], 8);
    const bomb = deflateSync(Buffer.alloc(64 * 1024 * 1024));
    const file = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      chunk('IDAT', bomb),
      chunk('IEND', new Uint8Array(0)),
    ]);
    const t = performance.now();
    expect(decodePlainPng(file, 16)).toBeUndefined();
    // Inflating all of it takes far longer; stopping at 20 bytes is immediate.
    expect(performance.now() - t).toBeLessThan(50);
  });
});

describe('prepareImage on pictures at the model size', () => {
  it('gives the sharp path input byte for byte: gray and RGB models, every colour type, both probes', async () => {
    const rng = new Rng(3);
    let inverted = 0;
    for (const c of [1, 2, 3, 4] as const) {
      for (const light of [false, true]) {
        const px = picture(rng, 28, 28, c, light);
        for (const [shape, pre] of [
          [[28, 28, 1], MNIST_LIKE],
          [[28, 28, 3], FOLDER],
          [[28, 28, 3], MNIST_LIKE],
        ] as [ImageShape, Preprocessing][]) {
          // A gray model takes colour pictures through sharp (see the next test).
          if (shape[2] === 1 && c >= 3) continue;
          const { fast, slow } = await bothPaths(px, 28, 28, c, shape, pre);
          expect(fast.inverted, `${c} ${light} ${shape} ${pre.resize}`).toBe(slow.inverted);
          expect(Array.from(fast.input), `${c} ${light} ${shape} ${pre.resize}`).toEqual(
            Array.from(slow.input),
          );
          if (fast.inverted) inverted++;
        }
      }
    }
    // The light-bordered pictures were inverted for the MNIST-like model, the others not.
    expect(inverted).toBe(6);
  });

  it("equals sharp's resize on a working copy at the model size, for every model and probe", async () => {
    const rng = new Rng(6);
    for (const c of [1, 3] as const) {
      for (const light of [false, true]) {
        for (const [shape, pre] of [
          [[28, 28, 1], MNIST_LIKE],
          [[28, 28, 3], FOLDER],
          [[28, 28, 3], MNIST_LIKE],
          [[28, 28, 1], FOLDER],
        ] as [ImageShape, Preprocessing][]) {
          const copy = {
            pixels: picture(rng, 28, 28, c, light, shape[2] === 1),
            width: 28,
            height: 28,
            channels: c,
          };
          const mine = inputAtSize(copy, shape, pre)!;
          expect(mine, `${c} ${shape}`).toBeDefined();
          const ref = await resizedInput(copy, shape, pre);
          expect(mine.inverted).toBe(ref.inverted);
          expect(Array.from(mine.input), `${c} ${light} ${shape} ${pre.resize}`).toEqual(
            Array.from(ref.input),
          );
        }
      }
    }
  });

  it('takes a colour picture for a gray model only when every pixel is neutral', async () => {
    const rng = new Rng(4);
    const neutral = picture(rng, 28, 28, 3, true, true);
    const { fast, slow } = await bothPaths(neutral, 28, 28, 3, [28, 28, 1], MNIST_LIKE);
    expect(Array.from(fast.input)).toEqual(Array.from(slow.input));
    // One coloured pixel: the picture goes to sharp, and gets sharp's gray.
    neutral[40] = (neutral[40] + 1) % 256;
    const coloured = await png(neutral, 28, 28, 3);
    expect(decodePlainPng(coloured, 784)).toBeDefined();
    const viaSharp = await prepareImage(coloured, [28, 28, 1], MNIST_LIKE, 'c.png');
    const interlaced = await prepareImage(
      await png(neutral, 28, 28, 3, true),
      [28, 28, 1],
      MNIST_LIKE,
      'i.png',
    );
    expect(Array.from(viaSharp.input)).toEqual(Array.from(interlaced.input));
  });

  it('leaves other sizes, transparency and EXIF to sharp', async () => {
    const rng = new Rng(5);
    const px = picture(rng, 28, 28, 4, true);
    px[3] = 10; // one see-through pixel: sharp flattens it onto white
    const transparent = await png(px, 28, 28, 4);
    const r = await prepareImage(transparent, [28, 28, 3], FOLDER, 't.png');
    expect(r.input[0]).toBeCloseTo((px[0] * 10 + 255 * 245) / 255 / 255, 1);
    const other = await png(picture(rng, 30, 30, 3, false), 30, 30, 3);
    expect(decodePlainPng(other, 900)).toBeDefined();
    expect((await prepareImage(other, [28, 28, 3], FOLDER, 'o.png')).input.length).toBe(28 * 28 * 3);
  });
});

describe('one pass for pictures near the model size', () => {
  it('gives the bytes of the two passes (decode to a working copy, then resize)', async () => {
    const rng = new Rng(7);
    const cases: [number, number, 1 | 2 | 3 | 4, 'png' | 'jpeg'][] = [
      [40, 30, 3, 'jpeg'],
      [50, 55, 3, 'png'],
      [30, 40, 4, 'png'],
      [20, 17, 1, 'png'],
      [33, 29, 2, 'png'],
      [16, 50, 3, 'jpeg'],
    ];
    let compared = 0;
    for (const [w, h, c, format] of cases) {
      const px = picture(rng, w, h, c, false);
      if (c === 2 || c === 4) for (let i = c - 1; i < px.length; i += c) px[i] = Math.floor(rng.next() * 256);
      const img = sharp(px, { raw: { width: w, height: h, channels: c } });
      const file = await (c <= 2 ? img.toColourspace('b-w') : img)[format]().toBuffer();
      for (const mode of ['fill', 'contain', 'cover'] as const) {
        for (const shape of [
          [28, 28, 3],
          [28, 28, 1],
        ] as ImageShape[]) {
          const pre: Preprocessing = { ...FOLDER, resize: mode };
          const one = await prepareImage(file, shape, pre, 'x');
          // The two passes, as a picture not near the model size takes them.
          const decoded = await sharp(file, { autoOrient: true })
            .flatten({ background: '#ffffff' })
            .raw()
            .toBuffer({ resolveWithObject: true });
          const copy = {
            pixels: decoded.data,
            width: decoded.info.width,
            height: decoded.info.height,
            channels: decoded.info.channels as 1 | 2 | 3 | 4,
          };
          const two = await resizedInput(copy, shape, pre);
          expect(
            Buffer.from(one.bytes).equals(Buffer.from(two.bytes)),
            `${w}x${h}x${c} ${format} ${mode} ${shape}`,
          ).toBe(true);
          compared++;
        }
      }
    }
    expect(compared).toBe(36);
  });
});

describe('headers read without sharp', () => {
  it('give the size sharp gives, upright, for PNGs and JPEGs of every EXIF orientation', async () => {
    const base = sharp({ create: { width: 37, height: 23, channels: 3, background: '#808040' } });
    const files: [string, Buffer][] = [
      ['png', await base.clone().png().toBuffer()],
      ['gray png', await base.clone().toColourspace('b-w').png().toBuffer()],
      ['jpeg', await base.clone().jpeg().toBuffer()],
      ['progressive jpeg', await base.clone().jpeg({ progressive: true }).toBuffer()],
      ['gray jpeg', await base.clone().toColourspace('b-w').jpeg().toBuffer()],
      ['cmyk jpeg', await base.clone().toColourspace('cmyk').jpeg().toBuffer()],
    ];
    for (let o = 1; o <= 8; o++) {
      files.push([
        `jpeg orientation ${o}`,
        await base.clone().jpeg().withMetadata({ orientation: o }).toBuffer(),
      ]);
    }
    files.push(['png with eXIf', await base.clone().png().withMetadata({ orientation: 6 }).toBuffer()]);
    for (const [what, bytes] of files) {
      const meta = await sharp(bytes).metadata();
      const seen = meta.autoOrient ?? meta;
      const mine = what.includes('png') ? pngSize(bytes) : jpegSize(bytes);
      if (mine === undefined) {
        // Declined: only a PNG whose EXIF may turn it.
        expect(what).toBe('png with eXIf');
        continue;
      }
      expect(mine, what).toEqual({ width: seen.width, height: seen.height });
    }
  });

  it('declines damaged or cut-short JPEGs, which sharp then reads', async () => {
    const jpeg = await sharp({ create: { width: 9, height: 9, channels: 3, background: '#fff' } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    expect(jpegSize(jpeg)).toEqual({ width: 9, height: 9 });
    expect(jpegSize(jpeg.subarray(0, 40))).toBeUndefined();
    const bad = Buffer.from(jpeg);
    bad[2] = 0x00; // not a marker where one must be
    expect(jpegSize(bad)).toBeUndefined();
  });
});
