/**
 * `npm run bench`: the seed's model with the seed's settings (softmax regression, SGD lr 0.1,
 * batch 256), side by side in one run, each subject in its own process:
 *
 *   imgclf on every available backend (wasm, cpu, tensorflow when @tensorflow/tfjs-node is installed)
 *   naive-tfjs: the same model written as the tfjs examples do (model.fit on whole-dataset tensors)
 *   seed-pytorch: ../shared/reference/seed_reference.py under Debian's /usr/bin/python3 (skipped with a
 *                 note when torch/torchvision are missing)
 *   pytorch-inmemory: bench/torch_inmemory.py, the same model with the data held as one tensor
 *
 * imgclf's wasm row runs on 1 and on 2 worker threads (backend/workers), and on 1 with the fused
 * dense step turned off (imgclf-unfused, `--no-fused`; bench/fused-dense.ts is the quick A/B).
 *
 * Then the CNN section: the `cnn` model with its default plan for one full epoch, on 1 and 2
 * worker threads, beside ../shared/reference/cnn_reference.py (the same network and recipe in
 * PyTorch, data in memory) on 2 threads and 1: ms per step, epoch seconds, ratios, peak RSS.
 *
 * Then the kernel section (bench/conv-kernels.ts, its own process, one thread): ms and GFLOP/s of
 * the convolution kernels on the cnn's and lenet's shapes, against XNNPACK's convolution on the
 * same shapes and against the measured ceiling of plain 128-bit SIMD (simd_peak).
 *
 * Then the backbone section (bench/backbone.ts): feature extraction through `--backbone` with
 * MobileNetV2 exported to ONNX by PyTorch, beside raw onnxruntime-node on the same graph.
 *
 * Then the prediction section (bench/predict.ts): `imgclf predict --results-file` over 10,000
 * PNGs at 28 px and 2,000 JPEGs at 224 px on both engines, beside sharp decoding alone and a
 * PyTorch DataLoader script (bench/predict_torch.py) doing the same job: images/s and peak RSS.
 *
 * Reports median epoch seconds, images/s, peak RSS, final test accuracy, time to first batch and
 * evaluation seconds, with ratios; writes bench/results/softmax-<date>.json and
 * bench/results/latest.json, and refreshes the tables in BENCHMARKS.md.
 *
 * Options: --quick (fewer epochs), --epochs N (imgclf wasm), --only a,b (subject keys),
 * --no-cnn (skip the CNN section), --cnn-only (CNN and kernel sections), --no-kernels, --no-backbone, --backbone-only, --no-predict,
 * --predict-only (--no-predict-224 leaves out its 224 px set).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { writeFileAtomic } from '../src/node/fs.js';
import { type BackboneResult, benchBackbone } from './backbone.js';
import { benchPredict, type PredictResult } from './predict.js';
import type { KernelBench } from './conv-kernels.js';
import type { WorkerResult } from './worker.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SEED_SCRIPT = path.resolve(ROOT, '..', 'shared', 'reference', 'seed_reference.py');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const only = flag('--only')?.split(',');
const backboneOnly = args.includes('--backbone-only');
const predictOnly = args.includes('--predict-only');
const cnnSection = !args.includes('--no-cnn') && !backboneOnly && !predictOnly;
const softmaxSection = !args.includes('--cnn-only') && !backboneOnly && !predictOnly;
const backboneSection = !args.includes('--no-backbone') && !args.includes('--cnn-only') && !predictOnly;
const predictSection = !args.includes('--no-predict') && !args.includes('--cnn-only') && !backboneOnly;
const kernelSection = !args.includes('--no-kernels') && !backboneOnly && !predictOnly;
const CNN_SCRIPT = path.resolve(ROOT, '..', 'shared', 'reference', 'cnn_reference.py');
const fastEpochs = Number(flag('--epochs') ?? (quick ? 3 : 5));
const slowEpochs = quick ? 1 : 3;

interface Row {
  key: string;
  subject: string;
  backend: string;
  epochs: number;
  median_epoch_seconds: number;
  images_per_second: number;
  peak_rss_mb: number | null;
  test_accuracy: number;
  first_batch_seconds: number | null;
  data_load_seconds: number | null;
  eval_seconds: number | null;
  epoch_seconds: number[];
  workers?: number;
  ms_per_step?: number;
  note?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function log(m: string): void {
  process.stderr.write(m + '\n');
}

/** Where the imgclf cnn run leaves its network and recipe for cnn_reference.py --like. */
const CNN_LIKE = mkdtempSync(path.join(os.tmpdir(), 'imgclf-bench-cnn-'));
process.on('exit', () => rmSync(CNN_LIKE, { recursive: true, force: true }));

function runWorker(subject: string, backend: string, epochs: number, workers = 1): Row | string {
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(ROOT, 'bench', 'worker.ts'),
      subject,
      backend,
      String(epochs),
      String(workers),
    ],
    {
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, IMGCLF_BENCH_LIKE: CNN_LIKE },
    },
  );
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  if (r.status !== 0 || !line.startsWith('{'))
    return (
      r.stderr
        .trim()
        .split('\n')
        .find((l) => /error/i.test(l)) ?? `exit ${r.status}`
    ).slice(0, 200);
  const w = JSON.parse(line) as WorkerResult;
  const secs = w.epochs.map((e) => e.seconds);
  const med = median(secs);
  return {
    key: `${subject}/${w.backend}${workers > 1 ? `-${workers}w` : ''}`,
    subject,
    backend: `${w.backend}, ${workers} worker${workers > 1 ? 's' : ''}`,
    workers,
    ms_per_step: w.ms_per_step,
    epochs: secs.length,
    median_epoch_seconds: med,
    images_per_second: 60000 / med,
    peak_rss_mb: w.peak_rss_mb,
    test_accuracy: w.epochs.at(-1)!.test_accuracy,
    first_batch_seconds: w.first_batch_seconds,
    data_load_seconds: w.data_load_seconds,
    eval_seconds: median(w.epochs.map((e) => e.eval_seconds)),
    epoch_seconds: secs,
  };
}

/** Runs a PyTorch script that prints one JSON line per run (seed_reference.py's format). */
function runTorch(key: string, script: string, epochs: number, note: string): Row | string {
  const missing = torchMissing();
  if (missing) return missing;
  const r = runTorchScript(script, [String(epochs), '--json']);
  if (typeof r === 'string') return r;
  const j = r.json as { epochs: { seconds: number; test_accuracy: number }[] };
  const secs = j.epochs.map((e) => e.seconds);
  const med = median(secs);
  return {
    key,
    subject: key.split('/')[0],
    backend: 'torch cpu',
    epochs: secs.length,
    median_epoch_seconds: med,
    images_per_second: 60000 / med,
    peak_rss_mb: r.rssMb,
    test_accuracy: j.epochs.at(-1)!.test_accuracy,
    first_batch_seconds: null,
    data_load_seconds: null,
    eval_seconds: null,
    epoch_seconds: secs,
    note,
  };
}

function torchMissing(): string | undefined {
  return spawnSync('/usr/bin/python3', ['-c', 'import torch, torchvision'], { encoding: 'utf8' }).status === 0
    ? undefined
    : 'python3-torch / python3-torchvision not installed (apt-get install -y python3-torch python3-torchvision)';
}

function hasTfjsNode(): boolean {
  return (
    spawnSync(
      process.execPath,
      ['-e', "import('@tensorflow/tfjs-node').then(()=>process.exit(0),()=>process.exit(1))"],
      { cwd: ROOT },
    ).status === 0
  );
}

const plan: [string, () => Row | string][] = [
  ['imgclf/wasm', () => runWorker('imgclf', 'wasm', fastEpochs)],
  ['imgclf-unfused/wasm', () => runWorker('imgclf-unfused', 'wasm', fastEpochs)],
  ['imgclf/wasm-2w', () => runWorker('imgclf', 'wasm', fastEpochs, 2)],
  ['imgclf/cpu', () => runWorker('imgclf', 'cpu', slowEpochs)],
  [
    'imgclf/tensorflow',
    () =>
      hasTfjsNode()
        ? runWorker('imgclf', 'tensorflow', fastEpochs)
        : '@tensorflow/tfjs-node is not installed',
  ],
  ['naive-tfjs/wasm', () => runWorker('naive-tfjs', 'wasm', slowEpochs)],
  ['naive-tfjs/cpu', () => runWorker('naive-tfjs', 'cpu', slowEpochs)],
  [
    'seed-pytorch/cpu',
    () => runTorch('seed-pytorch/cpu', SEED_SCRIPT, slowEpochs, 'torchvision DataLoader, num_workers=4'),
  ],
  [
    'pytorch-inmemory/cpu',
    () =>
      runTorch(
        'pytorch-inmemory/cpu',
        path.join(ROOT, 'bench', 'torch_inmemory.py'),
        fastEpochs,
        'whole dataset as one tensor, indexed per batch',
      ),
  ],
];

/** cnn_reference.py: one epoch on `threads` threads, and the ms per step of its first 30 steps. */
function runCnnTorch(threads: number): Row | string {
  const key = `cnn-pytorch/${threads}t`;
  // The same network and recipe as imgclf's cnn run above (its model.json and metadata.json).
  const like = existsSync(path.join(CNN_LIKE, 'model.json')) ? ['--like', CNN_LIKE] : [];
  const epoch = runTorchScript(CNN_SCRIPT, ['1', '--json', '--threads', String(threads), ...like]);
  if (typeof epoch === 'string') return epoch;
  const probe = runTorchScript(CNN_SCRIPT, ['--steps', '30', '--threads', String(threads), ...like]);
  if (typeof probe === 'string') return probe;
  const j = epoch.json as { epochs: { seconds: number; test_accuracy: number }[] };
  const secs = j.epochs.map((e) => e.seconds);
  return {
    key,
    subject: 'cnn-pytorch',
    backend: `torch cpu, ${threads} thread${threads > 1 ? 's' : ''}`,
    epochs: 1,
    median_epoch_seconds: median(secs),
    images_per_second: 60000 / median(secs),
    peak_rss_mb: epoch.rssMb,
    test_accuracy: j.epochs.at(-1)!.test_accuracy,
    first_batch_seconds: null,
    data_load_seconds: null,
    eval_seconds: null,
    epoch_seconds: secs,
    ms_per_step: (probe.json as { ms_per_step: number }).ms_per_step,
    note: 'cnn_reference.py: same network and recipe, data in memory',
  };
}

/** Runs a Python script with these arguments under a wrapper that also reports its peak RSS. */
function runTorchScript(script: string, argv: string[]): { json: unknown; rssMb: number } | string {
  if (!existsSync(script)) return `${script} not found`;
  const wrapper = [
    'import json, resource, runpy, sys',
    `sys.argv = ${JSON.stringify([path.basename(script), ...argv])}`,
    `runpy.run_path(${JSON.stringify(script)}, run_name='__main__')`,
    "print(json.dumps({'maxrss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))",
  ].join('\n');
  const r = spawnSync('/usr/bin/python3', ['-c', wrapper], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) return `${path.basename(script)} failed: ${r.stderr.trim().split('\n').at(-1)}`;
  const lines = r.stdout.trim().split('\n');
  const rss = JSON.parse(lines.at(-1)!) as { maxrss_kb: number };
  return { json: JSON.parse(lines.at(-2)!), rssMb: rss.maxrss_kb / 1024 };
}

const cnnPlan: [string, () => Row | string][] = [
  ['cnn-imgclf/wasm', () => runWorker('imgclf-cnn', 'wasm', 1, 1)],
  ['cnn-imgclf/wasm-2w', () => runWorker('imgclf-cnn', 'wasm', 1, 2)],
  ['cnn-pytorch/2t', () => runCnnTorch(2)],
  ['cnn-pytorch/1t', () => runCnnTorch(1)],
];

const rows: Row[] = [];
const cnnRows: Row[] = [];
const skipped: { key: string; reason: string }[] = [];
const runs: [string, () => Row | string, Row[]][] = [
  ...(softmaxSection ? plan.map(([k, f]): [string, () => Row | string, Row[]] => [k, f, rows]) : []),
  ...(cnnSection
    ? cnnPlan.map(([k, f]): [string, () => Row | string, Row[]] => [
        k,
        () => (k.startsWith('cnn-pytorch') ? (torchMissing() ?? f()) : f()),
        cnnRows,
      ])
    : []),
];
for (const [key, run, into] of runs) {
  if (only && !only.includes(key)) continue;
  log(`bench: ${key} ...`);
  const r = run();
  if (typeof r === 'string') {
    skipped.push({ key, reason: r });
    log(`bench: ${key} skipped: ${r}`);
  } else {
    into.push(r);
    log(
      `bench: ${key} median ${r.median_epoch_seconds.toFixed(3)} s/epoch, test acc ${r.test_accuracy.toFixed(4)}`,
    );
  }
}

// The kernel section: one process, one thread, variants interleaved (bench/conv-kernels.ts).
let kernels: KernelBench | undefined;
if (kernelSection && !only) {
  log('bench: kernels (bench/conv-kernels.ts) ...');
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'bench', 'conv-kernels.ts'), quick ? '1' : '3', '--json'],
    {
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  if (r.status === 0 && line.startsWith('{')) kernels = JSON.parse(line) as KernelBench;
  else
    skipped.push({
      key: 'kernels',
      reason: r.stderr.trim().split('\n').at(-1)?.slice(0, 200) ?? `exit ${r.status}`,
    });
}

// The backbone section: images/s of feature extraction, side by side.
let backbone: BackboneResult | undefined;
if (backboneSection && !only) {
  log('bench: backbone (MobileNetV2 as ONNX) ...');
  backbone = await benchBackbone();
  for (const s of backbone.skipped) {
    skipped.push(s);
    log(`bench: ${s.key} skipped: ${s.reason}`);
  }
}

// The prediction section: images/s and peak RSS of batch prediction, side by side.
let prediction: PredictResult | undefined;
if (predictSection && !only) {
  log('bench: prediction (predict --results-file) ...');
  prediction = await benchPredict({ repeats: quick ? 1 : 3, skip224: args.includes('--no-predict-224') });
  for (const s of prediction.skipped) {
    skipped.push(s);
    log(`bench: ${s.key} skipped: ${s.reason}`);
  }
}

const seed = rows.find((r) => r.subject === 'seed-pytorch');
const naive = rows.find((r) => r.key === 'naive-tfjs/wasm');
const inMemory = rows.find((r) => r.subject === 'pytorch-inmemory');
const fmt = (x: number | null | undefined, d = 2) => (x === null || x === undefined ? 'n/a' : x.toFixed(d));
const cpuModel = (os.cpus()[0]?.model ?? 'unknown').trim();
const machine = `${os.cpus().length} cores ${cpuModel}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, tfjs ${tf.version_core}`;
const command = `npm run bench${args.length ? ' -- ' + args.join(' ') : ''}`;
const header =
  '| subject | backend | epochs | median s/epoch | images/s | x seed pipeline | x PyTorch in-memory | x naive tfjs (wasm) | peak RSS MB | test acc | first batch s | data load s | eval s |';
const sep = '|' + ' --- |'.repeat(13);
const lines = rows.map(
  (r) =>
    `| ${r.subject} | ${r.backend} | ${r.epochs} | ${fmt(r.median_epoch_seconds, 3)} | ${Math.round(r.images_per_second)} | ${
      seed ? fmt(seed.median_epoch_seconds / r.median_epoch_seconds, 1) : 'n/a'
    } | ${inMemory ? fmt(inMemory.median_epoch_seconds / r.median_epoch_seconds, 1) : 'n/a'} | ${
      naive ? fmt(naive.median_epoch_seconds / r.median_epoch_seconds, 1) : 'n/a'
    } | ${fmt(r.peak_rss_mb, 0)} | ${fmt(
      r.test_accuracy,
      4,
    )} | ${fmt(r.first_batch_seconds)} | ${fmt(r.data_load_seconds)} | ${fmt(r.eval_seconds, 3)} |`,
);
const table = [header, sep, ...lines].join('\n');
const when = new Date().toISOString();
const softmaxMarkdown = [
  `Measured ${when} on ${machine}.`,
  '',
  `Command: \`${command}\``,
  '',
  table,
  '',
  ...skipped.filter((s) => !s.key.startsWith('cnn-')).map((s) => `- skipped ${s.key}: ${s.reason}`),
  '- The "x ..." columns are ratios of median epoch seconds measured in this same run (above 1: faster than that baseline).',
  '- Test accuracy is after the subject\'s own number of epochs (column "epochs").',
  '- first batch: seconds from process start to the end of the first training step (module load, backend init, data load, first step).',
].join('\n');

// The CNN section: ratios against PyTorch on both cores (above 1: imgclf is faster).
const torch2 = cnnRows.find((r) => r.key === 'cnn-pytorch/2t');
const cnnTable = [
  '| subject | backend | ms/step (median) | epoch s | x PyTorch 2 threads (step) | x PyTorch 2 threads (epoch) | peak RSS MB | test acc after 1 epoch |',
  '|' + ' --- |'.repeat(8),
  ...cnnRows.map(
    (r) =>
      `| ${r.subject} | ${r.backend} | ${fmt(r.ms_per_step, 1)} | ${fmt(r.median_epoch_seconds, 1)} | ${
        torch2?.ms_per_step && r.ms_per_step ? fmt(torch2.ms_per_step / r.ms_per_step, 2) : 'n/a'
      } | ${torch2 ? fmt(torch2.median_epoch_seconds / r.median_epoch_seconds, 2) : 'n/a'} | ${fmt(
        r.peak_rss_mb,
        0,
      )} | ${fmt(r.test_accuracy, 4)} |`,
  ),
].join('\n');
const cnnMarkdown = [
  `Measured ${when} on ${machine}.`,
  '',
  `Command: \`${command}\``,
  '',
  cnnTable,
  '',
  ...skipped.filter((s) => s.key.startsWith('cnn-')).map((s) => `- skipped ${s.key}: ${s.reason}`),
  '- imgclf: `imgclf train --model cnn --epochs 1 --workers N` (the default plan: AdamW, one-cycle, label smoothing, augmentation, batch 256). ms/step is the median wall time between steps past the first five; the epoch is the training pass alone.',
  '- PyTorch: `/usr/bin/python3 ../shared/reference/cnn_reference.py 1 --threads N --like DIR`, where DIR holds the model.json and metadata.json of the imgclf run above: the same network and recipe, data in memory; ms/step from its `--steps 30` probe.',
  "- Peak RSS is the whole process (imgclf's worker threads share it).",
].join('\n');
// GFLOP/s count the direct convolution's multiply-adds (2 N Ho Wo K C kh kw), whatever the
// kernel does: a Winograd kernel doing fewer multiplies can pass the plain-SIMD ceiling.
const gflops = (flops: number, ms: number | undefined) => (ms ? flops / ms / 1e6 : undefined);
const kernelTable = [
  '| layer | x | filter | forward XNNPACK ms | forward ms | GFLOP/s | x peak | forward F(2x2) ms | dx as XNNPACK conv ms | dx ms | GFLOP/s | dW before ms | dW ms | GFLOP/s | dW F(2x2) ms | dW / forward |',
  '|' + ' --- |'.repeat(16),
  ...(kernels?.conv ?? []).map((r) => {
    const peakShare = (ms: number) => fmt(gflops(r.flops, ms)! / kernels!.peakGflops, 2);
    return `| ${r.name} | ${r.x.join('x')} | ${r.filter.join('x')} ${r.pad} | ${fmt(r.fwdXnn, 1)} | ${fmt(r.fwd, 1)} | ${fmt(
      gflops(r.flops, r.fwd),
      1,
    )} | ${peakShare(r.fwd)} | ${fmt(r.fwdF2, 1)} | ${fmt(r.dxXnn, 1)} | ${fmt(r.dx, 1)} | ${fmt(gflops(r.flops, r.dx), 1)} | ${fmt(
      r.dwBefore,
      1,
    )} | ${fmt(r.dw, 1)} | ${fmt(gflops(r.flops, r.dw), 1)} | ${fmt(r.dwF2, 1)} | ${fmt(r.dw / r.fwd, 2)} |`;
  }),
].join('\n');
const kernelMarkdown = [
  `Measured ${when} on ${machine}.`,
  '',
  `Command: \`${command}\` (the section alone: \`npx tsx bench/conv-kernels.ts 3\`)`,
  '',
  `Plain 128-bit SIMD ceiling, one thread (\`simd_peak\`: independent multiplies and adds, no memory): **${fmt(
    kernels?.peakGflops,
    1,
  )} GFLOP/s**.`,
  '',
  kernelTable,
  '',
  ...(kernels?.pool ?? []).map(
    (p) =>
      `- ${p.shape.join('x')}: MaxPoolGrad 2x2/2 ${fmt(p.maxPoolGrad, 1)} ms, bias-gradient Sum over N, H, W ${fmt(p.sum, 1)} ms.`,
  ),
  ...skipped.filter((s) => s.key === 'kernels').map((s) => `- skipped ${s.key}: ${s.reason}`),
  `- Batches of 256, one thread, median of ${kernels?.rounds ?? 'n/a'} rounds of 5 calls, the variants interleaved. Forward, dx and dW are the kernels as registered: 3x3 layers with 4k input and 8k output channels by Winograd, F(4x4, 3x3) or F(2x2, 3x3), whichever takes fewer products for the output size, the forward pass and filter gradient of other 3x3 layers by direct kernels (src/backend/conv3x3.ts), the rest on XNNPACK and src/backend/conv-kernels.ts.`,
  "- GFLOP/s counts the direct convolution's 2 N Ho Wo K C kh kw flops; per four outputs Winograd does 16 multiplies (F(2x2)) or 9 (F(4x4)) where that count has 36, so it can pass the ceiling. x peak is that figure over the ceiling.",
  "- dx as XNNPACK conv: XNNPACK's forward convolution on the input gradient's shape, which is what dx cost before (it ran as that convolution). dW before: the previous route (XNNPACK convolution of stacked planes, or im2col).",
].join('\n');
const backboneTable = [
  '| subject | images | images/s | decode s | features s | features images/s | command s | peak RSS MB | how |',
  '|' + ' --- |'.repeat(9),
  ...(backbone?.rows ?? []).map(
    (r) =>
      `| ${r.subject} | ${r.images} | ${fmt(r.images_per_second, 1)} | ${fmt(r.decode_seconds)} | ${fmt(
        r.feature_seconds,
      )} | ${fmt(r.feature_images_per_second, 1)} | ${fmt(r.command_seconds, 1)} | ${fmt(r.peak_rss_mb, 0)} | ${r.note} |`,
  ),
].join('\n');
const backboneMarkdown = [
  `Measured ${when} on ${machine}.`,
  '',
  `Command: \`${command}\``,
  '',
  backboneTable,
  '',
  ...skipped.filter((s) => s.key.startsWith('backbone')).map((s) => `- skipped ${s.key}: ${s.reason}`),
  ...(backbone?.notes ?? []).map((n) => `- ${n}`),
  '- MobileNetV2 (torchvision, random weights) at 224 px exported by `torch.onnx.export` as `pooler_output` [N, 1280], with ImageNet mean/std in preprocessor_config.json.',
].join('\n');
// Ratios against the PyTorch script on the same set, in whole-process images/s.
const predictRows = prediction?.rows ?? [];
const predictTable = [
  '| set | subject | images | runs | images/s (median) | loop images/s | x PyTorch | x decode only | peak RSS MB | rows |',
  '|' + ' --- |'.repeat(10),
  ...predictRows.map((r) => {
    const torch = predictRows.find((t) => t.set === r.set && t.subject === 'pytorch');
    const decode = predictRows.find((t) => t.set === r.set && t.subject === 'decode');
    return `| ${r.set} | ${r.subject} | ${r.images} | ${r.runs} | ${fmt(r.images_per_second, 0)} | ${fmt(
      r.loop_images_per_second,
      0,
    )} | ${torch ? fmt(r.images_per_second / torch.images_per_second, 2) : 'n/a'} | ${
      decode ? fmt(r.images_per_second / decode.images_per_second, 2) : 'n/a'
    } | ${fmt(r.peak_rss_mb, 0)} | ${r.rows_written ?? '-'} |`;
  }),
].join('\n');
const predictMarkdown = [
  `Measured ${when} on ${machine}; 1-minute load average ${fmt(prediction?.load.start)} at the start, ${fmt(
    prediction?.load.end,
  )} at the end.`,
  '',
  `Command: \`${command}\``,
  '',
  predictTable,
  '',
  ...skipped
    .filter((s) => s.key.startsWith('fashion-28') || s.key.startsWith('shapes-224'))
    .map((s) => `- skipped ${s.key}: ${s.reason}`),
  ...(prediction?.notes ?? []).map((n) => `- ${n}`),
  "- fashion-28: the 10,000 Fashion-MNIST test images as 28 px PNGs, the seed's softmax trained 1 epoch. shapes-224: 2,000 JPEGs at 224 px (shapes.ts drawings), a softmax at 224 px RGB trained 1 epoch on 400 others.",
  "- images/s: images over the whole process's wall time (start-up, model load, the walk), median of the runs; loop images/s: the subject's own timing of its loop. x columns: ratios of images/s in this run (above 1: faster).",
  "- decode only: sharp reads, decodes and resizes each file to the input, 8 at a time, and nothing else. imgclf also checks the header, reads the orientation and probes the border for a light background, and writes the rows after every batch (fdatasync once a second); it decodes a plain PNG at the model size without sharp, and skips sharp's resize when the decoded picture already has the model size, so it can pass this row.",
  "- pytorch: `/usr/bin/python3 bench/predict_torch.py` (ImageFolder + DataLoader, num_workers 2, batch 64), an nn.Linear holding the run's own weights (read from model.json / weights.bin), writing the same CSV rows (written after every batch, never fdatasynced).",
  "- peak RSS: the largest over the runs of /usr/bin/time -v's maximum resident set size, which is that of the largest single process: PyTorch's 2 DataLoader worker processes are not added to its main process.",
].join('\n');
if (prediction) process.stdout.write('\n' + predictTable + '\n\n');
if (backbone) process.stdout.write('\n' + backboneTable + '\n\n');
if (softmaxSection) process.stdout.write('\n' + table + '\n\n');
if (cnnSection) process.stdout.write('\n' + cnnTable + '\n\n');
if (kernels) process.stdout.write('\n' + kernelTable + '\n\n');
for (const s of skipped) process.stdout.write(`skipped ${s.key}: ${s.reason}\n`);

// A run of one section keeps the other section's last figures in latest.json.
const latestFile = path.join(ROOT, 'bench', 'results', 'latest.json');
const previous = existsSync(latestFile)
  ? (JSON.parse(readFileSync(latestFile, 'utf8')) as {
      rows?: Row[];
      cnn?: Row[];
      kernels?: KernelBench;
      backbone?: BackboneResult;
      prediction?: PredictResult;
    })
  : {};
const result = {
  when,
  machine,
  command,
  rows: softmaxSection ? rows : (previous.rows ?? []),
  cnn: cnnSection ? cnnRows : (previous.cnn ?? []),
  ...(kernels ? { kernels } : previous.kernels ? { kernels: previous.kernels } : {}),
  ...(backbone ? { backbone } : previous.backbone ? { backbone: previous.backbone } : {}),
  ...(prediction ? { prediction } : previous.prediction ? { prediction: previous.prediction } : {}),
  skipped,
};
const stamp = when.replace(/[:.]/g, '-').slice(0, 19);
await writeFileAtomic(
  path.join(ROOT, 'bench', 'results', `bench-${stamp}.json`),
  JSON.stringify(result, null, 2) + '\n',
);
await writeFileAtomic(latestFile, JSON.stringify(result, null, 2) + '\n');

// Refresh the generated blocks of BENCHMARKS.md, leaving the rest of the file alone.
const benchFile = path.join(ROOT, 'BENCHMARKS.md');
let doc = existsSync(benchFile) ? readFileSync(benchFile, 'utf8') : '# Benchmarks\n\n';
const refresh = (name: string, title: string, markdown: string): void => {
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  const block = `${start}\n${markdown}\n${end}`;
  doc = doc.includes(start)
    ? doc.replace(new RegExp(`${start}[\\s\\S]*?${end}`), block)
    : doc + `\n## ${title}\n\n${block}\n`;
};
if (softmaxSection) refresh('softmax', "Training speed: the seed's model", softmaxMarkdown);
if (cnnSection) refresh('cnn', 'Training speed: the cnn against PyTorch', cnnMarkdown);
if (kernels)
  refresh('kernels', 'Kernels: the convolutions against XNNPACK and the SIMD ceiling', kernelMarkdown);
if (backbone) refresh('backbone', 'Feature extraction: an ONNX backbone (MobileNetV2)', backboneMarkdown);
if (prediction)
  refresh('predict', 'Batch prediction: predict --results-file against PyTorch', predictMarkdown);
await writeFileAtomic(benchFile, doc);
log('bench: wrote bench/results/latest.json and BENCHMARKS.md');
