/**
 * `imgclf export` on real run directories (the built CLI, as a user runs it): the ONNX file
 * lands in the run (or --out), --json reports it, --check measures ONNX Runtime against tfjs on
 * the run's test images, and what cannot be exported stops with one line and exit 2.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { layersNet } from '../src/core/models/index.js';
import { VERSION } from '../src/core/version.js';
import { decodeModel } from '../src/node/export/index.js';
import { RUN_FORMAT, saveMetadata, saveModel } from '../src/node/run/rundir.js';
import { cli, expectCleanError, tempDir } from './helpers.js';

let work = '';
let run = '';

beforeAll(async () => {
  await selectBackend('cpu');
  work = tempDir();
  run = path.join(work, 'run');
  const r = cli(['train', '--epochs', '1', '--out', run, '--json']);
  if (r.code !== 0) throw new Error(`train failed: ${r.stderr}`);
});

describe('imgclf export', () => {
  it('writes <run>/model.onnx with the run metadata, and --json reports its path', () => {
    const r = cli(['export', '--run', run, '--format', 'onnx', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const file = path.join(run, 'model.onnx');
    const j = r.json!;
    expect(j.path).toBe(file);
    expect(j.format).toBe('onnx');
    expect(j.model).toBe('softmax');
    expect(j.opset).toBe(13);
    expect(j.bytes).toBe(statSync(file).size);
    expect(j.input).toEqual({ name: 'input', shape: ['N', 28, 28, 1], layout: 'NHWC' });
    expect(j.output).toEqual({ name: 'probabilities', shape: ['N', 10] });
    expect(j.parity).toBeNull();
    expect(r.stderr).toContain(`wrote ${file}`);

    const meta = JSON.parse(readFileSync(path.join(run, 'metadata.json'), 'utf8'));
    const props = Object.fromEntries(
      decodeModel(readFileSync(file)).metadataProps.map((p) => [p.key, p.value]),
    );
    expect(JSON.parse(props.class_names!)).toEqual(meta.classNames);
    expect(JSON.parse(props.preprocessing!)).toEqual(meta.preprocessing);
    expect(JSON.parse(props.input_shape!)).toEqual([28, 28, 1]);
    expect(props.model).toBe('softmax');
    expect(props.imgclf_version).toBe(VERSION);
    const weights = readFileSync(path.join(run, 'weights.bin'));
    expect(props.weights_sha256).toBe(createHash('sha256').update(weights).digest('hex'));
    // The run still loads with the export beside it.
    expect(cli(['evaluate', '--run', run]).code).toBe(0);
  });

  it('--check compares ONNX Runtime with tfjs on the first 1000 test images; --out and --model work', () => {
    const out = path.join(work, 'exports', 'softmax.onnx');
    const r = cli(['export', '--model', run, '--out', out, '--check', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
    expect(readdirSync(path.dirname(out))).toEqual(['softmax.onnx']);
    const parity = r.json!.parity as Record<string, number | boolean>;
    expect(parity.images).toBe(1000);
    expect(parity.max_abs_diff).toBeLessThanOrEqual(1e-4);
    expect(parity.argmax_agree).toBe(1000);
    expect(parity.argmax_agreement).toBe(1);
    expect(parity.onnx_accuracy).toBeGreaterThan(0.6);
    expect(parity.ok).toBe(true);
    expect(r.stderr).toMatch(
      /ONNX Runtime vs tfjs on 1000 test images: max \|difference\| in probability \S+, top class agrees on 1000\/1000/,
    );

    const plain = cli(['export', '--run', run, '--out', out, '--check', '--check-images', '200']);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).toMatch(/top class agrees on 200\/200/);
  });

  it('bad options and missing runs fail with one line', () => {
    expectCleanError(
      cli(['export', '--run', run, '--format', 'tflite']),
      /unknown --format 'tflite'; choose one of: onnx/,
    );
    expectCleanError(cli(['export']), /which run\? give --run DIR/);
    expectCleanError(
      cli(['export', '--run', path.join(work, 'nope')]),
      /run directory .*nope does not exist/,
    );
  });

  it('a run whose model has a layer without an ONNX mapping fails with one line naming it, and writes nothing', async () => {
    const dir = path.join(work, 'custom');
    // Loading a run refuses layer classes imgclf's models do not use, so the unmapped part is
    // a setting of a class they do use.
    const model = tfl.sequential({
      layers: [
        tfl.layers.flatten({ inputShape: [28, 28, 1] }),
        tfl.layers.dense({ units: 10, activation: 'gelu', name: 'my_gelu' }),
      ],
    });
    const net = layersNet('custom', model);
    await saveModel(net, dir);
    await saveMetadata(dir, {
      format: RUN_FORMAT,
      model: 'custom',
      dataset: 'fashion-mnist',
      classNames: Array.from({ length: 10 }, (_, i) => `class ${i}`),
      inputShape: [28, 28, 1],
      preprocessing: { scale: 255, invertLightBackground: true, resize: 'contain' },
      config: {},
      backend: 'cpu',
      imgclfVersion: VERSION,
      tfjsVersion: 'test',
      created: new Date().toISOString(),
    });
    net.dispose();
    const r = cli(['export', '--run', dir]);
    expectCleanError(
      r,
      /^imgclf: error: cannot export layer 'my_gelu' \(class Dense\) of \S+custom to ONNX: activation 'gelu' has no ONNX mapping$/,
    );
    expect(existsSync(path.join(dir, 'model.onnx'))).toBe(false);
  });
});
