/**
 * Photos taken sideways: a JPEG whose pixels are stored rotated, with an EXIF Orientation that
 * tells viewers how to turn it upright. Every door reads it upright: node/image.ts's decode, the
 * image-folder loader (training), `imgclf predict` (and its --out picture), the library's
 * predictImage, serve's /api/predict and /api/predict/batch, and the page's decode() in Chromium. The pictures are a bright bar along one side of a dark
 * landscape frame, the class being the side, so a picture read sideways lands in another class
 * (and a size read sideways is a portrait).
 */
import type { FastifyInstance } from 'fastify';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { build } from 'vite';
import type { Browser } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { folderPreprocessing } from '../src/core/data/source.js';
import { loadImageFolder } from '../src/node/data/folder.js';
import { prepareImage, readImageHeader } from '../src/node/image.js';
import { loadRun as loadRunForLibrary, predictImage } from '../src/index.js';
import { loadRun } from '../src/node/run/rundir.js';
import { buildServer } from '../src/server/app.js';
import { cli, launchChromium, multipartForm, ROOT, tempDir } from './helpers.js';

/** The upright picture's size: landscape, so a sideways read also shows in its size. */
const W = 48;
const H = 32;
type Side = 'bottom' | 'left' | 'right' | 'top';
const SIDES: Side[] = ['bottom', 'left', 'right', 'top'];

/**
 * How each EXIF orientation stores an upright picture: the clockwise turn that the stored pixels
 * went through (a viewer applies the opposite). 6 is a phone held turned right, 8 turned left.
 */
const STORED_TURN = { 3: 180, 6: 270, 8: 90 } as const;
type Orientation = keyof typeof STORED_TURN;

/** Where a bar along `side` lands when the picture is turned clockwise by `turn` degrees. */
function turned(side: Side, turn: 90 | 180 | 270): Side {
  const clockwise: Side[] = ['top', 'right', 'bottom', 'left'];
  return clockwise[(clockwise.indexOf(side) + turn / 90) % 4];
}

/** RGB pixels of an upright W x H picture: a bright bar along `side`, varied by `variant`. */
function barPixels(side: Side, variant: number): Buffer {
  const px = Buffer.alloc(W * H * 3);
  const thick = 5 + (variant % 4);
  const gap = 1 + ((variant >> 2) % 4);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const along = { top: y, bottom: H - 1 - y, left: x, right: W - 1 - x }[side];
      const bar = along >= gap && along < gap + thick;
      // A little deterministic texture, so that pictures differ beyond the bar.
      const v = bar ? 225 + ((x * 7 + y * 3 + variant) % 20) : 15 + ((x * 5 + y * 11 + variant) % 25);
      px.fill(v, (y * W + x) * 3, (y * W + x) * 3 + 3);
    }
  }
  return px;
}

const raw = (px: Buffer) => sharp(px, { raw: { width: W, height: H, channels: 3 } });

/** The upright picture as a PNG (no EXIF): the reference. */
const uprightPng = (side: Side, variant: number) => raw(barPixels(side, variant)).png().toBuffer();

/** The picture as a camera held sideways writes it: pixels turned, EXIF saying how to undo it. */
async function sidewaysJpeg(side: Side, variant: number, orientation: Orientation): Promise<Buffer> {
  const stored = await raw(barPixels(side, variant)).rotate(STORED_TURN[orientation]).toBuffer();
  const [w, h] = orientation === 3 ? [W, H] : [H, W];
  return sharp(stored, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 95 })
    .withMetadata({ orientation })
    .toBuffer();
}

/** The same stored pixels without the EXIF tag: what a reader that ignores it would see. */
async function withoutExif(jpeg: Buffer): Promise<Buffer> {
  return sharp(jpeg).jpeg({ quality: 95 }).toBuffer();
}

/** Mean absolute difference of two equally long byte or [0, 1] arrays, in [0, 1]. */
function meanDiff(a: ArrayLike<number>, b: ArrayLike<number>, scale = 1): number {
  expect(a.length).toBe(b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length / scale;
}

const SHAPE: [number, number, number] = [28, 28, 1];
const PRE = folderPreprocessing('fill');
/** JPEG at quality 95 against PNG, resampled: well under 2% apart; a sideways read is ~20%. */
const SAME = 0.02;
const DIFFERENT = 0.1;

let work = '';
let env: Record<string, string> = {};

beforeAll(() => {
  work = tempDir();
  env = { XDG_CACHE_HOME: path.join(work, 'cache') };
});

describe('node/image.ts', () => {
  it('reads the header at the upright size and decodes a sideways JPEG to the upright pixels', async () => {
    for (const orientation of [3, 6, 8] as const) {
      const jpeg = await sidewaysJpeg('top', 5, orientation);
      const header = await readImageHeader(jpeg, 'x.jpg');
      expect([header.width, header.height]).toEqual([W, H]);
      const upright = await prepareImage(await uprightPng('top', 5), SHAPE, PRE, 'up.png');
      const read = await prepareImage(jpeg, SHAPE, PRE, 'x.jpg');
      expect(meanDiff(read.input, upright.input), `orientation ${orientation}`).toBeLessThan(SAME);
      // The control: the same stored pixels with no EXIF tag are another picture.
      const ignored = await prepareImage(await withoutExif(jpeg), SHAPE, PRE, 'y.jpg');
      expect(meanDiff(ignored.input, upright.input)).toBeGreaterThan(DIFFERENT);
    }
  });

  it('the folder loader decodes sideways JPEGs upright, like their upright twins', async () => {
    const folder = path.join(work, 'pairs');
    for (const side of ['top', 'left'] as const) {
      mkdirSync(path.join(folder, side), { recursive: true });
      writeFileSync(path.join(folder, side, 'upright.png'), await uprightPng(side, 2));
      for (const o of [6, 8] as const)
        writeFileSync(path.join(folder, side, `sideways-${o}.jpg`), await sidewaysJpeg(side, 2, o));
    }
    const loaded = await loadImageFolder(folder, {
      imageSize: 28,
      channels: 1,
      resizeMode: 'fill',
      cacheDir: path.join(work, 'folder-cache'),
    });
    const files = loaded.train.files!;
    expect(files).toHaveLength(6);
    const row = 28 * 28;
    const pixelsOf = (rel: string) => {
      const i = files.indexOf(rel);
      expect(i, rel).toBeGreaterThanOrEqual(0);
      return loaded.train.pixels.subarray(i * row, (i + 1) * row);
    };
    for (const side of ['top', 'left']) {
      const upright = pixelsOf(`${side}/upright.png`);
      for (const o of [6, 8])
        expect(meanDiff(pixelsOf(`${side}/sideways-${o}.jpg`), upright, 255)).toBeLessThan(SAME);
    }
  });
});

describe('a model trained on upright pictures', () => {
  let run = '';
  /** Files to classify and the label each must get: the upright one (controls: the turned one). */
  const cases: { file: string; expected: Side }[] = [];

  beforeAll(async () => {
    const data = path.join(work, 'bars');
    for (const side of SIDES) {
      mkdirSync(path.join(data, side), { recursive: true });
      for (let v = 0; v < 16; v++)
        writeFileSync(path.join(data, side, `${v}.png`), await uprightPng(side, v));
    }
    run = path.join(work, 'run');
    const r = cli(
      ['train', '--data', data, '--channels', '1', '--out', run, '--epochs', '15', '--lr', '0.1', '--json'],
      env,
    );
    if (r.code !== 0) throw new Error(`train failed: ${r.stderr}`);
    expect(r.json!.test_accuracy).toBeGreaterThanOrEqual(0.9);
    const dir = path.join(work, 'photos');
    mkdirSync(dir);
    for (const side of ['top', 'left'] as const) {
      for (const o of [6, 8] as const) {
        const jpeg = await sidewaysJpeg(side, 17, o);
        const file = path.join(dir, `${side}-${o}.jpg`);
        writeFileSync(file, jpeg);
        cases.push({ file, expected: side });
        // The control: read without its tag, the picture is the one turned, another class.
        const bare = path.join(dir, `${side}-${o}-no-exif.jpg`);
        writeFileSync(bare, await withoutExif(jpeg));
        cases.push({ file: bare, expected: turned(side, STORED_TURN[o]) });
      }
    }
  });

  it('imgclf predict gives a sideways photo the upright label', () => {
    const r = cli(['predict', '--run', run, ...cases.map((c) => c.file), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const labels = (r.json!.predictions as { label: string }[]).map((p) => p.label);
    expect(labels).toEqual(cases.map((c) => c.expected));
  });

  it("the library's predictImage gives a sideways photo the upright label", async () => {
    const model = await loadRunForLibrary(run);
    for (const c of cases) expect((await predictImage(model, c.file)).labelName, c.file).toBe(c.expected);
  });

  it('predict --out draws the photo upright', async () => {
    const out = path.join(work, 'pictures');
    const r = cli(['predict', '--run', run, cases[0].file, '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const [picture] = r.json!.pictures as string[];
    // The photo is drawn 224 pixels on its long side at (16, 54) (node/report/annotate.ts):
    // upright, that place holds the upright picture enlarged; sideways, a portrait beside page.
    const [w, h] = [224, Math.floor((224 * H) / W)];
    const drawn = await sharp(picture)
      .extract({ left: 16, top: 54, width: w, height: h })
      .greyscale()
      .raw()
      .toBuffer();
    const upright = await sharp(await uprightPng(cases[0].expected, 17))
      .resize(w, h, { fit: 'fill' })
      .greyscale()
      .raw()
      .toBuffer();
    expect(meanDiff(drawn, upright, 255)).toBeLessThan(0.05);
  });

  describe('serve', () => {
    let app: FastifyInstance;
    beforeAll(async () => {
      await selectBackend('wasm');
      app = await buildServer({ run: await loadRun(run), maxUploadBytes: 1 << 20, webRoot: null });
    });
    afterAll(async () => {
      await app?.close();
    });

    it('POST /api/predict and /api/predict/batch give a sideways photo the upright label', async () => {
      for (const c of cases) {
        const r = await app.inject({
          method: 'POST',
          url: '/api/predict',
          payload: readFileSync(c.file),
          headers: { 'content-type': 'image/jpeg' },
        });
        expect(r.statusCode, r.body).toBe(200);
        expect((JSON.parse(r.body) as { label: string }).label, c.file).toBe(c.expected);
      }
      const batch = await app.inject({
        method: 'POST',
        url: '/api/predict/batch',
        ...multipartForm(
          cases.map((c) => ({
            field: 'image',
            name: path.basename(c.file),
            type: 'image/jpeg',
            bytes: readFileSync(c.file),
          })),
        ),
      });
      expect(batch.statusCode, batch.body).toBe(200);
      const predictions = (JSON.parse(batch.body) as { predictions: { label: string }[] }).predictions;
      expect(predictions.map((p) => p.label)).toEqual(cases.map((c) => c.expected));
    });
  });
});

describe('the page', () => {
  let browser: Browser | undefined;
  afterAll(async () => {
    await browser?.close();
  });

  it('decode() in Chromium reads a sideways photo upright, and previews show it upright', async () => {
    // The page's own module (web/src/pixels.ts), bundled for the browser as the page's build
    // does it (web/vite.config.ts's aliases), and put on window.
    const entry = path.join(work, 'page-pixels.ts');
    writeFileSync(
      entry,
      `import { decode, preparePixels } from ${JSON.stringify(path.join(ROOT, 'web', 'src', 'pixels.ts'))};
      Object.assign(window, { pagePixels: { decode, preparePixels } });`,
    );
    const output = await build({
      configFile: path.join(ROOT, 'web', 'vite.config.ts'),
      logLevel: 'silent',
      build: {
        write: false,
        minify: false,
        lib: { entry, formats: ['iife'], name: 'pagePixels', fileName: 'page-pixels' },
      },
    });
    const [bundle] = (Array.isArray(output) ? output : [output]) as { output: { code?: string }[] }[];
    const code = bundle.output[0].code!;
    browser = await launchChromium();
    const page = await browser.newPage();
    await page.setContent('<!doctype html><html><body></body></html>');
    await page.addScriptTag({ content: code });
    const pictures = {
      upright: await uprightPng('top', 9),
      sideways6: await sidewaysJpeg('top', 9, 6),
      sideways8: await sidewaysJpeg('top', 9, 8),
    };
    const { out: seen, asked } = await page.evaluate(
      async ({ files, shape, pre }) => {
        type Pixels = {
          decode(blob: Blob): Promise<ImageBitmap>;
          preparePixels(p: ImageBitmap, s: unknown, pre: unknown): { pixels: Uint8Array };
        };
        const { decode, preparePixels } = (window as unknown as { pagePixels: Pixels }).pagePixels;
        // What decode() asks the browser for: this Chromium turns the picture whatever the option
        // (the spec now reads 'none' as 'from-image'), browsers before that change did not.
        const asked: unknown[] = [];
        const native = window.createImageBitmap.bind(window) as (...a: unknown[]) => Promise<ImageBitmap>;
        Object.assign(window, {
          createImageBitmap: (...a: unknown[]) => {
            asked.push((a[1] as ImageBitmapOptions | undefined)?.imageOrientation);
            return native(...a);
          },
        });
        const out: Record<string, { size: number[]; preview: number[]; pixels: number[] }> = {};
        for (const [name, base64] of Object.entries(files)) {
          const type = name === 'upright' ? 'image/png' : 'image/jpeg';
          const blob = await (await fetch(`data:${type};base64,${base64}`)).blob();
          const bitmap = await decode(blob);
          const img = document.createElement('img');
          img.src = URL.createObjectURL(blob);
          document.body.append(img);
          await img.decode();
          out[name] = {
            size: [bitmap.width, bitmap.height],
            preview: [img.width, img.height],
            pixels: Array.from(preparePixels(bitmap, shape, pre).pixels),
          };
          bitmap.close();
        }
        return { out, asked };
      },
      {
        files: Object.fromEntries(Object.entries(pictures).map(([k, v]) => [k, v.toString('base64')])),
        shape: SHAPE,
        pre: PRE,
      },
    );
    expect(asked).toEqual(['from-image', 'from-image', 'from-image']);
    for (const name of ['sideways6', 'sideways8']) {
      expect(seen[name].size, name).toEqual([W, H]);
      expect(seen[name].preview, name).toEqual([W, H]);
      expect(meanDiff(seen[name].pixels, seen.upright.pixels, 255), name).toBeLessThan(SAME);
    }
    // And the page agrees with Node on what the model sees.
    const node = await prepareImage(pictures.sideways6, SHAPE, PRE, 'x.jpg');
    expect(
      meanDiff(
        seen.sideways6.pixels,
        node.input.map((v) => v * 255),
        255,
      ),
    ).toBeLessThan(SAME);
  }, 120_000);
});
