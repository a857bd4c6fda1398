/**
 * Models kept in this browser: the network through TensorFlow.js's `indexeddb://` IO handler
 * (its database "tensorflowjs"), and beside it, in the page's own IndexedDB database
 * "imgclf-page", the run's metadata, metrics and the images it was trained on, under the same
 * key. A model is listed only when both halves are there.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type NetArtifacts, pixelsAsBytes, type Split } from 'imgclf/core';
import type { PageRunData } from './own-train.js';

const DB_NAME = 'imgclf-page';
const STORE = 'runs';
/** Keys of kept models start with this (tfjs's model path is `indexeddb://` + key). */
const KEY_PREFIX = 'imgclf-own/';

export interface KeptRun extends PageRunData {
  key: string;
  /** The name the user gave it. */
  name: string;
  saved: string;
}

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'key' });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB cannot be opened'));
  });
}

async function withStore<T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await openDb();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = f(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    });
  } finally {
    db.close();
  }
}

const url = (key: string) => `indexeddb://${key}`;

/** Images are kept as bytes (0..255), a quarter of their size as floats. */
interface StoredSplit {
  pixels: Uint8Array;
  labels: Uint8Array;
  count: number;
}
type StoredRun = Omit<KeptRun, 'data'> & { data?: { train: StoredSplit; test: StoredSplit } };

const toStored = (s: Split): StoredSplit => ({
  pixels: pixelsAsBytes(s.images),
  labels: s.labels,
  count: s.count,
});
const fromStored = (s: StoredSplit): Split => ({ images: s.pixels, labels: s.labels, count: s.count });

function stored(run: KeptRun): StoredRun {
  const { data, ...rest } = run;
  return data ? { ...rest, data: { train: toStored(data.train), test: toStored(data.test) } } : rest;
}

function unstored(run: StoredRun): KeptRun {
  const { data, ...rest } = run;
  return data ? { ...rest, data: { train: fromStored(data.train), test: fromStored(data.test) } } : rest;
}

/** Keeps a model and its run data; returns the key it is kept under. */
export async function keepRun(name: string, artifacts: NetArtifacts, run: PageRunData): Promise<KeptRun> {
  const key = `${KEY_PREFIX}${Date.now().toString(36)}`;
  const [handler] = tf.io.getSaveHandlers(url(key));
  if (!handler?.save) throw new Error('this browser has no IndexedDB for TensorFlow.js');
  await handler.save({
    modelTopology: artifacts.modelTopology,
    weightSpecs: artifacts.weightSpecs,
    weightData: artifacts.weightData,
  });
  const kept: KeptRun = { ...run, key, name, saved: new Date().toISOString() };
  try {
    await withStore('readwrite', (s) => s.put(stored(kept)));
  } catch (err) {
    await tf.io.removeModel(url(key)).catch(() => undefined);
    throw err;
  }
  return kept;
}

/** The kept models, newest first; a record whose network is gone (or the reverse) is left out. */
export async function listKept(): Promise<KeptRun[]> {
  const [records, models] = await Promise.all([
    withStore<StoredRun[]>('readonly', (s) => s.getAll() as IDBRequest<StoredRun[]>),
    tf.io.listModels(),
  ]);
  return records
    .filter((r) => url(r.key) in models)
    .sort((a, b) => (a.saved < b.saved ? 1 : -1))
    .map(unstored);
}

/** The network of a kept model. */
export async function loadKeptArtifacts(key: string): Promise<NetArtifacts> {
  const [handler] = tf.io.getLoadHandlers(url(key));
  if (!handler?.load) throw new Error('this browser has no IndexedDB for TensorFlow.js');
  const a = await handler.load();
  return {
    modelTopology: a.modelTopology as object,
    weightSpecs: a.weightSpecs ?? [],
    weightData: tf.io.concatenateArrayBuffers(
      a.weightData === undefined ? [] : ([] as ArrayBuffer[]).concat(a.weightData),
    ),
  };
}

export async function forgetKept(key: string): Promise<void> {
  await withStore('readwrite', (s) => s.delete(key));
  await tf.io.removeModel(url(key)).catch(() => undefined);
}
