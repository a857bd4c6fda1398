/**
 * One training thread of the pool (pool.ts). It holds its own tfjs backend (wasm runs one
 * thread per isolate in Node, so each worker brings one more core), a copy of the net and of
 * the optimizer, and runs commands from the shared control block until it is terminated:
 *
 *   STEP: gradients of its shard of the shared batch (the loss divided by the whole batch's
 *         size), written to its row of the shared gradient block; a barrier; then the rows of
 *         workers 0..W-1 summed in that order and one optimizer update. Every worker sums the
 *         same rows in the same order and applies the same update, so all copies of the
 *         weights stay bit-identical without sending them anywhere.
 *   LOAD: weights and optimizer state from the main thread (at the start, and on resume).
 *   SYNC: worker 0 posts its weights and optimizer state back (before evaluation and saves).
 *   EVAL: its shard of the batch slot in evaluation mode: each row's arg-max into the slot's
 *         predictions, and the shard's summed loss and correct count into its stats.
 *
 * The thread blocks in Atomics.wait between commands: it has nothing else to do, and a
 * blocking wait wakes faster than a message.
 */
import { type MessagePort, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import '../../core/models/index.js';
import { loadNet } from '../../core/models/registry.js';
import { optimizerFor } from '../../core/plan.js';
import { seedDropout } from '../../core/models/dropout.js';
import { evaluationTensors, lossGradients } from '../../core/train/loop.js';
import { selectBackend, type BackendName } from '../index.js';
import {
  COMMAND,
  CTRL,
  PARAM,
  PEER_FAILED,
  shard,
  packState,
  type TrainingState,
  unpackState,
  views,
  type WorkerFailure,
  type WorkerInit,
} from './shared.js';

const init = (workerData as { init: WorkerInit; port: MessagePort }).init;
const port = (workerData as { init: WorkerInit; port: MessagePort }).port;
const { index: me, workers, layout } = init;
const v = views(layout, workers);

/**
 * Fault injection for the tests: IMGCLF_WORKER_FAIL="k:s" makes worker k throw at step s, the
 * way a kernel error or an allocation failure would.
 */
const failAt = (() => {
  const m = /^(\d+):(\d+)$/.exec(process.env.IMGCLF_WORKER_FAIL ?? '');
  return m && Number(m[1]) === me ? Number(m[2]) : -1;
})();

async function main(): Promise<void> {
  await selectBackend(init.backend as BackendName);
  const net = await loadNet(init.plan.model, init.artifacts);
  const optimizer = optimizerFor(init.plan);
  const reduction = optimizer.lossReduction ?? 'mean';
  const vars = net.trainableVariables;
  const sizes = vars.map((t) => t.size);
  const [h, w, c] = init.shape;
  const summed = new Float32Array(layout.params);
  parentPort!.postMessage({ ready: true });

  const step = (): void => {
    const n = v.param[PARAM.SIZE];
    const slot = v.param[PARAM.SLOT];
    const stepNo = v.param[PARAM.STEP];
    if (stepNo === failAt) throw new Error(`injected failure at step ${stepNo}`);
    const [lo, hi] = shard(n, me, workers);
    const row = v.grads[me];
    if (hi > lo) {
      // The masks of this step and worker: a run repeats, and resumes, exactly.
      seedDropout(init.plan.seed, stepNo, me);
      const x = v.images[slot].slice(lo * layout.rowSize, hi * layout.rowSize);
      const y = v.labels[slot].slice(lo, hi);
      const out = tf.tidy(() => {
        const r = lossGradients(
          net,
          reduction,
          tf.tensor4d(x, [hi - lo, h, w, c]),
          y,
          init.plan.labelSmoothing,
          n,
        );
        return { ...r, grads: r.grads.map((g) => tf.keep(g)) };
      });
      let off = 0;
      for (const g of out.grads) {
        row.set(g.dataSync() as Float32Array, off);
        off += g.size;
        g.dispose();
      }
      v.stats[2 * me] = out.loss.dataSync()[0];
      v.stats[2 * me + 1] = out.correct.dataSync()[0];
      out.loss.dispose();
      out.correct.dispose();
    } else {
      // A short last batch can leave a worker without rows: it adds nothing.
      row.fill(0);
      v.stats[2 * me] = 0;
      v.stats[2 * me + 1] = 0;
    }
    barrier();
    // Fixed order: worker 0's row, then 1's, ... (the same float sums on every thread).
    summed.set(v.grads[0]);
    for (let k = 1; k < workers; k++) {
      const other = v.grads[k];
      for (let i = 0; i < summed.length; i++) summed[i] += other[i];
    }
    tf.tidy(() => {
      let off = 0;
      const grads = vars.map((t, i) => {
        const g = tf.tensor(summed.subarray(off, off + sizes[i]), t.shape, 'float32');
        off += sizes[i];
        return g;
      });
      optimizer.apply(vars, grads, v.param[PARAM.LR], n);
    });
  };

  const evaluate = (): void => {
    const n = v.param[PARAM.SIZE];
    const slot = v.param[PARAM.SLOT];
    const [lo, hi] = shard(n, me, workers);
    let loss = 0;
    let correct = 0;
    if (hi > lo) {
      const y = v.labels[slot].slice(lo, hi);
      const [pred, sum] = tf.tidy(() => {
        const x = tf.tensor4d(v.images[slot].slice(lo * layout.rowSize, hi * layout.rowSize), [
          hi - lo,
          h,
          w,
          c,
        ]);
        const [p, l] = evaluationTensors(net, x, tf.tensor1d(y, 'int32'));
        return [p, l] as const;
      });
      const p = pred.dataSync() as Int32Array;
      v.predicted[slot].set(p, lo);
      loss = sum.dataSync()[0];
      for (let i = 0; i < p.length; i++) if (p[i] === y[i]) correct++;
      tf.dispose([pred, sum]);
    }
    v.stats[2 * me] = loss;
    v.stats[2 * me + 1] = correct;
  };

  const load = (): void => {
    const msg = receiveMessageOnPort(port);
    if (!msg) throw new Error('internal: LOAD without a state message');
    unpackState(net, optimizer, msg.message as TrainingState);
  };

  // Every copy holds the same weights: worker 0 speaks for them.
  const sync = (): void => {
    if (me === 0) port.postMessage(packState(net, optimizer));
  };

  for (let seen = 0; ;) {
    Atomics.wait(v.ctrl, CTRL.SEQ, seen);
    seen = Atomics.load(v.ctrl, CTRL.SEQ);
    const cmd = Atomics.load(v.ctrl, CTRL.CMD);
    if (cmd === COMMAND.STEP) step();
    else if (cmd === COMMAND.LOAD) load();
    else if (cmd === COMMAND.SYNC) sync();
    else if (cmd === COMMAND.EVAL) evaluate();
    Atomics.add(v.ctrl, CTRL.DONE, 1);
    Atomics.notify(v.ctrl, CTRL.DONE);
  }
}

/** Waits until every worker has written its gradients (or one has failed). */
function barrier(): void {
  const gen = Atomics.load(v.ctrl, CTRL.GEN);
  if (Atomics.add(v.ctrl, CTRL.ARRIVED, 1) === workers - 1) {
    Atomics.store(v.ctrl, CTRL.ARRIVED, 0);
    Atomics.add(v.ctrl, CTRL.GEN, 1);
    Atomics.notify(v.ctrl, CTRL.GEN);
    return;
  }
  while (Atomics.load(v.ctrl, CTRL.GEN) === gen) {
    if (Atomics.load(v.ctrl, CTRL.FAILED)) throw new Error(PEER_FAILED);
    Atomics.wait(v.ctrl, CTRL.GEN, gen, 1000);
  }
}

main().catch((err: unknown) => {
  const failure: WorkerFailure = { error: err instanceof Error ? err.message : String(err) };
  port.postMessage(failure);
  parentPort!.postMessage(failure);
  // Wake everyone: the main thread waits on DONE, the other workers at the barrier.
  Atomics.store(v.ctrl, CTRL.FAILED, 1);
  Atomics.add(v.ctrl, CTRL.GEN, 1);
  Atomics.notify(v.ctrl, CTRL.GEN);
  Atomics.add(v.ctrl, CTRL.DONE, 1);
  Atomics.notify(v.ctrl, CTRL.DONE);
});
