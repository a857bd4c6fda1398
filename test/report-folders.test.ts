/** Reports for image folders: mistakes name and link their files; the most confused pairs. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeShapesFolder } from '../src/node/data/shapes.js';
import { confusedPairs, shortName } from '../src/node/report/report.js';
import { cli, tempDir } from './helpers.js';

describe('confused pairs', () => {
  it('lists the off-diagonal cells, largest first, with the share of the true class', () => {
    const pairs = confusedPairs(
      [
        [8, 2, 0],
        [5, 5, 0],
        [0, 1, 9],
      ],
      ['a', 'b', 'c'],
      10,
    );
    expect(pairs).toEqual([
      { truth: 'b', predicted: 'a', count: 5, share: 0.5 },
      { truth: 'a', predicted: 'b', count: 2, share: 0.2 },
      { truth: 'c', predicted: 'b', count: 1, share: 0.1 },
    ]);
    expect(shortName('IMG_20240101_123456789_portrait.jpg')).toBe('…23456789_portrait.jpg');
  });
});

describe('a folder run’s report', () => {
  let out = '';
  beforeAll(async () => {
    const folder = path.join(tempDir(), 'shapes');
    await writeShapesFolder(folder, { perClass: 30, seed: 4, classes: ['circle', 'square', 'triangle'] });
    out = path.join(tempDir(), 'run');
    // Two short epochs: a model that still makes mistakes to report.
    const r = cli(['train', '--data', folder, '--epochs', '2', '--batch-size', '64', '--out', out], {
      XDG_CACHE_HOME: tempDir(),
    });
    expect(r.code, r.stderr).toBe(0);
  });

  it('names each mistake’s file and links it; lists the most confused pairs', () => {
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    const links = [...html.matchAll(/<a href="([^"]+)">([^<]+)<\/a>/g)];
    expect(links.length).toBeGreaterThan(0);
    for (const [, href, name] of links) {
      const file = path.resolve(out, decodeURI(href));
      expect(existsSync(file), file).toBe(true);
      expect(path.basename(file)).toBe(name);
    }
    expect(html).toMatch(/<section id="confused-pairs"><h2>Most confused pairs<\/h2>\s*<table>/);
  });
});

describe('a run that carries its own images', () => {
  it('resolves a relative data path against the run directory, from any working directory', async () => {
    const { cpSync, readFileSync } = await import('node:fs');
    const { saveMetadata } = await import('../src/node/run/rundir.js');
    const folder = path.join(tempDir(), 'shapes');
    await writeShapesFolder(folder, { perClass: 12, seed: 5, classes: ['circle', 'square'] });
    const out = path.join(tempDir(), 'run');
    const env = { XDG_CACHE_HOME: tempDir() };
    expect(cli(['train', '--data', folder, '--epochs', '2', '--out', out], env).code).toBe(0);
    // As a run downloaded from the page keeps them: the images inside, the path relative.
    cpSync(folder, path.join(out, 'data'), { recursive: true });
    const meta = JSON.parse(readFileSync(path.join(out, 'metadata.json'), 'utf8'));
    await saveMetadata(out, { ...meta, data: { ...meta.data, path: 'data' } });
    const r = cli(['evaluate', '--run', out, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json!.test_accuracy).toBeGreaterThan(0);
  });
});
