/**
 * One decoding thread of batch prediction's pool (decode-pool.ts): it reads, decodes and scales
 * the files it is sent (batch.ts decodeInto, as the main thread would) and sends back their
 * floats, transferred rather than copied, with each file's error. It runs until terminated.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { decodeInto } from './decode.js';
import type { DecodeRequest, DecodeThreadInit } from './decode-pool.js';

const { shape, pre, decode, concurrency } = workerData as DecodeThreadInit;
const row = shape[0] * shape[1] * shape[2];

parentPort!.on('message', (req: DecodeRequest) => {
  const floats = new Float32Array(req.paths.length * row);
  decodeInto(req.paths, shape, pre, decode, floats, concurrency).then(
    (errors) => parentPort!.postMessage({ id: req.id, floats, errors }, [floats.buffer]),
    (err: Error) => parentPort!.postMessage({ id: req.id, failed: err.message }),
  );
});
