/**
 * The built-in IDX datasets (Node only): their files, checksums and mirrors, and where one is
 * looked for, in this order:
 *   1. --data-dir   2. $IMGCLF_DATA_DIR   3. the user cache   4. a system package's folder
 *      (Debian's dataset-fashion-mnist)
 * and, when none has it, downloaded into the cache from the mirrors below, one after another.
 * Every file is checked against the checksum its spec knows (the decompressed SHA-256, or the
 * MD5 of the published `.gz`); downloads are written atomically. Reading the files (the
 * bounded gunzip, parsing, the decoded cache) is node/data/idx-files.ts.
 *
 * Nothing here trusts a size it has not checked: a download is streamed to disk under a byte
 * cap, connect/idle timeouts and same-host redirects (node/download.ts), and a `.gz` MD5 is
 * checked before anything is decompressed.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../core/errors.js';
import { withAtomicFile } from '../fs.js';
import { DEFAULT_TIMEOUTS, type DownloadLimits, downloadToFile } from '../download.js';
import { FASHION_MNIST_CLASSES, KMNIST_CLASSES, MNIST_CLASSES } from '../../core/data/classes.js';
import type { Dataset } from '../../core/data/dataset.js';
import { cacheRoot } from '../cache.js';
import type { FileReport } from '../checksum.js';
import { gunzipIdx, type IdxFileSpec, readIdxPair } from './idx-files.js';

// Moved to idx-files.ts; still exported here, where callers import them from.
export { type IdxFileSpec, MAX_IDX_BYTES, readMaybeGzip } from './idx-files.js';

export interface IdxDatasetSpec {
  name: string;
  classNames: string[];
  trainImages: IdxFileSpec;
  trainLabels: IdxFileSpec;
  testImages: IdxFileSpec;
  testLabels: IdxFileSpec;
  /** Base URLs, each followed by `<file>.gz`. */
  mirrors: string[];
  /** Folders a system package installs the files into. */
  systemDirs: string[];
}

export const FASHION_MNIST: IdxDatasetSpec = {
  name: 'fashion-mnist',
  classNames: FASHION_MNIST_CLASSES,
  trainImages: {
    name: 'train-images-idx3-ubyte',
    sha256: 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
  },
  trainLabels: {
    name: 'train-labels-idx1-ubyte',
    sha256: 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
  },
  testImages: {
    name: 't10k-images-idx3-ubyte',
    sha256: '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
  },
  testLabels: {
    name: 't10k-labels-idx1-ubyte',
    sha256: '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34',
  },
  mirrors: [
    'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
    'https://storage.googleapis.com/tensorflow/tf-keras-datasets/',
    'https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/',
  ],
  systemDirs: ['/usr/share/datasets/fashion-mnist'],
};

/** MNIST, handwritten digits. Checksums: the `.gz` MD5s torchvision publishes. */
export const MNIST: IdxDatasetSpec = {
  name: 'mnist',
  classNames: MNIST_CLASSES,
  trainImages: { name: 'train-images-idx3-ubyte', gzMd5: 'f68b3c2dcbeaaa9fbdd348bbdeb94873' },
  trainLabels: { name: 'train-labels-idx1-ubyte', gzMd5: 'd53e105ee54ea40749a09fcbcd1e9432' },
  testImages: { name: 't10k-images-idx3-ubyte', gzMd5: '9fb629c4189551a2d022fa330f9573f3' },
  testLabels: { name: 't10k-labels-idx1-ubyte', gzMd5: 'ec29112dd5afa0611ce80d1b7f02629c' },
  mirrors: ['https://ossci-datasets.s3.amazonaws.com/mnist/', 'http://yann.lecun.com/exdb/mnist/'],
  systemDirs: [],
};

/** Kuzushiji-MNIST, ten cursive hiragana. Checksums: the `.gz` MD5s torchvision publishes. */
export const KMNIST: IdxDatasetSpec = {
  name: 'kmnist',
  classNames: KMNIST_CLASSES,
  trainImages: { name: 'train-images-idx3-ubyte', gzMd5: 'bdb82020997e1d708af4cf47b453dcf7' },
  trainLabels: { name: 'train-labels-idx1-ubyte', gzMd5: 'e144d726b3acfaa3e44228e80efcd344' },
  testImages: { name: 't10k-images-idx3-ubyte', gzMd5: '5c965bf0a639b31b8f53240b1b52f4d7' },
  testLabels: { name: 't10k-labels-idx1-ubyte', gzMd5: '7320c461ea6c1c855c0b718fb2a4b134' },
  mirrors: ['http://codh.rois.ac.jp/kmnist/dataset/kmnist/'],
  systemDirs: [],
};

/** The IDX datasets `--dataset` accepts, by name. */
export const IDX_DATASETS: Record<string, IdxDatasetSpec> = {
  'fashion-mnist': FASHION_MNIST,
  mnist: MNIST,
  kmnist: KMNIST,
};

/** The spec of a named IDX dataset, or a one-line error listing the names. */
export function idxSpec(name: string): IdxDatasetSpec {
  const spec = IDX_DATASETS[name];
  if (!spec)
    throw new UserError(`unknown dataset '${name}'; choose one of ${Object.keys(IDX_DATASETS).join(', ')}`);
  return spec;
}

export interface SourceOptions {
  /** Explicit folder (--data-dir); when given, nothing else is searched. */
  dataDir?: string;
  /** Mirror override; defaults to $IMGCLF_MIRRORS (comma-separated) or the spec's list. */
  mirrors?: string[];
  /** Progress/info messages (downloads), e.g. console.error. */
  log?: (message: string) => void;
  /** Overall time limit for downloading one file from one mirror, in ms (default 60 s). */
  timeoutMs?: number;
  /** Time to wait for a mirror's response (connecting, then its headers), in ms (default 30 s). */
  connectTimeoutMs?: number;
  /** Longest pause allowed in a response body, in ms (default 30 s). */
  idleTimeoutMs?: number;
  /** Largest `.gz` a mirror may send, in bytes (default MAX_DOWNLOAD_BYTES). */
  maxDownloadBytes?: number;
  /**
   * Download when no local copy exists (default true). The server passes false: a request must
   * never start a download.
   */
  download?: boolean;
  /**
   * Reuse decoded splits from the user cache (see node/cache.ts) instead of gunzipping and
   * converting again. Off by default; `data info` and `data fetch` always read the sources.
   */
  decodedCache?: boolean;
}

/**
 * Largest `.gz` one download may be. The largest real file, Fashion-MNIST's train-images, is
 * 26 MB; 64 MB leaves room for a mirror that compresses worse, and stops an endless response.
 */
export const MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024;

export function specFiles(spec: IdxDatasetSpec): IdxFileSpec[] {
  return [spec.trainImages, spec.trainLabels, spec.testImages, spec.testLabels];
}

/** The user cache folder for a dataset: $XDG_CACHE_HOME/imgclf/<name> or ~/.cache/imgclf/<name>. */
export function cacheDir(spec: IdxDatasetSpec): string {
  return path.join(cacheRoot(), spec.name);
}

/** The candidate folders, in search order, with where each came from. */
export function candidateDirs(
  spec: IdxDatasetSpec,
  opts: SourceOptions = {},
): { dir: string; origin: string }[] {
  if (opts.dataDir) return [{ dir: path.resolve(opts.dataDir), origin: '--data-dir' }];
  const out: { dir: string; origin: string }[] = [];
  if (process.env.IMGCLF_DATA_DIR)
    out.push({ dir: path.resolve(process.env.IMGCLF_DATA_DIR), origin: '$IMGCLF_DATA_DIR' });
  out.push({ dir: cacheDir(spec), origin: 'user cache' });
  for (const dir of spec.systemDirs) out.push({ dir, origin: 'system package' });
  return out;
}

/** Path of a file in `dir`, gzipped or raw, or undefined when absent. */
export function findFile(dir: string, file: IdxFileSpec): string | undefined {
  for (const candidate of [path.join(dir, file.name + '.gz'), path.join(dir, file.name)]) {
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

function hasAll(dir: string, spec: IdxDatasetSpec): boolean {
  return specFiles(spec).every((f) => findFile(dir, f) !== undefined);
}

export interface LocatedDataset {
  dir: string;
  origin: string;
}

/**
 * Finds a folder holding all four files, downloading into the cache when none does.
 * With --data-dir, a folder missing files is an error (no silent fallback).
 */
export async function locate(spec: IdxDatasetSpec, opts: SourceOptions = {}): Promise<LocatedDataset> {
  const candidates = candidateDirs(spec, opts);
  for (const c of candidates) if (hasAll(c.dir, spec)) return c;
  if (opts.dataDir) {
    const missing = specFiles(spec)
      .filter((f) => !findFile(candidates[0].dir, f))
      .map((f) => f.name + '[.gz]');
    throw new UserError(
      `--data-dir ${opts.dataDir} is missing ${missing.join(', ')}; point it at a folder with all four IDX files`,
    );
  }
  const dir = cacheDir(spec);
  if (opts.download === false) {
    throw new UserError(
      `${spec.name} is not on this machine (looked in ${candidates.map((c) => c.dir).join(', ')}); fetch it with 'imgclf data fetch --dataset ${spec.name}'`,
    );
  }
  await download(spec, dir, opts);
  return { dir, origin: 'downloaded' };
}

/**
 * Downloads every missing file of `spec` into `dir`, trying each mirror in turn. Each file is
 * streamed to a temp file in `dir` by the bounded client (node/download.ts), verified there, and
 * renamed into place only when it passed.
 */
export async function download(spec: IdxDatasetSpec, dir: string, opts: SourceOptions = {}): Promise<void> {
  const mirrors = opts.mirrors ?? envMirrors() ?? spec.mirrors;
  const log = opts.log ?? (() => {});
  const limits: DownloadLimits = {
    timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUTS.timeoutMs,
    connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULT_TIMEOUTS.connectTimeoutMs,
    idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULT_TIMEOUTS.idleTimeoutMs,
    maxBytes: opts.maxDownloadBytes ?? MAX_DOWNLOAD_BYTES,
  };
  await mkdir(dir, { recursive: true });
  for (const file of specFiles(spec)) {
    if (findFile(dir, file)) continue;
    const failures: string[] = [];
    let done = false;
    for (const mirror of mirrors) {
      const url = new URL(file.name + '.gz', mirror.endsWith('/') ? mirror : mirror + '/').toString();
      log(`downloading ${url}`);
      try {
        await withAtomicFile(path.join(dir, file.name + '.gz'), async (tmp) => {
          const md5 = createHash('md5');
          await downloadToFile(url, tmp, limits, (chunk) => md5.update(chunk));
          await verifyDownload(file, tmp, md5.digest('hex'));
        });
        done = true;
        break;
      } catch (err) {
        failures.push(`${url}: ${(err as Error).message}`);
        log(`  failed: ${(err as Error).message}`);
      }
    }
    if (!done) {
      // Only verified bytes are ever renamed into place, so a failure leaves nothing partial.
      throw new UserError(
        `could not download ${file.name}.gz from any mirror (${failures.join('; ')}); ` +
          (spec.systemDirs.length
            ? `install it with 'apt-get install dataset-${spec.name}' or pass --data-dir`
            : `download the four files yourself and pass --data-dir`),
      );
    }
  }
}

function envMirrors(): string[] | undefined {
  const value = process.env.IMGCLF_MIRRORS;
  return value
    ? value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : undefined;
}

/**
 * Checks a downloaded `.gz` (at `tmp`, its MD5 `gzMd5`) against the file's spec. When the spec's
 * checksum is the `.gz` MD5, it decides before anything is decompressed: a file failing it is
 * never gunzipped, bomb or not. A SHA-256 of the decompressed bytes is computed while streaming
 * through the bounded gunzip, without holding the output.
 */
async function verifyDownload(file: IdxFileSpec, tmp: string, gzMd5: string): Promise<void> {
  if (!file.sha256 && file.gzMd5) {
    if (gzMd5 !== file.gzMd5) throw new Error(`checksum mismatch (got md5 ${gzMd5.slice(0, 12)}…)`);
    return;
  }
  const digest = createHash('sha256');
  await gunzipIdx(createReadStream(tmp), file.name + '.gz', '', (chunk) => digest.update(chunk));
  const got = digest.digest('hex');
  if (got !== file.sha256) throw new Error(`checksum mismatch (got sha256 ${got.slice(0, 12)}…)`);
}

export interface LoadedIdx {
  dataset: Dataset;
  located: LocatedDataset;
  files: FileReport[];
}

/** Locates (or downloads), reads, verifies and parses an IDX dataset into memory. */
export async function loadIdxDataset(spec: IdxDatasetSpec, opts: SourceOptions = {}): Promise<LoadedIdx> {
  const located = await locate(spec, opts);
  const found = (file: IdxFileSpec) => ({ spec: file, path: findFile(located.dir, file)! });
  const pair = {
    name: spec.name,
    numClasses: spec.classNames.length,
    decodedCache: opts.decodedCache,
    log: opts.log,
  };
  const train = await readIdxPair(found(spec.trainImages), found(spec.trainLabels), pair);
  const test = await readIdxPair(found(spec.testImages), found(spec.testLabels), pair);
  if (train.shape[0] !== test.shape[0] || train.shape[1] !== test.shape[1]) {
    throw new UserError(
      `train images are ${train.shape.slice(0, 2).join('x')} but test images are ${test.shape.slice(0, 2).join('x')}`,
    );
  }
  const dataset: Dataset = {
    name: spec.name,
    classNames: spec.classNames,
    shape: train.shape,
    train: train.split,
    test: test.split,
  };
  return { dataset, located, files: [...train.files, ...test.files] };
}
