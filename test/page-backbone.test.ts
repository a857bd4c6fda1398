/**
 * A backbone in the page, end to end in headless Chromium (Debian's) with a fake webcam: a tiny
 * ONNX backbone in the Hugging Face layout (onnx/model.onnx, config.json,
 * preprocessor_config.json; test/fixtures/onnx-backbone.ts) served from 127.0.0.1 by a static
 * server with CORS, chosen in the page by URL and run by onnxruntime-web; webcam frames of two
 * scenes captured for two classes; a softmax head trained on the features; the run downloaded
 * as a zip that `imgclf predict` and `imgclf serve --run` accept (the backbone fetched from the
 * recorded URL); the zip opened in the page again. Then the one-line errors (unreachable URL,
 * not a model, wrong input size, output not a feature vector), a backbone opened from files
 * (whose run imgclf refuses in one line), and TensorFlow.js layers and graph backbones by URL.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { unzipSync } from 'fflate';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeShapesFolder } from '../src/node/data/shapes.js';
import { writeGraphModel } from './fixtures/graph-model.js';
import { PREPROCESSOR, tinyGraph, tokensGraph, writeHfRepo } from './fixtures/onnx-backbone.js';
import {
  buildPageIfStale,
  launchWithCamera,
  startServer,
  startStaticServer,
  type StaticServer,
  stopServer,
  watchConsole,
  writeY4m,
} from './fixtures/page.js';
import { BIN, CHROMIUM, cli, screenshotPath, tempDir } from './helpers.js';

/** The two scenes the fake webcam shows in turn, 3 s each: an orange field and a blue one. */
const ORANGE: [number, number, number] = [235, 130, 30];
const BLUE: [number, number, number] = [30, 90, 220];
const SCENE_FRAMES = 30;
const SIDE = 64;
/** As page-own-classes.test.ts: wasm trains fastest in headless Chromium without a GPU. */
const BACKEND = 'wasm';

let server: ChildProcess | undefined;
let host: StaticServer;
let browser: Browser | undefined;
let page: Page;
let url = '';
let work = '';
let cache = '';
let graph: Uint8Array;
const consoleErrors: string[] = [];
const stills: { file: string; truth: string }[] = [];
/** What the page said for each still. */
const pageSaid = new Map<string, string>();
/** The held-out accuracy the page showed. */
let heldOut = 0;

/** A still of a scene, as a PNG file. */
async function still(file: string, [r, g, b]: [number, number, number], at: number): Promise<void> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${SIDE}" height="${SIDE}"><rect width="100%" height="100%" fill="rgb(${r},${g},${b})"/><rect x="${at}" y="${at}" width="16" height="16" fill="rgb(60,40,20)"/></svg>`;
  await sharp(Buffer.from(svg)).png().toFile(file);
}

/** A port nothing listens on: one the OS gave and took back. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

const card = (i: number) => page.locator('.own-class').nth(i);

/** Which scene the camera shows now: a corner the moving square never covers, read from the video. */
function sceneNow(): Promise<'orange' | 'blue'> {
  return page.evaluate(() => {
    const video = document.getElementById('camera-video') as HTMLVideoElement;
    const c = document.createElement('canvas');
    c.width = video.videoWidth;
    c.height = video.videoHeight;
    const ctx = c.getContext('2d')!;
    ctx.drawImage(video, 0, 0);
    const [r, , b] = ctx.getImageData(Math.floor(c.width * 0.94), Math.floor(c.height * 0.03), 1, 1).data;
    return r > b ? 'orange' : 'blue';
  });
}

/** Holds class `i`'s capture button for `ms` from the start of `scene` (its 3 s). */
async function captureScene(i: number, scene: 'orange' | 'blue', ms: number): Promise<number> {
  await expect.poll(sceneNow, { timeout: 10_000, interval: 50 }).not.toBe(scene);
  await expect.poll(sceneNow, { timeout: 10_000, interval: 50 }).toBe(scene);
  const capture = card(i).locator('.own-class-capture');
  await capture.hover();
  await page.mouse.down();
  await page.waitForTimeout(ms);
  await page.mouse.up();
  await page.waitForTimeout(300);
  return card(i).locator('.own-thumb').count();
}

/** Chooses a backbone by URL and waits for the page's verdict: ready or failed, and the line shown. */
async function chooseUrl(address: string): Promise<{ state: string; text: string }> {
  await page.selectOption('#own-backbone-kind', 'url');
  await page.fill('#own-backbone-url', address);
  await page.evaluate(() => delete document.getElementById('own-backbone-status')!.dataset.state);
  await page.click('#own-backbone-load');
  await page.waitForSelector('#own-backbone-status[data-state]', { timeout: 60_000 });
  return {
    state: (await page.getAttribute('#own-backbone-status', 'data-state'))!,
    text: (await page.textContent('#own-backbone-status'))!,
  };
}

/** Trains with the model chosen; returns the held-out accuracy shown. */
async function train(): Promise<number> {
  await page.evaluate(() => delete document.getElementById('own-status')!.dataset.state);
  await page.click('#own-train');
  await page.waitForSelector('#own-status[data-state]', { timeout: 240_000 });
  const said = (await page.textContent('#own-status')) ?? '';
  expect(await page.getAttribute('#own-status', 'data-state'), said).toBe('done');
  return Number(await page.getAttribute('#own-heldout-acc', 'data-value'));
}

/** Classifies `file` with the page's own model; returns the top label. */
async function tryFile(file: string): Promise<string> {
  const before = Number((await page.getAttribute('#own-top3', 'data-count')) ?? 0);
  await page.setInputFiles('#own-try-file', file);
  await page.waitForFunction(
    ([name, n]) => {
      const el = document.getElementById('own-top3')!;
      return el.dataset.picture === name && Number(el.dataset.count) > n;
    },
    [path.basename(file), before] as const,
  );
  return (await page.getAttribute('#own-top3 li:first-child', 'data-label'))!;
}

/** Downloads the page's own model as a zip and unzips it into `into`; returns the run directory. */
async function downloadRun(into: string): Promise<{ dir: string; zip: string }> {
  await page.evaluate(() => delete document.getElementById('own-keep-status')!.dataset.state);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#own-download')]);
  const zip = path.join(work, download.suggestedFilename());
  await download.saveAs(zip);
  await page.waitForSelector('#own-keep-status[data-state=downloaded]');
  for (const [name, bytes] of Object.entries(unzipSync(new Uint8Array(readFileSync(zip))))) {
    if (name.endsWith('/')) continue;
    mkdirSync(path.dirname(path.join(into, name)), { recursive: true });
    writeFileSync(path.join(into, name), bytes);
  }
  return { dir: path.join(into, download.suggestedFilename().replace(/\.zip$/, '')), zip };
}

describe.skipIf(!existsSync(CHROMIUM))('a backbone in the page', () => {
  beforeAll(async () => {
    buildPageIfStale();
    work = tempDir('imgclf-page-backbone-');
    cache = path.join(work, 'cache');
    // The backbones the static server offers.
    const models = path.join(work, 'models');
    graph = writeHfRepo(path.join(models, 'tiny'));
    writeFileSync(path.join(models, 'not-a-model.onnx'), 'this is not an ONNX graph');
    // The NHWC graph takes 16x16 images; its preprocessor_config.json asks for 20x20.
    mkdirSync(path.join(models, 'wrong-size', 'onnx'), { recursive: true });
    writeFileSync(path.join(models, 'wrong-size', 'onnx', 'model.onnx'), tinyGraph('NHWC'));
    writeFileSync(path.join(models, 'wrong-size', 'config.json'), '{}');
    writeFileSync(
      path.join(models, 'wrong-size', 'preprocessor_config.json'),
      JSON.stringify({ ...PREPROCESSOR, size: { height: 20, width: 20 }, do_center_crop: false }),
    );
    writeFileSync(path.join(models, 'tokens.onnx'), tokensGraph());
    host = await startStaticServer(models);

    // The server needs a run: a quick one on a small generated folder.
    const serverData = path.join(work, 'server-data');
    await writeShapesFolder(serverData, { perClass: 8, seed: 5, classes: ['circle', 'square'] });
    const serverRun = path.join(work, 'server-run');
    const trained = cli(['train', '--data', serverData, '--epochs', '1', '--out', serverRun]);
    if (trained.code !== 0) throw new Error(`train failed: ${trained.stderr}`);
    ({ url, child: server } = await startServer(serverRun));

    for (const [i, at] of [4, 24, 44].entries()) {
      for (const [name, rgb] of [
        ['orange', ORANGE],
        ['blue', BLUE],
      ] as const) {
        const file = path.join(work, `${name}-${i}.png`);
        await still(file, rgb, at);
        stills.push({ file, truth: name });
      }
    }
    const video = path.join(work, 'camera.y4m');
    writeY4m(
      video,
      [
        { rgb: ORANGE, frames: SCENE_FRAMES },
        { rgb: BLUE, frames: SCENE_FRAMES },
      ],
      SIDE,
    );
    browser = await launchWithCamera(video);
    const context = await browser.newContext({
      viewport: { width: 1200, height: 1400 },
      acceptDownloads: true,
    });
    page = await context.newPage();
    watchConsole(page, consoleErrors);
    await page.goto(`${url}/?lang=en&backend=${BACKEND}`);
    await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
  });

  afterAll(async () => {
    await browser?.close();
    stopServer(server);
    await host?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('keeps onnxruntime-web out of the first load', async () => {
    const scripts = await page.evaluate(() =>
      performance.getEntriesByType('resource').map((e) => e.name.split('/').pop()!),
    );
    expect(scripts.some((s) => /^ort/.test(s))).toBe(false);
  });

  it('says in one line what is wrong with a backbone it cannot use', async () => {
    const cases: [string, RegExp][] = [
      [
        `http://127.0.0.1:${await closedPort()}/model.onnx`,
        /cannot reach http:\/\/127\.0\.0\.1:\d+ for backbone/,
      ],
      [`${host.url}/not-a-model.onnx`, /is not an ONNX model ONNX Runtime Web can load/],
      [`${host.url}/missing/model.onnx`, /has no model\.onnx, its ONNX graph \(.*HTTP 404\)/],
      [`${host.url}/wrong-size/`, /takes 16x16 images but its preprocessor_config\.json asks for 20x20/],
      [`${host.url}/tokens.onnx`, /output 'tokens' has shape \[1, 16, \d+\], not a feature vector/],
    ];
    for (const [address, pattern] of cases) {
      const { state, text } = await chooseUrl(address);
      expect(state, text).toBe('failed');
      expect(text).toMatch(/^Backbone not loaded: /);
      expect(text).toMatch(pattern);
      expect(text).not.toContain('\n');
    }
    // Training without a loaded backbone says so.
    await page.click('#own-train');
    expect(await page.textContent('#own-error')).toMatch(/Class 1 needs a name/);
  });

  it('chooses an ONNX backbone by URL: its input, features and engine are shown, and the heads are offered', async () => {
    const { state, text } = await chooseUrl(`${host.url}/tiny/`);
    expect(state, text).toBe('ready');
    expect(text).toMatch(
      /^Backbone http:\/\/127\.0\.0\.1:\d+\/tiny\/: onnx \(huggingface\), input 16x16x3, 64 features, on ONNX Runtime Web \(wasm\)/,
    );
    const models = await page.$$eval('#own-model option', (os) =>
      os.map((o) => (o as HTMLOptionElement).value),
    );
    expect(models).toEqual(['softmax', 'mlp', 'knn']);
    expect(await page.isDisabled('#own-size')).toBe(true);
    // The wasm file came from the page's own server.
    const wasm = await page.evaluate(() =>
      performance
        .getEntriesByType('resource')
        .map((e) => e.name)
        .filter((n) => n.endsWith('.wasm') && n.includes('ort-wasm')),
    );
    expect(wasm.length).toBeGreaterThan(0);
    for (const w of wasm) expect(w.startsWith(url)).toBe(true);
  });

  it('captures webcam frames for two classes and trains a head on their features', async () => {
    for (const [i, name] of ['orange', 'blue'].entries()) await card(i).locator('.own-class-name').fill(name);
    await page.click('#camera-toggle');
    await page.waitForSelector('body[data-camera=on]');
    await page.waitForFunction(
      () => (document.getElementById('camera-video') as HTMLVideoElement).videoWidth > 0,
    );
    const orange = await captureScene(0, 'orange', 1500);
    const blue = await captureScene(1, 'blue', 1500);
    console.log(`webcam: ${orange} orange and ${blue} blue frames`);
    expect(orange).toBeGreaterThanOrEqual(6);
    expect(blue).toBeGreaterThanOrEqual(6);
    await page.click('#camera-toggle');
    await page.waitForSelector('body[data-camera=off]');

    expect(await page.inputValue('#own-model')).toBe('softmax');
    const acc = await train();
    const plan = (await page.textContent('#own-plan'))!;
    const status = (await page.textContent('#own-status'))!;
    console.log(`page training on backbone features: ${plan}\n  ${status}`);
    expect(plan).toMatch(/A softmax head on 64 backbone features/);
    expect(status).toMatch(/^Done: \d+ epoch/);
    expect(await page.textContent('#own-heldout-acc')).toBe(acc.toFixed(3));
    expect(acc).toBeGreaterThanOrEqual(0.9);
    heldOut = acc;
  });

  it('classifies stills through the backbone and the head', async () => {
    let right = 0;
    for (const { file, truth } of stills) {
      const label = await tryFile(file);
      pageSaid.set(file, label);
      if (label === truth) right++;
    }
    expect(right).toBe(stills.length);
    await page.locator('#own').screenshot({ path: screenshotPath('own-backbone.png') });
    // What the model sees: the backbone's input size.
    expect(await page.getAttribute('#own-seen', 'width')).toBe('16');
  });

  it('downloads a run recording the backbone as imgclf train does; imgclf predict and serve accept it', async () => {
    await page.fill('#own-save-name', 'scenes');
    const { dir } = await downloadRun(path.join(work, 'unzipped'));
    const meta = JSON.parse(readFileSync(path.join(dir, 'metadata.json'), 'utf8'));
    expect(meta).toMatchObject({
      format: 'imgclf-run/1',
      model: 'softmax',
      classNames: ['blue', 'orange'],
      inputShape: [16, 16, 3],
      preprocessing: { scale: 255, invertLightBackground: false, resize: 'fill' },
      data: { kind: 'folder', path: 'data', imageSize: 16, channels: 3, resizeMode: 'fill' },
      config: { model: 'softmax', head: 'softmax', backbone: `${host.url}/tiny/`, dataKind: 'folder' },
      backbone: {
        source: `${host.url}/tiny/`,
        url: `${host.url}/tiny/`,
        format: 'onnx',
        family: 'huggingface',
        sha256: createHash('sha256').update(graph).digest('hex'),
        inputShape: [16, 16, 3],
        range: '0,1',
        layer: 'pooler_output',
        features: 64,
        layout: 'NCHW',
        input: 'pixel_values',
        preprocessing: {
          from: 'preprocessor_config.json',
          resize: 'shortest_edge 18',
          crop: 16,
          rescale: 1 / 255,
          mean: [0.5, 0.5, 0.5],
          std: [0.5, 0.5, 0.5],
        },
      },
    });
    expect(existsSync(path.join(dir, 'manifest.json'))).toBe(true);

    // imgclf predict fetches the backbone from the recorded URL (into an empty cache).
    const files = stills.map((s) => s.file);
    const predicted = cli(['predict', '--run', dir, '--json', ...files], { XDG_CACHE_HOME: cache });
    expect(predicted.code, predicted.stderr).toBe(0);
    const labels = (predicted.json!.predictions as { label: string }[]).map((p) => p.label);
    expect(labels).toEqual(files.map((f) => pageSaid.get(f)));

    // imgclf evaluate reads the held-out pictures from DIR/data (at the backbone's input size).
    const evaluated = spawnSync(process.execPath, [BIN, 'evaluate', '--run', '.', '--json'], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, XDG_CACHE_HOME: cache },
    });
    expect(evaluated.status, evaluated.stderr).toBe(0);
    const evaluation = JSON.parse(evaluated.stdout.trim().split('\n').at(-1)!) as { test_accuracy: number };
    expect(evaluation.test_accuracy).toBe(heldOut);

    const served = await startServer(dir, dir, { XDG_CACHE_HOME: cache });
    try {
      const res = await fetch(`${served.url}/api/predict`, {
        method: 'POST',
        body: readFileSync(files[0]),
        headers: { 'content-type': 'application/octet-stream' },
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { label: string }).label).toBe(pageSaid.get(files[0]));
    } finally {
      stopServer(served.child);
    }
  });

  it('is kept in the browser and opened again from the zip, the backbone fetched from its URL and checked', async () => {
    await page.click('#own-save');
    await page.waitForSelector('#own-keep-status[data-state=saved]');
    await page.reload();
    await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
    await page.locator('#own-saved li .own-saved-load').click();
    await page.waitForSelector('#own-keep-status[data-state]', { timeout: 60_000 });
    expect(await page.getAttribute('#own-keep-status', 'data-state')).toBe('loaded');
    for (const { file } of stills) expect(await tryFile(file)).toBe(pageSaid.get(file));

    await page.reload();
    await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
    await page.setInputFiles('#own-upload', path.join(work, 'imgclf-scenes.zip'));
    await page.waitForSelector('#own-keep-status[data-state]', { timeout: 60_000 });
    const said = (await page.textContent('#own-keep-status')) ?? '';
    expect(await page.getAttribute('#own-keep-status', 'data-state'), said).toBe('opened');
    for (const { file } of stills) expect(await tryFile(file)).toBe(pageSaid.get(file));
  });

  it('takes a backbone opened from files; its run tells imgclf in one line that it cannot be fetched', async () => {
    const tiny = path.join(work, 'models', 'tiny');
    await page.selectOption('#own-backbone-kind', 'files');
    await page.evaluate(() => delete document.getElementById('own-backbone-status')!.dataset.state);
    await page.setInputFiles('#own-backbone-files', [
      path.join(tiny, 'onnx', 'model.onnx'),
      path.join(tiny, 'preprocessor_config.json'),
      path.join(tiny, 'config.json'),
    ]);
    await page.waitForSelector('#own-backbone-status[data-state]', { timeout: 60_000 });
    expect(await page.getAttribute('#own-backbone-status', 'data-state')).toBe('ready');
    expect(await page.textContent('#own-backbone-status')).toMatch(
      /^Backbone page-file:model\.onnx: onnx \(huggingface\), input 16x16x3, 64 features/,
    );
    // The classes again, from files this time.
    for (const [i, { truth }] of stills.slice(0, 2).entries())
      await card(i).locator('.own-class-name').fill(truth);
    for (const [i, name] of ['orange', 'blue'].entries())
      await card(i)
        .locator('.own-class-files')
        .setInputFiles(stills.filter((s) => s.truth === name).map((s) => s.file));
    expect(await train()).toBeGreaterThanOrEqual(0.5);
    await page.fill('#own-save-name', 'from files');
    const { dir } = await downloadRun(path.join(work, 'unzipped-files'));
    const meta = JSON.parse(readFileSync(path.join(dir, 'metadata.json'), 'utf8'));
    expect(meta.backbone).toMatchObject({
      source: 'page-file:model.onnx',
      sha256: createHash('sha256').update(graph).digest('hex'),
    });
    expect(meta.backbone.url).toBeUndefined();
    const r = cli(['predict', '--run', dir, stills[0].file], { XDG_CACHE_HOME: cache });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/the run's backbone model\.onnx was opened from files in the page/);

    // The page opens such a run with the same backbone opened under Backbone, and says what to
    // do without it.
    await page.evaluate(() => delete document.getElementById('own-keep-status')!.dataset.state);
    await page.setInputFiles('#own-upload', path.join(work, 'imgclf-from-files.zip'));
    await page.waitForSelector('#own-keep-status[data-state]', { timeout: 60_000 });
    expect(await page.getAttribute('#own-keep-status', 'data-state')).toBe('opened');
    await page.selectOption('#own-backbone-kind', 'none');
    await page.evaluate(() => delete document.getElementById('own-keep-status')!.dataset.state);
    await page.setInputFiles('#own-upload', path.join(work, 'imgclf-from-files.zip'));
    await page.waitForSelector('#own-keep-status[data-state]', { timeout: 60_000 });
    expect(await page.getAttribute('#own-keep-status', 'data-state')).toBe('failed');
    expect(await page.textContent('#own-keep-status')).toMatch(
      /^Failed: the run's backbone model\.onnx was opened from files, which the page cannot fetch \(sha256 [0-9a-f]{12}\); open the same files under Backbone first, then load the run again$/,
    );
  });

  it('takes a TensorFlow.js layers backbone by URL, and imgclf predict accepts its run', async () => {
    // A small layers model: a convolution, pooled, then a Dense classifier the features come before.
    const tfjsDir = path.join(work, 'models', 'tfjs');
    mkdirSync(tfjsDir, { recursive: true });
    await tf.setBackend('cpu');
    const m = tfl.sequential({
      layers: [
        tfl.layers.conv2d({
          inputShape: [16, 16, 3],
          filters: 8,
          kernelSize: 3,
          activation: 'relu',
          kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }),
        }),
        tfl.layers.globalAveragePooling2d({ name: 'features' }),
        tfl.layers.dense({ units: 3, activation: 'softmax' }),
      ],
    });
    await m.save(
      tf.io.withSaveHandler(async (a) => {
        const { weightData, ...json } = a;
        writeFileSync(
          path.join(tfjsDir, 'model.json'),
          JSON.stringify({
            format: 'layers-model',
            modelTopology: json.modelTopology,
            weightsManifest: [{ paths: ['weights.bin'], weights: json.weightSpecs }],
          }),
        );
        const weights = Array.isArray(weightData)
          ? tf.io.concatenateArrayBuffers(weightData)
          : (weightData as ArrayBuffer);
        writeFileSync(path.join(tfjsDir, 'weights.bin'), new Uint8Array(weights));
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    m.dispose();
    const { state, text } = await chooseUrl(`${host.url}/tfjs/model.json`);
    expect(state, text).toBe('ready');
    expect(text).toMatch(/: layers-model \(layers\), input 16x16x3, 8 features, on TensorFlow\.js/);
    // The knn head this time: it memorizes the features in one pass.
    await page.selectOption('#own-model', 'knn');
    expect(await train()).toBeGreaterThanOrEqual(0.5);
    expect(await page.textContent('#own-plan')).toMatch(/A knn head on 8 backbone features.* 1 epochs/);
    await page.fill('#own-save-name', 'tfjs');
    const { dir } = await downloadRun(path.join(work, 'unzipped-tfjs'));
    const meta = JSON.parse(readFileSync(path.join(dir, 'metadata.json'), 'utf8'));
    const sha = createHash('sha256')
      .update(readFileSync(path.join(tfjsDir, 'model.json')))
      .update(readFileSync(path.join(tfjsDir, 'weights.bin')))
      .digest('hex');
    expect(meta.model).toBe('knn');
    expect(meta.backbone).toMatchObject({
      source: `${host.url}/tfjs/model.json`,
      format: 'layers-model',
      family: 'layers',
      sha256: sha,
      inputShape: [16, 16, 3],
      range: '0,1',
      layer: 'features',
      features: 8,
    });
    const files = stills.map((s) => s.file);
    const labels: string[] = [];
    for (const f of files) labels.push(await tryFile(f));
    const r = cli(['predict', '--run', dir, '--json', ...files], { XDG_CACHE_HOME: cache });
    expect(r.code, r.stderr).toBe(0);
    expect((r.json!.predictions as { label: string }[]).map((p) => p.label)).toEqual(labels);
  });

  it('takes a TensorFlow.js graph model by URL: gray, its size free (224, as imgclf takes it)', async () => {
    writeGraphModel(path.join(work, 'models', 'graph'));
    const { state, text } = await chooseUrl(`${host.url}/graph/model.json`);
    expect(state, text).toBe('ready');
    expect(text).toMatch(/: graph-model \(graph\), input 224x224x1, 4 features, on TensorFlow\.js/);
    await page.selectOption('#own-model', 'mlp');
    expect(await train()).toBeGreaterThanOrEqual(0.5);
    await page.fill('#own-save-name', 'graph');
    const { dir } = await downloadRun(path.join(work, 'unzipped-graph'));
    const meta = JSON.parse(readFileSync(path.join(dir, 'metadata.json'), 'utf8'));
    expect(meta).toMatchObject({ model: 'mlp', inputShape: [224, 224, 1] });
    expect(meta.backbone).toMatchObject({
      source: `${host.url}/graph/model.json`,
      format: 'graph-model',
      family: 'graph',
      inputShape: [224, 224, 1],
      range: '0,1',
      layer: 'features',
      features: 4,
    });
    const files = stills.map((s) => s.file);
    const labels: string[] = [];
    for (const f of files) labels.push(await tryFile(f));
    const r = cli(['predict', '--run', dir, '--json', ...files], { XDG_CACHE_HOME: cache });
    expect(r.code, r.stderr).toBe(0);
    expect((r.json!.predictions as { label: string }[]).map((p) => p.label)).toEqual(labels);
  });

  it('works in Chinese too', async () => {
    await page.click('#lang-toggle');
    expect(await page.textContent('#own-backbone-status')).toMatch(/^骨干网络 /);
    expect(await page.textContent('#own-backbone-kind option[value=none]')).toBe('无：从头训练');
    await page.click('#lang-toggle');
  });

  it('leaves no errors in the console', () => {
    // Chromium logs every failed request ("Failed to load resource"): the unreachable and
    // missing backbones above, and the optional config files a bare .onnx URL has none of.
    expect(consoleErrors.filter((e) => !/^Failed to load resource/.test(e))).toEqual([]);
  });
});
