/**
 * Batch prediction's decoding threads (batch.ts says why): one worker thread a core, each
 * sent a share of every batch, in order. Each decodes its share DECODERS_PER_THREAD files at a
 * time and transfers the floats back; the pool copies the shares into one of two batch buffers.
 * Only paths and floats cross: the run's model stays on the main thread.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ImageShape } from '../../core/data/dataset.js';
import type { Preprocessing } from '../../core/data/source.js';
import { UserError } from '../../core/errors.js';
import { threadEntry } from '../../backend/workers/entry.js';
import type { DecodeOptions } from '../image.js';
import { batchBuffers, type Decoder } from './decode.js';

/** Files one decoding thread reads and decodes at once (libuv's four threads serve them all). */
export const DECODERS_PER_THREAD = 4;

export interface DecodeThreadInit {
  shape: ImageShape;
  pre: Preprocessing;
  decode: DecodeOptions;
  concurrency: number;
}

export interface DecodeRequest {
  id: number;
  paths: string[];
}

type DecodeReply =
  { id: number; floats: Float32Array; errors: (string | undefined)[] } | { id: number; failed: string };

/** Decoding threads for pictures of `shape` prepared with `pre`: `threads` of them, one a core by default. */
export async function decodePool(
  shape: ImageShape,
  pre: Preprocessing,
  opts: { decode?: DecodeOptions; threads?: number } = {},
): Promise<Decoder> {
  const count = opts.threads ?? os.availableParallelism();
  const script = threadEntry(import.meta.url, 'decode-thread');
  const init: DecodeThreadInit = { shape, pre, decode: opts.decode ?? {}, concurrency: DECODERS_PER_THREAD };
  const waiting = new Map<number, { resolve: (r: DecodeReply) => void; reject: (e: Error) => void }>();
  let failure: Error | undefined;
  const fail = (err: Error) => {
    failure ??= new UserError(
      `a decoding thread failed: ${err.message.split('\n')[0]}; try again, or predict fewer files at once`,
    );
    for (const w of waiting.values()) w.reject(failure);
    waiting.clear();
  };
  const threads = Array.from({ length: count }, () => {
    const t = new Worker(script.entry, { eval: script.eval, workerData: init });
    t.on('message', (reply: DecodeReply) => {
      const w = waiting.get(reply.id);
      waiting.delete(reply.id);
      w?.resolve(reply);
    });
    t.on('error', fail);
    t.on('exit', (code) => {
      if (code !== 0) fail(new Error(`exited with code ${code}`));
    });
    return t;
  });
  const row = shape[0] * shape[1] * shape[2];
  const next = batchBuffers(shape);
  let id = 0;
  const ask = (t: Worker, paths: string[]) =>
    new Promise<DecodeReply>((resolve, reject) => {
      if (failure) return reject(failure);
      const req: DecodeRequest = { id: id++, paths };
      waiting.set(req.id, { resolve, reject });
      t.postMessage(req);
    });
  return {
    async decode(paths) {
      // Contiguous shares, so each thread's floats are one block of the batch.
      const share = Math.ceil(paths.length / count);
      const parts = threads.map((t, k) => paths.slice(k * share, (k + 1) * share));
      const replies = await Promise.all(parts.map((p, k) => (p.length ? ask(threads[k], p) : undefined)));
      const floats = next(paths.length);
      const errors: (string | undefined)[] = [];
      replies.forEach((r, k) => {
        if (!r) return;
        if ('failed' in r)
          throw new UserError(`cannot decode ${parts[k][0]} and the files after it: ${r.failed}`);
        floats.set(r.floats, k * share * row);
        errors.push(...r.errors);
      });
      return { floats, errors };
    },
    async close() {
      await Promise.all(threads.map((t) => t.terminate()));
    },
  };
}
