/**
 * IDX file parsing (the format of MNIST and Fashion-MNIST). Pure: bytes in, typed arrays out,
 * so the same code runs in the browser. Decompression happens at the edges.
 *
 * Layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then
 * one big-endian uint32 per dimension, then the data in row-major order.
 */
import { UserError } from '../errors.js';

export interface IdxArray {
  /** Sizes of each dimension, e.g. [60000, 28, 28] for idx3 images. */
  dims: number[];
  /** The raw unsigned bytes, length = product of dims. */
  data: Uint8Array;
}

const UNSIGNED_BYTE = 0x08;

/** Parses an uncompressed IDX buffer. `name` is used in error messages. */
export function parseIdx(bytes: Uint8Array, name: string, expectedRank?: number): IdxArray {
  if (bytes.length < 4) {
    throw new UserError(
      `${name}: file is ${bytes.length} bytes, too short to be an IDX file; delete it and fetch again`,
    );
  }
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new UserError(
      `${name}: bad IDX magic number (first bytes ${hex(bytes, 4)}); not an IDX file or still compressed`,
    );
  }
  if (bytes[2] !== UNSIGNED_BYTE) {
    throw new UserError(
      `${name}: IDX data type 0x${bytes[2].toString(16)} is not supported (only unsigned bytes, 0x08)`,
    );
  }
  const rank = bytes[3];
  if (rank < 1 || rank > 4)
    throw new UserError(`${name}: IDX header declares ${rank} dimensions; expected 1 to 4`);
  if (expectedRank !== undefined && rank !== expectedRank) {
    throw new UserError(
      `${name}: expected an idx${expectedRank} file but the header declares ${rank} dimensions`,
    );
  }
  const headerLength = 4 + 4 * rank;
  if (bytes.length < headerLength)
    throw new UserError(`${name}: truncated IDX header; delete the file and fetch again`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) {
    const size = view.getUint32(4 + 4 * i, false);
    if (size === 0) throw new UserError(`${name}: dimension ${i} has size 0`);
    dims.push(size);
  }
  const expected = dims.reduce((a, b) => a * b, 1);
  const actual = bytes.length - headerLength;
  if (actual !== expected) {
    const what = actual < expected ? 'truncated' : 'has trailing bytes';
    throw new UserError(
      `${name}: ${what}: header [${dims.join('x')}] needs ${expected} data bytes but the file has ${actual}; delete it and fetch again`,
    );
  }
  return { dims, data: bytes.subarray(headerLength) };
}

/** Checks that an images file and a labels file describe the same examples. */
export function checkPair(images: IdxArray, labels: IdxArray, imagesName: string, labelsName: string): void {
  if (images.dims[0] !== labels.dims[0]) {
    throw new UserError(
      `${imagesName} has ${images.dims[0]} images but ${labelsName} has ${labels.dims[0]} labels; the files do not belong together`,
    );
  }
}

function hex(bytes: Uint8Array, n: number): string {
  return Array.from(bytes.subarray(0, n), (b) => b.toString(16).padStart(2, '0')).join(' ');
}
