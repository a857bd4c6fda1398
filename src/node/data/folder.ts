/**
 * Image folders (Node only): PATH/<class>/<image> (or PATH/train/<class>/... and
 * PATH/test/<class>/...), decoded with sharp into the in-memory arrays the rest of imgclf uses.
 *
 * Decoding goes through node/image.ts's prepareImage, the same function `predict` and the
 * server use on a file, so a picture gives the model the same input in training and in
 * prediction. Decoded pixels are cached as bytes in the one cache (node/cache.ts), keyed by
 * every file's path, size and modification time and by the decoding options: a second run
 * reads one file instead of decoding thousands.
 *
 * Symbolic links (to class folders, folders or files) are followed. The scan keeps the real
 * paths (fs.realpath) of the folders it is inside, so a link back to one of them (a loop) is
 * reported once and not followed; a broken link is reported too. Both are skipped with a
 * warning, or stop the run under --strict, like an unreadable image.
 */
import {
  closeSync,
  existsSync,
  constants as fsConstants,
  fstatSync,
  openSync,
  readSync,
  type Stats,
  statSync,
} from 'node:fs';
import { open, readdir, readlink, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { type ImageShape, type Split, splitFromBytes } from '../../core/data/dataset.js';
import {
  type FolderSource,
  folderPreprocessing,
  type Preprocessing,
  type ResizeMode,
} from '../../core/data/source.js';
import { UserError } from '../../core/errors.js';
import {
  type BytePart,
  folderCacheDir,
  folderCachePath,
  readFolderCache,
  writeFolderCache,
} from '../cache.js';
import { ImageTooLargeError, MAX_IMAGE_FILE_BYTES, prepareImage } from '../image.js';
import { holdOut, registerSource, type SkippedFile } from './sources.js';

export type { ResizeMode, SkippedFile };

export interface FolderOptions {
  /** Images are resized to imageSize x imageSize. */
  imageSize: number;
  channels: 1 | 3;
  /** fill: stretch; contain: letterbox; cover: crop the centre. */
  resizeMode: ResizeMode;
  /**
   * How a picture becomes an input; default folderPreprocessing(resizeMode), as for training.
   * Scoring a folder with a run trained on other data (evaluate --data) passes the run's own.
   */
  preprocessing?: Preprocessing;
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
  /** Size and modification time of the file, or of a symbolic link's target. */
  size: number;
  mtimeMs: number;
  /** The file's real path, when a symbolic link on the way leads elsewhere than root/rel. */
  target?: string;
}

export interface FolderScan {
  root: string;
  /** 'split' when the root holds train/ and test/; 'flat' when it holds the class folders. */
  layout: 'split' | 'flat';
  classNames: string[];
  train: FolderEntry[];
  test: FolderEntry[];
  /** Broken or looping symbolic links, left out of the scan (each was reported as a warning). */
  skipped: SkippedFile[];
}

export type FolderPart = BytePart;

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

/** How a scan reports what it cannot use: skipped with a warning, or an error under --strict. */
interface ScanContext {
  strict: boolean;
  log?: (message: string) => void;
  skipped: SkippedFile[];
}

function skip(ctx: ScanContext, file: string, reason: string): void {
  if (ctx.strict) throw new UserError(`${file}: ${reason} (--strict stops at unreadable files)`);
  ctx.skipped.push({ path: file, reason });
  ctx.log?.(`warning: skipping ${file}: ${reason}`);
}

/** A folder entry, symbolic links followed: `real` is where it leads (fs.realpath). */
type Entry =
  | { kind: 'dir' | 'file'; name: string; path: string; real: string }
  | { kind: 'problem'; name: string; path: string; reason: string };

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Why a symbolic link that stat() cannot follow is unusable. */
async function brokenLink(link: string, err: NodeJS.ErrnoException): Promise<string> {
  if (err.code === 'ELOOP') return 'symbolic link loop: the link never reaches a file or folder';
  if (err.code === 'ENOENT' || err.code === 'ENOTDIR') {
    const target = await readlink(link).catch(() => '?');
    return `broken symbolic link: its target ${target} does not exist`;
  }
  return `cannot follow the symbolic link (${err.message})`;
}

/**
 * The visible entries of `dir` (whose real path is `real`), sorted by name, symbolic links
 * followed to what they point at. Hidden names (.DS_Store, .git) are left out; so are things
 * that are neither files nor folders (sockets, pipes). Nothing is reported here: the caller
 * knows whether an entry matters.
 */
async function listDir(dir: string, real: string): Promise<Entry[]> {
  const out: Entry[] = [];
  for (const e of (await readdir(dir, { withFileTypes: true })).sort(byName)) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory() || e.isFile()) {
      out.push({
        kind: e.isDirectory() ? 'dir' : 'file',
        name: e.name,
        path: p,
        real: path.join(real, e.name),
      });
    } else if (e.isSymbolicLink()) {
      let s: Stats;
      try {
        s = await stat(p);
      } catch (err) {
        out.push({
          kind: 'problem',
          name: e.name,
          path: p,
          reason: await brokenLink(p, err as NodeJS.ErrnoException),
        });
        continue;
      }
      if (s.isDirectory() || s.isFile())
        out.push({ kind: s.isDirectory() ? 'dir' : 'file', name: e.name, path: p, real: await realpath(p) });
    }
  }
  return out;
}

/**
 * Why following a folder link would loop, or undefined: it leads to a folder being scanned
 * (one of `open`, the real paths from the root down to here) or to a folder containing one.
 */
function loopReason(target: string, open: string[]): string | undefined {
  for (const dir of open) {
    const rel = path.relative(target, dir);
    if (rel === '') return `symbolic link loop: it points back to ${target}; not followed`;
    if (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel))
      return `symbolic link loop: it points to ${target}, which contains ${dir}; not followed`;
  }
  return undefined;
}

/** The class folders of `entries` (a listing of a folder whose own path is open[-1]). */
function classDirs(entries: Entry[], open: string[], ctx: ScanContext): Map<string, Entry> {
  const out = new Map<string, Entry>();
  for (const e of entries) {
    if (e.kind === 'problem') skip(ctx, e.path, e.reason);
    else if (e.kind === 'dir') {
      const loop = loopReason(e.real, open);
      if (loop) skip(ctx, e.path, loop);
      else out.set(e.name, e);
    }
  }
  return out;
}

/**
 * Every file under `dir` (real path `real`), recursively, sorted, through symbolic links;
 * `open` holds the real paths of the folders being scanned above it, so a link back up is
 * reported once and not followed.
 */
async function filesUnder(
  dir: string,
  real: string,
  open: string[],
  ctx: ScanContext,
): Promise<{ path: string; real: string }[]> {
  const out: { path: string; real: string }[] = [];
  open.push(real);
  for (const e of await listDir(dir, real)) {
    if (e.kind === 'problem') skip(ctx, e.path, e.reason);
    else if (e.kind === 'file') out.push(e);
    else {
      const loop = loopReason(e.real, open);
      if (loop) skip(ctx, e.path, loop);
      else out.push(...(await filesUnder(e.path, e.real, open, ctx)));
    }
  }
  open.pop();
  return out;
}

async function scanClasses(
  root: string,
  rootReal: string,
  classes: Map<string, Entry>,
  classNames: string[],
  open: string[],
  where: string,
  ctx: ScanContext,
): Promise<FolderEntry[]> {
  const entries: FolderEntry[] = [];
  for (const [label, name] of classNames.entries()) {
    const classDir = classes.get(name);
    if (!classDir || classDir.kind === 'problem') continue;
    const files = await filesUnder(classDir.path, classDir.real, open, ctx);
    if (files.length === 0)
      throw new UserError(`class folder ${classDir.path} is empty; every class needs at least one image`);
    for (const f of files) {
      // stat() follows links: a linked file's size and mtime are its target's, so the cache
      // key changes when the target does.
      const s = await stat(f.path);
      const rel = path.relative(root, f.path);
      const entry: FolderEntry = {
        rel: rel.split(path.sep).join('/'),
        label,
        size: s.size,
        mtimeMs: s.mtimeMs,
      };
      if (f.real !== path.join(rootReal, rel)) entry.target = f.real;
      entries.push(entry);
    }
  }
  if (entries.length === 0) throw new UserError(`${where} holds no images`);
  return entries;
}

/** The folder `name` of a listing that has it. */
function dirEntry(entries: Entry[], name: string): Extract<Entry, { kind: 'dir' | 'file' }> {
  const e = entries.find((x) => x.name === name);
  if (e?.kind !== 'dir') throw new Error(`${name} is not a folder of the listing`);
  return e;
}

export interface ScanOptions {
  /** Fail on a broken or looping symbolic link instead of skipping it with a warning. */
  strict?: boolean;
  log?: (message: string) => void;
}

/**
 * Lists the classes and files of an image folder, with the checks that need no decoding.
 * Symbolic links to class folders, folders and files are followed; a broken link or one that
 * loops back is skipped with a warning (an error with `strict`) and listed in `skipped`.
 */
export async function scanImageFolder(folder: string, opts: ScanOptions = {}): Promise<FolderScan> {
  const root = path.resolve(folder);
  if (!existsSync(root))
    throw new UserError(`${folder} does not exist; --data takes a folder of class folders or a .csv file`);
  if (!statSync(root).isDirectory())
    throw new UserError(
      `${folder} is neither a folder of class folders nor a .csv file; --data-kind KIND names another kind of data`,
    );
  const ctx: ScanContext = { strict: opts.strict ?? false, log: opts.log, skipped: [] };
  const rootReal = await realpath(root);
  const top = await listDir(root, rootReal);
  const topDirs = new Set(top.filter((e) => e.kind === 'dir').map((e) => e.name));
  const layout = topDirs.has('train') && topDirs.has('test') ? 'split' : 'flat';
  let trainDir = root;
  let open = [rootReal];
  let trainClasses: Map<string, Entry>;
  if (layout === 'split') {
    const train = dirEntry(top, 'train');
    trainDir = train.path;
    open = [rootReal, train.real];
    trainClasses = classDirs(await listDir(train.path, train.real), open, ctx);
  } else {
    trainClasses = classDirs(top, open, ctx);
  }
  const classNames = [...trainClasses.keys()];
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
  const train = await scanClasses(root, rootReal, trainClasses, classNames, open, trainDir, ctx);
  let test: FolderEntry[] = [];
  if (layout === 'split') {
    const testEntry = dirEntry(top, 'test');
    const testDir = testEntry.path;
    const testOpen = [rootReal, testEntry.real];
    const testClasses = classDirs(await listDir(testDir, testEntry.real), testOpen, ctx);
    const extra = [...testClasses.keys()].filter((c) => !classNames.includes(c));
    if (extra.length) {
      throw new UserError(
        `${testDir} has class folders that train/ lacks: ${extra.join(', ')}; both must use the same class names`,
      );
    }
    test = await scanClasses(root, rootReal, testClasses, classNames, testOpen, testDir, ctx);
  }
  for (const [label, name] of classNames.entries()) {
    if (!train.some((e) => e.label === label))
      throw new UserError(`class folder ${path.join(trainDir, name)} holds no images`);
  }
  return { root, layout, classNames, train, test, skipped: ctx.skipped };
}

/** Every file's identity (path, class, size, mtime) and the class names: the cache key. */
function fileList(scan: FolderScan): string {
  const lines = [scan.classNames.join('/')];
  for (const part of [scan.train, scan.test]) {
    lines.push('--');
    for (const e of part) {
      // A linked file also keys on where it leads: a link moved to another file is a change.
      const target = e.target === undefined ? '' : `\t${e.target}`;
      lines.push(`${e.rel}\t${e.label}\t${e.size}\t${e.mtimeMs}${target}`);
    }
  }
  return lines.join('\n');
}

/**
 * A file's bytes, unless it is larger than MAX_IMAGE_FILE_BYTES: its size is checked on the
 * open file before anything is read, so a huge file (or one that grew since the scan) is
 * skipped unread instead of being read whole and refused by its pixel count afterwards.
 */
export async function readImageFile(file: string): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    checkImageFileSize(file, (await handle.stat()).size);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

function checkImageFileSize(file: string, size: number): void {
  if (size > MAX_IMAGE_FILE_BYTES)
    throw new ImageTooLargeError(
      `${file}: the file is ${(size / 1024 / 1024).toFixed(1)} MB, more than the ${MAX_IMAGE_FILE_BYTES / 1024 / 1024} MB imgclf reads for one image`,
    );
}

/**
 * readImageFile without waiting on libuv: four system calls on this thread. For a file in the
 * page cache or on a local SSD that takes a few microseconds, against about 50 for the
 * asynchronous read's hops between threads (measured on 9,000 small PNGs: 7 µs against 48 µs
 * a file). The file is opened non-blocking, so a FIFO or a device does not hang the thread; only
 * regular files are read. A caller on slow storage should read asynchronously instead
 * (node/predict/decode.ts switches by the time a read takes).
 */
export function readImageFileSync(file: string): Buffer {
  const fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  try {
    const stats = fstatSync(fd);
    if (stats.isDirectory()) throw Object.assign(new Error(`${file}: is a folder`), { code: 'EISDIR' });
    if (!stats.isFile()) throw new UserError(`${file}: not a regular file`);
    checkImageFileSize(file, stats.size);
    const bytes = Buffer.allocUnsafe(stats.size);
    let at = 0;
    while (at < bytes.length) {
      const n = readSync(fd, bytes, at, bytes.length - at, at);
      if (n === 0) break;
      at += n;
    }
    return at === bytes.length ? bytes : bytes.subarray(0, at);
  } finally {
    closeSync(fd);
  }
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
  // Every image is written straight into one buffer at its place (unreadable ones are squeezed
  // out at the end): no second copy of the folder in memory, which at 224 px is 150 KB an image.
  const all = new Uint8Array(entries.length * row);
  const ok = new Uint8Array(entries.length);
  const pre = opts.preprocessing ?? folderPreprocessing(opts.resizeMode);
  let next = 0;
  const worker = async () => {
    while (next < entries.length) {
      const i = next++;
      const file = path.join(scan.root, entries[i].rel);
      try {
        const { bytes } = await prepareImage(await readImageFile(file), shape, pre, file);
        all.set(bytes, i * row);
        ok[i] = 1;
      } catch (err) {
        let reason = (err as Error).message.replace(`${file}: `, '');
        // "the image is 9000x8000 pixels, more than ...": lead with what is wrong with it.
        if (err instanceof ImageTooLargeError) reason = `too large: ${reason}`;
        if (opts.strict) throw new UserError(`${file}: ${reason} (--strict stops at unreadable files)`);
        skipped.push({ path: file, reason });
        opts.log?.(`warning: skipping ${file}: ${reason}`);
      }
      progress();
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, entries.length) }, worker));
  const kept = entries.flatMap((_, i) => (ok[i] ? [i] : []));
  const labels = new Uint8Array(kept.length);
  kept.forEach((i, k) => {
    if (i !== k) all.copyWithin(k * row, i * row, (i + 1) * row);
    labels[k] = entries[i].label;
  });
  const pixels = all.subarray(0, kept.length * row);
  return { pixels, labels, count: kept.length, files: kept.map((i) => entries[i].rel) };
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
  // Broken and looping links are reported here, on every run: they are not in the cache key.
  const scan = await scanImageFolder(folder, { strict: opts.strict, log: opts.log });
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
        // Only when given, so the keys of folders decoded for training stay as they were.
        ...(opts.preprocessing ? { preprocessing: opts.preprocessing } : {}),
      },
    },
    fileList(scan),
  );
  const cached = await readFolderCache(cachePath, opts.log);
  if (cached) {
    const skipped = [...scan.skipped, ...cached.header.skipped];
    for (const s of cached.header.skipped) {
      if (opts.strict) throw new UserError(`${s.path}: ${s.reason} (--strict stops at unreadable files)`);
      opts.log?.(`warning: skipping ${s.path}: ${s.reason}`);
    }
    opts.log?.(`cache hit: ${cachePath} (${cached.train.count + cached.test.count} decoded images)`);
    return { scan, shape, train: cached.train, test: cached.test, skipped, cache: 'hit', cachePath };
  }
  const total = scan.train.length + scan.test.length;
  let done = 0;
  const progress = () => opts.onProgress?.(++done, total);
  const unreadable: SkippedFile[] = [];
  const train = await decodePart(scan, scan.train, shape, opts, unreadable, progress);
  const test = await decodePart(scan, scan.test, shape, opts, unreadable, progress);
  const trainDir = scan.layout === 'split' ? path.join(scan.root, 'train') : scan.root;
  checkEveryClass(scan.classNames, scan.train, train, trainDir);
  checkEveryClass(scan.classNames, scan.test, test, path.join(scan.root, 'test'));
  await writeFolderCache(
    cachePath,
    { shape, trainCount: train.count, testCount: test.count, skipped: unreadable },
    train,
    test,
    opts.log,
  );
  const skipped = [...scan.skipped, ...unreadable];
  return { scan, shape, train, test, skipped, cache: 'miss', cachePath };
}

// An image folder as a data source (kind 'folder'), registered with node/data/sources.ts.

registerSource<FolderSource>('folder', {
  async load(source, opts) {
    const folder = await loadImageFolder(source.path, {
      imageSize: source.imageSize,
      channels: source.channels,
      resizeMode: source.resizeMode,
      strict: opts.strict,
      log: opts.log,
      onProgress: opts.onProgress,
    });
    const { scan, shape } = folder;
    const n = scan.classNames.length;
    // Each example keeps its file's absolute path, so reports can name and link their mistakes.
    const withFiles = (part: FolderPart): Split => {
      const s = splitFromBytes(part.pixels, part.labels, n, scan.root);
      if (part.files) s.files = part.files.map((rel) => path.join(scan.root, ...rel.split('/')));
      return s;
    };
    const train = withFiles(folder.train);
    const split =
      scan.layout === 'split'
        ? { train, test: withFiles(folder.test) }
        : holdOut(train, shape, n, source.valSplit, source.seed, scan.root);
    const heldOut = scan.layout === 'flat';
    const counts = `${split.train.count + split.test.count} images in ${n} classes`;
    const skipped = folder.skipped.length ? `, ${folder.skipped.length} unreadable skipped` : '';
    const held = heldOut ? `, ${split.test.count} held out for testing` : '';
    return {
      dataset: { name: path.basename(scan.root), classNames: scan.classNames, shape, ...split },
      source: { ...source, path: scan.root },
      located: {
        dir: scan.root,
        origin: `image folder, ${scan.layout === 'split' ? 'train/ and test/' : 'class folders'}`,
      },
      files: [],
      skipped: folder.skipped,
      cache: folder.cache,
      heldOut,
      summary: `image folder ${scan.root}: ${counts}${skipped}${held} (cache ${folder.cache})`,
    };
  },

  where: (source) => source.path,

  preprocessing: (source) => folderPreprocessing(source.resizeMode),

  // A run downloaded from the page keeps its images in data/ inside it.
  fromRun: (source, { runDir }) =>
    runDir && !path.isAbsolute(source.path) ? { ...source, path: path.join(runDir, source.path) } : source,

  // Decoded at the backbone's size and channels: photos give it colour.
  atInput: (source, [size, , channels]) => ({ ...source, imageSize: size, channels: channels as 1 | 3 }),

  cacheIdentity: (source) => ({ kind: 'folder', path: source.path, resizeMode: source.resizeMode }),

  // The kind is named, not left to the path: a folder may end in .csv.
  planChoices: ({ path: data, imageSize, channels, resizeMode, valSplit, seed }) => ({
    dataKind: 'folder',
    data,
    imageSize,
    channels,
    resizeMode,
    valSplit,
    seed,
  }),

  isRecorded: (data) => typeof data.path === 'string',
});
