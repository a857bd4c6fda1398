/**
 * The page's own classes without a browser: the plan is the CLI's (`imgclf train --data data
 * --image-size N --channels 3 --resize-mode fill --val-split 0.2`, sized to the data), class
 * names and order are an image folder's, and the run directory the page writes
 * (web/src/run-files.ts) is the one `imgclf` reads: loadRun takes it, its manifest verifies,
 * its data/ folder reloads to exactly the page's images, and the page reads back a zip of it
 * and runs written by `imgclf train`.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { crc32, deflateRawSync } from 'node:zlib';
import { Zip, type ZipInputFile, ZipPassThrough } from 'fflate';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { planFromFlags } from '../src/cli/commands/train.js';
import { type ImageShape, pixelsAsFloat, type Split } from '../src/core/data/dataset.js';
import { create, type Net } from '../src/core/models/index.js';
import { sizeToData } from '../src/core/plan.js';
import { predictProbabilities } from '../src/core/predict.js';
import { scanImageFolder } from '../src/node/data/folder.js';
import { loadRunData } from '../src/node/run/data.js';
import { loadRun, RUN_FORMAT, type RunMetadata, saveMetadata, saveModel } from '../src/node/run/rundir.js';
import { verifyRun } from '../src/node/run/save.js';
import {
  backboneImages,
  classNameProblem,
  folderOrder,
  heldOutSplit,
  OWN_HELD_OUT,
  ownImages,
  ownPlan,
  ownRunMetadata,
  type PageRunData,
  rowBytes,
  splitOf,
} from '../web/src/own-train.js';
import {
  netOf,
  readRunFiles,
  RunFileError,
  type RunFiles,
  runFiles,
  runFolderName,
  unzipRun,
  zipRun,
} from '../web/src/run-files.js';
import { pagePlan } from '../web/src/train.js';
import { tempDir } from './helpers.js';

const SHAPE: ImageShape = [8, 8, 3];
const CLASSES = ['camera', 'circle', 'cross'];

/** PNG encoding as the page does it with a canvas, here with sharp. */
const encodePng = async (pixels: Uint8Array, shape: ImageShape) =>
  new Uint8Array(
    await sharp(Buffer.from(pixels), { raw: { width: shape[1], height: shape[0], channels: shape[2] as 3 } })
      .png()
      .toBuffer(),
  );

function writeFiles(dir: string, files: RunFiles): void {
  for (const [rel, bytes] of files) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), bytes);
  }
}

/** Images whose class shows in their mean colour, 10 a class. */
function images(): { train: Split; test: Split } {
  const row = SHAPE[0] * SHAPE[1] * SHAPE[2];
  const labelled = Array.from({ length: 30 }, (_, i) => ({
    label: i % 3,
    pixels: Uint8Array.from({ length: row }, (_, k) => (k % 3 === i % 3 ? 200 : 40) + ((i * 7 + k) % 13)),
  }));
  return heldOutSplit(splitOf(labelled, SHAPE), SHAPE, 3, OWN_HELD_OUT, 0);
}

let net: Net;
let run: PageRunData;

beforeAll(async () => {
  await selectBackend('cpu');
  net = create('mlp', { inputShape: SHAPE, numClasses: 3, seed: 1 });
  const data = images();
  const { plan, note } = ownPlan({ model: 'mlp' }, ownImages(8), data.train.count);
  run = {
    metadata: ownRunMetadata({
      plan,
      note,
      images: ownImages(8),
      classNames: CLASSES,
      backend: 'cpu',
      testAccuracy: 0.5,
    }),
    metrics: [
      {
        epoch: 1,
        train_loss: 1,
        train_accuracy: 0.5,
        test_loss: 1,
        test_accuracy: 0.5,
        seconds: 0.1,
        eval_seconds: 0.01,
      },
    ],
    data,
  };
});

describe('the plan for your own classes is the CLI plan for a folder of them', () => {
  it.each(['cnn', 'mlp', 'softmax'])(
    '%s: pagePlan = imgclf train --data data --image-size 32 --hold-out 0.2 ...',
    (model) => {
      const images = ownImages(32);
      const page = pagePlan({ model, images });
      const cli = planFromFlags(
        { model, data: 'data', imageSize: 32, channels: 3, resizeMode: 'fill', holdOut: OWN_HELD_OUT },
        'en',
      );
      expect(page).toEqual(cli);
      expect(page).toMatchObject({ dataKind: 'folder', imageSize: 32, channels: 3, holdOut: 0.2 });
      expect(page.dataset).toBeUndefined();
      // Sized to the data as the CLI sizes it: ~300 steps, a batch of 8 for a few dozen images.
      for (const n of [20, 73, 500, 5000]) expect(ownPlan({ model }, images, n)).toEqual(sizeToData(cli, n));
      expect(ownPlan({ model }, images, 73).plan).toMatchObject({ batchSize: 8 });
      // Epochs given in the page are kept, as --epochs is.
      expect(ownPlan({ model, epochs: 3 }, images, 73).plan.epochs).toBe(3);
    },
  );
});

describe('the plan for a head on a backbone in the page is the CLI plan', () => {
  const backbone = 'http://127.0.0.1:9/tiny/';
  const images = backboneImages({ inputShape: [16, 16, 3] });

  it.each(['softmax', 'mlp'])(
    '%s: pagePlan = imgclf train --backbone URL --head H --data data ...',
    (head) => {
      const page = pagePlan({ model: head, backbone, images });
      const cli = planFromFlags(
        { backbone, head, data: 'data', resizeMode: 'fill', holdOut: OWN_HELD_OUT },
        'en',
      );
      expect(page).toEqual(cli);
      expect(page).toMatchObject({
        model: head,
        head,
        backbone,
        dataKind: 'folder',
        optimizer: expect.any(String),
      });
      // The backbone decides the input size: the plan has none of its own.
      expect(page.imageSize).toBeUndefined();
      expect(page.channels).toBeUndefined();
      for (const n of [20, 500])
        expect(ownPlan({ model: head, backbone }, images, n)).toEqual(sizeToData(cli, n));
    },
  );

  it('knn memorizes: one pass, as imgclf train and fit take it', () => {
    expect(ownPlan({ model: 'knn', backbone }, images, 40).plan.epochs).toBe(1);
  });
});

describe('class names', () => {
  it('must be usable as folder names, and distinct', () => {
    expect(classNameProblem('cat', ['dog'])).toBeUndefined();
    expect(classNameProblem('猫', [])).toBeUndefined();
    expect(classNameProblem('  ', [])).toBe('empty');
    expect(classNameProblem('cat ', ['cat'])).toBe('duplicate');
    for (const bad of ['a/b', 'a\\b', '.hidden', 'end.', 'a:b', 'a*b', 'x\u0001'])
      expect(classNameProblem(bad, [])).toBe('badName');
  });

  it('are ordered as `imgclf train --data` orders class folders', async () => {
    const names = ['b', 'B', 'a', 'Z', 'é', '中', '10', '9', 'a b'];
    const dir = tempDir();
    const png = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#888' } })
      .png()
      .toBuffer();
    for (const n of names) {
      mkdirSync(path.join(dir, n));
      writeFileSync(path.join(dir, n, 'x.png'), png);
    }
    expect(folderOrder(names)).toEqual((await scanImageFolder(dir)).classNames);
  });
});

describe('the run directory the page writes is the one imgclf reads', () => {
  let dir: string;
  let files: RunFiles;

  beforeAll(async () => {
    files = await runFiles(net, run, { encodePng });
    dir = path.join(tempDir(), 'run');
    writeFiles(dir, files);
  });

  it('loads with loadRun and predicts as the page model does', async () => {
    const loaded = await loadRun(dir);
    expect(loaded.metadata).toMatchObject({
      format: RUN_FORMAT,
      model: 'mlp',
      dataset: 'page',
      classNames: CLASSES,
      inputShape: SHAPE,
      preprocessing: { scale: 255, invertLightBackground: false, resize: 'fill' },
      data: { kind: 'folder', path: 'data', imageSize: 8, channels: 3, resizeMode: 'fill', valSplit: 0.2 },
      config: { model: 'mlp', dataKind: 'folder', data: 'data', imageSize: 8, batchSize: 8 },
      testAccuracy: 0.5,
    });
    expect(loaded.metrics).toEqual(run.metrics);
    const x = pixelsAsFloat(run.data!.test.images);
    const n = run.data!.test.count;
    expect(predictProbabilities(loaded.model, x, n, SHAPE)).toEqual(predictProbabilities(net, x, n, SHAPE));
    loaded.model.dispose();
  });

  it('has a manifest (SHA-256 from crypto.subtle) that imgclf verifies', async () => {
    const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest.format).toBe('imgclf-manifest/1');
    expect(Object.keys(manifest.files)).toEqual(
      expect.arrayContaining(['model.json', 'weights.bin', 'metadata.json', 'metrics.jsonl']),
    );
    expect(Object.keys(manifest.files).filter((f) => f.startsWith('data/')).length).toBe(30);
    await expect(verifyRun(dir)).resolves.toBeDefined();
    writeFileSync(path.join(dir, 'data', 'test', 'cross', '0000.png'), 'changed');
    await expect(loadRun(dir)).rejects.toThrow(/does not match/);
    writeFileSync(
      path.join(dir, 'data', 'test', 'cross', '0000.png'),
      files.get('data/test/cross/0000.png')!,
    );
  });

  it("keeps the page's images in data/: they reload to exactly the pixels trained and tested on", async () => {
    const cwd = process.cwd();
    // The recorded path is relative to the run directory: `cd DIR && imgclf evaluate --run .`.
    process.chdir(dir);
    try {
      const loaded = await loadRun('.');
      const data = await loadRunData(loaded.metadata);
      expect(data.classNames).toEqual(CLASSES);
      const sorted = (s: Split) =>
        Array.from({ length: s.count }, (_, i) => `${s.labels[i]}:${rowBytes(s, SHAPE, i).join()}`).sort();
      expect(sorted(data.train)).toEqual(sorted(run.data!.train));
      expect(sorted(data.test)).toEqual(sorted(run.data!.test));
      loaded.model.dispose();
    } finally {
      process.chdir(cwd);
    }
  });

  it('without its images names no data', async () => {
    const bare = await runFiles(net, { ...run, data: undefined });
    expect([...bare.keys()].some((f) => f.startsWith('data/'))).toBe(false);
    const meta = JSON.parse(new TextDecoder().decode(bare.get('metadata.json')));
    expect(meta.data).toBeUndefined();
    const d = path.join(tempDir(), 'bare');
    writeFiles(d, bare);
    (await loadRun(d)).model.dispose();
  });
});

/** A zip entry: stored bytes, or deflated bytes with the size and CRC its headers declare. */
type ZipEntry =
  { name: string; data: Uint8Array } | { name: string; deflated: Uint8Array; size: number; crc: number };

/**
 * A zip of `entries`, written with fflate's streaming Zip. Deflated entries come ready-made
 * (from Node's zlib) so that an entry can declare any size: fflate's own deflate would take
 * about 10 s for 500 MB on this machine, zlib takes 1 to 2 s.
 */
function zipOf(entries: ZipEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const zip = new Zip((err, chunk) => {
    if (err) throw err;
    parts.push(chunk);
  });
  for (const e of entries) {
    if ('data' in e) {
      const file = new ZipPassThrough(e.name);
      zip.add(file);
      file.push(e.data, true);
    } else {
      const file: ZipInputFile = { filename: e.name, size: e.size, crc: e.crc, compression: 8 };
      zip.add(file);
      file.ondata!(null, e.deflated as Uint8Array<ArrayBuffer>, true);
    }
  }
  zip.end();
  return Buffer.concat(parts);
}

/** 500 MiB of zeros, deflated at level 9 (about 500 KB), with its CRC; made once. */
let zeros: { deflated: Uint8Array; size: number; crc: number } | undefined;
function zeros500(): { deflated: Uint8Array; size: number; crc: number } {
  if (zeros) return zeros;
  const size = 500 * 2 ** 20;
  const chunk = new Uint8Array(4 * 2 ** 20);
  let crc = 0;
  for (let done = 0; done < size; done += chunk.length) crc = crc32(chunk, crc);
  zeros = { deflated: deflateRawSync(new Uint8Array(size), { level: 9 }), size, crc };
  return zeros;
}

/** `unzipped` holds the run's five files and nothing else, each with the bytes `files` has. */
function expectRunFilesOnly(unzipped: RunFiles, files: RunFiles): void {
  expect([...unzipped.keys()].sort()).toEqual([
    'manifest.json',
    'metadata.json',
    'metrics.jsonl',
    'model.json',
    'weights.bin',
  ]);
  for (const [rel, bytes] of unzipped) expect(bytes).toEqual(files.get(rel));
}

describe('the page reads run directories back', () => {
  it('from a zip (in a folder, images left out) or from the files themselves', async () => {
    const files = await runFiles(net, run, { encodePng });
    const folder = runFolderName('shapes and 相机!');
    expect(folder).toBe('imgclf-shapes-and-相机');
    const unzipped = unzipRun(zipRun(files, folder));
    expectRunFilesOnly(unzipped, files);
    const read = await readRunFiles(unzipped);
    expect(read.manifest).toBe('checked');
    expect(read.metadata.classNames).toEqual(CLASSES);
    expect(read.metrics).toEqual(run.metrics);
    const back = await netOf(read.metadata, read.artifacts);
    const x = pixelsAsFloat(run.data!.test.images);
    const n = run.data!.test.count;
    expect(predictProbabilities(back, x, n, SHAPE)).toEqual(predictProbabilities(net, x, n, SHAPE));
    back.dispose();
  });

  it('from a zip with a 500 MB junk entry, inflating only the files it uses', async () => {
    const files = await runFiles(net, run, { encodePng });
    const folder = 'imgclf-run';
    const bomb = zeros500();
    // Bytes that are no deflate stream at all: inflating them would throw, so a zip holding
    // them reads only if they are never inflated.
    const broken = { deflated: new Uint8Array(64).fill(0xff), size: 1000, crc: 0 };
    const zip = zipOf([
      ...[...files].map(([rel, data]) => ({ name: `${folder}/${rel}`, data })),
      // Next to the run's files and deeper down under the names the page reads.
      { name: `${folder}/junk.bin`, ...bomb },
      { name: `${folder}/data/junk/weights.bin`, ...bomb },
      { name: `${folder}/data/junk/model.json`, ...broken },
      { name: 'junk/metadata.json', ...broken },
    ]);
    expect(zip.length).toBeLessThan(2 * 2 ** 20 + [...files.values()].reduce((s, b) => s + b.length, 0));
    const before = process.memoryUsage().rss;
    const start = performance.now();
    const unzipped = unzipRun(zip);
    const ms = performance.now() - start;
    const rssMb = (process.memoryUsage().rss - before) / 2 ** 20;
    console.log(
      `zip of ${zip.length} bytes with 2 x 500 MiB of junk: read in ${ms.toFixed(0)} ms, RSS +${rssMb.toFixed(1)} MB`,
    );
    expectRunFilesOnly(unzipped, files);
    expect(rssMb).toBeLessThan(100);
    expect((await readRunFiles(unzipped)).manifest).toBe('checked');
  });

  it('refuses a zip whose used files declare more than 512 MB, or unpack to other sizes than declared', async () => {
    const files = await runFiles(net, run);
    const weights = files.get('weights.bin')!;
    const rest = [...files].filter(([rel]) => rel !== 'weights.bin').map(([name, data]) => ({ name, data }));
    const deflated = deflateRawSync(weights);
    const crc = crc32(weights);
    // Declared 600 MB: refused before anything is inflated.
    const huge = zipOf([...rest, { name: 'weights.bin', deflated, size: 600 * 2 ** 20, crc }]);
    expect(() => unzipRun(huge)).toThrow(
      new RunFileError("the run's files in the zip unpack to more than 512 MB, more than the page reads"),
    );
    // Declared larger than it holds: comes out short and is refused.
    const short = zipOf([...rest, { name: 'weights.bin', deflated, size: weights.length + 100, crc }]);
    expect(() => unzipRun(short)).toThrow(
      `weights.bin in the zip unpacks to ${weights.length} bytes, not the ${weights.length + 100} the zip declares: the zip is corrupt`,
    );
    // Declared smaller than it holds (500 MB of zeros said to be the weights' size): no more
    // than the declared bytes come out, and they are not the weights.
    const bomb = zeros500();
    const lying = zipOf([...rest, { name: 'weights.bin', ...bomb, size: weights.length }]);
    const before = process.memoryUsage().rss;
    const unzipped = unzipRun(lying);
    expect((process.memoryUsage().rss - before) / 2 ** 20).toBeLessThan(100);
    expect(unzipped.get('weights.bin')!.length).toBe(weights.length);
    await expect(readRunFiles(unzipped)).rejects.toThrow(/weights\.bin does not match manifest\.json/);
  });

  it('refuses what imgclf refuses', async () => {
    const files = await runFiles(net, run, { encodePng });
    const without = (name: string) => new Map([...files].filter(([k]) => k !== name));
    await expect(readRunFiles(without('weights.bin'))).rejects.toThrow(/weights\.bin is listed in manifest/);
    const noManifest = without('manifest.json');
    expect((await readRunFiles(noManifest)).manifest).toBe('none');
    const tampered = new Map(noManifest);
    tampered.set('weights.bin', files.get('weights.bin')!.slice(4));
    await expect(readRunFiles(tampered)).rejects.toThrow(/corrupt or truncated/);
    const changed = new Map(files);
    const w = files.get('weights.bin')!.slice();
    w[0] ^= 1;
    changed.set('weights.bin', w);
    await expect(readRunFiles(changed)).rejects.toThrow(/does not match manifest\.json/);
    const twoClasses = { ...run.metadata, classNames: ['a', 'b'] };
    const read = await readRunFiles(noManifest);
    await expect(netOf(twoClasses, read.artifacts)).rejects.toThrow(/names 2 classes but the model has 3/);
    const backbone = new Map(noManifest);
    backbone.set(
      'metadata.json',
      new TextEncoder().encode(JSON.stringify({ ...run.metadata, backbone: {} })),
    );
    await expect(readRunFiles(backbone)).rejects.toThrow(RunFileError);
    // A backbone the page can fetch (a URL, the hub) or had opened from files is read; a path
    // on the training machine is not.
    const withBackbone = (source: string) => {
      const m = new Map(noManifest);
      const record = { source, format: 'onnx', sha256: '0'.repeat(64), features: 5, inputShape: SHAPE };
      m.set('metadata.json', new TextEncoder().encode(JSON.stringify({ ...run.metadata, backbone: record })));
      return m;
    };
    for (const source of ['https://example.org/m.onnx', 'hf:a/b@main', 'page-file:m.onnx'])
      expect((await readRunFiles(withBackbone(source))).metadata.backbone).toMatchObject({ source });
    await expect(readRunFiles(withBackbone('/home/me/m.onnx'))).rejects.toThrow(
      /a path on the machine that trained it/,
    );
    // With a backbone, the model is a head on its features: [1, 1, D], not the images.
    const withFeatures = await readRunFiles(withBackbone('https://example.org/m.onnx'));
    await expect(netOf(withFeatures.metadata, withFeatures.artifacts)).rejects.toThrow(
      /does not take the 1x1x5 backbone features/,
    );
    const head = create('softmax', { inputShape: [1, 1, 5], numClasses: 3, seed: 3 });
    const headNet = await netOf(withFeatures.metadata, await head.artifacts());
    headNet.dispose();
    head.dispose();
    expect(() => unzipRun(new Uint8Array([1, 2, 3]))).toThrow(/not a readable zip/);
  });

  it('reads a run written by imgclf train (node/run/rundir.ts)', async () => {
    const dir = path.join(tempDir(), 'cli-run');
    const gray = create('softmax', { inputShape: [28, 28, 1], numClasses: 3, seed: 2 });
    await saveModel(gray, dir);
    await saveMetadata(dir, {
      ...run.metadata,
      model: 'softmax',
      inputShape: [28, 28, 1],
      preprocessing: { scale: 255, invertLightBackground: true, resize: 'contain' },
    } as RunMetadata);
    const picked: RunFiles = new Map(
      ['model.json', 'weights.bin', 'metadata.json', 'manifest.json'].map((f) => [
        f,
        new Uint8Array(readFileSync(path.join(dir, f))),
      ]),
    );
    const read = await readRunFiles(picked);
    expect(read.manifest).toBe('checked');
    const back = await netOf(read.metadata, read.artifacts);
    const x = new Float32Array(28 * 28).fill(0.3);
    expect(predictProbabilities(back, x, 1, [28, 28, 1])).toEqual(
      predictProbabilities(gray, x, 1, [28, 28, 1]),
    );
    back.dispose();
    gray.dispose();
  });
});
