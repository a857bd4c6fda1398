/**
 * Data-parallel training on worker threads: the main thread keeps drawing the order,
 * augmenting and scheduling (core/train/loop.ts), and hands every batch to W workers
 * (thread.ts), each of which trains on 1/W of it with its own wasm backend. Their gradients
 * are summed in a fixed order through shared memory, so a step is the same mathematics as on
 * one thread up to the order of float additions, and the same seed and worker count repeat a
 * run bit for bit. Only the batch crosses to the workers (through a shared double buffer):
 * the dataset itself stays on the main thread.
 *
 * Batch normalization is the exception to "the same mathematics": each worker normalizes its
 * shard with the shard's own statistics (as PyTorch's DistributedDataParallel does without
 * SyncBatchNorm), and the running statistics kept are worker 0's.
 *
 * A failing worker ends the run with one line (WorkerError) and every thread is terminated.
 */
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import type { ImageShape } from '../../core/data/dataset.js';
import { imageSize } from '../../core/data/dataset.js';
import { UserError } from '../../core/errors.js';
import type { Net } from '../../core/models/net.js';
import type { Optimizer } from '../../core/optim/optimizers.js';
import type { TrainConfig } from '../../core/plan.js';
import { batches } from '../../core/data/batches.js';
import type { Split } from '../../core/data/dataset.js';
import type { EvalResult, StepRunner } from '../../core/train/loop.js';
import {
  COMMAND,
  createLayout,
  CTRL,
  PARAM,
  PEER_FAILED,
  packState,
  type TrainingState,
  unpackState,
  views,
  type Views,
  type WorkerFailure,
  type WorkerInit,
} from './shared.js';

/** A worker thread failed; the run stops with its message. */
export class WorkerError extends UserError {
  constructor(index: number, message: string) {
    super(
      `training worker ${index} failed: ${message}; the run directory keeps its last save; try --workers 1`,
    );
    this.name = 'WorkerError';
  }
}

export interface PoolOptions {
  workers: number;
  /** The tfjs backend in use on the main thread; each worker starts the same one. */
  backend: string;
  plan: TrainConfig;
  shape: ImageShape;
  /** Largest batch the loop will hand over. */
  batchSize: number;
}

/**
 * Where a worker starts: thread.js next to this file once built. Under tsx or vitest, which run
 * the TypeScript sources, it is thread.ts, loaded through tsx's ESM hooks (a worker does not
 * inherit the main thread's loader).
 */
function workerEntry(): { entry: string | URL; eval: boolean } {
  if (!import.meta.url.endsWith('.ts'))
    return { entry: new URL('./thread.js', import.meta.url), eval: false };
  const thread = new URL('./thread.ts', import.meta.url).href;
  const tsx = new URL('../../../node_modules/tsx/dist/esm/api/index.mjs', import.meta.url).href;
  return {
    entry: `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(thread)}); });`,
    eval: true,
  };
}

/** Atomics.waitAsync (Node 16+), which the ES2022 library types do not declare yet. */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string };
  }
).waitAsync;

class TrainingPool implements StepRunner {
  private seq = 0;
  private inflight = false;
  /** Loss and correct count of each step since the last drain. */
  private done: { loss: number; correct: number }[] = [];
  private failure: { index: number; message: string } | undefined;
  private readonly failed: Promise<never>;
  private fail!: (e: Error) => void;
  private closed = false;

  constructor(
    readonly workers: number,
    private readonly threads: Worker[],
    private readonly ports: MessagePort[],
    private readonly v: Views,
    /** Trainable parameters in all: a state with more values also holds batch norm's statistics. */
    private readonly params: number,
    private readonly batchSize: number,
  ) {
    this.failed = new Promise<never>((_, reject) => (this.fail = reject));
    // Waits race against this; without a waiter, an unhandled rejection must not end the process.
    this.failed.catch(() => undefined);
    threads.forEach((t, i) => {
      t.on('error', (e: Error) => this.onFailure(i, e.message));
      t.on('exit', (code) => {
        if (!this.closed) this.onFailure(i, `exited with code ${code}`);
      });
    });
  }

  private onFailure(index: number, message: string): void {
    // The first failure is the cause; others (PEER_FAILED) follow from it.
    if (!this.failure) {
      this.failure = { index, message };
      Atomics.store(this.v.ctrl, CTRL.FAILED, 1);
      this.fail(new WorkerError(index, message));
    }
  }

  /** Reads failures the workers posted before raising FAILED. */
  private checkFailed(): void {
    if (!Atomics.load(this.v.ctrl, CTRL.FAILED) && !this.failure) return;
    this.ports.forEach((p, i) => {
      for (let m = receiveMessageOnPort(p); m; m = receiveMessageOnPort(p)) {
        const f = m.message as Partial<WorkerFailure>;
        if (f.error !== undefined && f.error !== PEER_FAILED) this.onFailure(i, f.error);
      }
    });
    this.onFailure(0, 'a worker stopped');
    throw new WorkerError(this.failure!.index, this.failure!.message);
  }

  /** Issues one command to every worker. */
  private issue(cmd: number): void {
    this.checkFailed();
    Atomics.store(this.v.ctrl, CTRL.CMD, cmd);
    this.seq++;
    Atomics.store(this.v.ctrl, CTRL.SEQ, this.seq);
    Atomics.notify(this.v.ctrl, CTRL.SEQ);
  }

  /** Waits, without blocking the event loop, until every worker has finished the last command. */
  private async settle(): Promise<void> {
    const target = this.workers * this.seq;
    for (;;) {
      const done = Atomics.load(this.v.ctrl, CTRL.DONE);
      this.checkFailed();
      if (done >= target) return;
      const w = waitAsync(this.v.ctrl, CTRL.DONE, done);
      if (w.async) await Promise.race([w.value, this.failed]);
    }
  }

  /** Collects the loss and correct count of the step just finished, workers in order. */
  private collect(): void {
    if (!this.inflight) return;
    const step = { loss: 0, correct: 0 };
    for (let k = 0; k < this.workers; k++) {
      step.loss += this.v.stats[2 * k];
      step.correct += this.v.stats[2 * k + 1];
    }
    this.done.push(step);
    this.inflight = false;
  }

  async load(net: Net, optimizer: Optimizer): Promise<void> {
    await this.settle();
    this.collect();
    const state = packState(net, optimizer);
    for (const p of this.ports) p.postMessage(state);
    this.issue(COMMAND.LOAD);
    await this.settle();
  }

  async step(x: Float32Array, y: Int32Array, lr: number, step: number): Promise<void> {
    const slot = step % 2;
    // The slot's previous batch (two steps ago) has finished: steps run one after another.
    this.v.images[slot].set(x);
    this.v.labels[slot].set(y);
    await this.settle();
    this.collect();
    const p = this.v.param;
    p[PARAM.LR] = lr;
    p[PARAM.SIZE] = y.length;
    p[PARAM.SLOT] = slot;
    p[PARAM.STEP] = step;
    this.issue(COMMAND.STEP);
    this.inflight = true;
  }

  async drain(): Promise<{ loss: number; correct: number }[]> {
    await this.settle();
    this.collect();
    const out = this.done;
    this.done = [];
    return out;
  }

  async sync(net: Net, optimizer: Optimizer): Promise<void> {
    await this.settle();
    this.collect();
    this.issue(COMMAND.SYNC);
    await this.settle();
    const msg = receiveMessageOnPort(this.ports[0]);
    if (!msg) throw new WorkerError(0, 'sent no weights');
    const state = msg.message as TrainingState;
    unpackState(net, optimizer, state);
    // Batch norm's running statistics are worker 0's (each worker keeps its shards'); the other
    // workers get them too, so that every thread evaluates with the statistics the run keeps.
    const values = state.weights.reduce((sum, w) => sum + w.data.length, 0);
    if (this.workers > 1 && values > this.params) {
      for (const p of this.ports) p.postMessage(state);
      this.issue(COMMAND.LOAD);
      await this.settle();
    }
  }

  /**
   * The split in evaluation mode, batch by batch through the two slots (the next batch is
   * copied in while the workers evaluate this one), each worker taking its share of the batch.
   */
  async evaluate(split: Split, shape: ImageShape): Promise<EvalResult> {
    const start = performance.now();
    await this.settle();
    this.collect();
    const predicted = new Int32Array(split.count);
    let loss = 0;
    let correct = 0;
    let pending: { offset: number; size: number; slot: number } | undefined;
    const finish = (): void => {
      if (!pending) return;
      predicted.set(this.v.predicted[pending.slot].subarray(0, pending.size), pending.offset);
      for (let k = 0; k < this.workers; k++) {
        loss += this.v.stats[2 * k];
        correct += this.v.stats[2 * k + 1];
      }
      pending = undefined;
    };
    let slot = 0;
    for (const batch of batches(split, { batchSize: this.batchSize, rowSize: imageSize(shape) })) {
      slot ^= 1;
      this.v.images[slot].set(batch.x);
      this.v.labels[slot].set(batch.y);
      await this.settle();
      finish();
      this.v.param[PARAM.SIZE] = batch.size;
      this.v.param[PARAM.SLOT] = slot;
      this.issue(COMMAND.EVAL);
      pending = { offset: batch.offset, size: batch.size, slot };
    }
    await this.settle();
    finish();
    const seen = Math.max(split.count, 1);
    return {
      accuracy: correct / seen,
      loss: loss / seen,
      predicted,
      seconds: (performance.now() - start) / 1000,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.threads.map((t) => t.terminate()));
    this.ports.forEach((p) => p.close());
  }
}

export type Pool = StepRunner & Required<Pick<StepRunner, 'evaluate'>> & { close(): Promise<void> };

/** Starts `workers` training threads holding copies of `net`; close() ends them. */
export async function startPool(net: Net, opts: PoolOptions): Promise<Pool> {
  const { workers } = opts;
  const params = net.trainableVariables.reduce((s, t) => s + t.size, 0);
  const layout = createLayout(workers, opts.batchSize, imageSize(opts.shape), params);
  const artifacts = await net.artifacts();
  const script = workerEntry();
  const threads: Worker[] = [];
  const ports: MessagePort[] = [];
  const ready: Promise<void>[] = [];
  for (let index = 0; index < workers; index++) {
    const { port1, port2 } = new MessageChannel();
    const init: WorkerInit = {
      index,
      workers,
      backend: opts.backend,
      plan: opts.plan,
      shape: opts.shape,
      artifacts,
      layout,
    };
    const t = new Worker(script.entry, {
      eval: script.eval,
      workerData: { init, port: port2 },
      transferList: [port2],
    });
    ready.push(
      new Promise<void>((resolve, reject) => {
        // Start-up news comes on the thread's own channel: the port is only ever read with
        // receiveMessageOnPort, since a listener on it would take messages from that.
        t.once('message', (m: { ready?: boolean; error?: string }) =>
          m.ready ? resolve() : reject(new WorkerError(index, m.error ?? 'did not start')),
        );
        t.once('error', (e: Error) => reject(new WorkerError(index, e.message)));
        t.once('exit', (code) => reject(new WorkerError(index, `exited with code ${code} while starting`)));
      }),
    );
    // Promise.all reports the first failure; the others must not surface as unhandled.
    ready[index].catch(() => undefined);
    threads.push(t);
    ports.push(port1);
  }
  try {
    await Promise.all(ready);
  } catch (err) {
    await Promise.all(threads.map((t) => t.terminate()));
    throw err;
  }
  return new TrainingPool(workers, threads, ports, views(layout, workers), params, opts.batchSize);
}
