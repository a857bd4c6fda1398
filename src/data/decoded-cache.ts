/**
 * A cache of decoded splits (Node only). Gunzipping and converting Fashion-MNIST's 60,000
 * training images to floats is most of a short run's start-up; reading the decoded floats back
 * is a single file read. Entries are keyed by the source files' paths, sizes and modification
 * times, so a changed source file gets a new entry; an entry that does not parse is deleted and
 * rebuilt. Files are written atomically, and a failure to write the cache never fails a run.
 *
 * Layout: u32 header length, JSON header, padding to 4 bytes, labels (count bytes, padded to 4),
 * float32 pixels.
 */
import { createHash } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../util/fs.js';
import type { ImageShape, Split } from './dataset.js';
import type { FileReport } from './sources.js';

const FORMAT = 'imgclf-decoded/1';

export interface DecodedHeader {
  format: string;
  count: number;
  shape: ImageShape;
  /** What the loader reports about the source files (paths, checksums, verified). */
  sources: FileReport[];
}

/** The cache file for a split decoded from `sources` (their stats are the key). */
export async function decodedCachePath(cacheRoot: string, label: string, sources: string[]): Promise<string> {
  const stats = await Promise.all(
    sources.map(async (p) => {
      const s = await stat(p);
      return [path.resolve(p), s.size, s.mtimeMs];
    }),
  );
  const key = createHash('sha256')
    .update(JSON.stringify([FORMAT, stats]))
    .digest('hex')
    .slice(0, 20);
  return path.join(cacheRoot, 'decoded', `${label}-${key}.bin`);
}

const pad4 = (n: number) => (n + 3) & ~3;

export async function writeDecoded(file: string, split: Split, header: DecodedHeader): Promise<void> {
  const json = Buffer.from(JSON.stringify({ ...header, format: FORMAT }));
  const head = new Uint8Array(pad4(4 + json.length) + pad4(split.count));
  new DataView(head.buffer).setUint32(0, json.length, true);
  head.set(json, 4);
  head.set(split.labels, pad4(4 + json.length));
  const pixels = new Uint8Array(split.images.buffer, split.images.byteOffset, split.images.byteLength);
  try {
    await writeFileAtomic(file, [head, pixels]);
  } catch {
    // A read-only or full cache only costs speed.
  }
}

/** The cached split, or undefined when absent or unreadable (an unreadable entry is removed). */
export async function readDecoded(
  file: string,
): Promise<{ split: Split; header: DecodedHeader } | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch {
    return undefined;
  }
  try {
    const jsonLength = bytes.readUInt32LE(0);
    const header = JSON.parse(bytes.subarray(4, 4 + jsonLength).toString('utf8')) as DecodedHeader;
    if (header.format !== FORMAT) throw new Error('format');
    const headerEnd = pad4(4 + jsonLength);
    const labelsEnd = headerEnd + pad4(header.count);
    const pixels = header.count * header.shape[0] * header.shape[1] * header.shape[2];
    if (bytes.length !== labelsEnd + pixels * 4) throw new Error('length');
    const labels = new Uint8Array(bytes.subarray(headerEnd, headerEnd + header.count));
    // A view over the file's own buffer, no copy (a large readFile buffer starts at offset 0;
    // copy only if it is ever unaligned).
    const start = bytes.byteOffset + labelsEnd;
    const images =
      start % 4 === 0
        ? new Float32Array(bytes.buffer, start, pixels)
        : new Float32Array(new Uint8Array(bytes.subarray(labelsEnd)).buffer);
    return { split: { images, labels, count: header.count }, header };
  } catch {
    await rm(file, { force: true });
    return undefined;
  }
}
