/**
 * The dataset as the server hands it out: loaded once on first use, kept as the original bytes
 * (0..255) so a page can download 60000 images as 47 MB of IDX instead of 188 MB of floats.
 */
import { imageSize, type ImageShape } from '../core/data/dataset.js';
import { loadDataset } from '../node/data/load.js';

export interface RawSplit {
  /** N * H * W * C bytes. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

export interface RawDataset {
  name: string;
  classNames: string[];
  shape: ImageShape;
  train: RawSplit;
  test: RawSplit;
}

export type SplitName = 'train' | 'test';

function toBytes(images: Float32Array): Uint8Array {
  // splitFromBytes stored b / 255 as float32; rounding b / 255 * 255 gives b back exactly.
  const out = new Uint8Array(images.length);
  for (let i = 0; i < images.length; i++) out[i] = Math.round(images[i] * 255);
  return out;
}

/** Loads `name` from the usual sources (see data/sources.ts) as bytes. */
export async function loadRawDataset(name: string, dataDir?: string): Promise<RawDataset> {
  const { dataset } = await loadDataset({ dataset: name, dataDir });
  const raw = (s: typeof dataset.train): RawSplit => ({
    images: toBytes(s.images),
    labels: s.labels,
    count: s.count,
  });
  return {
    name: dataset.name,
    classNames: dataset.classNames,
    shape: dataset.shape,
    train: raw(dataset.train),
    test: raw(dataset.test),
  };
}

/** An uncompressed IDX file of unsigned bytes (the format data/idx.ts parses). */
export function encodeIdx(dims: number[], data: Uint8Array): Uint8Array {
  const header = new Uint8Array(4 + 4 * dims.length);
  const view = new DataView(header.buffer);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  const out = new Uint8Array(header.length + data.length);
  out.set(header);
  out.set(data, header.length);
  return out;
}

/** The first `limit` images of a split as an idx3/idx4 file. */
export function imagesIdx(ds: RawDataset, split: SplitName, limit: number): Uint8Array {
  const s = ds[split];
  const n = Math.min(limit, s.count);
  const [h, w, c] = ds.shape;
  const dims = c === 1 ? [n, h, w] : [n, h, w, c];
  return encodeIdx(dims, s.images.subarray(0, n * imageSize(ds.shape)));
}

/** The first `limit` labels of a split as an idx1 file. */
export function labelsIdx(ds: RawDataset, split: SplitName, limit: number): Uint8Array {
  const s = ds[split];
  const n = Math.min(limit, s.count);
  return encodeIdx([n], s.labels.subarray(0, n));
}
