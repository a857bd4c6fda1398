/**
 * Reading and decoding the files of batch prediction (batch.ts) into the model's floats, on
 * this thread, with sharp decoding on libuv's threads.
 */
import type { ImageShape } from '../../core/data/dataset.js';
import { inputInto } from '../../core/data/prepare.js';
import type { Preprocessing } from '../../core/data/source.js';
import { readImageFile, readImageFileSync } from '../data/folder.js';
import { type DecodeOptions, ImageTooLargeError, prepareImage } from '../image.js';

/** Files read and decoded at once on one thread: libuv's pool has four threads, and reads wait on the disk. */
export const DECODERS = 8;

/** A read or decode failure as the row's error, without the path the row already names. */
function reasonOf(file: string, err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOENT':
      return 'file not found';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a folder';
  }
  const message = (e.message ?? String(err)).split('\n')[0].replace(`${file}: `, '');
  return err instanceof ImageTooLargeError ? `too large: ${message}` : message;
}

/**
 * Reads, decodes and scales `paths` into `floats` (file i at i * row), `concurrency` at a time;
 * returns each file's error, or undefined.
 */
export async function decodeInto(
  paths: string[],
  shape: ImageShape,
  pre: Preprocessing,
  decode: DecodeOptions,
  floats: Float32Array,
  concurrency: number,
  reads: FileReader = fileReader(),
): Promise<(string | undefined)[]> {
  const row = shape[0] * shape[1] * shape[2];
  const errors: (string | undefined)[] = new Array(paths.length).fill(undefined);
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const i = next++;
      const file = paths[i];
      try {
        const { bytes } = await prepareImage(await reads.read(file), shape, pre, file, decode);
        inputInto(bytes, pre, floats, i * row);
      } catch (err) {
        errors[i] = reasonOf(file, err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, paths.length) }, worker));
  return errors;
}

/**
 * Reads taking longer than SLOW_READ_MS, SLOW_READS of them, mean slow storage: reads turn
 * asynchronous. One is not enough: a collection or a busy machine can stall any call once.
 */
export const SLOW_READ_MS = 4;
export const SLOW_READS = 3;

/** Reads image files for one job; `slow` once it has turned to asynchronous reads. */
export interface FileReader {
  read(file: string): Promise<Buffer>;
  readonly slow: boolean;
}

/**
 * Reads synchronously (readImageFileSync) while files come in under SLOW_READ_MS, which is
 * the case for the page cache and local disks and costs a seventh of an asynchronous read; slow
 * reads (a network share, a spinning disk, a cold cache) turn the rest of the job to
 * asynchronous reads, DECODERS at a time, which overlap their waits instead of adding them up.
 */
export function fileReader(): FileReader {
  let slowReads = 0;
  let slow = false;
  return {
    get slow() {
      return slow;
    },
    async read(file) {
      if (slow) return readImageFile(file);
      const start = performance.now();
      try {
        return readImageFileSync(file);
      } finally {
        if (performance.now() - start > SLOW_READ_MS && ++slowReads >= SLOW_READS) slow = true;
      }
    },
  };
}

/** Decoded files: `floats` holds file i's input at i * row, and `errors[i]` says why file i has none. */
export interface DecodedBatch {
  floats: Float32Array;
  errors: (string | undefined)[];
}

/**
 * Decodes batches of files for a model of `metadata`'s shape and preprocessing, DECODERS at a
 * time, into two buffers taken in turn (`batchBuffers`).
 */
export function batchDecoder(
  metadata: { inputShape: ImageShape; preprocessing: Preprocessing },
  decode: DecodeOptions = {},
): (paths: string[]) => Promise<DecodedBatch> {
  const { inputShape: shape, preprocessing: pre } = metadata;
  const next = batchBuffers(shape);
  const reads = fileReader();
  return async (paths) => {
    const floats = next(paths.length);
    return { floats, errors: await decodeInto(paths, shape, pre, decode, floats, DECODERS, reads) };
  };
}

/**
 * Two input buffers taken in turn, for decoders: batch k+1 is decoded into one while batch k,
 * in the other, goes through the model, and batch k+2 is asked for only once batch k is done.
 * A fresh buffer a batch (38 MB at 224 px) costs more in page faults and collection than the
 * model's pass over it.
 */
export function batchBuffers(shape: ImageShape): (n: number) => Float32Array {
  const row = shape[0] * shape[1] * shape[2];
  const buffers = [new Float32Array(0), new Float32Array(0)];
  let turn = 0;
  return (n) => {
    turn ^= 1;
    if (buffers[turn].length < n * row) buffers[turn] = new Float32Array(n * row);
    return buffers[turn].subarray(0, n * row);
  };
}
