/**
 * imgclf's one on-disk cache (Node only), under $XDG_CACHE_HOME/imgclf (or ~/.cache/imgclf):
 *
 *   <dataset>/                 downloaded IDX files (node/data/datasets.ts)
 *   decoded/<label>-<key>.bin  decoded IDX splits: gunzipping and converting Fashion-MNIST's
 *                              60,000 training images is most of a short run's start-up
 *   folders/<label>-<key>.bin  decoded image folders: one file instead of decoding thousands
 *   features/<label>-<key>.bin a frozen backbone's features of a dataset's images (--backbone):
 *                              computed once, then a head trains in seconds
 *   backbones/<label>-<key>.bin a backbone downloaded from a URL (model.json and weight files),
 *                              so evaluate, predict and serve do not fetch it again
 *   converted/<label>-<key>.bin a TensorFlow.js backbone converted to ONNX (node/backbone/
 *                              convert.ts), by its SHA-256, feature layer and input size
 *
 * One policy for every entry:
 *   - The key hashes what the entry was made from (files' paths, sizes, modification times and
 *     the decoding options; a backbone's SHA-256 and each image's pixels), so a changed source
 *     gets a new entry.
 *   - The label names what the entry is for (a dataset split, a folder with its options). A new
 *     entry replaces the others of its label: one is all a run reuses, and each can be
 *     hundreds of MB.
 *   - An entry that does not parse is deleted, reported, and rebuilt.
 *   - A failure to write or prune costs speed only: it is reported and never fails a run.
 *   - Entries are written atomically (node/fs.ts), in the container of node/parts-file.ts; the
 *     temp file of a write that was killed is removed by a later write in its folder.
 */
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ImageShape, Split } from '../core/data/dataset.js';
import type { FileReport } from './checksum.js';
import { writeFileAtomic } from './fs.js';
import { float32View, packParts, unpackParts } from './parts-file.js';

/** The cache root: $XDG_CACHE_HOME/imgclf or ~/.cache/imgclf. */
export function cacheRoot(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'imgclf');
}

/** The entry file for `label` in `dir`, keyed by a hash of `key`. */
export function entryPath(dir: string, label: string, key: unknown): string {
  const digest = createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 32);
  return path.join(dir, `${label}-${digest}.bin`);
}

/** Labels may hold any characters a dataset name does; file names get a safe form. */
export function safeLabel(label: string): string {
  return label.replace(/[^A-Za-z0-9._-]+/g, '_');
}

/**
 * Reads an entry and checks it with `decode`. Absent: undefined. Unparseable or rejected by
 * `decode`: deleted, reported through `log`, undefined.
 */
export async function readEntry<H extends object, T>(
  file: string,
  decode: (header: H, parts: Uint8Array[]) => T | undefined,
  log?: (message: string) => void,
): Promise<T | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch {
    return undefined;
  }
  const unpacked = unpackParts<H>(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  const value = unpacked ? decode(unpacked.header, unpacked.parts) : undefined;
  if (value === undefined) {
    log?.(`warning: ignoring the unreadable cache file ${file} (it will be rebuilt)`);
    await rm(file, { force: true }).catch(() => {});
  }
  return value;
}

/** An atomic write's temp file (node/fs.ts): `<entry>.<8 hex digits>.part`. */
const TEMP_FILE = /\.[0-9a-f]{8}\.part$/;

/**
 * How old a temp file must be to count as left by a killed write. Another process may be
 * writing an entry of its own into the same folder right now; its temp file is at most as old
 * as its write, which takes seconds.
 */
export const STALE_TEMP_MS = 10 * 60 * 1000;

/**
 * Removes the temp files of writes that were killed before their rename (a Ctrl-C, a kill -9
 * while decoding): each can be hundreds of MB, and nothing else ever removes them. Best effort.
 */
export async function removeStaleTempFiles(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!TEMP_FILE.test(name)) continue;
    const file = path.join(dir, name);
    try {
      const s = await lstat(file);
      if (s.isFile() && Date.now() - s.mtimeMs > STALE_TEMP_MS) await rm(file, { force: true });
    } catch {
      // Gone already, or not ours to remove.
    }
  }
}

/**
 * Writes an entry, then removes the other entries of the same label. Never throws: a
 * read-only or full disk only costs the next run its head start. Killed writes' temp files
 * are removed first, so they do not fill the disk this write needs.
 */
export async function writeEntry(
  file: string,
  header: object,
  parts: Uint8Array[],
  log?: (message: string) => void,
): Promise<void> {
  await removeStaleTempFiles(path.dirname(file));
  try {
    await writeFileAtomic(file, packParts(header, parts));
  } catch (err) {
    log?.(
      `warning: cannot write the cache file ${file} (${(err as Error).message}); the next run decodes again`,
    );
    return;
  }
  const dir = path.dirname(file);
  const name = path.basename(file);
  const prefix = name.replace(/[0-9a-f]+\.bin$/, '');
  try {
    for (const other of await readdir(dir)) {
      if (other !== name && other.startsWith(prefix) && /^[0-9a-f]+\.bin$/.test(other.slice(prefix.length)))
        await rm(path.join(dir, other), { force: true });
    }
  } catch {
    // Stale entries only cost disk space.
  }
}

/**
 * The other entries of `file`'s label (at most one, since a write replaces the others): what
 * a new entry may reuse rows from.
 */
export async function otherEntries(file: string): Promise<string[]> {
  const dir = path.dirname(file);
  const name = path.basename(file);
  const prefix = name.replace(/[0-9a-f]+\.bin$/, '');
  try {
    return (await readdir(dir))
      .filter(
        (other) =>
          other !== name && other.startsWith(prefix) && /^[0-9a-f]+\.bin$/.test(other.slice(prefix.length)),
      )
      .map((other) => path.join(dir, other));
  } catch {
    return [];
  }
}

/** What identifies a source file's content cheaply: its absolute path, size and mtime. */
export async function fileStamps(files: string[]): Promise<[string, number, number][]> {
  return Promise.all(
    files.map(async (p) => {
      const s = await stat(p);
      return [path.resolve(p), s.size, s.mtimeMs] as [string, number, number];
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Decoded IDX splits: the labels and the pixels (bytes, as decoded) of one split.

const DECODED_FORMAT = 'imgclf-decoded/3';

export interface DecodedHeader {
  format: string;
  /** How the pixels are stored: bytes 0..255 or float32 in [0, 1]. */
  pixels?: 'u8' | 'f32';
  count: number;
  shape: ImageShape;
  /** What the loader reports about the source files (paths, checksums, verified). */
  sources: FileReport[];
}

/** The cache file for a split decoded from `sources` (their stats are the key). */
export async function decodedCachePath(label: string, sources: string[]): Promise<string> {
  return entryPath(path.join(cacheRoot(), 'decoded'), safeLabel(label), [
    DECODED_FORMAT,
    await fileStamps(sources),
  ]);
}

export async function writeDecoded(
  file: string,
  split: Split,
  header: Omit<DecodedHeader, 'format'>,
  log?: (message: string) => void,
): Promise<void> {
  const pixels = new Uint8Array(split.images.buffer, split.images.byteOffset, split.images.byteLength);
  const type = split.images instanceof Float32Array ? 'f32' : 'u8';
  await writeEntry(file, { ...header, format: DECODED_FORMAT, pixels: type }, [split.labels, pixels], log);
}

/** The cached split, or undefined when absent or unreadable (an unreadable entry is removed). */
export function readDecoded(
  file: string,
  log?: (message: string) => void,
): Promise<{ split: Split; header: DecodedHeader } | undefined> {
  return readEntry<DecodedHeader, { split: Split; header: DecodedHeader }>(
    file,
    (h, parts) => {
      const pixels = h.count * h.shape[0] * h.shape[1] * h.shape[2];
      const bytesPer = h.pixels === 'f32' ? 4 : 1;
      if (
        h.format !== DECODED_FORMAT ||
        parts.length !== 2 ||
        parts[0].length !== h.count ||
        parts[1].length !== pixels * bytesPer
      )
        return undefined;
      // The pixels stay a view over the file's buffer: no second copy.
      const images = h.pixels === 'f32' ? float32View(parts[1]) : parts[1];
      return { split: { images, labels: new Uint8Array(parts[0]), count: h.count }, header: h };
    },
    log,
  );
}

// ---------------------------------------------------------------------------------------------
// Decoded image folders: the train and test parts as bytes, plus the files that were skipped.

// 5: photos are decoded upright (EXIF orientation); a folder decoded before is decoded again.
const FOLDER_FORMAT = 'imgclf-folder-cache/5';

/** One decoded part of a folder: N images of H*W*C bytes and their labels. */
export interface BytePart {
  pixels: Uint8Array;
  labels: Uint8Array;
  count: number;
  /** Each image's path relative to the folder (image folders). */
  files?: string[];
}

export interface FolderCacheHeader {
  format: string;
  shape: ImageShape;
  trainCount: number;
  testCount: number;
  skipped: { path: string; reason: string }[];
  /** Each decoded image's path relative to the folder, train then test. */
  trainFiles?: string[];
  testFiles?: string[];
}

/** Where decoded folders are cached by default. */
export function folderCacheDir(): string {
  return path.join(cacheRoot(), 'folders');
}

/**
 * The entry of a folder decoded with given options. The label is the folder and the options,
 * so decoding the same folder at another size keeps both; the key is every file's identity.
 */
export function folderCachePath(
  dir: string,
  folder: { root: string; options: object },
  fileList: string,
): string {
  const label = createHash('sha256')
    .update(JSON.stringify([folder.root, folder.options]))
    .digest('hex')
    .slice(0, 12);
  return entryPath(dir, `f${label}`, [FOLDER_FORMAT, fileList]);
}

export function writeFolderCache(
  file: string,
  header: Omit<FolderCacheHeader, 'format'>,
  train: BytePart,
  test: BytePart,
  log?: (message: string) => void,
): Promise<void> {
  return writeEntry(
    file,
    { ...header, format: FOLDER_FORMAT, trainFiles: train.files, testFiles: test.files },
    [train.labels, test.labels, train.pixels, test.pixels],
    log,
  );
}

export function readFolderCache(
  file: string,
  log?: (message: string) => void,
): Promise<{ header: FolderCacheHeader; train: BytePart; test: BytePart } | undefined> {
  return readEntry<FolderCacheHeader, { header: FolderCacheHeader; train: BytePart; test: BytePart }>(
    file,
    (header, parts) => {
      if (header.format !== FOLDER_FORMAT || parts.length !== 4) return undefined;
      const row = header.shape[0] * header.shape[1] * header.shape[2];
      const { trainCount: a, testCount: b } = header;
      const [trainLabels, testLabels, trainPixels, testPixels] = parts;
      if (
        trainLabels.length !== a ||
        testLabels.length !== b ||
        trainPixels.length !== a * row ||
        testPixels.length !== b * row
      )
        return undefined;
      const files = (list: unknown, n: number) =>
        Array.isArray(list) && list.length === n ? (list as string[]) : undefined;
      return {
        header,
        train: { labels: trainLabels, pixels: trainPixels, count: a, files: files(header.trainFiles, a) },
        test: { labels: testLabels, pixels: testPixels, count: b, files: files(header.testFiles, b) },
      };
    },
    log,
  );
}

// ---------------------------------------------------------------------------------------------
// Backbone features (--backbone): one row of float32 features per image, keyed per image.

const FEATURES_FORMAT = 'imgclf-features/1';

/** Bytes of an image's key: a truncated SHA-256 of its pixels (node/backbone/features.ts). */
export const IMAGE_KEY_BYTES = 16;

export interface FeatureCacheHeader {
  format: string;
  /** Images (rows). */
  count: number;
  /** Features per image. */
  dim: number;
  /** The backbone's SHA-256 (model.json and weight files). */
  backbone: string;
}

/** The features of one dataset under one backbone: each image's key and its feature row. */
export interface FeatureRows {
  keys: Uint8Array;
  features: Float32Array;
  count: number;
  dim: number;
}

/**
 * The entry for the features of a dataset under a backbone. The label is the backbone (its
 * SHA-256 and how features are taken: layer, input shape, range) and the data's identity (a
 * folder, a built-in set), so another folder or another backbone keeps its own entry; the key
 * is every image's key, so any added, removed or changed image makes a new entry (which reuses
 * the rows of the old one: features are computed once per image).
 */
export function featureCachePath(
  label: { backbone: string; spec: object; data: object },
  keys: Uint8Array,
): string {
  const l = createHash('sha256')
    .update(JSON.stringify([label.backbone, label.spec, label.data]))
    .digest('hex')
    .slice(0, 12);
  const k = createHash('sha256').update(keys).digest('hex');
  return entryPath(path.join(cacheRoot(), 'features'), `x${l}`, [FEATURES_FORMAT, k]);
}

export function writeFeatureCache(
  file: string,
  backbone: string,
  rows: FeatureRows,
  log?: (message: string) => void,
): Promise<void> {
  const header: FeatureCacheHeader = { format: FEATURES_FORMAT, count: rows.count, dim: rows.dim, backbone };
  const bytes = new Uint8Array(rows.features.buffer, rows.features.byteOffset, rows.features.byteLength);
  return writeEntry(file, header, [rows.keys, bytes], log);
}

/** The cached features, or undefined when absent, unreadable or made with another backbone. */
export function readFeatureCache(
  file: string,
  backbone: string,
  log?: (message: string) => void,
): Promise<FeatureRows | undefined> {
  return readEntry<FeatureCacheHeader, FeatureRows>(
    file,
    (h, parts) => {
      if (
        h.format !== FEATURES_FORMAT ||
        h.backbone !== backbone ||
        parts.length !== 2 ||
        !(h.dim > 0) ||
        parts[0].length !== h.count * IMAGE_KEY_BYTES ||
        parts[1].length !== h.count * h.dim * 4
      )
        return undefined;
      return { keys: parts[0], features: float32View(parts[1]), count: h.count, dim: h.dim };
    },
    log,
  );
}

// ---------------------------------------------------------------------------------------------
// Backbones downloaded from a URL: model.json and its weight files, as fetched.

const BACKBONE_FORMAT = 'imgclf-backbone/1';

export interface BackboneCacheHeader {
  format: string;
  url: string;
  sha256: string;
  /** model.json, then each weight file's path as model.json names it. */
  names: string[];
}

/** The entry of the backbone at `url` whose files hash to `sha256`. */
export function backboneCachePath(url: string, sha256: string): string {
  const label = createHash('sha256').update(url).digest('hex').slice(0, 12);
  return entryPath(path.join(cacheRoot(), 'backbones'), `b${label}`, [BACKBONE_FORMAT, url, sha256]);
}

export function writeBackboneCache(
  url: string,
  sha256: string,
  files: { name: string; data: Uint8Array }[],
  log?: (message: string) => void,
): Promise<void> {
  const header: BackboneCacheHeader = {
    format: BACKBONE_FORMAT,
    url,
    sha256,
    names: files.map((f) => f.name),
  };
  return writeEntry(
    backboneCachePath(url, sha256),
    header,
    files.map((f) => f.data),
    log,
  );
}

/**
 * The cached files of a backbone, or undefined. `verify` recomputes the SHA-256 of the files
 * (node/backbone/files.ts): an entry that does not match is treated as unreadable.
 */
export function readBackboneCache(
  url: string,
  sha256: string,
  verify: (files: { name: string; data: Uint8Array }[]) => string,
  log?: (message: string) => void,
): Promise<{ name: string; data: Uint8Array }[] | undefined> {
  return readEntry<BackboneCacheHeader, { name: string; data: Uint8Array }[]>(
    backboneCachePath(url, sha256),
    (h, parts) => {
      if (
        h.format !== BACKBONE_FORMAT ||
        h.url !== url ||
        h.sha256 !== sha256 ||
        !Array.isArray(h.names) ||
        h.names.length !== parts.length
      )
        return undefined;
      const files = parts.map((data, i) => ({ name: h.names[i], data }));
      return verify(files) === sha256 ? files : undefined;
    },
    log,
  );
}

/**
 * The cached entry of the backbone at `url`, whatever its hash (a write keeps one entry per
 * URL): for a source named by URL and revision, whose hash is known only once downloaded.
 * `verify` gives the files' SHA-256, which must be the one the entry was written with.
 */
export async function findBackboneCache(
  url: string,
  verify: (files: { name: string; data: Uint8Array }[]) => string,
  log?: (message: string) => void,
): Promise<{ sha256: string; files: { name: string; data: Uint8Array }[] } | undefined> {
  const probe = backboneCachePath(url, '');
  const dir = path.dirname(probe);
  const prefix = path.basename(probe).replace(/[0-9a-f]+\.bin$/, '');
  let names: string[];
  try {
    names = (await readdir(dir)).filter(
      (n) => n.startsWith(prefix) && /^[0-9a-f]+\.bin$/.test(n.slice(prefix.length)),
    );
  } catch {
    return undefined;
  }
  for (const name of names) {
    const found = await readEntry<
      BackboneCacheHeader,
      { sha256: string; files: { name: string; data: Uint8Array }[] }
    >(
      path.join(dir, name),
      (h, parts) => {
        if (
          h.format !== BACKBONE_FORMAT ||
          h.url !== url ||
          !Array.isArray(h.names) ||
          h.names.length !== parts.length
        )
          return undefined;
        const files = parts.map((data, i) => ({ name: h.names[i], data }));
        return verify(files) === h.sha256 ? { sha256: h.sha256, files } : undefined;
      },
      log,
    );
    if (found) return found;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// TensorFlow.js backbones converted to ONNX: one graph per backbone, feature layer and size.

const CONVERTED_FORMAT = 'imgclf-converted-backbone/1';

export interface ConvertedCacheHeader {
  format: string;
  sha256: string;
  layer: string;
  inputShape: ImageShape;
  /** The imgclf that converted it: another version's exporter may map a layer differently. */
  version: string;
}

/**
 * The entry of the backbone `sha256` converted at `layer` for `inputShape` by imgclf `version`.
 * The label is the backbone and layer, so a newer conversion replaces an older one.
 */
export function convertedCachePath(h: Omit<ConvertedCacheHeader, 'format'>): string {
  const label = `c${h.sha256.slice(0, 12)}-${safeLabel(h.layer).slice(0, 40)}`;
  return entryPath(path.join(cacheRoot(), 'converted'), label, [CONVERTED_FORMAT, h]);
}

export function writeConvertedCache(
  h: Omit<ConvertedCacheHeader, 'format'>,
  bytes: Uint8Array,
  log?: (message: string) => void,
): Promise<void> {
  return writeEntry(convertedCachePath(h), { format: CONVERTED_FORMAT, ...h }, [bytes], log);
}

/** The cached ONNX bytes of a conversion, or undefined. */
export function readConvertedCache(
  h: Omit<ConvertedCacheHeader, 'format'>,
  log?: (message: string) => void,
): Promise<Uint8Array | undefined> {
  return readEntry<ConvertedCacheHeader, Uint8Array>(
    convertedCachePath(h),
    (got, parts) =>
      got.format === CONVERTED_FORMAT &&
      got.sha256 === h.sha256 &&
      got.layer === h.layer &&
      got.version === h.version &&
      JSON.stringify(got.inputShape) === JSON.stringify(h.inputShape) &&
      parts.length === 1
        ? parts[0]
        : undefined,
    log,
  );
}
