/**
 * The prediction section of `npm run bench` (bench/run.ts runs it; alone: `tsx bench/predict.ts`):
 * `imgclf predict --results-file` over a folder of images, side by side with what bounds it and
 * what a Python user would write instead. Two sets, generated once into
 * ~/.cache/imgclf/bench-predict (XDG_CACHE_HOME is honoured):
 *
 *   fashion-28   10,000 PNGs at 28 px, Fashion-MNIST's test images, predicted by the seed's
 *                softmax trained for 1 epoch
 *   shapes-224   2,000 JPEGs at 224 px (node/data/shapes.ts's drawings), predicted by a softmax
 *                run at 224 px RGB trained for 1 epoch on 400 others (a small model, so that
 *                decoding a large JPEG is what the set measures)
 *
 * Subjects, each in its own process under /usr/bin/time -v (peak RSS of the process):
 *
 *   decode only     sharp reads, decodes and resizes every file to the model's input, 8 at a time
 *                   (the concurrency of node/predict/batch.ts), and does nothing else: what
 *                   decoding through sharp costs. imgclf goes past it where it needs no sharp
 *                   call (a plain PNG at the model's size, node/png.ts) or one instead of two
 *   imgclf tfjs     `imgclf predict --run R DIR --results-file F.csv --engine tfjs --json`
 *   imgclf onnx     the same with --engine onnx
 *   pytorch         bench/predict_torch.py: ImageFolder + DataLoader (num_workers 2, batch 64),
 *                   the run's own weights in an nn.Linear, the same CSV rows
 *
 * Each subject runs `repeats` times, round robin, so that a change of load hits all alike; the
 * medians are reported. images/s is over the whole process (start-up, model load and the walk
 * included), as a user waits for it; "loop images/s" is the subject's own timing of its loop.
 * Prints one JSON object { rows, skipped, notes } when run alone.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { Rng } from '../src/core/data/rng.js';
import { loadDataset } from '../src/node/data/load.js';
import { renderSvg, SHAPE_CLASSES, shapeSvg } from '../src/node/data/shapes.js';
import { walkImages } from '../src/node/predict/paths.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'imgclf.js');
const TORCH_SCRIPT = path.join(ROOT, 'bench', 'predict_torch.py');
/** As node/predict/batch.ts's DECODERS, so this decodes with imgclf's concurrency. */
const DECODERS = 8;

export interface PredictRow {
  key: string;
  set: string;
  subject: string;
  images: number;
  runs: number;
  /** Median over the runs, whole process. */
  images_per_second: number;
  wall_seconds: number[];
  /** Median over the runs, the subject's own loop timing (null when it has none). */
  loop_images_per_second: number | null;
  /** Largest over the runs. */
  peak_rss_mb: number;
  rows_written: number | null;
  note: string;
}

export interface PredictResult {
  rows: PredictRow[];
  skipped: { key: string; reason: string }[];
  notes: string[];
  /** 1-minute load averages when the section started and ended: the machine is shared. */
  load: { start: number; end: number };
}

interface SetSpec {
  name: string;
  dir: string;
  run: string;
  size: number;
  channels: number;
  images: number;
  classes: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const log = (m: string) => process.stderr.write(m + '\n');

function cacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'imgclf', 'bench-predict');
}

function train(out: string, extra: string[]): void {
  if (existsSync(path.join(out, 'model.json'))) return;
  rmSync(out, { recursive: true, force: true });
  const r = spawnSync(process.execPath, [BIN, 'train', '--epochs', '1', '--out', out, ...extra], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`training ${out} failed: ${r.stderr.trim().split('\n').at(-1)}`);
}

/** 10,000 Fashion-MNIST test PNGs as <class>/<index>.png, written once. */
async function fashionSet(cache: string): Promise<SetSpec> {
  const dir = path.join(cache, 'fashion-png-28');
  const marker = `${dir}.done`;
  const ds = (await loadDataset({ dataset: 'fashion-mnist' })).dataset;
  const names = ds.classNames;
  if (!existsSync(marker)) {
    log(`bench: writing ${ds.test.count} PNGs to ${dir} ...`);
    rmSync(dir, { recursive: true, force: true });
    for (const n of names) mkdirSync(path.join(dir, n), { recursive: true });
    const px = 28 * 28;
    const scale = ds.test.images instanceof Float32Array ? 255 : 1;
    for (let i = 0; i < ds.test.count; i++) {
      const bytes = Buffer.alloc(px);
      for (let j = 0; j < px; j++) bytes[j] = Math.round(ds.test.images[i * px + j] * scale);
      const png = await sharp(bytes, { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer();
      const name = String(i).padStart(5, '0');
      await writeFile(path.join(dir, names[ds.test.labels[i]], `${name}.png`), png);
    }
    writeFileSync(marker, '');
  }
  const run = path.join(cache, 'run-softmax-28');
  train(run, []);
  return {
    name: 'fashion-28',
    dir,
    run,
    size: 28,
    channels: 1,
    images: ds.test.count,
    classes: names.length,
  };
}

async function writeJpegs(dir: string, perClass: number, seed: number): Promise<void> {
  const rng = new Rng(seed);
  for (const shape of SHAPE_CLASSES) {
    mkdirSync(path.join(dir, shape), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const jpg = await renderSvg(shapeSvg(shape, 224, rng), 'jpeg');
      await writeFile(path.join(dir, shape, `${shape}-${String(i).padStart(4, '0')}.jpg`), jpg);
    }
  }
}

/** 2,000 JPEGs at 224 px to predict and 400 to train on, written once. */
async function shapesSet(cache: string): Promise<SetSpec> {
  const dir = path.join(cache, 'shapes-jpeg-224');
  const trainDir = path.join(cache, 'shapes-jpeg-224-train');
  if (!existsSync(`${dir}.done`)) {
    log(`bench: writing 2000 + 400 JPEGs at 224 px to ${cache} ...`);
    rmSync(dir, { recursive: true, force: true });
    rmSync(trainDir, { recursive: true, force: true });
    await writeJpegs(dir, 500, 21);
    await writeJpegs(trainDir, 100, 22);
    writeFileSync(`${dir}.done`, '');
  }
  const run = path.join(cache, 'run-softmax-224');
  train(run, ['--data', trainDir, '--image-size', '224', '--channels', '3']);
  return { name: 'shapes-224', dir, run, size: 224, channels: 3, images: 2000, classes: 4 };
}

interface Measured {
  wall: number;
  rssMb: number;
  loopRate: number | null;
  rows: number | null;
}

/** Runs a command under /usr/bin/time -v: its wall seconds, peak RSS and stdout. */
function timed(cmd: string, argv: string[]): { wall: number; rssMb: number; stdout: string } | string {
  const start = performance.now();
  const r = spawnSync('/usr/bin/time', ['-v', cmd, ...argv], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  const wall = (performance.now() - start) / 1000;
  if (r.status !== 0)
    return `exit ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`.slice(0, 300);
  const kb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1]);
  return { wall, rssMb: kb / 1024, stdout: r.stdout };
}

const lastJson = (stdout: string) =>
  JSON.parse(
    stdout
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .at(-1) ?? '{}',
  ) as Record<string, unknown>;

const csvRows = (file: string) =>
  existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).length - 1 : null;

function measure(subject: string, set: SetSpec, out: string): Measured | string {
  rmSync(out, { force: true });
  if (subject === 'decode') {
    const r = timed(process.execPath, [
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      '--decode-only',
      set.dir,
      String(set.size),
      String(set.channels),
    ]);
    if (typeof r === 'string') return r;
    const j = lastJson(r.stdout) as { images: number; seconds: number };
    return { wall: r.wall, rssMb: r.rssMb, loopRate: j.images / j.seconds, rows: null };
  }
  if (subject === 'pytorch') {
    const r = timed('/usr/bin/python3', [
      TORCH_SCRIPT,
      set.dir,
      out,
      '--size',
      String(set.size),
      '--channels',
      String(set.channels),
      '--run',
      set.run,
    ]);
    if (typeof r === 'string') return r;
    const j = lastJson(r.stdout) as { images: number; seconds: number };
    return { wall: r.wall, rssMb: r.rssMb, loopRate: j.images / j.seconds, rows: csvRows(out) };
  }
  const engine = subject === 'imgclf-onnx' ? 'onnx' : 'tfjs';
  const r = timed(process.execPath, [
    BIN,
    'predict',
    '--run',
    set.run,
    set.dir,
    '--results-file',
    out,
    '--engine',
    engine,
    '--json',
  ]);
  if (typeof r === 'string') return r;
  const j = lastJson(r.stdout) as { images_per_second: number };
  return { wall: r.wall, rssMb: r.rssMb, loopRate: j.images_per_second, rows: csvRows(out) };
}

const SUBJECTS: [string, string][] = [
  ['decode', 'sharp: read, decode, resize to the input, 8 at a time; nothing else'],
  ['imgclf-tfjs', '`imgclf predict --results-file F.csv --engine tfjs` (wasm)'],
  ['imgclf-onnx', '`imgclf predict --results-file F.csv --engine onnx`'],
  ['pytorch', '`bench/predict_torch.py`: ImageFolder + DataLoader (num_workers 2), the run’s weights'],
];

/** The share of paths whose top-1 label agrees between two results files. */
function agreement(a: string, b: string): number | undefined {
  if (!existsSync(a) || !existsSync(b)) return undefined;
  const labels = (f: string) => {
    const m = new Map<string, string>();
    for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) {
      if (!line) continue;
      // Paths here hold no commas or quotes (generated names), so a split is enough.
      const [p, label] = line.split(',');
      m.set(p, label);
    }
    return m;
  };
  const x = labels(a);
  const y = labels(b);
  let same = 0;
  for (const [p, l] of x) if (y.get(p) === l) same++;
  return same / Math.max(x.size, 1);
}

export async function benchPredict(
  opts: { repeats?: number; skip224?: boolean } = {},
): Promise<PredictResult> {
  const repeats = opts.repeats ?? 3;
  const result: PredictResult = {
    rows: [],
    skipped: [],
    notes: [],
    load: { start: os.loadavg()[0], end: 0 },
  };
  const cache = cacheDir();
  mkdirSync(cache, { recursive: true });
  const torch =
    spawnSync('/usr/bin/python3', ['-c', 'import torch, torchvision'], { encoding: 'utf8' }).status === 0;
  const sets: SetSpec[] = [await fashionSet(cache)];
  if (opts.skip224) result.skipped.push({ key: 'shapes-224', reason: 'left out (--no-predict-224)' });
  else sets.push(await shapesSet(cache));
  const outDir = path.join(cache, 'results');
  mkdirSync(outDir, { recursive: true });
  for (const set of sets) {
    const got = new Map<string, Measured[]>();
    for (let rep = 0; rep < repeats; rep++) {
      for (const [subject] of SUBJECTS) {
        const key = `${set.name}/${subject}`;
        if (subject === 'pytorch' && !torch) {
          if (rep === 0)
            result.skipped.push({ key, reason: 'python3-torch / python3-torchvision not installed' });
          continue;
        }
        if (result.skipped.some((s) => s.key === key)) continue;
        log(`bench: predict ${key} run ${rep + 1}/${repeats} ...`);
        const m = measure(subject, set, path.join(outDir, `${set.name}-${subject}.csv`));
        if (typeof m === 'string') {
          result.skipped.push({ key, reason: m });
          log(`bench: ${key} failed: ${m}`);
          continue;
        }
        log(`bench: ${key} ${(set.images / m.wall).toFixed(0)} images/s, peak RSS ${m.rssMb.toFixed(0)} MB`);
        got.set(subject, [...(got.get(subject) ?? []), m]);
      }
    }
    for (const [subject, note] of SUBJECTS) {
      const ms = got.get(subject);
      if (!ms?.length) continue;
      const walls = ms.map((m) => m.wall);
      const loops = ms.map((m) => m.loopRate).filter((x): x is number => x !== null);
      result.rows.push({
        key: `${set.name}/${subject}`,
        set: set.name,
        subject,
        images: set.images,
        runs: ms.length,
        images_per_second: set.images / median(walls),
        wall_seconds: walls,
        loop_images_per_second: loops.length ? median(loops) : null,
        peak_rss_mb: Math.max(...ms.map((m) => m.rssMb)),
        rows_written: ms.at(-1)!.rows,
        note,
      });
    }
    const csv = (s: string) => path.join(outDir, `${set.name}-${s}.csv`);
    const agree = [
      ['onnx', agreement(csv('imgclf-tfjs'), csv('imgclf-onnx'))],
      ['PyTorch', agreement(csv('imgclf-tfjs'), csv('pytorch'))],
    ] as const;
    const parts = agree.filter(([, a]) => a !== undefined).map(([n, a]) => `${n} ${(a! * 100).toFixed(2)}%`);
    if (parts.length)
      result.notes.push(`${set.name}: top-1 labels the same as imgclf tfjs's: ${parts.join(', ')}.`);
  }
  result.load.end = os.loadavg()[0];
  return result;
}

/** The decode-only subject: every image under `dir` read, decoded and resized, 8 at a time. */
async function decodeOnly(dir: string, size: number, channels: number): Promise<void> {
  const start = performance.now();
  const it = walkImages(dir)[Symbol.asyncIterator]();
  let images = 0;
  const worker = async () => {
    for (let r = await it.next(); !r.done; r = await it.next()) {
      let img = sharp(await readFile(r.value)).resize(size, size, { fit: 'contain' });
      img = channels === 1 ? img.greyscale() : img.removeAlpha();
      await img.raw().toBuffer();
      images++;
    }
  };
  await Promise.all(Array.from({ length: DECODERS }, worker));
  process.stdout.write(JSON.stringify({ images, seconds: (performance.now() - start) / 1000 }) + '\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  if (argv[0] === '--decode-only') await decodeOnly(argv[1], Number(argv[2]), Number(argv[3]));
  else {
    const i = argv.indexOf('--repeats');
    const repeats = i >= 0 ? Number(argv[i + 1]) : undefined;
    const r = await benchPredict({ repeats, skip224: argv.includes('--no-predict-224') });
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  }
}
