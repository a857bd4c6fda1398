/**
 * ONNX backbones (--backbone with an .onnx file, a Hugging Face folder or hf:OWNER/NAME), run by
 * ONNX Runtime, without the internet: a tiny convolutional graph written here with the
 * exporter's GraphBuilder, in the transformers.js layout (onnx/model.onnx, config.json,
 * preprocessor_config.json), served by a stand-in hub on 127.0.0.1 that answers
 * /OWNER/NAME/resolve/REVISION/FILE (in a process of its own). Two layouts: NCHW with a pooled output (the hub repo), NHWC
 * with only a feature map (a bare .onnx file). Train through the CLI, the cache on a second
 * run, --offline with the hub stopped, evaluate, predict, serve, and the one-line errors.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { loadRun as loadRunApi, predictImage } from '../src/node/api.js';
import { writeShapesFolder } from '../src/node/data/shapes.js';
import { expectServedLabel, trainArgs } from './fixtures/backbone-run.js';
import { PREPROCESSOR, tinyGraph, writeHfRepo } from './fixtures/onnx-backbone.js';
import { buildOnnxBackbone } from '../src/node/backbone/onnx.js';
import { cli, type CliResult, expectCleanError, tempDir } from './helpers.js';

let work = '';
let repo = '';
let nhwcFile = '';
let shapes = '';
let cache = '';
let hub: Hub;
let endpoint = '';
let hubLog = '';
/** The paths the hub was asked for, in order. */
const requests = (): string[] =>
  existsSync(hubLog) ? readFileSync(hubLog, 'utf8').split('\n').filter(Boolean) : [];
const savedCache = process.env.XDG_CACHE_HOME;

/** The CLI with the test's cache and hub. */
const run = (args: string[], env: Record<string, string> = {}): CliResult =>
  cli(args, { XDG_CACHE_HOME: cache, HF_ENDPOINT: endpoint, ...env });

/** A port nothing listens on: one the OS gave and took back. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

interface Hub {
  endpoint: string;
  stop(): Promise<void>;
}

/**
 * The stand-in hub, in a process of its own (the CLI runs under spawnSync, which blocks this
 * one): /test/tiny/resolve/main/FILE is `dir`/FILE, anything else 404; each path asked for is
 * appended to `log`.
 */
async function startHub(dir: string, log: string): Promise<Hub> {
  const script = `
    const http = require('node:http'), fs = require('node:fs'), path = require('node:path');
    const [dir, log] = process.argv.slice(1);
    const server = http.createServer((req, res) => {
      const url = new URL(req.url, 'http://localhost').pathname;
      fs.appendFileSync(log, url + '\\n');
      const m = /^\\/test\\/tiny\\/resolve\\/main\\/(.+)$/.exec(url);
      let body;
      try { if (m && !m[1].includes('..')) body = fs.readFileSync(path.join(dir, m[1])); } catch {}
      res.statusCode = body ? 200 : 404;
      res.end(body ?? 'Entry not found');
    });
    server.listen(0, '127.0.0.1', () => console.log(server.address().port));`;
  const child = spawn(process.execPath, ['-e', script, dir, log], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
    child.once('exit', (code) => reject(new Error(`the hub exited (${code})`)));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill();
      }),
  };
}

beforeAll(async () => {
  await selectBackend('wasm');
  work = tempDir('imgclf-onnx-backbone-');
  hubLog = path.join(work, 'hub.log');
  cache = path.join(work, 'cache');
  process.env.XDG_CACHE_HOME = cache; // loadRun in this process reads the same cache
  repo = path.join(work, 'tiny');
  writeHfRepo(repo);
  nhwcFile = path.join(work, 'nhwc.onnx');
  writeFileSync(nhwcFile, tinyGraph('NHWC'));
  shapes = path.join(work, 'shapes');
  await writeShapesFolder(shapes, { perClass: 20, seed: 5 });
  hub = await startHub(repo, hubLog);
  endpoint = hub.endpoint;
});

afterAll(async () => {
  await hub.stop();
  if (savedCache === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = savedCache;
});

describe('an ONNX backbone from a Hugging Face repo (hf:test/tiny)', () => {
  const out = () => path.join(work, 'hf-run');
  let accuracy = 0;

  it('trains a head on its features: NCHW input, pooler_output, preprocessing from preprocessor_config.json', () => {
    const r = run(trainArgs('hf:test/tiny', shapes, out()));
    expect(r.code, r.stderr).toBe(0);
    expect(requests()).toEqual(
      expect.arrayContaining([
        '/test/tiny/resolve/main/config.json',
        '/test/tiny/resolve/main/preprocessor_config.json',
        '/test/tiny/resolve/main/onnx/model.onnx',
      ]),
    );
    expect(r.stderr).toMatch(
      /backbone hf:test\/tiny@main: onnx \(huggingface\).*input 16x16x3 as NCHW 'pixel_values'.*64 features from output pooler_output/,
    );
    expect(r.stderr).toMatch(/features: computed for 80 images .* images\/s/);
    const meta = JSON.parse(readFileSync(path.join(out(), 'metadata.json'), 'utf8'));
    const sha = createHash('sha256')
      .update(readFileSync(path.join(repo, 'onnx', 'model.onnx')))
      .digest('hex');
    expect(meta.backbone).toMatchObject({
      source: 'hf:test/tiny@main',
      url: `${endpoint}/test/tiny/resolve/main/`,
      format: 'onnx',
      family: 'huggingface',
      sha256: sha,
      inputShape: [16, 16, 3],
      layout: 'NCHW',
      layer: 'pooler_output',
      features: 64,
      preprocessing: {
        from: 'preprocessor_config.json',
        resize: 'shortest_edge 18',
        crop: 16,
        mean: [0.5, 0.5, 0.5],
        std: [0.5, 0.5, 0.5],
      },
    });
    expect(meta.inputShape).toEqual([16, 16, 3]);
    accuracy = r.json?.test_accuracy as number;
    expect(accuracy).toBeGreaterThanOrEqual(0.6); // random convolutions; 4 classes
    expect((r.json?.data as { featureCache: string }).featureCache).toBe('miss');
  });

  it('a second run finds the files and the features in the cache, without the hub', () => {
    const before = requests().length;
    const r = run(trainArgs('hf:test/tiny', shapes, path.join(work, 'hf-run-2')));
    expect(r.code, r.stderr).toBe(0);
    expect(requests().length).toBe(before);
    expect(r.stderr).toMatch(/from the cache/);
    expect((r.json?.data as { featureCache: string }).featureCache).toBe('hit');
    expect(r.json?.test_accuracy).toBe(accuracy);
  });

  it('--offline (and HF_HUB_OFFLINE=1) trains from the cache with the hub stopped; evaluate, predict, serve and the library work', async () => {
    await hub.stop();
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const off = run(trainArgs('hf:test/tiny', shapes, path.join(work, 'hf-off'), ['--offline']), {
      HF_ENDPOINT: endpoint,
    });
    expect(off.code, off.stderr).toBe(0);
    expect(off.json?.test_accuracy).toBe(accuracy);
    const env = run(trainArgs('hf:test/tiny', shapes, path.join(work, 'hf-off-2')), { HF_HUB_OFFLINE: '1' });
    expect(env.code, env.stderr).toBe(0);

    // The run names the URL it downloaded from: HF_ENDPOINT pointing elsewhere does not matter.
    const ev = run(['evaluate', '--run', out(), '--json'], { HF_ENDPOINT: dead });
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.json?.test_accuracy).toBe(accuracy);

    const fresh = await writeShapesFolder(path.join(work, 'fresh'), { perClass: 2, seed: 99 });
    const p = run(['predict', '--run', out(), ...fresh, '--json']);
    expect(p.code, p.stderr).toBe(0);
    const predictions = (p.json as { predictions: { file: string; label: string }[] }).predictions;
    expect(predictions).toHaveLength(fresh.length);

    await expectServedLabel(
      out(),
      fresh[0],
      fresh[0].endsWith('.png') ? 'image/png' : 'application/octet-stream',
      predictions[0].label,
    );

    // The library: loadRun gives backbone + head as one model, predictImage runs both.
    const lib = await loadRunApi(out());
    const one = await predictImage(lib, fresh[0]);
    expect(one.labelName).toBe(predictions[0].label);
  });
});

describe('an .onnx file on disk (NHWC, a feature map only)', () => {
  it('trains on the average-pooled feature map, with size and layout from the graph', () => {
    const out = path.join(work, 'file-run');
    const r = run(trainArgs(nhwcFile, shapes, out));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /onnx \(onnx\).*input 16x16x3 as NHWC 'images'.*16 features from output feature_map/,
    );
    const meta = JSON.parse(readFileSync(path.join(out, 'metadata.json'), 'utf8'));
    expect(meta.backbone).toMatchObject({ source: nhwcFile, format: 'onnx', layout: 'NHWC', features: 16 });
    const ev = run(['evaluate', '--run', out, '--json']);
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.json?.test_accuracy).toBe(r.json?.test_accuracy);
  });

  it('the Hugging Face folder itself works as --backbone', () => {
    const r = run(trainArgs(repo, shapes, path.join(work, 'folder-run')));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/onnx \(huggingface\).*pooler_output/);
  });
});

describe('errors: one line, exit 2', () => {
  const train = (backbone: string, extra: string[] = [], env: Record<string, string> = {}) =>
    run(['train', '--backbone', backbone, '--data', shapes, '--out', path.join(work, 'err'), ...extra], env);

  it('a size the graph does not take', () => {
    expectCleanError(
      train(nhwcFile, ['--backbone-size', '20']),
      /takes 16x16 images but --backbone-size gives 20x20/,
    );
  });

  it('an output that is not a feature vector or map', () => {
    expectCleanError(
      train(repo, ['--backbone-layer', 'tokens']),
      /output 'tokens' has shape \[1, 16, 64\], not a feature vector/,
    );
    expectCleanError(
      train(repo, ['--backbone-layer', 'nope']),
      /has no output 'nope'; its outputs: last_hidden_state/,
    );
  });

  it('a repo without onnx/model.onnx, and a folder without it', async () => {
    // A hub whose test/tiny holds config.json only.
    const empty = path.join(work, 'empty-repo');
    mkdirSync(empty, { recursive: true });
    writeFileSync(path.join(empty, 'config.json'), '{}');
    const other = await startHub(empty, path.join(work, 'empty-hub.log'));
    try {
      const r = train('hf:test/tiny@main', [], {
        HF_ENDPOINT: other.endpoint,
        XDG_CACHE_HOME: path.join(work, 'cache-empty'),
      });
      expectCleanError(r, /hf:test\/tiny@main has no onnx\/model\.onnx \(.*HTTP 404\)/);
    } finally {
      await other.stop();
    }
    const folder = path.join(work, 'no-graph');
    mkdirSync(folder, { recursive: true });
    writeFileSync(path.join(folder, 'config.json'), '{}');
    expectCleanError(train(folder), /has no onnx\/model\.onnx/);
  });

  it('an unreachable hub, and --offline with nothing cached', async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    expectCleanError(
      train('hf:test/other', [], { HF_ENDPOINT: dead }),
      /cannot reach http:\/\/127\.0\.0\.1:\d+ for backbone hf:test\/other@main \(ECONNREFUSED\)/,
    );
    expectCleanError(
      train('hf:test/other', ['--offline']),
      /hf:test\/other@main is not in the cache .* --offline or HF_HUB_OFFLINE=1/,
    );
  });
});

describe('the graph ONNX Runtime runs', () => {
  it('gives the same features merged with its preprocessing as prepared here (a graph of opset 10)', async () => {
    for (const layout of ['NCHW', 'NHWC'] as const) {
      const files = (opset: number) => ({
        source: `tiny-${layout}-${opset}`,
        model: tinyGraph(layout, opset),
        sha256: '',
        preprocessor: layout === 'NCHW' ? PREPROCESSOR : undefined,
        family: 'huggingface' as const,
        origin: 'disk' as const,
      });
      const merged = await buildOnnxBackbone(files(13), {});
      const prepared = await buildOnnxBackbone(files(10), {});
      expect(merged.inputShape).toEqual([16, 16, 3]);
      const n = 5;
      const images = Float32Array.from({ length: n * 16 * 16 * 3 }, (_, i) => ((i * 7919) % 256) / 255);
      const a = merged.extract(images, n);
      const b = prepared.extract(images, n);
      expect(a.length).toBe(n * merged.features);
      let worst = 0;
      for (let i = 0; i < a.length; i++)
        worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1e-3, Math.abs(b[i])));
      expect(worst, layout).toBeLessThan(1e-5);
      merged.dispose();
      prepared.dispose();
    }
  });
});
