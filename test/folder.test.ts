/**
 * Training on a generated image folder: four shape classes drawn with sharp in mixed sizes and
 * formats (PNG, JPEG, WebP, GIF) plus one truncated file, through the CLI as a user runs it;
 * then symbolic links (followed, loops and broken links reported) and an oversized image.
 */
import {
  copyFileSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../src/node/data/load.js';
import { loadImageFolder, scanImageFolder } from '../src/node/data/folder.js';
import { pngDeclaring, renderSvg, shapeSvg, writeShapesFolder } from '../src/node/data/shapes.js';
import { Rng } from '../src/core/data/rng.js';
import { cli, expectCleanError, tempDir } from './helpers.js';

let work = '';
let shapes = '';
let corrupt = '';
let env: Record<string, string> = {};
const TRAIN = ['--val-split', '0.25', '--epochs', '30', '--batch-size', '32', '--lr', '0.01', '--json'];

beforeAll(async () => {
  work = tempDir();
  shapes = path.join(work, 'shapes');
  const files = await writeShapesFolder(shapes, { perClass: 40, seed: 7 });
  // A truncated PNG: half of a real one.
  corrupt = path.join(shapes, 'circle', 'truncated.png');
  const whole = readFileSync(files.find((f) => f.endsWith('.png'))!);
  writeFileSync(corrupt, whole.subarray(0, whole.length >> 1));
  env = { XDG_CACHE_HOME: path.join(work, 'cache') };
});

describe('train --data on an image folder', () => {
  let gray = '';
  let firstJson: Record<string, unknown> = {};

  it('trains to >= 0.9 test accuracy, skipping the corrupt file with a warning', () => {
    gray = path.join(work, 'gray');
    const r = cli(['train', '--data', shapes, '--channels', '1', '--out', gray, ...TRAIN], env);
    expect(r.code, r.stderr).toBe(0);
    firstJson = r.json!;
    expect(r.json!.test_accuracy).toBeGreaterThanOrEqual(0.9);
    const data = r.json!.data as Record<string, unknown>;
    expect(data).toMatchObject({
      source: 'folder',
      classes: ['circle', 'cross', 'square', 'triangle'],
      shape: [28, 28, 1],
      skipped: [corrupt],
      cache: 'miss',
      train: 120,
      test: 40,
    });
    expect(r.stderr).toContain(`warning: skipping ${corrupt}: cannot decode the image`);
    expect(r.stderr).toMatch(/160 images in 4 classes, 1 unreadable skipped, 40 held out for testing/);
    const meta = JSON.parse(readFileSync(path.join(gray, 'metadata.json'), 'utf8'));
    expect(meta.classNames).toEqual(['circle', 'cross', 'square', 'triangle']);
    expect(meta.preprocessing).toEqual({ scale: 255, invertLightBackground: false, resize: 'fill' });
    expect(meta.data).toMatchObject({ kind: 'folder', path: shapes, imageSize: 28, channels: 1 });
  });

  it('the second run reads the decoded images from the cache and trains identically', () => {
    const r = cli(
      ['train', '--data', shapes, '--channels', '1', '--out', path.join(work, 'gray2'), ...TRAIN],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    expect((r.json!.data as { cache: string }).cache).toBe('hit');
    expect(r.stderr).toMatch(
      /cache hit: .*imgclf\/folders\/f[0-9a-f]+-[0-9a-f]+\.bin \(160 decoded images\)/,
    );
    // The skipped file is still reported from the cache.
    expect(r.stderr).toContain(`warning: skipping ${corrupt}`);
    expect(r.json!.test_accuracy).toBe(firstJson.test_accuracy);
  });

  it('evaluate and predict use the class names from the folders', () => {
    const ev = cli(['evaluate', '--model', gray, '--json'], env);
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.json!.test_accuracy).toBe(firstJson.test_accuracy);
    expect((ev.json!.per_class as { class: string }[]).map((c) => c.class)).toEqual([
      'circle',
      'cross',
      'square',
      'triangle',
    ]);
    expect((ev.json!.confusion as number[][]).flat().reduce((a, b) => a + b, 0)).toBe(40);
  });
});

describe('an RGB model', () => {
  it('trains, evaluates and predicts test images and new files', async () => {
    const run = path.join(work, 'rgb');
    const r = cli(
      ['train', '--data', shapes, '--channels', '3', '--image-size', '24', '--out', run, ...TRAIN],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.json!.test_accuracy).toBeGreaterThanOrEqual(0.9);
    // Other decoding options are another cache entry.
    expect((r.json!.data as { cache: string; shape: number[] }).cache).toBe('miss');
    expect(JSON.parse(readFileSync(path.join(run, 'metadata.json'), 'utf8')).inputShape).toEqual([24, 24, 3]);
    const ev = cli(['evaluate', '--model', run, '--json'], env);
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.json!.test_accuracy).toBeGreaterThanOrEqual(0.9);
    const shown = cli(['predict', '--model', run, '-n', '4', '--json'], env);
    expect(shown.code, shown.stderr).toBe(0);
    const preds = shown.json!.predictions as { true: string; label: string; probabilities: number[] }[];
    expect(preds).toHaveLength(4);
    expect(preds[0].probabilities).toHaveLength(4);
    expect(['circle', 'cross', 'square', 'triangle']).toContain(preds[0].true);
    // New pictures, never seen in training, larger than any training image.
    const rng = new Rng(99);
    const fresh: string[] = [];
    for (const shape of ['triangle', 'cross'] as const) {
      const f = path.join(work, `new-${shape}.png`);
      writeFileSync(f, await renderSvg(shapeSvg(shape, 150, rng), 'png'));
      fresh.push(f);
    }
    const p = cli(['predict', '--model', run, ...fresh, '--json'], env);
    expect(p.code, p.stderr).toBe(0);
    expect((p.json!.predictions as { label: string }[]).map((x) => x.label)).toEqual(['triangle', 'cross']);
  });
});

describe('folder layouts and the cache (in process)', () => {
  it('train/ and test/ subfolders are the split', async () => {
    const dir = path.join(work, 'split');
    await writeShapesFolder(path.join(dir, 'train'), { perClass: 6, classes: ['circle', 'square', 'cross'] });
    await writeShapesFolder(path.join(dir, 'test'), { perClass: 2, classes: ['circle', 'square'], seed: 5 });
    const loaded = await loadDataset({
      source: {
        kind: 'folder',
        path: dir,
        imageSize: 16,
        channels: 1,
        resizeMode: 'contain',
        valSplit: 0.1,
        seed: 0,
      },
    });
    expect(loaded.dataset.classNames).toEqual(['circle', 'cross', 'square']);
    expect(loaded.dataset.train.count).toBe(18);
    expect(loaded.dataset.test.count).toBe(4);
    expect(loaded.heldOut).toBe(false);
    expect(loaded.dataset.shape).toEqual([16, 16, 1]);
    const extra = path.join(dir, 'test', 'star');
    mkdirSync(extra);
    writeFileSync(path.join(extra, 'a.png'), await renderSvg(shapeSvg('circle', 20, new Rng(1)), 'png'));
    await expect(scanImageFolder(dir)).rejects.toThrow(/test has class folders that train\/ lacks: star/);
  });

  it('a changed file or other options miss the cache; the same ones hit it', async () => {
    const dir = path.join(work, 'small');
    await writeShapesFolder(dir, { perClass: 3, classes: ['circle', 'square'] });
    const cacheDir = path.join(work, 'small-cache');
    const opts = { imageSize: 12, channels: 1 as const, resizeMode: 'fill' as const, cacheDir };
    const a = await loadImageFolder(dir, opts);
    const b = await loadImageFolder(dir, opts);
    expect([a.cache, b.cache]).toEqual(['miss', 'hit']);
    expect(b.train.pixels).toEqual(a.train.pixels);
    expect(b.train.labels).toEqual(a.train.labels);
    expect((await loadImageFolder(dir, { ...opts, channels: 3 })).cache).toBe('miss');
    const f = path.join(dir, 'circle', 'circle-0.png');
    utimesSync(f, new Date(), new Date(Date.now() + 5000));
    expect((await loadImageFolder(dir, opts)).cache).toBe('miss');
    // A damaged cache file is ignored and rewritten.
    const again = await loadImageFolder(dir, opts);
    writeFileSync(again.cachePath, 'garbage');
    const messages: string[] = [];
    const c = await loadImageFolder(dir, { ...opts, log: (m) => messages.push(m) });
    expect(c.cache).toBe('miss');
    expect(messages.join('\n')).toMatch(/ignoring the unreadable cache file/);
    expect((await loadImageFolder(dir, opts)).cache).toBe('hit');
  });

  it('reports decoding progress', async () => {
    const dir = path.join(work, 'progress');
    await writeShapesFolder(dir, { perClass: 2, classes: ['circle', 'square'] });
    const seen: [number, number][] = [];
    await loadImageFolder(dir, {
      imageSize: 8,
      channels: 1,
      resizeMode: 'fill',
      cacheDir: path.join(work, 'progress-cache'),
      onProgress: (d, t) => seen.push([d, t]),
    });
    expect(seen).toEqual([
      [1, 4],
      [2, 4],
      [3, 4],
      [4, 4],
    ]);
  });
});

describe('bad image folders: one line, exit 2', () => {
  it('an empty class folder', async () => {
    const dir = path.join(work, 'empty-class');
    await writeShapesFolder(dir, { perClass: 2, classes: ['circle', 'square'] });
    mkdirSync(path.join(dir, 'triangle'));
    expectCleanError(
      cli(['train', '--data', dir], env),
      /class folder .*triangle is empty; every class needs at least one image/,
    );
  });

  it('only one class', async () => {
    const dir = path.join(work, 'one-class');
    await writeShapesFolder(dir, { perClass: 2, classes: ['circle'] });
    expectCleanError(
      cli(['train', '--data', dir], env),
      /has only one class folder \('circle'\); a classifier needs at least two classes/,
    );
  });

  it('a corrupt file with --strict', () => {
    expectCleanError(
      cli(['train', '--data', shapes, '--strict', '--channels', '1'], env),
      /truncated\.png: cannot decode the image .*\(--strict stops at unreadable files\)/,
    );
  });

  it('no class folders, a missing path, a class with no readable image, bad options', async () => {
    const flat = path.join(work, 'flat');
    mkdirSync(flat);
    writeFileSync(path.join(flat, 'a.png'), 'x');
    expectCleanError(cli(['train', '--data', flat], env), /has no class folders; put each class's images/);
    expectCleanError(
      cli(['train', '--data', path.join(work, 'nowhere')], env),
      /nowhere does not exist; --data takes a folder of class folders or a \.csv file/,
    );
    // A file that is no CSV: another kind of data is named with --data-kind.
    expectCleanError(
      cli(['train', '--data', path.join(flat, 'a.png')], env),
      /a\.png is neither a folder of class folders nor a \.csv file; --data-kind KIND names another kind of data/,
    );
    expectCleanError(
      cli(['train', '--data-kind', 'csv'], env),
      /--data-kind names the kind of your own data: give --data PATH too/,
    );
    const dir = path.join(work, 'unreadable-class');
    await writeShapesFolder(dir, { perClass: 2, classes: ['circle', 'square'] });
    rmSync(path.join(dir, 'square'), { recursive: true });
    mkdirSync(path.join(dir, 'square'));
    writeFileSync(path.join(dir, 'square', 'notes.txt'), 'not an image');
    expectCleanError(cli(['train', '--data', dir], env), /class 'square' has no readable images/);
    expectCleanError(cli(['train', '--data', shapes, '--channels', '2'], env), /--channels must be 1 or 3/);
    expectCleanError(
      cli(['train', '--data', shapes, '--val-split', '1.5'], env),
      /--val-split must be a fraction/,
    );
    expectCleanError(
      cli(['train', '--data', shapes, '--dataset', 'mnist'], env),
      /--data and --dataset exclude each other/,
    );
  });
});

describe('symbolic links are followed', () => {
  const opts = () => ({
    imageSize: 8,
    channels: 1 as const,
    resizeMode: 'fill' as const,
    cacheDir: path.join(work, 'links-cache'),
  });

  it('a linked class folder and a linked file are part of the data; the CLI trains on 3 classes', async () => {
    const dir = path.join(work, 'linked');
    await writeShapesFolder(dir, { perClass: 4, classes: ['circle', 'square'], seed: 3 });
    // The third class lives elsewhere (another disk, a shared set), linked in.
    await writeShapesFolder(path.join(work, 'elsewhere'), { perClass: 4, classes: ['triangle'], seed: 4 });
    symlinkSync(path.join(work, 'elsewhere', 'triangle'), path.join(dir, 'triangle'));
    const outside = path.join(work, 'outside-circle.png');
    writeFileSync(outside, await renderSvg(shapeSvg('circle', 40, new Rng(8)), 'png'));
    symlinkSync(outside, path.join(dir, 'circle', 'linked.png'));
    const scan = await scanImageFolder(dir);
    expect(scan.classNames).toEqual(['circle', 'square', 'triangle']);
    expect(scan.skipped).toEqual([]);
    const rels = scan.train.map((e) => e.rel);
    expect(rels.filter((r) => r.startsWith('triangle/'))).toHaveLength(4);
    expect(rels).toContain('circle/linked.png');
    // Sorted, as for plain files: the order (and so the split) does not depend on readdir.
    expect(rels).toEqual([...rels].sort());
    const linked = scan.train.find((e) => e.rel === 'circle/linked.png')!;
    expect(linked.size).toBe(readFileSync(outside).length);
    const loaded = await loadImageFolder(dir, opts());
    expect(loaded.train.count).toBe(13);
    expect(new Set(loaded.train.labels)).toEqual(new Set([0, 1, 2]));

    const r = cli(
      [
        'train',
        '--data',
        dir,
        '--channels',
        '1',
        '--epochs',
        '1',
        '--val-split',
        '0.3',
        '--batch-size',
        '3',
        '--json',
      ],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.json!.data).toMatchObject({ classes: ['circle', 'square', 'triangle'], skipped: [] });
    const data = r.json!.data as { train: number; test: number };
    expect(data.train + data.test).toBe(13);
  });

  it("the cache key follows a linked file's target: edited or re-pointed, it misses", async () => {
    const dir = path.join(work, 'linked-cache');
    await writeShapesFolder(dir, { perClass: 2, classes: ['circle', 'square'] });
    const a = path.join(work, 'target-a.png');
    const b = path.join(work, 'target-b.png');
    writeFileSync(a, await renderSvg(shapeSvg('circle', 30, new Rng(1)), 'png'));
    copyFileSync(a, b);
    const when = new Date('2024-01-02T03:04:05Z');
    utimesSync(a, when, when);
    utimesSync(b, when, when);
    const link = path.join(dir, 'circle', 'z.png');
    symlinkSync(a, link);
    expect((await loadImageFolder(dir, opts())).cache).toBe('miss');
    expect((await loadImageFolder(dir, opts())).cache).toBe('hit');
    // The target changes, the link does not.
    utimesSync(a, when, new Date(when.getTime() + 5000));
    expect((await loadImageFolder(dir, opts())).cache).toBe('miss');
    utimesSync(a, when, when);
    expect((await loadImageFolder(dir, opts())).cache).toBe('miss');
    expect((await loadImageFolder(dir, opts())).cache).toBe('hit');
    // Re-pointed at a copy with the same size and time: still another file, so a miss.
    unlinkSync(link);
    symlinkSync(b, link);
    expect((await loadImageFolder(dir, opts())).cache).toBe('miss');
  });

  it('a link loop is reported once and not followed; --strict stops at it', async () => {
    const dir = path.join(work, 'loops');
    await writeShapesFolder(dir, { perClass: 2, classes: ['circle', 'square'] });
    symlinkSync('.', path.join(dir, 'circle', 'again')); // the class folder itself
    symlinkSync('../..', path.join(dir, 'square', 'up')); // above the image folder
    symlinkSync('.', path.join(dir, 'root')); // a "class folder" that is the root
    symlinkSync('ping', path.join(dir, 'circle', 'pong')); // links that lead to each other
    symlinkSync('pong', path.join(dir, 'circle', 'ping'));
    const messages: string[] = [];
    const loaded = await loadImageFolder(dir, { ...opts(), log: (m) => messages.push(m) });
    expect(loaded.scan.classNames).toEqual(['circle', 'square']);
    expect(loaded.train.count).toBe(4);
    const warnings = messages.filter((m) => m.startsWith('warning:'));
    expect(warnings).toEqual([
      `warning: skipping ${path.join(dir, 'root')}: symbolic link loop: it points back to ${dir}; not followed`,
      `warning: skipping ${path.join(dir, 'circle', 'again')}: symbolic link loop: it points back to ${path.join(dir, 'circle')}; not followed`,
      `warning: skipping ${path.join(dir, 'circle', 'ping')}: symbolic link loop: the link never reaches a file or folder`,
      `warning: skipping ${path.join(dir, 'circle', 'pong')}: symbolic link loop: the link never reaches a file or folder`,
      `warning: skipping ${path.join(dir, 'square', 'up')}: symbolic link loop: it points to ${work}, which contains ${dir}; not followed`,
    ]);
    expect(loaded.skipped.map((s) => s.path)).toHaveLength(5);
    // Reported on a cache hit too (links are not in the cache), still once each.
    messages.length = 0;
    const again = await loadImageFolder(dir, { ...opts(), log: (m) => messages.push(m) });
    expect(again.cache).toBe('hit');
    expect(messages.filter((m) => m.startsWith('warning:'))).toEqual(warnings);
    await expect(loadImageFolder(dir, { ...opts(), strict: true })).rejects.toThrow(
      `${path.join(dir, 'root')}: symbolic link loop: it points back to ${dir}; not followed (--strict stops at unreadable files)`,
    );
    expectCleanError(
      cli(['train', '--data', dir, '--strict'], env),
      /root: symbolic link loop: it points back to .*loops; not followed \(--strict stops/,
    );
  });

  it('a broken link is skipped with a warning naming it; --strict stops at it', async () => {
    const dir = path.join(work, 'dangling');
    await writeShapesFolder(dir, { perClass: 2, classes: ['circle', 'square'] });
    const gone = path.join(work, 'deleted.png');
    const link = path.join(dir, 'square', 'moved.png');
    symlinkSync(gone, link);
    symlinkSync(path.join(work, 'no-such-class'), path.join(dir, 'triangle'));
    const messages: string[] = [];
    const loaded = await loadImageFolder(dir, { ...opts(), log: (m) => messages.push(m) });
    expect(loaded.scan.classNames).toEqual(['circle', 'square']);
    expect(loaded.train.count).toBe(4);
    expect(loaded.skipped).toEqual([
      {
        path: path.join(dir, 'triangle'),
        reason: `broken symbolic link: its target ${path.join(work, 'no-such-class')} does not exist`,
      },
      { path: link, reason: `broken symbolic link: its target ${gone} does not exist` },
    ]);
    expect(messages).toContain(
      `warning: skipping ${link}: broken symbolic link: its target ${gone} does not exist`,
    );
    rmSync(path.join(dir, 'triangle'));
    const r = cli(['train', '--data', dir, '--strict'], env);
    expectCleanError(
      r,
      /moved\.png: broken symbolic link: its target .*deleted\.png does not exist \(--strict stops at unreadable files\)/,
    );
  });
});

describe('an image over the pixel limit', () => {
  it('is skipped as too large, and stops --strict with that reason', async () => {
    const dir = path.join(work, 'huge');
    await writeShapesFolder(dir, { perClass: 2, classes: ['circle', 'square'] });
    const huge = path.join(dir, 'square', 'scan.png');
    writeFileSync(huge, pngDeclaring(8000, 7000)); // 56 million pixels declared, 85 bytes on disk
    const reason =
      'too large: the image is 8000x7000 pixels, more than the 50 million imgclf decodes; shrink it first';
    const messages: string[] = [];
    const opts = { imageSize: 8, channels: 1 as const, resizeMode: 'fill' as const };
    const loaded = await loadImageFolder(dir, {
      ...opts,
      cacheDir: path.join(work, 'huge-cache'),
      log: (m) => messages.push(m),
    });
    expect(loaded.skipped).toEqual([{ path: huge, reason }]);
    expect(loaded.train.count).toBe(4);
    expect(messages).toContain(`warning: skipping ${huge}: ${reason}`);
    await expect(
      loadImageFolder(dir, { ...opts, cacheDir: path.join(work, 'huge-cache-2'), strict: true }),
    ).rejects.toThrow(`${huge}: ${reason} (--strict stops at unreadable files)`);
    expectCleanError(
      cli(['train', '--data', dir, '--strict'], env),
      /scan\.png: too large: the image is 8000x7000 pixels, more than the 50 million imgclf decodes; shrink it first \(--strict/,
    );
  });
});
