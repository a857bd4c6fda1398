/**
 * Image folders (Node only): PATH/<class>/<image> (or PATH/train/<class>/... and
 * PATH/test/<class>/...), decoded with sharp into the in-memory arrays the rest of imgclf uses.
 *
 * Decoding goes through node/image.ts's prepareImage, the same function `predict` and the
 * server use on a file, so a picture gives the model the same input in training and in
 * prediction. Decoded pixels are cached as bytes in the one cache (node/cache.ts), keyed by
 * every file's path, size and modification time and by the decoding options: a second run
 * reads one file instead of decoding thousands.
 */
import { existsSync, statSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ImageShape } from '../../core/data/dataset.js';
import { folderPreprocessing, type ResizeMode } from '../../core/data/source.js';
import { UserError } from '../../core/errors.js';
import {
  type BytePart,
  folderCacheDir,
  folderCachePath,
  readFolderCache,
  writeFolderCache,
} from '../cache.js';
import { prepareImage } from '../image.js';

export type { ResizeMode };

export interface FolderOptions {
  /** Images are resized to imageSize x imageSize. */
  imageSize: number;
  channels: 1 | 3;
  /** fill: stretch; contain: letterbox; cover: crop the centre. */
  resizeMode: ResizeMode;
  /** Fail on the first unreadable file instead of skipping it. */
  strict?: boolean;
  /** Where decoded folders are cached; default $XDG_CACHE_HOME/imgclf/folders. */
  cacheDir?: string;
  log?: (message: string) => void;
  /** Called as images are decoded (not on a cache hit). */
  onProgress?: (done: number, total: number) => void;
}

export interface FolderEntry {
  /** Path relative to the folder root, '/'-separated. */
  rel: string;
  label: number;
  size: number;
  mtimeMs: number;
}

export interface FolderScan {
  root: string;
  /** 'split' when the root holds train/ and test/; 'flat' when it holds the class folders. */
  layout: 'split' | 'flat';
  classNames: string[];
  train: FolderEntry[];
  test: FolderEntry[];
}

export type FolderPart = BytePart;

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface LoadedFolder {
  scan: FolderScan;
  shape: ImageShape;
  train: FolderPart;
  /** Empty (count 0) for a flat folder: the caller holds out a validation split. */
  test: FolderPart;
  skipped: SkippedFile[];
  cache: 'hit' | 'miss';
  cachePath: string;
}

const MAX_CLASSES = 256;
/** Decodes in flight at once: sharp works on libuv's thread pool, so a few overlap usefully. */
const CONCURRENCY = 4;

async function subdirs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
}

/** Every file under `dir`, recursively, sorted; hidden files (.DS_Store and the like) are left out. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

async function scanClasses(
  root: string,
  dir: string,
  classNames: string[],
  where: string,
): Promise<FolderEntry[]> {
  const entries: FolderEntry[] = [];
  for (const [label, name] of classNames.entries()) {
    const classDir = path.join(dir, name);
    if (!existsSync(classDir)) continue;
    const files = await filesUnder(classDir);
    if (files.length === 0)
      throw new UserError(`class folder ${classDir} is empty; every class needs at least one image`);
    for (const f of files) {
      const s = await stat(f);
      entries.push({
        rel: path.relative(root, f).split(path.sep).join('/'),
        label,
        size: s.size,
        mtimeMs: s.mtimeMs,
      });
    }
  }
  if (entries.length === 0) throw new UserError(`${where} holds no images`);
  return entries;
}

/** Lists the classes and files of an image folder, with the checks that need no decoding. */
export async function scanImageFolder(folder: string): Promise<FolderScan> {
  const root = path.resolve(folder);
  if (!existsSync(root))
    throw new UserError(`${folder} does not exist; --data takes a folder of class folders or a .csv file`);
  if (!statSync(root).isDirectory())
    throw new UserError(`${folder} is neither a folder of class folders nor a .csv file`);
  const top = await subdirs(root);
  const layout = top.includes('train') && top.includes('test') ? 'split' : 'flat';
  const trainDir = layout === 'split' ? path.join(root, 'train') : root;
  const classNames = await subdirs(trainDir);
  if (classNames.length === 0) {
    throw new UserError(
      `${trainDir} has no class folders; put each class's images in a subfolder named after the class`,
    );
  }
  if (classNames.length === 1) {
    throw new UserError(
      `${trainDir} has only one class folder ('${classNames[0]}'); a classifier needs at least two classes`,
    );
  }
  if (classNames.length > MAX_CLASSES)
    throw new UserError(
      `${trainDir} has ${classNames.length} class folders; at most ${MAX_CLASSES} are supported`,
    );
  const train = await scanClasses(root, trainDir, classNames, trainDir);
  let test: FolderEntry[] = [];
  if (layout === 'split') {
    const testDir = path.join(root, 'test');
    const extra = (await subdirs(testDir)).filter((c) => !classNames.includes(c));
    if (extra.length) {
      throw new UserError(
        `${testDir} has class folders that train/ lacks: ${extra.join(', ')}; both must use the same class names`,
      );
    }
    test = await scanClasses(root, testDir, classNames, testDir);
  }
  for (const [label, name] of classNames.entries()) {
    if (!train.some((e) => e.label === label))
      throw new UserError(`class folder ${path.join(trainDir, name)} holds no images`);
  }
  return { root, layout, classNames, train, test };
}

/** Every file's identity (path, class, size, mtime) and the class names: the cache key. */
function fileList(scan: FolderScan): string {
  const lines = [scan.classNames.join('/')];
  for (const part of [scan.train, scan.test]) {
    lines.push('--');
    for (const e of part) lines.push(`${e.rel}\t${e.label}\t${e.size}\t${e.mtimeMs}`);
  }
  return lines.join('\n');
}

async function decodePart(
  scan: FolderScan,
  entries: FolderEntry[],
  shape: ImageShape,
  opts: FolderOptions,
  skipped: SkippedFile[],
  progress: () => void,
): Promise<FolderPart> {
  const row = shape[0] * shape[1] * shape[2];
  const decoded: (Uint8Array | undefined)[] = new Array(entries.length);
  const pre = folderPreprocessing(opts.resizeMode);
  let next = 0;
  const worker = async () => {
    while (next < entries.length) {
      const i = next++;
      const file = path.join(scan.root, entries[i].rel);
      try {
        const { input } = await prepareImage(await readFile(file), shape, pre, file);
        const bytes = new Uint8Array(row);
        for (let k = 0; k < row; k++) bytes[k] = Math.round(input[k] * 255);
        decoded[i] = bytes;
      } catch (err) {
        const reason = (err as Error).message.replace(`${file}: `, '');
        if (opts.strict) throw new UserError(`${file}: ${reason} (--strict stops at unreadable files)`);
        skipped.push({ path: file, reason });
        opts.log?.(`warning: skipping ${file}: ${reason}`);
      }
      progress();
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, entries.length) }, worker));
  const kept = decoded.flatMap((d, i) => (d ? [i] : []));
  const pixels = new Uint8Array(kept.length * row);
  const labels = new Uint8Array(kept.length);
  kept.forEach((i, k) => {
    pixels.set(decoded[i]!, k * row);
    labels[k] = entries[i].label;
  });
  return { pixels, labels, count: kept.length };
}

/** A class whose files were all unreadable would silently vanish from the split: refuse it. */
function checkEveryClass(
  classNames: string[],
  entries: FolderEntry[],
  part: FolderPart,
  where: string,
): void {
  const listed = new Set(entries.map((e) => e.label));
  const decoded = new Set(part.labels);
  for (const [label, name] of classNames.entries()) {
    if (listed.has(label) && !decoded.has(label))
      throw new UserError(`class '${name}' has no readable images in ${where}`);
  }
}

/** Scans, then decodes (or reads from the cache) every image of an image folder. */
export async function loadImageFolder(folder: string, opts: FolderOptions): Promise<LoadedFolder> {
  const scan = await scanImageFolder(folder);
  const shape: ImageShape = [opts.imageSize, opts.imageSize, opts.channels];
  const cachePath = folderCachePath(
    opts.cacheDir ?? folderCacheDir(),
    {
      root: scan.root,
      options: {
        layout: scan.layout,
        imageSize: opts.imageSize,
        channels: opts.channels,
        resizeMode: opts.resizeMode,
      },
    },
    fileList(scan),
  );
  const cached = await readFolderCache(cachePath, opts.log);
  if (cached) {
    const { skipped } = cached.header;
    for (const s of skipped) {
      if (opts.strict) throw new UserError(`${s.path}: ${s.reason} (--strict stops at unreadable files)`);
      opts.log?.(`warning: skipping ${s.path}: ${s.reason}`);
    }
    opts.log?.(`cache hit: ${cachePath} (${cached.train.count + cached.test.count} decoded images)`);
    return { scan, shape, train: cached.train, test: cached.test, skipped, cache: 'hit', cachePath };
  }
  const total = scan.train.length + scan.test.length;
  let done = 0;
  const progress = () => opts.onProgress?.(++done, total);
  const skipped: SkippedFile[] = [];
  const train = await decodePart(scan, scan.train, shape, opts, skipped, progress);
  const test = await decodePart(scan, scan.test, shape, opts, skipped, progress);
  const trainDir = scan.layout === 'split' ? path.join(scan.root, 'train') : scan.root;
  checkEveryClass(scan.classNames, scan.train, train, trainDir);
  checkEveryClass(scan.classNames, scan.test, test, path.join(scan.root, 'test'));
  await writeFolderCache(
    cachePath,
    { shape, trainCount: train.count, testCount: test.count, skipped },
    train,
    test,
    opts.log,
  );
  return { scan, shape, train, test, skipped, cache: 'miss', cachePath };
}
