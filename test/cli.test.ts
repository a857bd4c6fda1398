/** CLI smoke tests: every command, the --json shapes, and the error exits. */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, expectCleanError, tempDir } from './helpers.js';

const DEBIAN = '/usr/share/datasets/fashion-mnist';
let run = '';
let work = '';

beforeAll(() => {
  work = tempDir();
  run = path.join(work, 'run');
  const r = cli(['train', '--epochs', '2', '--out', run, '--json']);
  if (r.code !== 0) throw new Error(`train failed: ${r.stderr}`);
});

describe('imgclf CLI', () => {
  it('--help lists every command', () => {
    const r = cli(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['train', 'evaluate', 'predict', 'data', 'models']) expect(r.stdout).toContain(c);
  });

  it('train --json prints the run summary as the last stdout line', () => {
    const metrics = readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(metrics).toHaveLength(2);
    const meta = JSON.parse(readFileSync(path.join(run, 'metadata.json'), 'utf8'));
    expect(meta.classNames).toHaveLength(10);
    expect(meta.inputShape).toEqual([28, 28, 1]);
    expect(meta.config.lr).toBe(0.1);
    const r = cli(['train', '--epochs', '1', '--out', path.join(work, 'r2'), '--json', '--seed', '3']);
    expect(r.code).toBe(0);
    const j = r.json!;
    expect(j.model).toBe('softmax');
    expect(j.backend).toBe('wasm');
    expect(j.out).toBe(path.join(work, 'r2'));
    const epochs = j.epochs as Record<string, number>[];
    expect(Object.keys(epochs[0]).sort()).toEqual([
      'epoch',
      'seconds',
      'test_accuracy',
      'train_accuracy',
      'train_loss',
    ]);
    expect(j.test_accuracy).toBeGreaterThan(0.75);
    // Human lines go to stderr in --json mode, so stdout is exactly one JSON line.
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(
      /epoch 1\/1 {2}loss \d\.\d{4} {2}train acc \d\.\d{4} {2}test acc \d\.\d{4} {2}\d+\.\ds/,
    );
  });

  it('prints the seed sentence with --lang zh', () => {
    const r = cli(['--lang', 'zh', 'train', '--epochs', '1', '--out', path.join(work, 'zh')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/第1次训练平均损失为\d\.\d{4},平均分类准确度\d\.\d{4}/);
  });

  it('evaluate --json: accuracy, per-class metrics, confusion matrix', () => {
    const r = cli(['evaluate', '--run', run, '--json']);
    expect(r.code).toBe(0);
    const j = r.json!;
    expect(j.test_accuracy).toBeGreaterThan(0.78);
    const perClass = j.per_class as { class: string; precision: number }[];
    expect(perClass).toHaveLength(10);
    expect(perClass[9].class).toBe('Ankle boot');
    const confusion = j.confusion as number[][];
    expect(confusion).toHaveLength(10);
    expect(confusion.flat().reduce((a, b) => a + b, 0)).toBe(10000);
    // --model, the older name of --run, still works.
    const human = cli(['--lang', 'zh', 'evaluate', '--model', run]);
    expect(human.stdout).toContain('短靴');
    expect(human.stdout).toContain('confusion matrix');
  });

  it('commands that read a run need one run directory', () => {
    expectCleanError(cli(['evaluate']), /which run\? give --run DIR/);
    expectCleanError(
      cli(['report', '--run', run, '--model', path.join(work, 'other')]),
      /disagree; give one run directory/,
    );
  });

  it('predict with no files shows the first 6 test images, true and predicted', () => {
    const r = cli(['predict', '--model', run, '--json']);
    expect(r.code).toBe(0);
    const preds = r.json!.predictions as {
      index: number;
      true: string;
      label: string;
      probabilities: number[];
      file: null;
    }[];
    expect(preds).toHaveLength(6);
    expect(preds[0]).toMatchObject({ file: null, index: 0, true: 'Ankle boot' });
    expect(preds[0].probabilities).toHaveLength(10);
    expect(preds[0].probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
    const human = cli(['predict', '--model', run]);
    expect(human.stdout).toMatch(/#0 {2}true: Ankle boot {2}predicted: /);
  });

  it('predict classifies image files of any size and colour, inverting light backgrounds', async () => {
    // A test image (ankle boot, light on dark) written as a big RGB PNG, and a dark-on-light copy.
    const first = await firstTestImage();
    const png = path.join(work, 'boot.png');
    const inverted = path.join(work, 'boot-inverted.jpg');
    await sharp(first, { raw: { width: 28, height: 28, channels: 1 } })
      .resize(112, 112)
      .toColourspace('srgb')
      .png()
      .toFile(png);
    await sharp(first, { raw: { width: 28, height: 28, channels: 1 } })
      .negate()
      .resize(90, 90)
      .jpeg()
      .toFile(inverted);
    const r = cli(['predict', '--model', run, png, inverted, '--top-k', '2', '--json']);
    expect(r.code).toBe(0);
    const preds = r.json!.predictions as { file: string; label: string; probabilities: number[] }[];
    expect(preds.map((p) => p.file)).toEqual([png, inverted]);
    expect(preds[0].label).toBe('Ankle boot');
    expect(preds[1].label).toBe('Ankle boot');
    expect(r.stderr).toContain('inverted: light background');
  });

  it('--resize trains on resized images and the run predicts at that size', () => {
    const dir = path.join(work, 'resized');
    const r = cli(['train', '--epochs', '1', '--resize', '20', '--out', dir, '--json']);
    expect(r.code).toBe(0);
    expect(r.json!.test_accuracy).toBeGreaterThan(0.7);
    expect(JSON.parse(readFileSync(path.join(dir, 'metadata.json'), 'utf8')).inputShape).toEqual([20, 20, 1]);
    const p = cli(['predict', '--model', dir, '-n', '2', '--json']);
    expect(p.code).toBe(0);
    expect((p.json!.predictions as unknown[]).length).toBe(2);
    expectCleanError(cli(['train', '--resize', '2']), /--resize must be a whole number from 4 to 512/);
  });

  it('data info shows the location, counts, balance and verification', () => {
    const r = cli(['data', 'info', '--json']);
    expect(r.code).toBe(0);
    expect(r.json).toMatchObject({ train: 60000, test: 10000, verified: true });
    expect((r.json!.classes as { train: number }[]).every((c) => c.train === 6000)).toBe(true);
    const human = cli(['data', 'fetch']);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('verified');
  });

  it('models lists the registry with parameter counts', () => {
    const r = cli(['models', '--json']);
    expect(r.code).toBe(0);
    const models = r.json!.models as { name: string; params: number }[];
    expect(models.find((m) => m.name === 'softmax')?.params).toBe(7850);
  });
});

describe('bad input: one line, exit 2, no stack trace', () => {
  it('unknown model', () => {
    expectCleanError(
      cli(['train', '--model', 'resnet9000']),
      /unknown model 'resnet9000'; choose one of: softmax/,
    );
  });

  it('bad numbers and unknown backend', () => {
    expectCleanError(cli(['train', '--epochs', 'many']), /--epochs expects a whole number, got 'many'/);
    expectCleanError(cli(['train', '--lr', '-1']), /--lr must be a positive number/);
    expectCleanError(cli(['train', '--backend', 'gpu']), /unknown backend 'gpu'/);
  });

  it('missing data directory', () => {
    expectCleanError(
      cli(['train', '--data-dir', path.join(work, 'nowhere')]),
      /--data-dir .* is missing train-images-idx3-ubyte/,
    );
  });

  it('truncated and corrupt data files', () => {
    const dir = path.join(work, 'broken');
    mkdirSync(dir, { recursive: true });
    for (const f of [
      'train-images-idx3-ubyte',
      'train-labels-idx1-ubyte',
      't10k-images-idx3-ubyte',
      't10k-labels-idx1-ubyte',
    ]) {
      copyFileSync(path.join(DEBIAN, f + '.gz'), path.join(dir, f + '.gz'));
    }
    const labels = readFileSync(path.join(DEBIAN, 't10k-labels-idx1-ubyte.gz'));
    writeFileSync(path.join(dir, 't10k-labels-idx1-ubyte.gz'), labels.subarray(0, labels.length - 100));
    expectCleanError(cli(['train', '--data-dir', dir]), /t10k-labels-idx1-ubyte\.gz: corrupt gzip data/);
    writeFileSync(path.join(dir, 't10k-labels-idx1-ubyte.gz'), Buffer.from('hello, not idx'));
    expectCleanError(cli(['train', '--data-dir', dir]), /t10k-labels-idx1-ubyte\.gz: bad IDX magic number/);
  });

  it('missing or corrupt run directory', () => {
    expectCleanError(
      cli(['evaluate', '--model', path.join(work, 'no-run')]),
      /run directory .* does not exist/,
    );
    const bad = path.join(work, 'bad-run');
    mkdirSync(bad, { recursive: true });
    for (const f of ['model.json', 'metadata.json', 'weights.bin'])
      copyFileSync(path.join(run, f), path.join(bad, f));
    writeFileSync(
      path.join(bad, 'weights.bin'),
      readFileSync(path.join(run, 'weights.bin')).subarray(0, 100),
    );
    expectCleanError(
      cli(['predict', '--model', bad, path.join(work, 'boot.png')]),
      /weights\.bin: 100 bytes but model\.json needs 31400/,
    );
    writeFileSync(path.join(bad, 'metadata.json'), '{"format": ');
    expectCleanError(cli(['evaluate', '--model', bad]), /metadata is not valid JSON/);
  });

  it('a file that is not an image, and a missing file', () => {
    const txt = path.join(work, 'notes.txt');
    writeFileSync(txt, 'just text');
    expectCleanError(cli(['predict', '--model', run, txt]), /notes\.txt: not an image imgclf can read/);
    expectCleanError(
      cli(['predict', '--model', run, path.join(work, 'missing.png')]),
      /missing\.png: cannot read the file/,
    );
  });

  it('--verbose shows the stack trace', () => {
    const r = cli(['--verbose', 'train', '--model', 'nope']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\n\s+at /);
  });
});

async function firstTestImage(): Promise<Buffer> {
  const { gunzipSync } = await import('node:zlib');
  const all = gunzipSync(readFileSync(path.join(DEBIAN, 't10k-images-idx3-ubyte.gz')));
  return all.subarray(16, 16 + 784);
}
