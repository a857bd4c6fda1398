/**
 * An ONNX backbone's files (Node only): the graph (model.onnx) and, when it has them, the
 * Hugging Face `config.json` and `preprocessor_config.json` beside it. Its identity is the
 * SHA-256 of the graph's bytes (what `sha256sum model.onnx` prints).
 *
 * Where they come from (--backbone):
 *   - an `.onnx` file on disk, with a preprocessor_config.json in its folder if there is one;
 *   - a folder in the Hugging Face / transformers.js layout: `onnx/model.onnx` (or `model.onnx`),
 *     `config.json`, `preprocessor_config.json`;
 *   - a URL ending in `.onnx`, or a URL folder holding that layout (recognised by its config.json);
 *   - `hf:OWNER/NAME[@REVISION]`: the files at `$HF_ENDPOINT/OWNER/NAME/resolve/REVISION/FILE`,
 *     HF_ENDPOINT defaulting to https://huggingface.co and REVISION to `main`, as huggingface_hub
 *     and transformers.js resolve them.
 *
 * Downloads go through the bounded client (node/download.ts) and are kept in the one cache
 * (node/cache.ts, backbones/) by URL (the revision is part of it): a second run, evaluate,
 * predict and serve read them from there, without the network. Offline (`--offline`, or
 * HF_HUB_OFFLINE=1 as huggingface_hub has it) only the cache is used, and what is missing is
 * one line.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../core/errors.js';
import { findBackboneCache, writeBackboneCache } from '../cache.js';
import { DEFAULT_TIMEOUTS, downloadBytes } from '../download.js';
import { BACKBONE_TIMEOUTS, type BackboneTimeouts, isUrl, shortHash } from './files.js';

/** The files of a graph in the Hugging Face layout, relative to the repo (or folder). */
export const ONNX_MODEL = 'onnx/model.onnx';
export const CONFIG = 'config.json';
export const PREPROCESSOR_CONFIG = 'preprocessor_config.json';

/** Largest graph read or downloaded: protobuf's own limit (larger graphs keep external data). */
export const MAX_ONNX_BYTES = 2 * 1024 * 1024 * 1024 - 1;
/** Largest config.json or preprocessor_config.json: real ones are a few KB. */
const MAX_CONFIG_BYTES = 1024 * 1024;

export interface OnnxFiles {
  /** As a run records it: an absolute path, a URL or `hf:OWNER/NAME@REVISION`. */
  source: string;
  /** Where the files were downloaded from (a URL, the folder's with a trailing slash), if they were. */
  url?: string;
  /** The graph's bytes. */
  model: Uint8Array;
  /** SHA-256 of the graph's bytes. */
  sha256: string;
  config?: Record<string, unknown>;
  preprocessor?: Record<string, unknown>;
  /** A Hugging Face repo or folder (config.json or preprocessor_config.json given), or a bare graph. */
  family: 'huggingface' | 'onnx';
  origin: 'disk' | 'download' | 'cache';
}

export interface OnnxFileOptions {
  log?: (m: string) => void;
  /** Only the cache: no download (also HF_HUB_OFFLINE=1). */
  offline?: boolean;
  timeouts?: Partial<BackboneTimeouts>;
}

/** Whether downloads are off: the option, or HF_HUB_OFFLINE as huggingface_hub reads it. */
export function isOffline(opts: { offline?: boolean }): boolean {
  return opts.offline === true || /^(1|on|yes|true)$/i.test(process.env.HF_HUB_OFFLINE ?? '');
}

export function sha256Of(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** `hf:OWNER/NAME[@REVISION]` parsed, or undefined when `source` is not one. */
export function parseHubSource(source: string): { repo: string; revision: string } | undefined {
  if (!source.startsWith('hf:')) return undefined;
  const m = /^hf:([A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*)(?:@([^\s@]+))?$/.exec(source);
  if (!m)
    throw new UserError(
      `backbone ${source} is not a Hugging Face model name; write hf:OWNER/NAME or hf:OWNER/NAME@REVISION`,
    );
  return { repo: m[1], revision: m[2] ?? 'main' };
}

/** The folder URL a hub repo's files resolve under (with a trailing slash). */
export function hubBaseUrl(repo: string, revision: string): string {
  const endpoint = (process.env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '');
  return `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/`;
}

/**
 * Whether `source` names an ONNX backbone rather than a TensorFlow.js one. A URL that ends in
 * neither .json nor .onnx may be either (a TF Hub address, a hub folder): it is ONNX when it
 * holds a config.json (asked with short timers) or the cache has it as one.
 */
export async function isOnnxSource(source: string, opts: OnnxFileOptions = {}): Promise<boolean> {
  if (source.startsWith('hf:')) return true;
  if (!isUrl(source)) {
    if (/\.onnx$/i.test(source)) return true;
    if (!existsSync(source) || !statSync(source).isDirectory()) return false;
    if (existsSync(path.join(source, 'model.json'))) return false;
    return [ONNX_MODEL, 'model.onnx', CONFIG, PREPROCESSOR_CONFIG].some((f) =>
      existsSync(path.join(source, f)),
    );
  }
  const u = new URL(source);
  if (/\.onnx$/i.test(u.pathname)) return true;
  if (/\.json$/i.test(u.pathname)) return false;
  const base = folderUrl(source);
  if (await findBackboneCache(base + ONNX_MODEL, hashModelFile)) return true;
  if (isOffline(opts)) return false;
  try {
    await downloadBytes(base + CONFIG, {
      timeoutMs: 15_000,
      connectTimeoutMs: 15_000,
      idleTimeoutMs: 15_000,
      maxBytes: MAX_CONFIG_BYTES,
    });
    return true;
  } catch {
    return false;
  }
}

function folderUrl(url: string): string {
  return url.replace(/\/*$/, '/');
}

/** A cached entry's identity: the SHA-256 of its graph (the first file). */
function hashModelFile(files: { name: string; data: Uint8Array }[]): string {
  return files.length ? sha256Of(files[0].data) : '';
}

function parseJson(bytes: Uint8Array, where: string): Record<string, unknown> {
  try {
    const v = JSON.parse(Buffer.from(bytes).toString('utf8')) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new UserError(`backbone ${where} is not a JSON object; a Hugging Face config file is expected there`);
}

/** A local file's bytes: a regular file of at most `max` bytes, or undefined when absent. */
async function readFileBounded(file: string, max: number, source: string): Promise<Uint8Array | undefined> {
  if (!existsSync(file)) return undefined;
  const handle = await open(file, 'r');
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new UserError(`backbone ${source}: ${file} is not a regular file`);
    if (stat.size > max)
      throw new UserError(`backbone ${source}: ${file} is ${stat.size} bytes, more than the ${max} allowed`);
    return new Uint8Array(await handle.readFile());
  } finally {
    await handle.close();
  }
}

/** An .onnx file, or a folder in the Hugging Face layout, from disk. */
async function readLocal(given: string): Promise<OnnxFiles> {
  const source = path.resolve(given);
  if (!existsSync(source))
    throw new UserError(
      `backbone ${source} does not exist; --backbone takes an .onnx file, a folder holding onnx/model.onnx, a TensorFlow.js model, a URL or hf:OWNER/NAME`,
    );
  const isDir = statSync(source).isDirectory();
  const dir = isDir ? source : path.dirname(source);
  const modelPath = isDir
    ? [ONNX_MODEL, 'model.onnx'].map((f) => path.join(source, f)).find((f) => existsSync(f))
    : source;
  if (!modelPath)
    throw new UserError(
      `backbone ${source} has no ${ONNX_MODEL}; a Hugging Face folder needs its ONNX export there (transformers.js layout)`,
    );
  const model = (await readFileBounded(modelPath, MAX_ONNX_BYTES, source))!;
  const json = async (name: string) => {
    const bytes = await readFileBounded(path.join(dir, name), MAX_CONFIG_BYTES, source);
    return bytes && parseJson(bytes, path.join(dir, name));
  };
  const config = isDir ? await json(CONFIG) : undefined;
  const preprocessor = await json(PREPROCESSOR_CONFIG);
  return {
    source,
    model,
    sha256: sha256Of(model),
    ...(config ? { config } : {}),
    ...(preprocessor ? { preprocessor } : {}),
    family: config || preprocessor ? 'huggingface' : 'onnx',
    origin: 'disk',
  };
}

/** The first line of an error. */
function firstLine(err: unknown): string {
  return ((err as Error)?.message ?? String(err)).split('\n')[0];
}

/** A download that got no answer at all: a refused connection, a timeout, an unknown host. */
function unreachable(reason: string): boolean {
  return !/^HTTP \d+/.test(reason) && !/more than|redirected/.test(reason);
}

/**
 * Same-host redirects are all the bounded client follows; the Hugging Face hub serves the large
 * files of a repo from its own CDN hosts (cdn-lfs.hf.co, cas-bridge.xethub.hf.co), so for the
 * hub itself those are followed too, over https only.
 */
function hubRedirects(base: string): ((to: URL) => boolean) | undefined {
  const host = new URL(base).hostname;
  if (host !== 'huggingface.co' && host !== 'hf.co') return undefined;
  return (to) => to.protocol === 'https:' && /(^|\.)(hf\.co|huggingface\.co)$/.test(to.hostname);
}

/** What to download for a source: the folder URL and which of its files. */
interface Remote {
  base: string;
  /** The graph's path under `base`. */
  model: string;
  /** Whether to look for config.json and preprocessor_config.json beside it. */
  configs: boolean;
  /** The source as the run records it. */
  source: string;
}

function remoteOf(source: string): Remote {
  const hub = parseHubSource(source);
  if (hub)
    return {
      base: hubBaseUrl(hub.repo, hub.revision),
      model: ONNX_MODEL,
      configs: true,
      source: `hf:${hub.repo}@${hub.revision}`,
    };
  const u = new URL(source);
  if (/\.onnx$/i.test(u.pathname)) {
    const slash = source.lastIndexOf('/', source.indexOf('?') < 0 ? undefined : source.indexOf('?'));
    return { base: source.slice(0, slash + 1), model: source.slice(slash + 1), configs: true, source };
  }
  return { base: folderUrl(source), model: ONNX_MODEL, configs: true, source };
}

/** Downloads the graph and its config files: a missing graph or an unreachable host is one line. */
async function download(r: Remote, opts: OnnxFileOptions): Promise<OnnxFiles> {
  const timeouts = { ...BACKBONE_TIMEOUTS, ...opts.timeouts };
  const alsoRedirectTo = hubRedirects(r.base);
  const noHub = (url: string, reason: string) =>
    new UserError(
      `cannot reach ${new URL(url).origin} for backbone ${r.source} (${reason}); check the network${r.source.startsWith('hf:') ? ' or HF_ENDPOINT' : ''}, or pass --offline to use a cached copy`,
    );
  const optional = async (name: string) => {
    const url = r.base + name;
    try {
      const bytes = await downloadBytes(url, {
        ...DEFAULT_TIMEOUTS,
        maxBytes: MAX_CONFIG_BYTES,
        alsoRedirectTo,
      });
      return parseJson(bytes, url);
    } catch (err) {
      if (err instanceof UserError) throw err;
      const reason = firstLine(err);
      if (unreachable(reason)) throw noHub(url, reason);
      return undefined; // not in the repo: it is optional
    }
  };
  const config = r.configs ? await optional(CONFIG) : undefined;
  const preprocessor = r.configs ? await optional(PREPROCESSOR_CONFIG) : undefined;
  const url = r.base + r.model;
  let model: Uint8Array;
  try {
    model = await downloadBytes(url, { ...timeouts, maxBytes: MAX_ONNX_BYTES, alsoRedirectTo });
  } catch (err) {
    const reason = firstLine(err);
    if (unreachable(reason)) throw noHub(url, reason);
    throw new UserError(
      `backbone ${r.source} has no ${r.model} (${url}: ${reason}); --backbone takes a repo or folder with its ONNX export at ${ONNX_MODEL} (transformers.js layout), or an .onnx URL`,
    );
  }
  return {
    source: r.source,
    url: r.base,
    model,
    sha256: sha256Of(model),
    ...(config ? { config } : {}),
    ...(preprocessor ? { preprocessor } : {}),
    family: config || preprocessor ? 'huggingface' : 'onnx',
    origin: 'download',
  };
}

/** The files as the cache keeps them: the graph first, then the config files it has. */
function cacheFiles(f: OnnxFiles): { name: string; data: Uint8Array }[] {
  const json = (v: object) => new Uint8Array(Buffer.from(JSON.stringify(v)));
  return [
    { name: 'model.onnx', data: f.model },
    ...(f.config ? [{ name: CONFIG, data: json(f.config) }] : []),
    ...(f.preprocessor ? [{ name: PREPROCESSOR_CONFIG, data: json(f.preprocessor) }] : []),
  ];
}

async function fromCache(
  r: Remote,
  sha256: string | undefined,
  opts: OnnxFileOptions,
): Promise<OnnxFiles | undefined> {
  const hit = await findBackboneCache(r.base + r.model, hashModelFile, opts.log);
  if (!hit || (sha256 !== undefined && hit.sha256 !== sha256)) return undefined;
  const named = (name: string) => {
    const f = hit.files.find((x) => x.name === name);
    return f && parseJson(f.data, name);
  };
  const config = named(CONFIG);
  const preprocessor = named(PREPROCESSOR_CONFIG);
  return {
    source: r.source,
    url: r.base,
    model: hit.files[0].data,
    sha256: hit.sha256,
    ...(config ? { config } : {}),
    ...(preprocessor ? { preprocessor } : {}),
    family: config || preprocessor ? 'huggingface' : 'onnx',
    origin: 'cache',
  };
}

function offlineMissing(source: string, url: string): UserError {
  return new UserError(
    `backbone ${source} is not in the cache (${url}) and --offline or HF_HUB_OFFLINE=1 forbids downloading it; run once online to cache it`,
  );
}

/**
 * The ONNX backbone `source` names: read from disk, or from the cache, or downloaded now (and
 * cached). A cached download is used as it is: the revision is part of its URL.
 */
export async function onnxFiles(source: string, opts: OnnxFileOptions = {}): Promise<OnnxFiles> {
  if (!source.startsWith('hf:') && !isUrl(source)) return readLocal(source);
  const r = remoteOf(source);
  const cached = await fromCache(r, undefined, opts);
  if (cached) {
    opts.log?.(`backbone ${r.source}: from the cache (sha256 ${shortHash(cached.sha256)})`);
    return cached;
  }
  if (isOffline(opts)) throw offlineMissing(r.source, r.base + r.model);
  const got = await download(r, opts);
  await writeBackboneCache(r.base + r.model, got.sha256, cacheFiles(got), opts.log);
  return got;
}

/**
 * The files of the ONNX backbone a run was trained with (`url` as recorded for a download),
 * which must still hash to `sha256`: a missing or changed one is a one-line error.
 */
export async function recordedOnnxFiles(
  source: string,
  url: string | undefined,
  sha256: string,
  opts: OnnxFileOptions = {},
): Promise<OnnxFiles> {
  const changed = (now: string) =>
    new UserError(
      `backbone ${source} has changed since the run was trained (sha256 ${shortHash(now)}, the run was trained with ${shortHash(sha256)}); restore it or retrain`,
    );
  if (!source.startsWith('hf:') && !isUrl(source)) {
    if (!existsSync(source))
      throw new UserError(
        `the run's backbone ${source} is missing (the run was trained with sha256 ${shortHash(sha256)}); restore it or retrain`,
      );
    const got = await readLocal(source);
    if (got.sha256 !== sha256) throw changed(got.sha256);
    return got;
  }
  // The URL the run downloaded from, not today's HF_ENDPOINT: the run names one set of files.
  const r = { ...remoteOf(source), ...(url ? { base: url } : {}) };
  const cached = await fromCache(r, sha256, opts);
  if (cached) return cached;
  if (isOffline(opts)) throw offlineMissing(source, r.base + r.model);
  opts.log?.(`backbone ${source} is not in the cache: downloading it again`);
  const got = await download(r, opts);
  if (got.sha256 !== sha256) throw changed(got.sha256);
  await writeBackboneCache(r.base + r.model, sha256, cacheFiles(got), opts.log);
  return got;
}
