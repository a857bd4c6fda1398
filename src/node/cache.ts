/**
 * A cache of decoded splits (Node only). Gunzipping and converting Fashion-MNIST's 60,000
 * training images to floats is most of a short run's start-up; reading the decoded floats back
 * is a single file read. Entries are keyed by the source files' paths, sizes and modification
 * times, so a changed source file gets a new entry; an entry that does not parse is deleted and
 * rebuilt. Files are written atomically, and a failure to write the cache never fails a run.
 *
 * Stored with util/parts-file.ts: the header, then the labels and the float32 pixels.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from './fs.js';
import { float32View, packParts, unpackParts } from './parts-file.js';
import type { ImageShape, Split } from '../core/data/dataset.js';
import type { FileReport } from './checksum.js';

const FORMAT = 'imgclf-decoded/2';

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

/**
 * Writes an entry and removes the other entries of the same label (dataset and split): an
 * entry is some 200 MB, and one per split is all a run reuses.
 */
export async function writeDecoded(file: string, split: Split, header: DecodedHeader): Promise<void> {
  const pixels = new Uint8Array(split.images.buffer, split.images.byteOffset, split.images.byteLength);
  try {
    await writeFileAtomic(file, packParts({ ...header, format: FORMAT }, [split.labels, pixels]));
    const dir = path.dirname(file);
    const label = path.basename(file).replace(/-[0-9a-f]+\.bin$/, '-');
    for (const name of await readdir(dir)) {
      if (
        name.startsWith(label) &&
        /^[0-9a-f]+\.bin$/.test(name.slice(label.length)) &&
        name !== path.basename(file)
      ) {
        await rm(path.join(dir, name), { force: true });
      }
    }
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
  const unpacked = unpackParts<DecodedHeader>(bytes);
  const h = unpacked?.header;
  const pixels = h ? h.count * h.shape[0] * h.shape[1] * h.shape[2] : -1;
  if (
    !unpacked ||
    h!.format !== FORMAT ||
    unpacked.parts.length !== 2 ||
    unpacked.parts[0].length !== h!.count ||
    unpacked.parts[1].length !== pixels * 4
  ) {
    await rm(file, { force: true });
    return undefined;
  }
  // The pixels stay a view over the file's buffer: no second 188 MB copy.
  const split = {
    images: float32View(unpacked.parts[1]),
    labels: new Uint8Array(unpacked.parts[0]),
    count: h!.count,
  };
  return { split, header: h! };
}
