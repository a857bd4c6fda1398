/**
 * Reading IDX files (Node only), gzipped or not, and decoding a dataset's images and labels
 * into a split, kept in the decoded cache (node/cache.ts). Which files a dataset has, and where
 * they are found or downloaded from, is node/data/datasets.ts.
 *
 * Nothing here trusts a size it has not checked: every gunzip (downloaded or local) stops as
 * soon as its output outgrows the size the IDX header declares (itself capped at
 * MAX_IDX_BYTES), so a gzip bomb fails early instead of filling memory.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { type ImageShape, type Split, splitFromBytes } from '../../core/data/dataset.js';
import { checkPair, parseIdx } from '../../core/data/idx.js';
import { UserError } from '../../core/errors.js';
import { decodedCachePath, readDecoded, writeDecoded } from '../cache.js';
import { type FileReport, sha256, verifyDigests } from '../checksum.js';

/**
 * One file of an IDX dataset and the checksum it is verified against: at least one of
 * `sha256` (of the decompressed bytes, which survives re-compression, as Debian does) or
 * `gzMd5` (of the `.gz` as published, the only value torchvision lists for MNIST and KMNIST).
 */
export interface IdxFileSpec {
  /** File name without `.gz`, e.g. "train-images-idx3-ubyte". */
  name: string;
  /** SHA-256 of the decompressed bytes. */
  sha256?: string;
  /** MD5 of the published `.gz` file. */
  gzMd5?: string;
}

/**
 * Largest decompressed IDX file accepted, whatever its header declares. The largest real one is
 * 47 MB (60000 images of 28x28); a header declaring more than this is broken or hostile.
 */
export const MAX_IDX_BYTES = 512 * 1024 * 1024;

/**
 * Reads an IDX file and gunzips it when it is gzip (by magic bytes, not by name), never to more
 * than the size its IDX header declares.
 */
export async function readMaybeGzip(file: string): Promise<Uint8Array> {
  return (await readIdxFile(file)).raw;
}

/** An IDX file's bytes, decompressed, and the MD5 of the `.gz` when it was one. */
async function readIdxFile(file: string): Promise<{ raw: Uint8Array; gzMd5?: string }> {
  if (!(await isGzip(file))) return { raw: new Uint8Array(await readFile(file)) };
  const md5 = createHash('md5');
  const raw = await gunzipIdxToMemory(
    hashed(createReadStream(file), md5),
    file,
    '; delete it and fetch again',
  );
  return { raw, gzMd5: md5.digest('hex') };
}

async function isGzip(file: string): Promise<boolean> {
  const handle = await open(file);
  try {
    const magic = new Uint8Array(2);
    const { bytesRead } = await handle.read(magic, 0, 2, 0);
    return bytesRead === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
  } finally {
    await handle.close();
  }
}

/** Passes chunks through, feeding each to `hash` on the way. */
async function* hashed(source: AsyncIterable<Uint8Array>, hash: Hash): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    hash.update(chunk);
    yield chunk;
  }
}

/**
 * Gunzips an IDX file, handing the output to `sink` piece by piece, and fails as soon as the
 * output outgrows the size its header declares (header + product of dims, one byte a value), or
 * when it ends short of it. zlib's own `maxOutputLength` only exists for the one-shot functions,
 * which need the whole input in memory and know no limit until the header is read, so this
 * streams and counts. zlib's stream waits for its reader, so a bomb is never expanded further
 * than the chunk that went over. `name` starts every message and `hint` ends it.
 */
export async function gunzipIdx(
  source: AsyncIterable<Uint8Array>,
  name: string,
  hint: string,
  sink: (chunk: Uint8Array, declared: number) => void,
): Promise<void> {
  let head: Uint8Array = new Uint8Array(0);
  let declared = -1;
  let total = 0;
  // pipeline() may reject with its own AbortError when the last stage throws, so the stage's
  // own failure is kept here and preferred.
  let failure: unknown;
  try {
    await pipeline(source, createGunzip(), async (output: AsyncIterable<Buffer>) => {
      try {
        for await (const chunk of output) {
          let piece: Uint8Array = chunk;
          if (declared < 0) {
            head = head.length ? concat(head, chunk) : chunk;
            declared = declaredIdxSize(head, name, hint);
            if (declared < 0) continue;
            piece = head;
          }
          total += piece.length;
          if (total > declared) {
            throw new UserError(
              `${name} decompresses to more than the ${declared} bytes its IDX header declares${hint}`,
            );
          }
          sink(piece, declared);
        }
      } catch (err) {
        failure = err;
        throw err;
      }
    });
  } catch (err) {
    // Node 20 rejects pipeline() with gunzip's error; Node 22 and later also hand it to the last
    // stage's loop, where it is kept as `failure`: map it either way.
    const cause = failure ?? err;
    if (/^Z_/.test((cause as { code?: string }).code ?? '')) {
      throw new UserError(`${name}: corrupt gzip data (${(cause as Error).message})${hint}`);
    }
    throw cause;
  }
  if (declared < 0) {
    parseIdx(head, name); // throws: too short for an IDX header
    throw new UserError(`${name}: not an IDX file${hint}`);
  }
  if (total < declared) {
    throw new UserError(
      `${name} decompresses to only ${total} bytes, fewer than the ${declared} its IDX header declares${hint}`,
    );
  }
}

/**
 * The total size (header included) an IDX header declares, or -1 while `head` is too short to
 * tell. A header that is no IDX header fails with parseIdx's message; one declaring more than
 * MAX_IDX_BYTES fails here.
 */
function declaredIdxSize(head: Uint8Array, name: string, hint: string): number {
  if (head.length < 4) return -1;
  const rank = head[3];
  if (head[0] !== 0 || head[1] !== 0 || head[2] !== 0x08 || rank < 1 || rank > 4) {
    parseIdx(head, name); // throws: bad magic, data type or rank
    throw new UserError(`${name}: not an IDX file${hint}`);
  }
  const headerLength = 4 + 4 * rank;
  if (head.length < headerLength) return -1;
  const view = new DataView(head.buffer, head.byteOffset, headerLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const declared = headerLength + dims.reduce((a, b) => a * b, 1);
  if (declared > MAX_IDX_BYTES) {
    throw new UserError(
      `${name}: its IDX header declares [${dims.join('x')}], ${declared} bytes, more than the ${MAX_IDX_BYTES} accepted for one file${hint}`,
    );
  }
  return declared;
}

/** gunzipIdx into one buffer of exactly the declared size (allocated once the header is known). */
async function gunzipIdxToMemory(
  source: AsyncIterable<Uint8Array>,
  name: string,
  hint: string,
): Promise<Uint8Array> {
  let out: Uint8Array | undefined;
  let offset = 0;
  await gunzipIdx(source, name, hint, (chunk, declared) => {
    out ??= new Uint8Array(declared);
    out.set(chunk, offset);
    offset += chunk.length;
  });
  return out!; // gunzipIdx returns only after exactly `declared` (> 0) bytes
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** One file of a dataset found on disk: its spec (name, checksum) and where it is. */
export interface FoundIdxFile {
  spec: IdxFileSpec;
  path: string;
}

export interface PairOptions {
  /** The dataset's name, which labels its decoded-cache entries. */
  name: string;
  numClasses: number;
  /** Reuse (and write) the decoded split in the user cache. */
  decodedCache?: boolean;
  log?: (message: string) => void;
}

/**
 * Reads, verifies and parses an images file and its labels file into one split, or reads the
 * split from the decoded cache when it holds these files unchanged. `files` reports each file's
 * verification (from the cache entry on a hit).
 */
export async function readIdxPair(
  images: FoundIdxFile,
  labels: FoundIdxFile,
  opts: PairOptions,
): Promise<{ split: Split; shape: ImageShape; files: FileReport[] }> {
  const cacheFile = opts.decodedCache
    ? await decodedCachePath(opts.name + '-' + images.spec.name, [images.path, labels.path])
    : undefined;
  const cached = cacheFile ? await readDecoded(cacheFile, opts.log) : undefined;
  if (cached) return { split: cached.split, shape: cached.header.shape, files: cached.header.sources };
  const files: FileReport[] = [];
  const read = async ({ spec, path }: FoundIdxFile, rank: number) => {
    const { raw, gzMd5 } = await readIdxFile(path);
    const v = verifyDigests(spec, sha256(raw), gzMd5);
    files.push({ name: spec.name, path, verified: v.verified, method: v.method, sha256: v.sha256 });
    return parseIdx(raw, path, rank);
  };
  const [img, lab] = await Promise.all([read(images, 3), read(labels, 1)]);
  checkPair(img, lab, images.spec.name, labels.spec.name);
  const shape: ImageShape = [img.dims[1], img.dims[2], 1];
  const split = splitFromBytes(img.data, lab.data, opts.numClasses, labels.spec.name);
  if (cacheFile)
    await writeDecoded(cacheFile, split, { count: split.count, shape, sources: files }, opts.log);
  return { split, shape, files };
}
