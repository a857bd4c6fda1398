/**
 * The web app end to end: `imgclf serve` as a user starts it, driven in headless Chromium
 * (Debian's). Its last view of the page is the docs' docs/screenshots/app.png (`npm run screenshots`).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { list } from '../src/core/models/index.js';
import { BIN, CHROMIUM, cli, launchChromium, ROOT, screenshotPath, tempDir } from './helpers.js';

let server: ChildProcess | undefined;
let browser: Browser | undefined;
let page: Page;
let url = '';

/** Starts `imgclf serve --port 0` and resolves with the address it prints. */
function startServer(runDir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server = spawn(process.execPath, [BIN, 'serve', '--model', runDir, '--port', '0', '--json'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    server.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve((JSON.parse(line) as { url: string }).url);
    });
    server.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    server.on('exit', (code) => reject(new Error(`imgclf serve exited with ${code}: ${err}`)));
  });
}

describe.skipIf(!existsSync(CHROMIUM))('web app in Chromium', () => {
  beforeAll(async () => {
    if (!existsSync(path.join(ROOT, 'web', 'dist', 'index.html'))) {
      const r = spawnSync('npx', ['vite', 'build', '-c', 'web/vite.config.ts'], {
        cwd: ROOT,
        encoding: 'utf8',
      });
      if (r.status !== 0) throw new Error(`vite build failed: ${r.stderr}`);
    }
    const run = path.join(tempDir(), 'run');
    const trained = cli(['train', '--epochs', '1', '--out', run]);
    if (trained.code !== 0) throw new Error(`train failed: ${trained.stderr}`);
    url = await startServer(run);
    // Bound to loopback unless --host says otherwise.
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1200, height: 1500 } });
  });

  afterAll(async () => {
    await browser?.close();
    server?.removeAllListeners('exit');
    server?.kill('SIGTERM');
  });

  it('loads: the model, the backend in use and the gallery appear', async () => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${url}/?lang=en`);
    await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
    expect(await page.textContent('h1')).toBe('imgclf');
    expect(await page.textContent('#server-model')).toMatch(/softmax/);
    expect(['webgpu', 'webgl', 'wasm', 'cpu']).toContain(await page.textContent('#backend'));
    // Chromium here runs without a GPU: its WebGL is SwiftShader, software, and is passed over.
    const software = await page.getAttribute('body', 'data-software-webgl');
    if (software) expect(await page.textContent('#backend')).not.toBe('webgl');
    expect(await page.locator('#gallery figure').count()).toBe(24);
    // softmax, mlp and cnn are offered; a family this build does not register is shown disabled.
    const registered = list().map((e) => e.name);
    for (const name of ['softmax', 'mlp', 'cnn']) {
      const disabled = await page.locator(`#train-model option[value=${name}]`).isDisabled();
      expect(disabled).toBe(!registered.includes(name));
    }
    expect(errors).toEqual([]);
  });

  it('uploading a test image shows its class', async () => {
    // Test image 0 is an ankle boot; check the label through the API rather than assume it.
    const labels = new Uint8Array(await (await fetch(`${url}/api/data/test/labels?limit=1`)).arrayBuffer());
    const names = ((await (await fetch(`${url}/api/model`)).json()) as { classNames: string[] }).classNames;
    const truth = names[labels[labels.length - 1]];
    const file = path.join(tempDir(), 'test-0.png');
    writeFileSync(file, Buffer.from(await (await fetch(`${url}/api/data/test/image/0`)).arrayBuffer()));
    await page.setInputFiles('#file-input', file);
    await page.waitForFunction(() => document.getElementById('result-label')?.dataset.label !== undefined);
    expect(await page.getAttribute('#result-label', 'data-label')).toBe(truth);
    expect(await page.textContent('#result-source')).toMatch(/server/);
  });

  it('drawing shows a prediction that follows the strokes', async () => {
    let requests = 0;
    page.on('request', (r) => {
      if (r.url().includes('/api/predict')) requests++;
    });
    await page.evaluate(() => {
      const label = document.getElementById('result-label')!;
      label.textContent = '–';
      delete label.dataset.label;
    });
    const box = (await page.locator('#draw-canvas').boundingBox())!;
    // A trouser-like shape: two long vertical strokes.
    await page.mouse.move(box.x + 110, box.y + 30);
    await page.mouse.down();
    for (let y = 30; y <= 260; y += 10) await page.mouse.move(box.x + 110 - (y - 30) / 12, box.y + y);
    await page.mouse.up();
    await page.mouse.move(box.x + 170, box.y + 30);
    await page.mouse.down();
    for (let y = 30; y <= 260; y += 10) await page.mouse.move(box.x + 170 + (y - 30) / 12, box.y + y);
    await page.mouse.up();
    await page.waitForFunction(() => document.getElementById('result-label')?.dataset.label !== undefined);
    const names = ((await (await fetch(`${url}/api/model`)).json()) as { classNames: string[] }).classNames;
    expect(names).toContain(await page.getAttribute('#result-label', 'data-label'));
    expect(await page.textContent('#result-prob')).toMatch(/%$/);
    // Live: predictions were requested while drawing, not once at the end.
    expect(requests).toBeGreaterThan(2);
  });

  it('trains softmax for 1 epoch in the page to test accuracy >= 0.7, then classifies with it', async () => {
    await page.selectOption('#train-model', 'softmax');
    await page.fill('#train-epochs', '1');
    await page.fill('#train-lr', '0.1');
    await page.fill('#train-limit', '60000');
    await page.click('#train-start');
    await page.waitForSelector('#train-status[data-state]', { timeout: 240_000 });
    expect(await page.getAttribute('#train-status', 'data-state')).toBe('done');
    console.log(`page training: ${await page.textContent('#train-status')}`);
    const acc = Number(await page.getAttribute('#train-test-acc', 'data-value'));
    expect(acc).toBeGreaterThanOrEqual(0.7);
    // The drawing was classified again, now by the model trained in the page.
    await page.waitForFunction(() =>
      /page/.test(document.getElementById('result-source')?.textContent ?? ''),
    );
    expect(await page.isChecked('#source-browser')).toBe(true);
    await page.screenshot({ path: screenshotPath('app.png'), fullPage: true });
  });

  it('uses WebGL when the address asks for it, software or not, and trains on it', async () => {
    const glPage = await browser!.newPage();
    try {
      await glPage.goto(`${url}/?lang=en&backend=webgl`);
      await glPage.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
      expect(await glPage.textContent('#backend')).toBe('webgl');
      await glPage.selectOption('#train-model', 'softmax');
      await glPage.fill('#train-epochs', '1');
      await glPage.fill('#train-limit', '2000');
      await glPage.click('#train-start');
      await glPage.waitForSelector('#train-status[data-state]', { timeout: 240_000 });
      expect(await glPage.getAttribute('#train-status', 'data-state')).toBe('done');
    } finally {
      await glPage.close();
    }
  });

  it('trains on the wasm backend too when the address asks for it (?backend=wasm)', async () => {
    const wasmPage = await browser!.newPage();
    try {
      await wasmPage.goto(`${url}/?lang=en&backend=wasm`);
      await wasmPage.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
      expect(await wasmPage.textContent('#backend')).toBe('wasm');
      await wasmPage.click('#train-start');
      await wasmPage.waitForSelector('#train-status[data-state]', { timeout: 240_000 });
      expect(await wasmPage.getAttribute('#train-status', 'data-state')).toBe('done');
      console.log(`page training: ${await wasmPage.textContent('#train-status')}`);
      expect(Number(await wasmPage.getAttribute('#train-test-acc', 'data-value'))).toBeGreaterThanOrEqual(
        0.7,
      );
    } finally {
      await wasmPage.close();
    }
  });

  it('switches to Chinese and back', async () => {
    await page.click('#lang-toggle');
    expect(await page.textContent('#classify h2')).toBe('图像分类');
    expect(await page.textContent('#train h2')).toBe('在浏览器中训练');
    const shown = await page.textContent('#result-label');
    expect(shown).toMatch(/[\u4e00-\u9fff]/);
    await page.click('#lang-toggle');
    expect(await page.textContent('#classify h2')).toBe('Classify an image');
  });
});
