/** Run reports: the pictures `train` writes, `report` regenerating them, predict --out, report.html in Chromium. */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { FASHION_MNIST_CLASSES } from '../src/core/data/classes.js';
import { confusionSpec } from '../src/node/report/charts.js';
import { gridLayout } from '../src/node/report/grid.js';
import { FONT_FAMILY, renderVegaLite } from '../src/node/report/render.js';
import { CHART_SCALE, MISTAKE_COUNT, PREDICTION_COUNT, REPORT_FILES } from '../src/node/report/report.js';
import { strings } from '../src/node/report/text.js';
import { CHROMIUM, cli, expectCleanError, launchChromium, tempDir } from './helpers.js';

const DEBIAN = '/usr/share/datasets/fashion-mnist';
const SHAPE: [number, number, number] = [28, 28, 1];
let work = '';
let run = '';
let zh = '';
let testImages: Buffer;

beforeAll(() => {
  work = tempDir('imgclf-report-');
  run = path.join(work, 'run');
  const r = cli(['train', '--epochs', '1', '--out', run, '--json']);
  if (r.code !== 0) throw new Error(`train failed: ${r.stderr}`);
  zh = path.join(work, 'zh');
  const z = cli(['train', '--epochs', '1', '--out', zh, '--lang', 'zh', '--seed', '1']);
  if (z.code !== 0) throw new Error(`train --lang zh failed: ${z.stderr}`);
  testImages = gunzipSync(readFileSync(path.join(DEBIAN, 't10k-images-idx3-ubyte.gz'))).subarray(16);
});

async function size(file: string): Promise<[number, number]> {
  const m = await sharp(file).metadata();
  return [m.width!, m.height!];
}

function svgSize(file: string): [number, number] {
  const m = /<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(readFileSync(file, 'utf8'))!;
  return [Number(m[1]), Number(m[2])];
}

describe('imgclf train writes a report', () => {
  it('writes every picture and report.html into the run directory', () => {
    for (const f of REPORT_FILES) expect(existsSync(path.join(run, f)), f).toBe(true);
  });

  it('each picture decodes, with the expected dimensions', async () => {
    const [sw, sh] = svgSize(path.join(run, 'curves.svg'));
    expect(sw).toBeGreaterThan(400);
    expect(await size(path.join(run, 'curves.png'))).toEqual([
      Math.round(sw * CHART_SCALE),
      Math.round(sh * CHART_SCALE),
    ]);

    // The confusion heatmap of the run's own evaluation, rendered again here from `evaluate --json`.
    const ev = cli(['evaluate', '--model', run, '--json']);
    expect(ev.code).toBe(0);
    const chart = await renderVegaLite(
      confusionSpec(ev.json!.confusion as number[][], FASHION_MNIST_CLASSES, strings('en'), FONT_FAMILY),
    );
    expect(await size(path.join(run, 'confusion.png'))).toEqual([
      Math.round(chart.width * CHART_SCALE),
      Math.round(chart.height * CHART_SCALE),
    ]);

    const title = { shape: SHAPE, title: 'x' };
    const pred = gridLayout(PREDICTION_COUNT, 2, title);
    expect(await size(path.join(run, 'predictions.png'))).toEqual([pred.width, pred.height]);
    const mistakes = gridLayout(MISTAKE_COUNT, 2, title);
    expect(await size(path.join(run, 'mistakes.png'))).toEqual([mistakes.width, mistakes.height]);
    // Legible at 100%: 28x28 images are drawn four times larger.
    expect(pred.scale).toBe(4);
  });

  it('draws each test image into the grid pixel for pixel, at its tile and scale', async () => {
    const layout = gridLayout(PREDICTION_COUNT, 2, { shape: SHAPE, title: 'x' });
    const { data, info } = await sharp(path.join(run, 'predictions.png'))
      .raw()
      .toBuffer({ resolveWithObject: true });
    expect(info.width).toBe(layout.width);
    for (const i of [0, 1, 13, PREDICTION_COUNT - 1]) {
      const src = testImages.subarray(i * 784, (i + 1) * 784);
      const { x, y } = layout.tiles[i];
      let mismatches = 0;
      for (let py = 0; py < 28 * layout.scale; py++) {
        for (let px = 0; px < 28 * layout.scale; px++) {
          const want = src[Math.floor(py / layout.scale) * 28 + Math.floor(px / layout.scale)];
          const at = ((y + py) * info.width + (x + px)) * info.channels;
          for (let c = 0; c < Math.min(3, info.channels); c++) if (data[at + c] !== want) mismatches++;
        }
      }
      expect(mismatches, `test image ${i}`).toBe(0);
    }
  });
});

describe('imgclf report', () => {
  it('regenerates every file from the run directory', () => {
    for (const f of REPORT_FILES) rmSync(path.join(run, f));
    const r = cli(['report', '--model', run, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const meta = JSON.parse(readFileSync(path.join(run, 'metadata.json'), 'utf8'));
    // Same model, same test set: the report's evaluation matches the training run's.
    expect(r.json!.test_accuracy).toBeCloseTo(meta.testAccuracy, 6);
    for (const f of REPORT_FILES) expect(statSync(path.join(run, f)).size, f).toBeGreaterThan(1000);
  });

  it('labels everything in Chinese with --lang zh', () => {
    const html = readFileSync(path.join(zh, 'report.html'), 'utf8');
    expect(html).toContain('lang="zh-CN"');
    for (const word of ['混淆矩阵', '训练曲线', '各类别指标', '短靴']) expect(html).toContain(word);
    expect(readFileSync(path.join(zh, 'curves.svg'), 'utf8')).toContain('测试准确度');
  });

  it('fails with one line on a missing run directory', () => {
    expectCleanError(cli(['report', '--model', path.join(work, 'nope')]), /run directory .* does not exist/);
  });
});

describe('report.html', () => {
  it.skipIf(!existsSync(CHROMIUM))(
    'opens in headless Chromium with no errors and shows every section',
    async () => {
      const browser = await launchChromium();
      try {
        for (const [dir, heading] of [
          [run, 'Confusion matrix'],
          [zh, '混淆矩阵'],
        ]) {
          const page = await browser.newPage();
          const problems: string[] = [];
          const requests: string[] = [];
          page.on('console', (m) => {
            if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text());
          });
          page.on('pageerror', (e) => problems.push(e.message));
          page.on('request', (r) => requests.push(r.url()));
          const url = pathToFileURL(path.join(dir, 'report.html')).href;
          await page.goto(url, { waitUntil: 'load' });
          expect(problems).toEqual([]);
          // Nothing but the page itself and its inline pictures.
          expect(requests.filter((u) => u !== url && !u.startsWith('data:'))).toEqual([]);
          for (const id of [
            'summary',
            'curves',
            'confusion',
            'per-class',
            'predictions',
            'mistakes',
            'timings',
            'config',
          ]) {
            expect(await page.locator(`section#${id}`).isVisible(), id).toBe(true);
            expect(await page.locator(`section#${id} h2`).innerText()).not.toBe('');
          }
          expect(await page.locator('section#confusion h2').innerText()).toBe(heading);
          const images = await page.$$eval('img', (els) =>
            els.map((e) => ({
              w: (e as HTMLImageElement).naturalWidth,
              ok: (e as HTMLImageElement).complete,
            })),
          );
          expect(images).toHaveLength(4);
          for (const im of images) expect(im.ok && im.w > 100).toBe(true);
          expect(await page.locator('section#per-class tbody tr').count()).toBe(10);
          // Set IMGCLF_SCREENSHOT_DIR to keep full-page screenshots for a look by eye.
          const shots = process.env.IMGCLF_SCREENSHOT_DIR;
          if (shots)
            await page.screenshot({ path: path.join(shots, `${path.basename(dir)}.png`), fullPage: true });
          await page.close();
        }
      } finally {
        await browser.close();
      }
    },
  );
});

describe('imgclf predict --out', () => {
  it('writes one annotated picture per input file, and a grid for test images', async () => {
    const boot = path.join(work, 'boot.png');
    await sharp(testImages.subarray(0, 784), { raw: { width: 28, height: 28, channels: 1 } })
      .resize(120, 80, { fit: 'fill' })
      .png()
      .toFile(boot);
    const copy = path.join(work, 'copy');
    rmSync(copy, { recursive: true, force: true });
    mkdirSync(copy);
    writeFileSync(path.join(copy, 'boot.png'), readFileSync(boot));
    const out = path.join(work, 'pictures');
    const r = cli(['predict', '--model', run, boot, path.join(copy, 'boot.png'), '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json!.pictures).toEqual([path.join(out, 'boot.png'), path.join(out, 'boot-2.png')]);
    for (const f of r.json!.pictures as string[]) {
      const [w, h] = await size(f);
      expect(w).toBeGreaterThan(500);
      expect(h).toBeGreaterThan(250);
    }
    const grid = cli(['predict', '--model', run, '-n', '5', '--out', out, '--json']);
    expect(grid.code, grid.stderr).toBe(0);
    const layout = gridLayout(5, 2, { shape: SHAPE, title: 'x' });
    expect(await size(path.join(out, 'predictions.png'))).toEqual([layout.width, layout.height]);
    expectCleanError(
      cli(['predict', '--model', run, boot, '--out', boot]),
      /--out .*boot\.png is a file, not a folder/,
    );
  });
});
