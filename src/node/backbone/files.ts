/**
 * A backbone's files (Node only): model.json and its weight files, from disk or from a URL,
 * with the backbone's identity, the SHA-256 of model.json's bytes followed by each weight
 * file's bytes in the order model.json lists them.
 *
 *   - A local path (a model.json, or a folder holding one: an imgclf run directory, a Teachable
 *     Machine export) is read here, file by file. tfjs-node's file:// handler is not available
 *     (imgclf runs on tfjs-core with the wasm backend, without tfjs-node), so the weights are
 *     read with node:fs and handed to tfjs as artifacts (`tf.io.fromMemory`).
 *   - A URL is loaded with tfjs's own HTTP loader (`tf.io.http`, on Node's global fetch), which
 *     resolves the weight files as every tfjs app does; the bytes it fetches are kept and cached
 *     under the cache root by URL and hash (node/cache.ts), so evaluate, predict and serve find
 *     the backbone a run was trained with without fetching it again. A URL that does not end in
 *     .json is a TF Hub style model address: `/model.json?tfjs-format=file` is appended, as
 *     tfjs's `loadGraphModel(url, { fromTFHub: true })` does.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../core/errors.js';
import { readBackboneCache, writeBackboneCache } from '../cache.js';

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

export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

/** SHA-256 over the files' bytes, in order: a backbone's identity. */
export function hashFiles(files: BackboneFile[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(f.data);
  return h.digest('hex');
}

/** The weight paths model.json lists, in order. */
function weightPaths(json: ModelJson): string[] {
  return (json.weightsManifest ?? []).flatMap((g) => g.paths ?? []);
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

async function readSidecar(file: string): Promise<Record<string, unknown> | undefined> {
  try {
    const v = JSON.parse(await readFile(file, 'utf8')) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Reads a backbone from disk: model.json and every weight file it lists. */
async function readLocal(given: string): Promise<BackboneFiles> {
  const source = path.resolve(given);
  const modelPath = localModelPath(source);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(modelPath);
  } catch (err) {
    throw new UserError(`backbone ${modelPath}: cannot read it (${(err as Error).message})`);
  }
  const modelJson = parseModelJson(bytes, modelPath);
  const files: BackboneFile[] = [{ name: MODEL_JSON, data: bytes }];
  for (const rel of weightPaths(modelJson)) {
    const file = path.resolve(path.dirname(modelPath), rel);
    try {
      files.push({ name: rel, data: await readFile(file) });
    } catch {
      throw new UserError(`backbone ${source}: its weight file ${file} is missing`);
    }
  }
  return {
    source,
    modelUrl: modelPath,
    modelJson,
    files,
    sha256: hashFiles(files),
    sidecar: await readSidecar(path.join(path.dirname(modelPath), 'metadata.json')),
    origin: 'disk',
  };
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

/**
 * Downloads a backbone with tfjs's HTTP loader, keeping the bytes of every file it fetches (in
 * the order it asks for them: model.json, then the weight files in manifest order).
 */
async function download(url: string): Promise<BackboneFiles> {
  const modelUrl = modelJsonUrl(url);
  const fetched: { url: string; data?: Uint8Array }[] = [];
  const fetchFunc = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const entry: { url: string; data?: Uint8Array } = { url: String(input) };
    fetched.push(entry);
    const response = await fetch(input, init);
    if (!response.ok) return response;
    const body = await response.arrayBuffer();
    entry.data = new Uint8Array(body);
    return new Response(body, { status: response.status, headers: response.headers });
  };
  try {
    await tf.io.http(modelUrl, { fetchFunc: fetchFunc as typeof fetch }).load!();
  } catch (err) {
    throw new UserError(`backbone ${url}: cannot download it (${firstLine(err)})`);
  }
  const [json, ...weights] = fetched;
  if (!json?.data) throw new UserError(`backbone ${url}: cannot download ${modelUrl}`);
  const modelJson = parseModelJson(json.data, modelUrl);
  const paths = weightPaths(modelJson);
  if (weights.length !== paths.length || weights.some((w) => !w.data))
    throw new UserError(`backbone ${url}: its weight files could not all be downloaded`);
  const files: BackboneFile[] = [
    { name: MODEL_JSON, data: json.data },
    ...paths.map((name, i) => ({ name, data: weights[i].data! })),
  ];
  let sidecar: Record<string, unknown> | undefined;
  if (/\/model\.json$/i.test(new URL(modelUrl).pathname)) {
    // A Teachable Machine export (or an imgclf run) keeps metadata.json beside model.json.
    try {
      const r = await fetch(new URL('metadata.json', modelUrl), { signal: AbortSignal.timeout(10_000) });
      if (r.ok) sidecar = (await r.json()) as Record<string, unknown>;
    } catch {
      sidecar = undefined;
    }
  }
  return { source: url, modelUrl, modelJson, files, sha256: hashFiles(files), sidecar, origin: 'download' };
}

/**
 * The backbone named by `source` (a path or a URL), read or downloaded now. A downloaded one
 * is cached for later loads (`recordedBackboneFiles`).
 */
export async function backboneFiles(source: string, log?: (m: string) => void): Promise<BackboneFiles> {
  if (!isUrl(source)) return readLocal(source);
  const got = await download(source);
  await writeBackboneCache(source, got.sha256, got.files, log);
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
  log?: (m: string) => void,
): Promise<BackboneFiles> {
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
    let got: BackboneFiles;
    try {
      got = await readLocal(source);
    } catch (err) {
      const file = /weight file (\S+) is missing/.exec(firstLine(err))?.[1];
      if (file) throw missing(file);
      throw err;
    }
    if (got.sha256 !== sha256) throw changed(got.sha256);
    return got;
  }
  const cached = await readBackboneCache(source, sha256, hashFiles, log);
  if (cached) {
    const modelJson = parseModelJson(cached[0].data, source);
    return { source, modelUrl: modelJsonUrl(source), modelJson, files: cached, sha256, origin: 'cache' };
  }
  log?.(`backbone ${source} is not in the cache: downloading it again`);
  let got: BackboneFiles;
  try {
    got = await download(source);
  } catch (err) {
    throw new UserError(
      `the run's backbone ${source} is neither in the cache nor downloadable (${firstLine(err).replace(/^backbone \S+: cannot download it \((.*)\)$/, '$1')})`,
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
