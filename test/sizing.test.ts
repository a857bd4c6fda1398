/** Defaults that fit the data: batch size and epochs chosen from the training set's size. */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig, sizeToData } from '../src/core/plan.js';
import { writeShapesFolder } from '../src/node/data/shapes.js';
import { cli, tempDir } from './helpers.js';

describe('sizeToData', () => {
  it('keeps the seed’s settings on Fashion-MNIST', () => {
    for (const model of ['softmax', 'cnn']) {
      const plan = resolveConfig({ model });
      const sized = sizeToData(plan, 60000);
      expect(sized.note).toBeUndefined();
      expect([sized.plan.batchSize, sized.plan.epochs]).toEqual([plan.batchSize, plan.epochs]);
    }
  });

  it('a small folder gets smaller batches and more epochs: enough optimizer steps', () => {
    const { plan, note } = sizeToData(resolveConfig({ model: 'softmax' }), 162);
    expect(plan.batchSize).toBe(16);
    expect(plan.epochs * Math.ceil(162 / plan.batchSize)).toBeGreaterThanOrEqual(300);
    expect(note).toMatch(/batch size 16 and \d+ epochs for 162 training images/);
    // The sized plan records concrete numbers: resolving it again (a resume) changes nothing.
    expect(sizeToData(resolveConfig({ ...plan }), 162).plan).toMatchObject({
      batchSize: plan.batchSize,
      epochs: plan.epochs,
    });
  });

  it('epochs stay where the defaults already give enough steps (the cnn: 30 epochs of 11 batches)', () => {
    const { plan, note } = sizeToData(resolveConfig({ model: 'cnn' }), 162);
    expect([plan.batchSize, plan.epochs]).toEqual([16, 30]);
    expect(note).toBe(
      'batch size 16 for 162 training images (330 steps; --batch-size and --epochs override)',
    );
  });

  it('settings the user gave are kept', () => {
    const sized = sizeToData(resolveConfig({ model: 'cnn', batchSize: 64, epochs: 3 }), 162);
    expect([sized.plan.batchSize, sized.plan.epochs, sized.note]).toEqual([64, 3, undefined]);
    const onlyBatch = sizeToData(resolveConfig({ model: 'cnn', batchSize: 64 }), 162).plan;
    expect(onlyBatch.batchSize).toBe(64);
    expect(onlyBatch.epochs * Math.ceil(162 / 64)).toBeGreaterThanOrEqual(300);
  });
});

describe('a small folder with the defaults', () => {
  let folder = '';
  beforeAll(async () => {
    folder = path.join(tempDir(), 'small');
    // 3 classes of 60 images, sizes 32 to 96 px, PNG/JPEG/WebP/GIF, one corrupt file.
    await writeShapesFolder(folder, { perClass: 60, seed: 7, classes: ['circle', 'square', 'triangle'] });
    writeFileSync(path.join(folder, 'square', 'broken.jpg'), 'not a JPEG');
  });

  it.each(['softmax', 'cnn'])('%s reaches >= 0.95 and says what it chose', (model) => {
    const out = path.join(tempDir(), 'run');
    const r = cli(['train', '--data', folder, '--model', model, '--out', out, '--json'], {
      XDG_CACHE_HOME: tempDir(),
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json!.test_accuracy).toBeGreaterThanOrEqual(0.95);
    // softmax also gets more epochs; the cnn's defaults already give enough steps.
    expect(r.stderr).toMatch(/; batch size 16( and \d+ epochs)? for 162 training images/);
    const meta = JSON.parse(readFileSync(path.join(out, 'metadata.json'), 'utf8'));
    expect(meta.sizedToData).toMatch(/batch size 16/);
    expect(meta.config.batchSize).toBe(16);
  });
});
