/**
 * A frozen backbone in the page: an ONNX graph (run by onnxruntime-web, ort.ts) or a
 * TensorFlow.js layers or graph model, given by URL or opened from files, turning prepared
 * pictures into feature vectors for a head to train on (own-train.ts `backboneFeatures`).
 *
 * It follows the Node side (src/node/backbone/: backbone.ts, onnx.ts, onnx-files.ts, files.ts)
 * rule for rule, and records the backbone as `imgclf train --backbone` records it (the same
 * `BackboneRecord` fields and values), so that `imgclf predict --run DIR` and `serve --run DIR`
 * load a run trained here from the recorded URL:
 *
 *   - what a URL is: `hf:OWNER/NAME[@REVISION]` (the hub's files at
 *     https://huggingface.co/OWNER/NAME/resolve/REVISION/), a URL ending in .onnx, one ending in
 *     .json (a TensorFlow.js model.json), or a folder URL: ONNX when it holds a config.json (the
 *     Hugging Face / transformers.js layout, onnx/model.onnx), else a TF Hub style model address
 *     (/model.json?tfjs-format=file appended);
 *   - ONNX: the image input and its layout, the size and scaling from preprocessor_config.json
 *     (else the graph's size, 224 where free, pixels in [0, 1]), the feature output (a pooled
 *     name, else the first 2-D output, else a 4-D feature map, average-pooled); identity is the
 *     SHA-256 of the graph's bytes;
 *   - TensorFlow.js: the family (an imgclf run, a Teachable Machine export by its metadata.json,
 *     any other layers model, a graph model), its input size and range ([-1, 1] for Teachable
 *     Machine), the feature layer (the input of the last Dense layer); identity is the SHA-256 of
 *     model.json's bytes followed by the weight files' bytes in manifest order.
 *
 * SHA-256 comes from crypto.subtle (secure contexts: https://, http://localhost, 127.0.0.1).
 * Everything that can go wrong is a `BackboneError` whose message is one line saying what to do.
 * No DOM here beyond `File`.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  affineOf,
  type BackboneFamily,
  type BackboneRecord,
  DEFAULT_BACKBONE_SIDE,
  defaultFeatureLayer,
  featureOutput,
  featuresOf,
  graphInput,
  type ImageShape,
  imageInput,
  resolveOnnxPreprocessing,
  shapeText,
  upTo,
  UserError,
} from 'imgclf/core';
import type * as Ort from 'onnxruntime-web';

export type { BackboneFamily, BackboneRecord } from 'imgclf/core';

/**
 * A backbone opened from files in the page records its source with this prefix and the file's
 * name: there is no URL to fetch it from again, and `imgclf` says so in one line.
 */
export const PICKED_PREFIX = 'page-file:';

/** What the user chose: an address, or files from their disk. */
export type BackboneChoice = { url: string } | { files: File[] };

export interface PageBackbone {
  record: BackboneRecord;
  /** What computes the features, for the status line: "ONNX Runtime Web (wasm)". */
  engine: string;
  /** Feature vectors [n, D] of n images packed NHWC in [0, 1] (pixels / 255). */
  features(images: Float32Array, n: number): Promise<Float32Array>;
  dispose(): void;
}

/** A backbone that cannot be used; the message is one line with what to do. */
export class BackboneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackboneError';
  }
}

/** Largest backbone file the page reads (an ONNX graph, or a tfjs model's weights in all). */
export const MAX_BACKBONE_BYTES = 1024 * 1024 * 1024;
/** Largest JSON file (model.json, config.json, preprocessor_config.json, metadata.json). */
const MAX_JSON_BYTES = 32 * 1024 * 1024;
/** Images per backbone call. */
const BATCH = 16;
const HF_ENDPOINT = 'https://huggingface.co';
const ONNX_MODEL = 'onnx/model.onnx';

const firstLine = (err: unknown) => ((err as Error)?.message ?? String(err)).split('\n')[0];
const isUrl = (s: string) => /^https?:\/\//i.test(s);

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  if (typeof crypto === 'undefined' || !crypto.subtle)
    throw new BackboneError(
      'this page cannot compute SHA-256 (crypto.subtle needs https:// or localhost), which a backbone run records; open the page at http://localhost or over https',
    );
  const digest = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Getting the bytes: by URL or from picked files.

/** Where the bytes of a backbone come from: a folder URL, or the files the user picked. */
interface Reader {
  /** The file at `rel` (relative to the folder), or undefined when it is not there (optional files). */
  optional(rel: string): Promise<Uint8Array | undefined>;
  /** The file at `rel`; missing is one line. */
  required(rel: string, what: string): Promise<Uint8Array>;
}

/** A fetch that names the backbone and the reason in one line. */
async function fetchBytes(url: string, source: string, max: number): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { credentials: 'omit', redirect: 'follow' });
  } catch {
    throw new BackboneError(
      `cannot reach ${new URL(url).origin} for backbone ${source}: no answer, or it does not let this page read it (CORS, or the page's security policy, which allows https:// and this machine's addresses); check the URL`,
    );
  }
  const length = Number(res.headers.get('content-length') ?? 0);
  if (length > max)
    throw new BackboneError(
      `backbone ${source}: ${url} is ${length} bytes, more than the ${max} the page reads; pick a smaller backbone`,
    );
  return res;
}

async function bodyOf(res: Response, url: string, source: string, max: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (bytes.length > max)
    throw new BackboneError(
      `backbone ${source}: ${url} is ${bytes.length} bytes, more than the ${max} the page reads; pick a smaller backbone`,
    );
  return bytes;
}

function urlReader(base: string, source: string): Reader {
  const get = async (rel: string, max: number) => {
    const url = base + rel;
    const res = await fetchBytes(url, source, max);
    return { res, url };
  };
  return {
    async optional(rel) {
      const { res, url } = await get(rel, MAX_JSON_BYTES);
      return res.ok ? bodyOf(res, url, source, MAX_JSON_BYTES) : undefined;
    },
    async required(rel, what) {
      const { res, url } = await get(rel, MAX_BACKBONE_BYTES);
      if (!res.ok)
        throw new BackboneError(
          `backbone ${source} has no ${what} (${url}: HTTP ${res.status}); check the URL`,
        );
      return bodyOf(res, url, source, MAX_BACKBONE_BYTES);
    },
  };
}

/** The picked files by name (a folder's layout is lost in a file picker: names are enough). */
function fileReader(files: File[], source: string): Reader {
  const byName = new Map(files.map((f) => [f.name, f]));
  const find = (rel: string) => byName.get(rel) ?? byName.get(rel.split('/').pop()!);
  const read = async (f: File) => {
    if (f.size > MAX_BACKBONE_BYTES)
      throw new BackboneError(
        `backbone ${f.name} is ${f.size} bytes, more than the ${MAX_BACKBONE_BYTES} the page reads; pick a smaller backbone`,
      );
    return new Uint8Array(await f.arrayBuffer());
  };
  return {
    async optional(rel) {
      const f = find(rel);
      return f && read(f);
    },
    async required(rel, what) {
      const f = find(rel);
      if (!f)
        throw new BackboneError(
          `backbone ${source}: ${what} (${rel.split('/').pop()}) was not picked; pick it with the others`,
        );
      return read(f);
    },
  };
}

function parseJson(bytes: Uint8Array, where: string): Record<string, unknown> {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // below
  }
  throw new BackboneError(`backbone ${where} is not a JSON object`);
}

// ---------------------------------------------------------------------------------------------
// What a choice names.

type Located =
  | { kind: 'onnx'; source: string; url?: string; reader: Reader; model: string }
  | { kind: 'tfjs'; source: string; reader: Reader; model: string; modelUrl?: string };

/** `hf:OWNER/NAME[@REVISION]` parsed (src/node/backbone/onnx-files.ts `parseHubSource`). */
function hubSource(source: string): { repo: string; revision: string } | undefined {
  if (!source.startsWith('hf:')) return undefined;
  const m = /^hf:([A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*)(?:@([^\s@]+))?$/.exec(source);
  if (!m)
    throw new BackboneError(
      `backbone ${source} is not a Hugging Face model name; write hf:OWNER/NAME or hf:OWNER/NAME@REVISION`,
    );
  return { repo: m[1], revision: m[2] ?? 'main' };
}

/** A TF Hub style model address gets /model.json?tfjs-format=file (files.ts `modelJsonUrl`). */
function modelJsonUrl(url: string): string {
  const u = new URL(url);
  if (/\.json$/i.test(u.pathname)) return url;
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/model.json`;
  if (!u.searchParams.has('tfjs-format')) u.searchParams.set('tfjs-format', 'file');
  return u.toString();
}

async function locate(choice: BackboneChoice): Promise<Located> {
  if ('files' in choice) {
    const { files } = choice;
    const onnx = files.find((f) => /\.onnx$/i.test(f.name));
    const json =
      files.find((f) => f.name === 'model.json') ??
      files.find(
        (f) => /\.json$/i.test(f.name) && !/^(config|preprocessor_config|metadata)\.json$/.test(f.name),
      );
    if (onnx) {
      const source = PICKED_PREFIX + onnx.name;
      return { kind: 'onnx', source, reader: fileReader(files, source), model: onnx.name };
    }
    if (json) {
      const source = PICKED_PREFIX + json.name;
      return { kind: 'tfjs', source, reader: fileReader(files, source), model: json.name };
    }
    throw new BackboneError(
      'pick an .onnx file (with its preprocessor_config.json if it has one), or a TensorFlow.js model.json with its weight files',
    );
  }
  const given = choice.url.trim();
  const hub = hubSource(given);
  if (hub) {
    const base = `${HF_ENDPOINT}/${hub.repo}/resolve/${encodeURIComponent(hub.revision)}/`;
    const source = `hf:${hub.repo}@${hub.revision}`;
    return { kind: 'onnx', source, url: base, reader: urlReader(base, source), model: ONNX_MODEL };
  }
  if (!isUrl(given))
    throw new BackboneError(
      `backbone '${given}' is not an address; give an http(s):// URL or hf:OWNER/NAME, or open the files`,
    );
  let u: URL;
  try {
    u = new URL(given);
  } catch {
    throw new BackboneError(`backbone '${given}' is not a valid URL`);
  }
  if (/\.onnx$/i.test(u.pathname)) {
    const q = given.indexOf('?');
    const slash = given.lastIndexOf('/', q < 0 ? undefined : q);
    const base = given.slice(0, slash + 1);
    return {
      kind: 'onnx',
      source: given,
      url: base,
      reader: urlReader(base, given),
      model: given.slice(slash + 1),
    };
  }
  if (!/\.json$/i.test(u.pathname)) {
    // A folder: ONNX in the Hugging Face layout when it holds config.json (onnx-files.ts).
    const base = given.replace(/\/*$/, '/');
    const res = await fetchBytes(base + 'config.json', given, MAX_JSON_BYTES);
    if (res.ok)
      return { kind: 'onnx', source: given, url: base, reader: urlReader(base, given), model: ONNX_MODEL };
  }
  const modelUrl = modelJsonUrl(given);
  return { kind: 'tfjs', source: given, reader: urlReader('', given), model: modelUrl, modelUrl };
}

// ---------------------------------------------------------------------------------------------
// ONNX (src/node/backbone/onnx.ts, rule for rule).

/** The core's rules for ONNX graphs, their refusals as the page's BackboneError. */
function asBackboneError<T>(rule: () => T): T {
  try {
    return rule();
  } catch (err) {
    if (err instanceof UserError) throw new BackboneError(err.message);
    throw err;
  }
}

interface Info {
  name: string;
  float: boolean;
  /** -1 where free (a symbolic or unknown dimension). */
  shape: number[];
}

function infoOf(m: Ort.InferenceSession.ValueMetadata): Info {
  if (!m.isTensor) return { name: m.name, float: false, shape: [] };
  return {
    name: m.name,
    float: m.type === 'float32',
    shape: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)),
  };
}

async function onnxBackbone(at: Extract<Located, { kind: 'onnx' }>): Promise<PageBackbone> {
  const { source, reader } = at;
  const [model, config, preprocessorBytes] = await Promise.all([
    reader.required(at.model, `${at.model}, its ONNX graph`),
    reader.optional('config.json'),
    reader.optional('preprocessor_config.json'),
  ]);
  const preprocessor =
    preprocessorBytes && parseJson(preprocessorBytes, `${source} preprocessor_config.json`);
  const sha256 = await sha256Hex(model);
  const { loadOrt, executionProviders } = await import('./ort.js');
  const ort = await loadOrt();
  const providers = await executionProviders();
  let session: Ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(model, {
      executionProviders: providers,
      graphOptimizationLevel: 'all',
    });
  } catch (err) {
    throw new BackboneError(
      `backbone ${source} is not an ONNX model ONNX Runtime Web can load (${firstLine(err)}); give an .onnx file or a folder with onnx/model.onnx`,
    );
  }
  try {
    const inputs = session.inputMetadata.map(infoOf);
    const outputs = session.outputMetadata.map(infoOf);
    const { info, layout, graphSide, channels } = asBackboneError(() =>
      imageInput(inputs, source, 'the page'),
    );
    const { side, pre } = asBackboneError(() => resolveOnnxPreprocessing(preprocessor, graphSide, source));
    const out = featureOutput(outputs, undefined, source);
    const affine = affineOf(pre, channels);
    const plane = side * side;
    const row = plane * channels;
    const runBatch = async (images: Float32Array, from: number, n: number) => {
      const x = new Float32Array(n * row);
      graphInput(images.subarray(from * row, (from + n) * row), n, side, channels, layout, affine, x);
      const dims = layout === 'NCHW' ? [n, channels, side, side] : [n, side, side, channels];
      let y: Ort.Tensor;
      try {
        y = (await session.run({ [info.name]: new ort.Tensor('float32', x, dims) }, [out.name]))[out.name];
      } catch (err) {
        throw new BackboneError(
          `backbone ${source} cannot run on ${shapeText(dims)} input (${firstLine(err)}); its size or preprocessor_config.json is wrong for it`,
        );
      }
      if (y.type !== 'float32')
        throw new BackboneError(
          `backbone ${source}: its output '${out.name}' is ${y.type}, not float32 features`,
        );
      const data = (y.location === 'cpu' ? y.data : await y.getData(true)) as Float32Array;
      return { data, dims: y.dims as number[] };
    };
    const probe = (await runBatch(new Float32Array(row), 0, 1)).dims;
    const pooled = probe.length === 4;
    if (probe.length !== 2 && !pooled)
      throw new BackboneError(
        `backbone ${source}: its output '${out.name}' has shape ${shapeText(probe)}, not a feature vector [N, D] or a feature map [N, C, H, W]; give a graph whose output is its features`,
      );
    const dim = !pooled ? probe[1] : layout === 'NCHW' ? probe[1] : probe[3];
    const features = async (images: Float32Array, n: number): Promise<Float32Array> => {
      const result = new Float32Array(n * dim);
      for (let from = 0; from < n; from += BATCH) {
        const k = Math.min(BATCH, n - from);
        const y = await runBatch(images, from, k);
        featuresOf(y.data as Float32Array, y.dims as number[], k, dim, layout, result, from);
      }
      return result;
    };
    const record: BackboneRecord = {
      source,
      format: 'onnx',
      family: config || preprocessor ? 'huggingface' : 'onnx',
      sha256,
      inputShape: [side, side, channels],
      range: '0,1',
      layer: out.name,
      features: dim,
      ...(at.url ? { url: at.url } : {}),
      layout,
      input: info.name,
      preprocessing: pre,
    };
    return {
      record,
      engine: `ONNX Runtime Web (${providers[0]})`,
      features,
      dispose: () => void session.release(),
    };
  } catch (err) {
    void session.release();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// TensorFlow.js (src/node/backbone/backbone.ts and files.ts, rule for rule).

interface ModelJson {
  format?: string;
  generatedBy?: string;
  modelTopology?: Record<string, unknown>;
  weightsManifest?: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
}

/** A weight path must be a plain relative path inside model.json's folder (files.ts `checkedWeightPath`). */
function checkedWeightPath(rel: unknown, where: string): string {
  const ok =
    typeof rel === 'string' &&
    rel !== '' &&
    !rel.includes('\\') &&
    !rel.startsWith('/') &&
    !/^[a-z][a-z0-9+.-]*:/i.test(rel) &&
    // eslint-disable-next-line no-control-regex
    !/[?#\u0000-\u001f\u007f]/.test(rel) &&
    rel.split('/').every((part) => part !== '' && part !== '..' && !/%2e%2e|%2f|%5c/i.test(part));
  if (!ok)
    throw new BackboneError(
      `backbone ${where}: its model.json names the weight file '${String(rel)}'; weight paths must be relative paths inside model.json's folder`,
    );
  return rel as string;
}

/** The URL of a weight path as tfjs's HTTP loader builds it: folder + path + model.json's query. */
function weightUrl(modelUrl: string, rel: string): string {
  const q = modelUrl.lastIndexOf('?');
  const slash = modelUrl.lastIndexOf('/', q < 0 ? undefined : q);
  return modelUrl.slice(0, slash + 1) + rel + (q > slash ? modelUrl.slice(q) : '');
}

function familyOf(
  json: ModelJson,
  sidecar: Record<string, unknown> | undefined,
  graph: boolean,
): BackboneFamily {
  if (typeof sidecar?.format === 'string' && sidecar.format.startsWith('imgclf-run')) return 'imgclf-run';
  if (typeof json.generatedBy === 'string' && json.generatedBy.startsWith('imgclf')) return 'imgclf-run';
  if (sidecar && ('tmVersion' in sidecar || String(sidecar.packageName ?? '').includes('teachablemachine')))
    return 'teachable-machine';
  return graph ? 'graph' : 'layers';
}

function inputShapeOf(
  shape: readonly (number | null | undefined)[] | undefined,
  family: BackboneFamily,
  sidecar: Record<string, unknown> | undefined,
  source: string,
): ImageShape {
  if (shape && shape.length !== 4)
    throw new BackboneError(
      `backbone ${source} does not take images (its input is not [batch, height, width, channels])`,
    );
  const [h, w, c] = (shape ?? [undefined, undefined, undefined, undefined])
    .slice(1)
    .map((d) => (d === null || d === undefined || d < 0 ? undefined : d));
  let side: number;
  if (h !== undefined || w !== undefined) {
    if (h === undefined || w === undefined || h !== w)
      throw new BackboneError(
        `backbone ${source} takes ${h ?? '?'}x${w ?? '?'} images; only square inputs are supported`,
      );
    side = h;
  } else {
    side =
      (family === 'teachable-machine' ? Number(sidecar?.imageSize) || undefined : undefined) ??
      DEFAULT_BACKBONE_SIDE;
  }
  const channels = c ?? 3;
  if (channels !== 1 && channels !== 3)
    throw new BackboneError(
      `backbone ${source} takes ${channels}-channel images; the page gives 1 (gray) or 3 (RGB)`,
    );
  return [side, side, channels];
}

async function tfjsBackbone(at: Extract<Located, { kind: 'tfjs' }>): Promise<PageBackbone> {
  const { source, reader } = at;
  const jsonBytes = await reader.required(at.model, 'model.json');
  let json: ModelJson;
  try {
    json = JSON.parse(new TextDecoder().decode(jsonBytes)) as ModelJson;
  } catch {
    throw new BackboneError(
      `backbone ${source} is not valid JSON; give a TensorFlow.js model.json or an ONNX model`,
    );
  }
  if (!json || typeof json !== 'object' || !json.modelTopology)
    throw new BackboneError(`backbone ${source} is not a TensorFlow.js model.json (it has no modelTopology)`);
  if (json.format === 'imgclf-net')
    throw new BackboneError(
      `backbone ${source} is an imgclf run whose model is not a TensorFlow.js layers model`,
    );
  const graph =
    json.format === 'graph-model' || (json.format !== 'layers-model' && 'node' in json.modelTopology);
  const files: Uint8Array[] = [jsonBytes];
  const manifest = json.weightsManifest ?? [];
  let total = 0;
  for (const group of manifest)
    for (const rel of group.paths ?? []) {
      const p = checkedWeightPath(rel, source);
      const bytes = await reader.required(
        at.modelUrl ? weightUrl(at.modelUrl, p) : p,
        `its weight file ${p}`,
      );
      total += bytes.length;
      if (total > MAX_BACKBONE_BYTES)
        throw new BackboneError(
          `backbone ${source}: its weights are more than ${MAX_BACKBONE_BYTES} bytes, more than the page reads; pick a smaller backbone`,
        );
      files.push(bytes);
    }
  const sha256 = await sha256Hex(concat(files));
  // A Teachable Machine export (or an imgclf run) keeps metadata.json beside model.json.
  const sidecarBytes = at.modelUrl
    ? /\/model\.json$/i.test(new URL(at.modelUrl).pathname)
      ? await reader.optional(new URL('metadata.json', at.modelUrl).toString()).catch(() => undefined)
      : undefined
    : await reader.optional('metadata.json');
  let sidecar: Record<string, unknown> | undefined;
  try {
    sidecar = sidecarBytes && parseJson(sidecarBytes, 'metadata.json');
  } catch {
    sidecar = undefined;
  }
  const family = familyOf(json, sidecar, graph);
  if (family === 'imgclf-run' && sidecar?.backbone)
    throw new BackboneError(
      `backbone ${source} is itself a transfer run (a head on another backbone); use that backbone instead`,
    );
  const weightData = concat(files.slice(1)).buffer as ArrayBuffer;
  const artifacts: tf.io.ModelArtifacts = {
    modelTopology: json.modelTopology,
    weightSpecs: manifest.flatMap((g) => g.weights),
    weightData,
    format: json.format,
    generatedBy: json.generatedBy,
  };
  let run: (x: tf.Tensor) => tf.Tensor;
  let layer: string;
  let declared: readonly (number | null)[] | undefined;
  let release: () => void;
  if (graph) {
    const tfconv = await import('@tensorflow/tfjs-converter');
    let model: import('@tensorflow/tfjs-converter').GraphModel;
    try {
      model = await tfconv.loadGraphModel(tf.io.fromMemory(artifacts));
    } catch (err) {
      throw new BackboneError(`backbone ${source}: cannot build the graph model (${firstLine(err)})`);
    }
    declared = model.inputs[0]?.shape;
    layer = model.outputNodes[0];
    run = (x) => model.execute(x, layer) as tf.Tensor;
    release = () => model.dispose();
  } else {
    let model: tfl.LayersModel;
    try {
      model = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
    } catch (err) {
      throw new BackboneError(`backbone ${source}: cannot build the layers model (${firstLine(err)})`);
    }
    declared = model.inputs[0]?.shape;
    const picked = asBackboneError(() =>
      defaultFeatureLayer(model, source, 'give a backbone whose features come before its last Dense layer'),
    );
    if (picked) {
      layer = picked.layer.name;
      const nested = `backbone ${source}: its feature layer is inside a nested model of a functional model, which the page cannot cut; use imgclf train --backbone-layer`;
      run = asBackboneError(() => upTo(model, picked.path, nested));
    } else {
      layer = model.outputNames[0] ?? model.layers.at(-1)!.name;
      run = (x) => model.apply(x, { training: false }) as tf.Tensor;
    }
    release = () => model.dispose();
  }
  try {
    const inputShape = inputShapeOf(declared, family, sidecar, source);
    const range: '0,1' | '-1,1' = family === 'teachable-machine' ? '-1,1' : '0,1';
    const once = (x: tf.Tensor) =>
      tf.tidy(() => {
        const y = run(range === '-1,1' ? tf.sub(tf.mul(x, 2), 1) : x);
        return tf.reshape(y, [x.shape[0], -1]);
      });
    let dim: number;
    try {
      dim = tf.tidy(() => once(tf.zeros([1, ...inputShape])).shape[1]!);
    } catch (err) {
      throw new BackboneError(
        `backbone ${source}: cannot compute features at ${graph ? 'node' : 'layer'} '${layer}' for ${inputShape.join('x')} images (${firstLine(err)})`,
      );
    }
    const row = inputShape[0] * inputShape[1] * inputShape[2];
    const features = async (images: Float32Array, n: number): Promise<Float32Array> => {
      const result = new Float32Array(n * dim);
      for (let from = 0; from < n; from += BATCH) {
        const k = Math.min(BATCH, n - from);
        const y = tf.tidy(() =>
          once(tf.tensor4d(images.subarray(from * row, (from + k) * row), [k, ...inputShape])),
        );
        result.set((await y.data()) as Float32Array, from * dim);
        y.dispose();
      }
      return result;
    };
    const record: BackboneRecord = {
      source,
      format: graph ? 'graph-model' : 'layers-model',
      family,
      sha256,
      inputShape,
      range,
      layer,
      features: dim,
    };
    return { record, engine: `TensorFlow.js ${tf.getBackend()}`, features, dispose: release };
  } catch (err) {
    release();
    throw err;
  }
}

/** Loads the backbone the user chose: fetched or read now, checked, ready to compute features. */
export async function loadBackbone(choice: BackboneChoice): Promise<PageBackbone> {
  const at = await locate(choice);
  return oneAtATime(await (at.kind === 'onnx' ? onnxBackbone(at) : tfjsBackbone(at)));
}

/**
 * The backbone with its calls queued: training, a drawing classified as it is drawn and the
 * live camera may ask at once, and an ONNX Runtime Web session runs one call at a time.
 */
function oneAtATime(b: PageBackbone): PageBackbone {
  let last: Promise<unknown> = Promise.resolve();
  return {
    ...b,
    features: (images, n) => {
      const next = last.then(
        () => b.features(images, n),
        () => b.features(images, n),
      );
      last = next.catch(() => undefined);
      return next;
    },
  };
}

/** Whether `a` is the backbone `b` records: the same bytes, taken the same way. */
function sameBackbone(a: BackboneRecord, b: BackboneRecord): boolean {
  return (
    a.sha256 === b.sha256 &&
    a.features === b.features &&
    a.layer === b.layer &&
    a.inputShape.join('x') === b.inputShape.join('x') &&
    JSON.stringify(a.preprocessing ?? null) === JSON.stringify(b.preprocessing ?? null) &&
    a.range === b.range
  );
}

/** Whether the page can fetch a recorded backbone again: it came from a URL or the hub. */
export function isFetchable(record: Pick<BackboneRecord, 'source'>): boolean {
  return typeof record.source === 'string' && (isUrl(record.source) || record.source.startsWith('hf:'));
}

/**
 * Loads the backbone a run records, which must still be the same (its SHA-256) and give the
 * same features: a kept or opened run classifies with it. `have` (the backbone chosen under
 * Backbone) is used when it is that backbone; else it is fetched from its URL. A backbone that
 * was opened from files has none, so `have` must be it.
 */
export async function loadRecordedBackbone(
  record: BackboneRecord,
  have?: PageBackbone,
): Promise<PageBackbone> {
  if (!record || typeof record.source !== 'string' || typeof record.sha256 !== 'string')
    throw new BackboneError('the run records a backbone without its source and hash; retrain it');
  if (have && sameBackbone(have.record, record)) return have;
  if (!isFetchable(record))
    throw new BackboneError(
      `the run's backbone ${record.source.replace(PICKED_PREFIX, '')} was opened from files, which the page cannot fetch (sha256 ${record.sha256.slice(0, 12)}); open the same files under Backbone first, then load the run again`,
    );
  const b = await loadBackbone({ url: record.source });
  b.record.source = record.source;
  if (record.url) b.record.url = record.url;
  if (b.record.sha256 !== record.sha256) {
    b.dispose();
    throw new BackboneError(
      `backbone ${record.source} has changed since the run was trained (sha256 ${b.record.sha256.slice(0, 12)}, the run was trained with ${record.sha256.slice(0, 12)}); retrain`,
    );
  }
  if (
    b.record.features !== record.features ||
    b.record.inputShape.join('x') !== record.inputShape.join('x')
  ) {
    b.dispose();
    throw new BackboneError(
      `backbone ${record.source} now gives ${b.record.features} features for ${b.record.inputShape.join('x')} images, but the run was trained on ${record.features} for ${record.inputShape.join('x')}`,
    );
  }
  return b;
}
