/**
 * The backbone section of `npm run bench` (bench/run.ts runs it; alone: `tsx bench/backbone.ts`):
 * feature extraction with an ONNX backbone, MobileNetV2's architecture at 224 px with random
 * weights, exported by PyTorch (`torch.onnx.export(torchvision.models.mobilenet_v2(weights=None))`,
 * its `features` then the average pool, as `pooler_output` [N, 1280]) in the Hugging Face layout
 * with ImageNet preprocessing. Three ways side by side, in images per second:
 *
 *   imgclf --backbone   `imgclf train --backbone DIR --data FOLDER` on 800 generated JPEGs
 *                       (320x240) with a fresh cache: decoding (sharp) plus features (ONNX
 *                       Runtime), as a user gets them the first time; both parts are reported,
 *                       and the whole command's wall time against the bound for it
 *                       (3x the raw forward time of those images, plus 15 s)
 *   raw onnxruntime     onnxruntime-node's session.run on pre-made [32, 3, 224, 224] tensors, all
 *                       cores: the ceiling for the same graph
 *   imgclf tfjs         the same command on Keras' MobileNetV2 in tfjs layers form
 *                       (bench/mobilenet-v2.ts), run by tfjs wasm (--backbone-engine tfjs, as
 *                       every tfjs backbone ran before ONNX Runtime), on 128 of the JPEGs
 *   imgclf tfjs→onnx    that tfjs model again with --backbone-engine onnx: converted by imgclf's
 *                       exporter and run by ONNX Runtime, on all 800
 *
 * Without /usr/bin/python3 and torch + torchvision, the section is skipped with the reason.
 * `tsx bench/backbone.ts --model DIR` measures a graph you have instead (a folder in the Hugging
 * Face layout whose input is pixel_values [N, 3, 224, 224]). Prints one JSON object:
 * { rows, skipped, notes }.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { saveLayersFolder } from '../test/fixtures/layers-folder.js';
import { mobileNetV2 } from './mobilenet-v2.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const IMAGES = 800;
/** The tfjs path is slow: it gets a share of the folder, enough for a steady rate. */
const TFJS_IMAGES = 128;
const BATCH = 32;

export interface BackboneRow {
  key: string;
  subject: string;
  images: number;
  images_per_second: number;
  /** imgclf: the two parts of the first run. */
  decode_seconds?: number;
  feature_seconds?: number;
  feature_images_per_second?: number;
  /** The whole `imgclf train` command, start to end (process start-up and the head's training included). */
  command_seconds?: number;
  peak_rss_mb?: number;
  note: string;
}

export interface BackboneResult {
  rows: BackboneRow[];
  skipped: { key: string; reason: string }[];
  notes: string[];
}

const EXPORT = `
import sys, torch, torchvision
out = sys.argv[1]
m = torchvision.models.mobilenet_v2(weights=None).eval()
net = torch.nn.Sequential(m.features, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(1))
x = torch.zeros(1, 3, 224, 224)
kw = dict(input_names=['pixel_values'], output_names=['pooler_output'],
          dynamic_axes={'pixel_values': {0: 'batch'}, 'pooler_output': {0: 'batch'}}, opset_version=13)
try:
    torch.onnx.export(net, x, out, dynamo=False, **kw)
except TypeError:
    torch.onnx.export(net, x, out, **kw)
`;

/** ImageNet preprocessing as transformers' MobileNetV2 image processor declares it. */
const PREPROCESSOR = {
  do_resize: true,
  size: { shortest_edge: 256 },
  do_center_crop: true,
  crop_size: { height: 224, width: 224 },
  do_rescale: true,
  rescale_factor: 1 / 255,
  do_normalize: true,
  image_mean: [0.485, 0.456, 0.406],
  image_std: [0.229, 0.224, 0.225],
};

function torchMissing(): string | undefined {
  const r = spawnSync('/usr/bin/python3', ['-c', 'import torch, torchvision'], { encoding: 'utf8' });
  return r.status === 0
    ? undefined
    : 'python3-torch / python3-torchvision not installed (apt-get install -y python3-torch python3-torchvision), so no MobileNetV2 ONNX file can be exported here';
}

/** MobileNetV2 (random weights) in the Hugging Face layout under `dir`. */
function exportMobileNet(dir: string): string | undefined {
  mkdirSync(path.join(dir, 'onnx'), { recursive: true });
  const r = spawnSync('/usr/bin/python3', ['-c', EXPORT, path.join(dir, 'onnx', 'model.onnx')], {
    encoding: 'utf8',
  });
  if (r.status !== 0) return `torch.onnx.export failed: ${(r.stderr || r.stdout).trim().split('\n').at(-1)}`;
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'mobilenet_v2' }));
  writeFileSync(path.join(dir, 'preprocessor_config.json'), JSON.stringify(PREPROCESSOR));
  return undefined;
}

/**
 * `count` JPEGs of 320x240 in 4 class folders: smooth colour fields with noise, so that decoding
 * costs what a photo of that size costs.
 */
async function writeJpegs(folder: string, count: number): Promise<void> {
  const [w, h] = [320, 240];
  for (let i = 0; i < count; i++) {
    const dir = path.join(folder, `class${i % 4}`);
    mkdirSync(dir, { recursive: true });
    const raw = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let c = 0; c < 3; c++) {
          const noise = ((x * 7919 + y * 104729 + c * 31 + i * 613) % 61) - 30;
          raw[(y * w + x) * 3 + c] = Math.max(0, Math.min(255, ((x + y * (c + 1) + i * 37) % 256) + noise));
        }
    await sharp(raw, { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 85 })
      .toFile(path.join(dir, `${i}.jpg`));
  }
}

interface Subject {
  key: string;
  subject: string;
  /** Arguments added to `imgclf train` (the engine). */
  args: string[];
  note: string;
}

/** The first run of `imgclf train --backbone` on the folder, with a fresh cache. */
function imgclfRow(model: string, folder: string, cache: string, who: Subject): BackboneRow | string {
  rmSync(cache, { recursive: true, force: true });
  const start = performance.now();
  const r = spawnSync(
    process.execPath,
    [
      path.join(ROOT, 'bin', 'imgclf.js'),
      'train',
      '--backbone',
      model,
      ...who.args,
      '--data',
      folder,
      '--epochs',
      '1',
      '--out',
      path.join(cache, 'run'),
      '--json',
    ],
    { encoding: 'utf8', env: { ...process.env, XDG_CACHE_HOME: cache }, maxBuffer: 64 * 1024 * 1024 },
  );
  const wall = (performance.now() - start) / 1000;
  if (r.status !== 0) return `imgclf train failed: ${r.stderr.trim().split('\n').at(-1)}`;
  const json = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
    data: { seconds: number };
    peak_rss_mb: number;
  };
  const m = /features: computed for (\d+) images in ([\d.]+)s/.exec(r.stderr);
  if (!m) return 'imgclf train did not report its feature time';
  const images = Number(m[1]);
  const featureSeconds = Number(m[2]);
  const decode = json.data.seconds;
  return {
    key: who.key,
    subject: who.subject,
    images,
    images_per_second: images / (decode + featureSeconds),
    decode_seconds: decode,
    feature_seconds: featureSeconds,
    feature_images_per_second: images / featureSeconds,
    command_seconds: wall,
    peak_rss_mb: json.peak_rss_mb,
    note: who.note,
  };
}

/** onnxruntime-node alone on pre-made tensors: the same graph's ceiling here. */
async function rawRow(model: string): Promise<BackboneRow> {
  const ort = await import('onnxruntime-node');
  const threads = os.availableParallelism();
  const session = await ort.InferenceSession.create(readFileSync(model), { intraOpNumThreads: threads });
  const data = new Float32Array(BATCH * 3 * 224 * 224).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  const feeds = { pixel_values: new ort.Tensor('float32', data, [BATCH, 3, 224, 224]) };
  await session.run(feeds); // warm-up
  const start = performance.now();
  for (let done = 0; done < IMAGES; done += BATCH) await session.run(feeds);
  const seconds = (performance.now() - start) / 1000;
  await session.release();
  return {
    key: 'backbone-ort/raw',
    subject: 'onnxruntime-node session.run',
    images: IMAGES,
    images_per_second: IMAGES / seconds,
    note: `pre-made [${BATCH}, 3, 224, 224] tensors, intraOpNumThreads ${threads}, no decoding`,
  };
}

export async function benchBackbone(given?: string): Promise<BackboneResult> {
  const notes: string[] = [];
  const missing = given ? undefined : torchMissing();
  if (missing) return { rows: [], skipped: [{ key: 'backbone', reason: missing }], notes };
  const work = mkdtempSync(path.join(os.tmpdir(), 'imgclf-bench-backbone-'));
  try {
    const model = given ? path.resolve(given) : path.join(work, 'mobilenet_v2');
    const failed = given ? undefined : exportMobileNet(model);
    if (failed) return { rows: [], skipped: [{ key: 'backbone', reason: failed }], notes };
    const folder = path.join(work, 'jpegs');
    const few = path.join(work, 'jpegs-few');
    await writeJpegs(folder, IMAGES);
    await writeJpegs(few, TFJS_IMAGES);
    const keras = path.join(work, 'mobilenet_v2_tfjs');
    await saveLayersFolder(mobileNetV2(224), keras, 'keras-style MobileNetV2 (bench)');
    const rows: BackboneRow[] = [];
    const skipped: { key: string; reason: string }[] = [];
    const cache = path.join(work, 'cache');
    const subjects: [string, string, Subject][] = [
      [
        model,
        folder,
        {
          key: 'backbone-imgclf/onnx',
          subject: 'imgclf --backbone (PyTorch export, ONNX Runtime)',
          args: [],
          note: `first run, fresh cache: decoding ${IMAGES} JPEGs to 224x224 (sharp) then features in batches of ${BATCH}`,
        },
      ],
      [
        keras,
        folder,
        {
          key: 'backbone-imgclf/tfjs-onnx',
          subject: 'imgclf --backbone (Keras tfjs model, converted, ONNX Runtime)',
          args: ['--backbone-engine', 'onnx'],
          note: `the tfjs layers model converted by imgclf's exporter; ${IMAGES} JPEGs, fresh cache`,
        },
      ],
      [
        keras,
        few,
        {
          key: 'backbone-imgclf/tfjs',
          subject: 'imgclf --backbone (Keras tfjs model, tfjs wasm)',
          args: ['--backbone-engine', 'tfjs'],
          note: `the tfjs path as every tfjs backbone ran before; ${TFJS_IMAGES} JPEGs, fresh cache`,
        },
      ],
    ];
    for (const [m, f, who] of subjects) {
      if (given && who.key !== 'backbone-imgclf/onnx') continue;
      const row = imgclfRow(m, f, cache, who);
      if (typeof row === 'string') skipped.push({ key: who.key, reason: row });
      else rows.push(row);
    }
    const raw = await rawRow(path.join(model, 'onnx', 'model.onnx'));
    rows.push(raw);
    const ours = rows.find((r) => r.key === 'backbone-imgclf/onnx');
    const tfjs = rows.find((r) => r.key === 'backbone-imgclf/tfjs');
    if (ours && tfjs)
      notes.push(
        `feature extraction with decoding: ${(ours.images_per_second / tfjs.images_per_second).toFixed(1)}x the tfjs path (target >= 8x, aim 15x)`,
      );
    if (ours?.command_seconds !== undefined) {
      const bound = (3 * ours.images) / raw.images_per_second + 15;
      notes.push(
        `the whole train --backbone command on ${ours.images} images, cold cache: ${ours.command_seconds.toFixed(1)} s against a bound of ${bound.toFixed(1)} s (3x the raw forward time, ${(ours.images / raw.images_per_second).toFixed(1)} s, plus 15 s)`,
      );
    }
    return { rows, skipped, notes };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--model');
  process.stdout.write(JSON.stringify(await benchBackbone(i > 0 ? process.argv[i + 1] : undefined)) + '\n');
}
