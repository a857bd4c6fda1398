/**
 * A model as run-directory files, written and read in the page in the format `imgclf` writes
 * and reads (imgclf/core: the file names, model.json, metadata and metrics text, the manifest;
 * node/run/rundir.ts and save.ts use the same), so that `imgclf evaluate`, `predict` and
 * `serve --run DIR` take a model trained here, and the page takes one trained by `imgclf train`:
 *
 *   model.json + weights.bin   TensorFlow.js layers format, as `modelFiles` writes them
 *   metadata.json              format imgclf-run/1, classes, input shape, preprocessing, plan
 *   metrics.jsonl              one line per epoch
 *   data/train/CLASS/*.png     the images it was trained on, and data/test/CLASS/*.png the
 *                              held-out ones, at the model's input size (metadata.data names
 *                              this folder, relative to the run directory)
 *   manifest.json              every file above with its size and SHA-256 (crypto.subtle)
 *
 * A download is one zip file (fflate) holding a folder with those files. Reading takes the
 * files picked one by one or a zip; the manifest, when there is one, is checked. No DOM here:
 * Node's tests import it too.
 */
import * as tf from '@tensorflow/tfjs-core';
import { strFromU8, strToU8, type UnzipFileInfo, unzipSync, zipSync, type Zippable } from 'fflate';
import {
  type EpochMetrics,
  type ImageShape,
  isManifest,
  loadNet,
  type Manifest,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  manifestText,
  METADATA_FILE,
  metadataText,
  METRICS_FILE,
  metricsText,
  MODEL_FILE,
  modelJsonOf,
  type Net,
  type NetArtifacts,
  RUN_FORMAT,
  type Split,
  WEIGHTS_FILE,
} from 'imgclf/core';
import { PAGE_DATA_DIR } from './train.js';
import { type PageRunData, type PageRunMetadata, rowBytes } from './own-train.js';

/** What the page reads of a run directory; anything else in a zip or a pick is ignored. */
const READ_FILES = [MODEL_FILE, WEIGHTS_FILE, METADATA_FILE, METRICS_FILE, MANIFEST_FILE];
/** A zip whose files would unpack to more than this is refused. */
const MAX_UNZIPPED_BYTES = 512 * 1024 * 1024;

/** The files of a run directory, by path relative to it ('/'-separated). */
export type RunFiles = Map<string, Uint8Array>;

/** Encodes one image (H * W * C bytes) as PNG: a canvas in the page, sharp in Node's tests. */
export type PngEncoder = (pixels: Uint8Array, shape: ImageShape) => Promise<Uint8Array>;

/** Thrown for files that are not a usable run directory; the message says why. */
export class RunFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunFileError';
  }
}

const toHex = (buf: ArrayBuffer) =>
  Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');

/**
 * Whether this page can compute SHA-256: crypto.subtle exists in secure contexts only
 * (https://, or http://localhost and 127.0.0.1, where `imgclf serve` listens by default).
 */
export function canHash(): boolean {
  return typeof crypto !== 'undefined' && crypto.subtle !== undefined;
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return toHex(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
}

/** The images of a split as data/PART/CLASS/NNNN.png files. */
async function imageFiles(
  part: 'train' | 'test',
  split: Split,
  shape: ImageShape,
  classNames: string[],
  encode: PngEncoder,
  out: RunFiles,
): Promise<void> {
  const perClass = new Array<number>(classNames.length).fill(0);
  for (let i = 0; i < split.count; i++) {
    const bytes = rowBytes(split, shape, i);
    const label = split.labels[i];
    const n = perClass[label]++;
    const name = `${PAGE_DATA_DIR}/${part}/${classNames[label]}/${String(n).padStart(4, '0')}.png`;
    out.set(name, await encode(bytes, shape));
  }
}

/**
 * Every file of the run directory, manifest.json included when SHA-256 is available (a
 * directory without a manifest loads too). Images are written when the run has them.
 */
export async function runFiles(
  net: Net,
  run: PageRunData,
  opts: { encodePng?: PngEncoder; withImages?: boolean } = {},
): Promise<RunFiles> {
  const artifacts = await net.artifacts();
  const files: RunFiles = new Map();
  files.set(MODEL_FILE, strToU8(JSON.stringify(modelJsonOf(artifacts))));
  files.set(WEIGHTS_FILE, new Uint8Array(artifacts.weightData));
  let metadata = run.metadata;
  const { data } = run;
  if (data && opts.withImages !== false && opts.encodePng) {
    const { classNames, inputShape } = metadata;
    await imageFiles('train', data.train, inputShape, classNames, opts.encodePng, files);
    await imageFiles('test', data.test, inputShape, classNames, opts.encodePng, files);
  } else if (metadata.data?.kind === 'folder' && metadata.data.path === PAGE_DATA_DIR) {
    // Without its images the run names no data (imgclf evaluate then says the data is missing).
    metadata = { ...metadata };
    delete metadata.data;
  }
  files.set(METADATA_FILE, strToU8(metadataText(metadata)));
  files.set(METRICS_FILE, strToU8(metricsText(run.metrics)));
  if (canHash()) {
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      epoch: run.metrics.length,
      saved: new Date().toISOString(),
      files: {},
    };
    for (const [rel, bytes] of files)
      manifest.files[rel] = { size: bytes.length, sha256: await sha256Hex(bytes) };
    files.set(MANIFEST_FILE, strToU8(manifestText(manifest)));
  }
  return files;
}

/** The files as one zip, inside a folder named `folder` (what unzipping creates). */
export function zipRun(files: RunFiles, folder: string): Uint8Array {
  const tree: Zippable = {};
  for (const [rel, bytes] of files) {
    // PNGs are compressed already; storing them saves time and nothing else.
    tree[`${folder}/${rel}`] = [bytes, { level: rel.endsWith('.png') ? 0 : 6 }];
  }
  return zipSync(tree);
}

/** A folder name for a run: letters, digits, CJK and dashes. */
export function runFolderName(name: string): string {
  const slug = name
    .trim()
    .replace(/[^\p{L}\p{N}]+/gu, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60);
  return `imgclf-${slug || 'page'}`;
}

/**
 * The run-directory files inside a zip: those next to its (least deep) metadata.json, images
 * and anything else left out (the page does not need them to classify), and only those are
 * inflated. A first pass reads the zip's directory alone (names and declared sizes; fflate's
 * `filter` sees each entry before inflating it, and this one takes none), then the entries
 * used are inflated, refused beforehand when their declared sizes add up to more than
 * MAX_UNZIPPED_BYTES. So a zip of a run plus a bomb (an entry of 500 MB of zeros is 500 KB
 * compressed) costs the run's files, not the bomb.
 *
 * A declared size can lie. fflate's one-shot inflate writes into a buffer of exactly the
 * declared size and never grows it, so an entry holding more than it declares gives no more
 * than its declared bytes (memory stays within the cap; the extra is decoded and dropped, work
 * bounded by the zip's own size), and one holding less comes out short, which is refused here.
 */
export function unzipRun(zip: Uint8Array): RunFiles {
  const unzip = (filter: (file: UnzipFileInfo) => boolean) => {
    try {
      return unzipSync(zip, { filter });
    } catch (err) {
      if (err instanceof RunFileError) throw err;
      throw new RunFileError(`not a readable zip file (${(err as Error).message})`);
    }
  };
  const declared = new Map<string, number>();
  unzip((f) => {
    declared.set(f.name, f.originalSize);
    return false;
  });
  const metas = [...declared.keys()]
    .filter((p) => p === METADATA_FILE || p.endsWith(`/${METADATA_FILE}`))
    .sort((a, b) => a.split('/').length - b.split('/').length);
  if (metas.length === 0) throw new RunFileError(`the zip holds no ${METADATA_FILE}: not a run directory`);
  const prefix = metas[0].slice(0, metas[0].length - METADATA_FILE.length);
  const used = new Set(READ_FILES.map((f) => prefix + f).filter((p) => declared.has(p)));
  let total = 0;
  const tooBig = () =>
    new RunFileError(
      `the run's files in the zip unpack to more than ${MAX_UNZIPPED_BYTES / 2 ** 20} MB, more than the page reads`,
    );
  for (const p of used) total += declared.get(p)!;
  if (total > MAX_UNZIPPED_BYTES) throw tooBig();
  // Counted again as they are inflated: a zip may list one name twice.
  total = 0;
  const entries = unzip((f) => {
    if (!used.has(f.name)) return false;
    total += f.originalSize;
    if (total > MAX_UNZIPPED_BYTES) throw tooBig();
    return true;
  });
  const files: RunFiles = new Map();
  for (const [p, bytes] of Object.entries(entries)) {
    const rel = p.slice(prefix.length);
    if (bytes.length !== declared.get(p))
      throw new RunFileError(
        `${rel} in the zip unpacks to ${bytes.length} bytes, not the ${declared.get(p)} the zip declares: the zip is corrupt`,
      );
    files.set(rel, bytes);
  }
  return files;
}

function parseJson<T>(files: RunFiles, name: string): T {
  const bytes = files.get(name);
  if (!bytes) throw new RunFileError(`${name} is missing; pick model.json, weights.bin and metadata.json`);
  try {
    return JSON.parse(strFromU8(bytes)) as T;
  } catch {
    throw new RunFileError(`${name} is not valid JSON (corrupt or truncated)`);
  }
}

/**
 * Checks the files the page has against manifest.json, when there is one: a run directory
 * whose files do not match it would also be refused by `imgclf`. Files it lists that were not
 * picked (the images) are not needed here and are skipped.
 */
async function checkManifest(files: RunFiles): Promise<'checked' | 'none' | 'unchecked'> {
  if (!files.has(MANIFEST_FILE)) return 'none';
  const m = parseJson<unknown>(files, MANIFEST_FILE);
  if (!isManifest(m)) throw new RunFileError(`${MANIFEST_FILE} is not an imgclf manifest`);
  if (!canHash()) return 'unchecked';
  for (const [rel, want] of Object.entries(m.files)) {
    const bytes = files.get(rel);
    if (!bytes) {
      if ([MODEL_FILE, WEIGHTS_FILE, METADATA_FILE].includes(rel))
        throw new RunFileError(`${rel} is listed in ${MANIFEST_FILE} but was not given`);
      continue;
    }
    if (bytes.length !== want.size || (await sha256Hex(bytes)) !== want.sha256)
      throw new RunFileError(
        `${rel} does not match ${MANIFEST_FILE}: the run directory mixes two saves or was changed`,
      );
  }
  return 'checked';
}

/** What reading a run directory gives: its metadata, metrics and the model's artifacts. */
export interface ReadRun {
  metadata: PageRunMetadata;
  metrics: EpochMetrics[];
  artifacts: NetArtifacts;
  manifest: 'checked' | 'none' | 'unchecked';
}

/** Reads and checks run-directory files (as node/run/rundir.ts `loadRun` checks them). */
export async function readRunFiles(files: RunFiles): Promise<ReadRun> {
  const manifest = await checkManifest(files);
  const metadata = parseJson<PageRunMetadata>(files, METADATA_FILE);
  if (
    metadata.format !== RUN_FORMAT ||
    !Array.isArray(metadata.classNames) ||
    !Array.isArray(metadata.inputShape) ||
    metadata.inputShape.length !== 3
  )
    throw new RunFileError(`${METADATA_FILE}: not an imgclf run (format '${metadata.format}')`);
  if (metadata.backbone !== undefined) {
    // A head on a backbone the page can fetch (a URL or hf:) loads here, the backbone with it.
    const b = metadata.backbone as { source?: unknown; format?: unknown };
    if (typeof b.source !== 'string' || !['onnx', 'layers-model', 'graph-model'].includes(String(b.format)))
      throw new RunFileError(`${METADATA_FILE}: its backbone record is not one imgclf writes`);
    // A path on the machine that trained it is out of the page's reach; a backbone the page
    // opened from files (page-file:NAME) is opened again under Backbone (own-keep.ts).
    if (!/^(https?:\/\/|hf:|page-file:)/i.test(b.source))
      throw new RunFileError(
        `this run's backbone is ${b.source}, a path on the machine that trained it, which the page cannot read; serve it with imgclf serve --run DIR there`,
      );
  }
  const modelJson = parseJson<{
    modelTopology?: object;
    weightsManifest?: { weights: tf.io.WeightsManifestEntry[] }[];
  }>(files, MODEL_FILE);
  if (!modelJson.modelTopology) throw new RunFileError(`${MODEL_FILE} has no modelTopology`);
  const weights = files.get(WEIGHTS_FILE);
  if (!weights)
    throw new RunFileError(`${WEIGHTS_FILE} is missing; pick it with model.json and metadata.json`);
  const weightSpecs = modelJson.weightsManifest?.flatMap((g) => g.weights) ?? [];
  const expected = weightSpecs.reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1) * 4, 0);
  if (weights.length !== expected)
    throw new RunFileError(
      `${WEIGHTS_FILE}: ${weights.length} bytes but ${MODEL_FILE} needs ${expected}; the weights are corrupt or truncated`,
    );
  const weightData = weights.slice().buffer as ArrayBuffer;
  if (weightSpecs.every((w) => w.dtype === undefined || w.dtype === 'float32')) {
    const values = new Float32Array(weightData);
    for (let i = 0; i < values.length; i++)
      if (!Number.isFinite(values[i]))
        throw new RunFileError(`${WEIGHTS_FILE} holds NaN or infinite weights (the training diverged)`);
  }
  let metrics: EpochMetrics[] = [];
  const metricsBytes = files.get(METRICS_FILE);
  if (metricsBytes) {
    try {
      metrics = strFromU8(metricsBytes)
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as EpochMetrics);
    } catch {
      metrics = [];
    }
  }
  return {
    metadata,
    metrics,
    artifacts: { modelTopology: modelJson.modelTopology, weightSpecs, weightData },
    manifest,
  };
}

/**
 * Builds the model and checks that it fits its metadata: it takes the recorded input shape (a
 * head on a backbone: the backbone's features, [1, 1, D]) and has one output per class name
 * (node/run/rundir.ts `checkModelFits`).
 */
export async function netOf(metadata: PageRunMetadata, artifacts: NetArtifacts): Promise<Net> {
  const features = (metadata.backbone as { features?: unknown } | undefined)?.features;
  if (metadata.backbone !== undefined && !(Number.isSafeInteger(features) && (features as number) > 0))
    throw new RunFileError(`${METADATA_FILE}: its backbone record has no feature count`);
  const takes: ImageShape = metadata.backbone ? [1, 1, features as number] : metadata.inputShape;
  let net: Net;
  try {
    net = await loadNet(metadata.model, artifacts);
  } catch (err) {
    throw new RunFileError(`${MODEL_FILE}: cannot build the model (${(err as Error).message})`);
  }
  let outputs: number | undefined;
  try {
    outputs = tf.tidy(() => net.apply(tf.zeros([1, ...takes]), { training: false }).shape[1]);
  } catch (err) {
    net.dispose();
    throw new RunFileError(
      `${MODEL_FILE} does not take the ${takes.join('x')} ${metadata.backbone ? 'backbone features' : 'images'} ${METADATA_FILE} records (${(err as Error).message.split('\n')[0]})`,
    );
  }
  if (outputs !== metadata.classNames.length) {
    net.dispose();
    throw new RunFileError(
      `${METADATA_FILE} names ${metadata.classNames.length} classes but the model has ${outputs} outputs`,
    );
  }
  return net;
}
