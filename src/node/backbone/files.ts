/**
 * A backbone's files (Node only): model.json and its weight files, from disk or from a URL,
 * with the backbone's identity, the SHA-256 of model.json's bytes followed by each weight
 * file's bytes in the order model.json lists them.
 *
 *   - A local path (a model.json, or a folder holding one: an imgclf run directory, a Teachable
 *     Machine export) is read here, file by file. tfjs-node's file:// handler is not available
 *     (imgclf runs on tfjs-core with the wasm backend, without tfjs-node), so the weights are
 *     read with node:fs and handed to tfjs as artifacts (`tf.io.fromMemory`).
 *   - A URL is downloaded by the bounded client (node/download.ts), resolving the weight files
 *     as tfjs's HTTP loader does (model.json's folder + path + model.json's query); the bytes
 *     are cached under the cache root by URL and hash (node/cache.ts), so evaluate, predict and
 *     serve find the backbone a run was trained with without fetching it again. A URL that does
 *     not end in .json is a TF Hub style model address: `/model.json?tfjs-format=file` is
 *     appended, as tfjs's `loadGraphModel(url, { fromTFHub: true })` does.
 *
 * model.json is as untrusted as any download: each weight path it names must be a plain
 * relative path that stays inside model.json's folder (or URL folder), and the weight files may
 * hold no more bytes than its weightsManifest declares (the sum of shape x dtype size), so a
 * model.json cannot make imgclf read /dev/zero or fetch without end.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../core/errors.js';
import { readBackboneCache, writeBackboneCache } from '../cache.js';
import { DEFAULT_TIMEOUTS, type DownloadLimits, downloadBytes } from '../download.js';

/** One file of a backbone: `name` is 'model.json' or a weight path as model.json names it. */
export interface BackboneFile {
  name: string;
  data: Uint8Array;
}

/** What model.json holds (the tfjs format: layers or graph). */
export interface ModelJson {
  format?: string;
  generatedBy?: string;
  modelTopology?: Record<string, unknown>;
  weightsManifest?: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  [key: string]: unknown;
}

export interface BackboneFiles {
  /** The backbone as a run records it: an absolute path (as given, resolved) or the URL. */
  source: string;
  /** Where model.json is: an absolute path or a URL. */
  modelUrl: string;
  modelJson: ModelJson;
  /** model.json, then the weight files in manifest order. */
  files: BackboneFile[];
  sha256: string;
  /** The metadata.json beside model.json (an imgclf run's, a Teachable Machine export's), if any. */
  sidecar?: Record<string, unknown>;
  /** Where the bytes came from. */
  origin: 'disk' | 'download' | 'cache';
}

export const MODEL_JSON = 'model.json';

/**
 * Largest model.json accepted. Real ones are kilobytes (a layers model) to a few MB (a large
 * graph model's topology); the weights are in other files. More is an endless or hostile body.
 */
export const MAX_MODEL_JSON_BYTES = 32 * 1024 * 1024;

/**
 * Most weight bytes one backbone may have, and the cap for a weight group whose size
 * model.json cannot declare (string tensors). The largest image backbones in tfjs form are a
 * few hundred MB (EfficientNet-B7, 260 MB); the weights are held in memory once for tfjs.
 */
export const MAX_WEIGHT_BYTES = 1024 * 1024 * 1024;

/** Largest metadata.json beside model.json: a Teachable Machine export's is under 1 KB. */
const MAX_SIDECAR_BYTES = 1024 * 1024;

/**
 * Timers for each backbone file downloaded. A whole file may take 10 minutes (a few hundred MB
 * on a slow line); a server that does not answer, or stops sending, fails in 30 s.
 */
export const BACKBONE_TIMEOUTS: BackboneTimeouts = {
  timeoutMs: 600_000,
  connectTimeoutMs: DEFAULT_TIMEOUTS.connectTimeoutMs,
  idleTimeoutMs: DEFAULT_TIMEOUTS.idleTimeoutMs,
};

export type BackboneTimeouts = Omit<DownloadLimits, 'maxBytes'>;

export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

/** SHA-256 over the files' bytes, in order: a backbone's identity. */
export function hashFiles(files: BackboneFile[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(f.data);
  return h.digest('hex');
}

/** Bytes per value of each dtype a weight (or its quantized form) may have. */
const DTYPE_BYTES: Record<string, number> = {
  float32: 4,
  int32: 4,
  bool: 1,
  complex64: 8,
  float16: 2,
  uint16: 2,
  uint8: 1,
};

/** One group of model.json's weightsManifest: its files and the bytes they hold together. */
interface WeightGroup {
  paths: string[];
  /** Sum of shape x dtype size over the group's weights; undefined when a dtype has no fixed size. */
  bytes?: number;
}

/**
 * The weight groups model.json lists, in order, each path checked (checkedWeightPath) and each
 * group's size declared by its weight specs. tfjs splits a group's weights, concatenated, into
 * its files, so only the group's total is known, not each file's.
 */
function weightGroups(json: ModelJson, where: string): WeightGroup[] {
  const manifest = json.weightsManifest ?? [];
  const malformed = () =>
    new UserError(
      `backbone ${where}: its weightsManifest is not a list of { paths, weights }; --backbone takes a TensorFlow.js model.json`,
    );
  if (!Array.isArray(manifest)) throw malformed();
  let total = 0;
  return manifest.map((group) => {
    if (!group || !Array.isArray(group.paths) || !Array.isArray(group.weights)) throw malformed();
    const paths = group.paths.map((p: unknown) => checkedWeightPath(p, where));
    let bytes: number | undefined = 0;
    for (const w of group.weights) {
      const shape = (w as { shape?: unknown })?.shape;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw malformed();
      const size = DTYPE_BYTES[w.quantization?.dtype ?? w.dtype];
      if (size === undefined || bytes === undefined) {
        bytes = undefined; // a string tensor: its bytes are in the file, not the manifest
        continue;
      }
      bytes += shape.reduce((a: number, b: number) => a * b, 1) * size;
    }
    total += bytes ?? 0;
    if (total > MAX_WEIGHT_BYTES) {
      throw new UserError(
        `backbone ${where}: its weightsManifest declares more than ${MAX_WEIGHT_BYTES} bytes of weights, more than imgclf loads; pick a smaller backbone`,
      );
    }
    return { paths, bytes };
  });
}

/**
 * A weight path as model.json names it, refused unless it is a plain relative path: no '..'
 * (nor its percent-encoded forms, which URLs resolve as '..'), no absolute part (a leading '/',
 * a scheme or drive letter), no backslash (a separator on Windows), no query, fragment or
 * control characters, no empty part. Where it resolves is checked again by the caller.
 */
function checkedWeightPath(rel: unknown, where: string): string {
  const refuse = (why: string) =>
    new UserError(
      `backbone ${where}: its model.json names the weight file '${String(rel)}', which ${why}; weight paths must be relative paths inside model.json's folder (no '..', absolute parts or backslashes)`,
    );
  if (typeof rel !== 'string' || rel === '') throw refuse('is not a file name');
  if (rel.includes('\\')) throw refuse('has a backslash');
  if (rel.startsWith('/') || /^[a-z][a-z0-9+.-]*:/i.test(rel)) throw refuse('is absolute');
  // eslint-disable-next-line no-control-regex
  if (/[?#\u0000-\u001f\u007f]/.test(rel)) throw refuse('has a query, fragment or control character');
  for (const part of rel.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(part);
    } catch {
      throw refuse('has broken percent-encoding');
    }
    if (part === '') throw refuse('has an empty part');
    if (decoded === '..') throw refuse("climbs out of the folder with '..'");
    if (decoded !== part && /[/\\]|^\.$/.test(decoded))
      throw refuse('hides a path separator or dot in percent-encoding');
  }
  return rel;
}

/** The local file a (checked) weight path names, which must be inside `dir`. */
function weightFile(dir: string, rel: string, where: string): string {
  const file = path.resolve(dir, rel);
  const inside = path.relative(dir, file);
  if (!inside || inside.startsWith('..') || path.isAbsolute(inside))
    throw new UserError(
      `backbone ${where}: its weight file '${rel}' resolves outside ${dir}; weight paths must stay in model.json's folder`,
    );
  return file;
}

/**
 * The URL of a (checked) weight path, as tfjs's HTTP loader builds it: model.json's folder +
 * the path + model.json's query (a TF Hub `?tfjs-format=file`), which must stay under that
 * folder on the same origin.
 */
function weightUrl(modelUrl: string, rel: string, where: string): string {
  const q = modelUrl.lastIndexOf('?');
  const slash = modelUrl.lastIndexOf('/', q < 0 ? undefined : q);
  const prefix = modelUrl.slice(0, slash + 1);
  const suffix = q > slash ? modelUrl.slice(q) : '';
  const base = new URL(prefix);
  const url = new URL(prefix + rel + suffix);
  if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname))
    throw new UserError(
      `backbone ${where}: its weight file '${rel}' resolves outside ${prefix}; weight paths must stay in model.json's folder`,
    );
  return url.toString();
}

function parseModelJson(bytes: Uint8Array, where: string): ModelJson {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new UserError(`backbone ${where} is not valid JSON; --backbone takes a TensorFlow.js model.json`);
  }
  if (!json || typeof json !== 'object' || !('modelTopology' in json))
    throw new UserError(`backbone ${where} is not a TensorFlow.js model.json (it has no modelTopology)`);
  return json as ModelJson;
}

/** Checks that a weight group's files hold the bytes its specs declare (when they declare it). */
function checkGroupBytes(group: WeightGroup, got: number, where: string): void {
  if (group.bytes === undefined || got === group.bytes) return;
  throw new UserError(
    `backbone ${where}: its weight files ${group.paths.join(', ')} hold ${got} bytes but model.json's weightsManifest declares ${group.bytes}; the files are truncated or do not belong to this model.json`,
  );
}

/** A short description of a backbone for messages: the source and the first 12 hex of a hash. */
export function shortHash(sha256: string): string {
  return sha256.slice(0, 12);
}

/** Where a local backbone's model.json is: the path itself or model.json inside the folder. */
function localModelPath(source: string): string {
  if (!existsSync(source)) {
    throw new UserError(
      `backbone ${source} does not exist; --backbone takes a model.json, a folder holding one (an imgclf run directory, a Teachable Machine export) or a URL`,
    );
  }
  if (!statSync(source).isDirectory()) return source;
  const inside = path.join(source, MODEL_JSON);
  if (!existsSync(inside)) throw new UserError(`backbone ${source} is a folder without a ${MODEL_JSON}`);
  return inside;
}

/** A local file imgclf will not read, and why ("is not a regular file"). */
class Refused extends Error {}

/**
 * A local file's bytes, refused unless it is a regular file of at most `maxBytes`: a device
 * such as /dev/zero, a FIFO or a file larger than expected is never read.
 */
async function readBounded(file: string, maxBytes: number): Promise<Uint8Array> {
  const handle = await open(file, 'r');
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Refused('is not a regular file');
    if (stat.size > maxBytes) throw new Refused(`is ${stat.size} bytes, more than the ${maxBytes} allowed`);
    return new Uint8Array(await handle.readFile());
  } finally {
    await handle.close();
  }
}

async function readSidecar(file: string): Promise<Record<string, unknown> | undefined> {
  try {
    const v = JSON.parse(Buffer.from(await readBounded(file, MAX_SIDECAR_BYTES)).toString('utf8')) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads a backbone from disk: model.json and every weight file it lists. Only regular files
 * are read (never a device such as /dev/zero or a FIFO), at most MAX_WEIGHT_BYTES in all. The
 * weight sizes are checked against the specs after reading, and a mismatch is returned as
 * `sizeError` rather than thrown, so that a run's recorded backbone whose file grew is reported
 * as changed (by its hash), not as malformed.
 */
async function readLocalFiles(given: string): Promise<BackboneFiles & { sizeError?: UserError }> {
  const source = path.resolve(given);
  const modelPath = localModelPath(source);
  let bytes: Uint8Array;
  try {
    bytes = await readBounded(modelPath, MAX_MODEL_JSON_BYTES);
  } catch (err) {
    const why = err instanceof Refused ? err.message : `cannot be read (${(err as Error).message})`;
    throw new UserError(`backbone ${modelPath} ${why}; --backbone takes a TensorFlow.js model.json`);
  }
  const modelJson = parseModelJson(bytes, modelPath);
  const dir = path.dirname(modelPath);
  const files: BackboneFile[] = [{ name: MODEL_JSON, data: bytes }];
  let total = 0;
  let sizeError: UserError | undefined;
  for (const group of weightGroups(modelJson, modelPath)) {
    let got = 0;
    for (const rel of group.paths) {
      const file = weightFile(dir, rel, modelPath);
      let data: Uint8Array;
      try {
        data = await readBounded(file, MAX_WEIGHT_BYTES - total);
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOENT')
          throw new UserError(`backbone ${source}: its weight file ${file} is missing`);
        const why = err instanceof Refused ? err.message : `cannot be read (${(err as Error).message})`;
        throw new UserError(`backbone ${source}: its weight file ${file} ${why}`);
      }
      got += data.length;
      total += data.length;
      files.push({ name: rel, data });
    }
    try {
      checkGroupBytes(group, got, modelPath);
    } catch (err) {
      sizeError ??= err as UserError;
    }
  }
  return {
    source,
    modelUrl: modelPath,
    modelJson,
    files,
    sha256: hashFiles(files),
    sidecar: await readSidecar(path.join(dir, 'metadata.json')),
    origin: 'disk',
    sizeError,
  };
}

/** A backbone from disk whose weight files hold what model.json declares. */
async function readLocal(given: string): Promise<BackboneFiles> {
  const { sizeError, ...got } = await readLocalFiles(given);
  if (sizeError) throw sizeError;
  return got;
}

/**
 * The model.json URL of a backbone URL: a TF Hub style model address (no .json at the end of
 * its path) gets /model.json, and ?tfjs-format=file unless its query says a format already.
 */
export function modelJsonUrl(url: string): string {
  const u = new URL(url);
  if (/\.json$/i.test(u.pathname)) return url;
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/${MODEL_JSON}`;
  if (!u.searchParams.has('tfjs-format')) u.searchParams.set('tfjs-format', 'file');
  return u.toString();
}

/** The first line of an error, for one-line messages. */
function firstLine(err: unknown): string {
  return ((err as Error)?.message ?? String(err)).split('\n')[0];
}

/** A backbone download that failed: `reason` is what went wrong, without the backbone's name. */
class BackboneDownloadError extends UserError {
  constructor(
    url: string,
    readonly reason: string,
  ) {
    super(
      `backbone ${url}: ${reason}; check the URL, or download model.json and its weight files and pass their folder to --backbone`,
    );
  }
}

/**
 * Downloads a backbone with the bounded client: model.json (at most MAX_MODEL_JSON_BYTES), then
 * each weight file model.json names, checked and resolved as tfjs would, within the bytes its
 * weight specs declare.
 */
async function download(url: string, timeouts: BackboneTimeouts): Promise<BackboneFiles> {
  const modelUrl = modelJsonUrl(url);
  const get = async (what: string, from: string, maxBytes: number) => {
    try {
      return await downloadBytes(from, { ...timeouts, maxBytes });
    } catch (err) {
      throw new BackboneDownloadError(url, `cannot download ${what} (${firstLine(err)})`);
    }
  };
  const bytes = await get(modelUrl === url ? MODEL_JSON : modelUrl, modelUrl, MAX_MODEL_JSON_BYTES);
  const modelJson = parseModelJson(bytes, modelUrl);
  const files: BackboneFile[] = [{ name: MODEL_JSON, data: bytes }];
  for (const group of weightGroups(modelJson, modelUrl)) {
    let got = 0;
    for (const rel of group.paths) {
      const left = (group.bytes ?? MAX_WEIGHT_BYTES) - got;
      const what =
        group.bytes === undefined
          ? `its weight file ${rel}`
          : `its weight file ${rel} (its group may hold ${left} more bytes, as model.json declares)`;
      const data = await get(what, weightUrl(modelUrl, rel, modelUrl), left);
      got += data.length;
      files.push({ name: rel, data });
    }
    checkGroupBytes(group, got, modelUrl);
  }
  let sidecar: Record<string, unknown> | undefined;
  if (/\/model\.json$/i.test(new URL(modelUrl).pathname)) {
    // A Teachable Machine export (or an imgclf run) keeps metadata.json beside model.json; it is
    // optional, so any failure to get it just leaves it out.
    try {
      const limits = { timeoutMs: 10_000, connectTimeoutMs: 10_000, idleTimeoutMs: 10_000 };
      const data = await downloadBytes(new URL('metadata.json', modelUrl).toString(), {
        ...limits,
        maxBytes: MAX_SIDECAR_BYTES,
      });
      const v = JSON.parse(Buffer.from(data).toString('utf8')) as unknown;
      sidecar = v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
    } catch {
      sidecar = undefined;
    }
  }
  return { source: url, modelUrl, modelJson, files, sha256: hashFiles(files), sidecar, origin: 'download' };
}

/** What backbone loading may be told besides the source. */
export interface BackboneFileOptions {
  log?: (m: string) => void;
  /** Timers for each file downloaded (default BACKBONE_TIMEOUTS). */
  timeouts?: Partial<BackboneTimeouts>;
}

/**
 * The backbone named by `source` (a path or a URL), read or downloaded now. A downloaded one
 * is cached for later loads (`recordedBackboneFiles`).
 */
export async function backboneFiles(source: string, opts: BackboneFileOptions = {}): Promise<BackboneFiles> {
  if (!isUrl(source)) return readLocal(source);
  const got = await download(source, { ...BACKBONE_TIMEOUTS, ...opts.timeouts });
  await writeBackboneCache(source, got.sha256, got.files, opts.log);
  return got;
}

/**
 * The files of the backbone a run was trained with, which must still hash to `sha256`: from
 * disk, or for a URL from the cache (downloading again only when the cache lost it). A missing
 * or changed backbone is a one-line error naming it.
 */
export async function recordedBackboneFiles(
  source: string,
  sha256: string,
  opts: BackboneFileOptions = {},
): Promise<BackboneFiles> {
  const { log } = opts;
  const changed = (now: string) =>
    new UserError(
      `backbone ${source} has changed since the run was trained (sha256 ${shortHash(now)}, the run was trained with ${shortHash(sha256)}); restore it or retrain`,
    );
  if (!isUrl(source)) {
    const missing = (what: string) =>
      new UserError(
        `the run's backbone ${what} is missing (the run was trained with sha256 ${shortHash(sha256)}); restore it or retrain`,
      );
    if (!existsSync(source)) throw missing(source);
    let got: BackboneFiles & { sizeError?: UserError };
    try {
      got = await readLocalFiles(source);
    } catch (err) {
      const file = /weight file (\S+) is missing/.exec(firstLine(err))?.[1];
      if (file) throw missing(file);
      throw err;
    }
    if (got.sha256 !== sha256) throw changed(got.sha256);
    const { sizeError, ...files } = got;
    if (sizeError) throw sizeError;
    return files;
  }
  const cached = await readBackboneCache(source, sha256, hashFiles, log);
  if (cached) {
    const modelJson = parseModelJson(cached[0].data, source);
    return { source, modelUrl: modelJsonUrl(source), modelJson, files: cached, sha256, origin: 'cache' };
  }
  log?.(`backbone ${source} is not in the cache: downloading it again`);
  let got: BackboneFiles;
  try {
    got = await download(source, { ...BACKBONE_TIMEOUTS, ...opts.timeouts });
  } catch (err) {
    if (!(err instanceof BackboneDownloadError)) throw err;
    throw new UserError(
      `the run's backbone ${source} is neither in the cache nor downloadable (${err.reason}); restore access to it or retrain`,
    );
  }
  if (got.sha256 !== sha256) throw changed(got.sha256);
  await writeBackboneCache(source, sha256, got.files, log);
  return got;
}

/** tfjs model artifacts from the files (weights concatenated in manifest order). */
export async function artifactsOf(b: BackboneFiles): Promise<tf.io.ModelArtifacts> {
  const weights = b.files.slice(1).map((f) => f.data);
  const total = weights.reduce((s, w) => s + w.length, 0);
  const data = new Uint8Array(total);
  let o = 0;
  for (const w of weights) {
    data.set(w, o);
    o += w.length;
  }
  return tf.io.getModelArtifactsForJSON(b.modelJson as unknown as tf.io.ModelJSON, async (manifest) => [
    manifest.flatMap((g) => g.weights),
    data.buffer,
  ]);
}
