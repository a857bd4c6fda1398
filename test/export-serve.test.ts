/** `imgclf serve --engine onnx`: the predict routes answered by ONNX Runtime, as tfjs answers them. */
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { onnxEngine, tfjsEngine } from '../src/node/export/engine.js';
import { loadRun } from '../src/node/run/rundir.js';
import { buildServer } from '../src/server/app.js';
import { cli, expectCleanError, tempDir } from './helpers.js';

let dir = '';

beforeAll(async () => {
  await selectBackend('wasm');
  dir = path.join(tempDir(), 'run');
  const r = cli(['train', '--epochs', '1', '--out', dir]);
  expect(r.code, r.stderr).toBe(0);
});

/** A few pictures unlike the training data: a shoe-ish blob, noise, a gradient. */
async function pictures(): Promise<Buffer[]> {
  const noise = Buffer.from(Array.from({ length: 40 * 40 * 3 }, (_, i) => (i * 7919) % 256));
  return Promise.all([
    sharp({ create: { width: 60, height: 40, channels: 3, background: '#202020' } })
      .composite([
        {
          input: Buffer.from(
            '<svg width="60" height="40"><ellipse cx="30" cy="28" rx="26" ry="9" fill="#eee"/></svg>',
          ),
        },
      ])
      .png()
      .toBuffer(),
    sharp(noise, { raw: { width: 40, height: 40, channels: 3 } })
      .png()
      .toBuffer(),
    sharp({ create: { width: 28, height: 28, channels: 3, background: '#c8c8c8' } })
      .jpeg()
      .toBuffer(),
  ]);
}

describe('serve --engine onnx', () => {
  it('answers /api/predict with the same probabilities as the tfjs engine (within 1e-4)', async () => {
    const run = await loadRun(dir);
    const apps = [
      await buildServer({ run, maxUploadBytes: 1 << 20, engine: tfjsEngine(run) }),
      await buildServer({ run, maxUploadBytes: 1 << 20, engine: await onnxEngine(run) }),
    ];
    try {
      const health = await apps[1].inject({ method: 'GET', url: '/api/health' });
      expect(health.json().engine).toBe('onnx');
      for (const png of await pictures()) {
        const [a, b] = await Promise.all(
          apps.map((app) =>
            app.inject({
              method: 'POST',
              url: '/api/predict',
              payload: png,
              headers: { 'content-type': 'image/png' },
            }),
          ),
        );
        expect(a.statusCode).toBe(200);
        expect(b.statusCode).toBe(200);
        const [pa, pb] = [a.json(), b.json()] as { label: string; probabilities: number[] }[];
        expect(pb.label).toBe(pa.label);
        const diff = Math.max(...pa.probabilities.map((p, i) => Math.abs(p - pb.probabilities[i])));
        expect(diff).toBeLessThanOrEqual(1e-4);
      }
    } finally {
      await Promise.all(apps.map((app) => app.close()));
    }
  });

  it('an unknown engine is a one-line error', () => {
    expectCleanError(
      cli(['serve', '--run', dir, '--engine', 'tensorrt']),
      /--engine must be one of tfjs, onnx/,
    );
  });
});
