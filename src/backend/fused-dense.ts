/**
 * A fused training step for softmax regression (flatten, then one dense layer) on the wasm
 * backend: forward pass, softmax cross-entropy with label smoothing, backward pass and the
 * optimizer update (SGD with momentum, Nesterov and weight decay; Adam; AdamW) in two calls
 * into a small SIMD wasm module of our own (wasm/fused-dense.c) and one JavaScript pass for
 * the loss.
 *
 * Why: the unfused step runs about a dozen tfjs kernels on 256x10 and 784x10 tensors, and each
 * launch (engine bookkeeping, the gradient tape, allocation on the wasm heap) costs more than
 * its arithmetic: 2 M multiply-adds each way, well under a millisecond of SIMD work. Here a
 * step is one copy of the batch into the module's memory and three loops over it.
 *
 * How it plugs in: as a `StepRunner` (core/train/loop.ts), the hook the worker threads use,
 * registered with core/train/fused-step.ts. The weights and optimizer slots live in the
 * module's memory while an epoch runs, and `sync` writes them back into the model's tfjs
 * variables and the optimizer (`setState`) after every epoch and on an interrupt, so
 * evaluation, saving, checkpoints and resume see what they always see. Everything is float32,
 * so a checkpoint round trip is exact and a resumed run continues bit for bit.
 *
 * The module is separate from tfjs-backend-wasm's (its own memory, instantiated per runner):
 * tfjs's heap is private to its Emscripten build, and the step needs none of its kernels.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Net } from '../core/models/net.js';
import type { Optimizer, OptimizerConfig } from '../core/optim/optimizers.js';
import { type FusedStepPlan, registerFusedStep } from '../core/train/fused-step.js';
import type { StepRunner } from '../core/train/loop.js';
import { FUSED_DENSE_WASM } from './fused-dense-wasm.js';
import { softmaxXentRows } from './fused-xent.js';
import { transpose2d } from './wasm-kernels.js';

/** The module's exports (wasm/fused-dense.c); pointers are byte offsets into its memory. */
interface Kernels {
  memory: WebAssembly.Memory;
  fd_alloc(bytes: number): number;
  fd_forward(x: number, n: number, d: number, wt: number, b: number, k: number, z: number): void;
  fd_backward(
    x: number,
    n: number,
    d: number,
    dy: number,
    k: number,
    scale: number,
    gw: number,
    gb: number,
  ): void;
  fd_sgd(
    p: number,
    grad: number,
    buf: number,
    len: number,
    decayed: number,
    lr: number,
    mu: number,
    nesterov: number,
    wd: number,
  ): void;
  fd_adam(
    p: number,
    grad: number,
    m: number,
    v: number,
    len: number,
    decayed: number,
    lr: number,
    b1: number,
    oneB1: number,
    b2: number,
    oneB2: number,
    c1: number,
    c2: number,
    eps: number,
    wd: number,
    decoupled: number,
    keep: number,
  ): void;
}

let compiled: WebAssembly.Module | null | undefined;

/** The compiled module, or null where WebAssembly SIMD is not available. */
function wasmModule(): WebAssembly.Module | null {
  if (compiled !== undefined) return compiled;
  try {
    const bytes = Uint8Array.from(atob(FUSED_DENSE_WASM), (c) => c.charCodeAt(0));
    compiled = new WebAssembly.Module(bytes);
  } catch {
    compiled = null;
  }
  return compiled;
}

/** Optimizers the module implements, with their slots per variable. */
function slotsPerVariable(cfg: OptimizerConfig): number | undefined {
  if (cfg.name === 'sgd') return (cfg.momentum ?? 0) > 0 ? 1 : 0;
  if (cfg.name === 'adam' || cfg.name === 'adamw') return 2;
  return undefined;
}

/**
 * The fused step for `net` under `plan`, or undefined when it does not apply: another backend
 * than wasm (the cpu backend keeps its own numerics), a model that is not softmax regression,
 * an optimizer the module does not implement, or no WebAssembly SIMD.
 */
export function fusedDenseStep(net: Net, plan: FusedStepPlan): StepRunner | undefined {
  if (tf.getBackend() !== 'wasm' || net.name !== 'softmax' || net.loss) return undefined;
  const vars = net.trainableVariables;
  if (vars.length !== 2) return undefined;
  const [kernel, bias] = vars;
  if (kernel.rank !== 2 || bias.rank !== 1 || kernel.shape[1] !== bias.shape[0]) return undefined;
  if (kernel.dtype !== 'float32' || bias.dtype !== 'float32') return undefined;
  const perVar = slotsPerVariable(plan.optimizer);
  if (perVar === undefined) return undefined;
  const mod = wasmModule();
  if (!mod) return undefined;
  return new FusedDenseRunner(mod, kernel.shape[0], kernel.shape[1], perVar, plan);
}

/** Registers the fused dense step with the training loop (safe to call more than once). */
export function registerFusedDense(): void {
  registerFusedStep(fusedDenseStep);
}

/**
 * Layout in the module's memory. The parameters are one array [wt (k x d) | b (k)], and so are
 * their gradient and each optimizer slot, so one update call covers both; weight decay applies
 * to the first k * d elements (the matrix), as core/optim/optimizers.ts applies it to rank >= 2.
 */
class FusedDenseRunner implements StepRunner {
  readonly workers = 1;
  private readonly k: Kernels;
  private readonly params: number;
  private readonly grads: number;
  private readonly slots: number[];
  private readonly size: number;
  /** Batch buffers, laid out for `capacity` rows on the first step (again for a larger batch). */
  private capacity = 0;
  private x = 0;
  private z = 0;
  private dy = 0;
  private loss = new Float32Array(0);
  /** The optimizer's own step count (Adam's bias correction), from its state. */
  private optimizerStep = 0;
  private results: { loss: number; correct: number }[] = [];

  constructor(
    mod: WebAssembly.Module,
    private readonly d: number,
    private readonly classes: number,
    perVar: number,
    private readonly plan: FusedStepPlan,
  ) {
    this.k = new WebAssembly.Instance(mod, {}).exports as unknown as Kernels;
    this.size = d * classes + classes;
    this.params = this.alloc(this.size);
    this.grads = this.alloc(this.size);
    this.slots = Array.from({ length: perVar }, () => this.alloc(this.size));
  }

  private alloc(floats: number): number {
    const at = this.k.fd_alloc(floats * 4);
    if (at === 0) throw new Error('the fused dense step ran out of WebAssembly memory');
    return at;
  }

  /** A view of `floats` floats at byte offset `at` (views are made afresh: memory can grow). */
  private view(at: number, floats: number): Float32Array {
    return new Float32Array(this.k.memory.buffer, at, floats);
  }

  /** Writes a [kernel (d x k), bias (k)] pair into the [wt | b] layout at `at`. */
  private put(at: number, kernel: Float32Array, bias: Float32Array): void {
    const { d, classes } = this;
    const dst = this.view(at, this.size);
    transpose2d(kernel, dst, d, classes);
    dst.set(bias, d * classes);
  }

  /** Reads the [wt | b] layout at `at` back as a kernel (d x k) and a bias (k). */
  private get(at: number): [Float32Array, Float32Array] {
    const { d, classes } = this;
    const src = this.view(at, this.size);
    const kernel = new Float32Array(d * classes);
    transpose2d(src, kernel, classes, d);
    return [kernel, src.slice(d * classes)];
  }

  async load(net: Net, optimizer: Optimizer): Promise<void> {
    const [kernel, bias] = net.trainableVariables;
    this.put(this.params, kernel.dataSync() as Float32Array, bias.dataSync() as Float32Array);
    const state = optimizer.getState();
    this.optimizerStep = state.step;
    // Slots are stored per variable ([kernel's..., bias's...]); an optimizer that has not
    // stepped yet has none, which means zeros.
    const per = this.slots.length;
    this.slots.forEach((at, s) => {
      if (state.slots.length === 0) this.view(at, this.size).fill(0);
      else
        this.put(
          at,
          state.slots[s].dataSync() as Float32Array,
          state.slots[per + s].dataSync() as Float32Array,
        );
    });
    state.slots.forEach((t) => t.dispose());
    this.results = [];
  }

  private reserve(rows: number): void {
    if (rows <= this.capacity) return;
    // The bump allocator does not free: the old, smaller buffers stay unused.
    this.x = this.alloc(rows * this.d);
    this.z = this.alloc(rows * this.classes);
    this.dy = this.alloc(rows * this.classes);
    this.loss = new Float32Array(rows);
    this.capacity = rows;
  }

  async step(x: Float32Array, y: Int32Array, lr: number): Promise<void> {
    const { d, classes } = this;
    const n = y.length;
    this.reserve(n);
    const k = this.k;
    this.view(this.x, n * d).set(x.subarray(0, n * d));
    const wt = this.params;
    const b = this.params + d * classes * 4;
    k.fd_forward(this.x, n, d, wt, b, classes, this.z);
    // The loss and its gradient (softmax - target) with the code the unfused step's kernel
    // runs (fused-xent.ts), so both paths compute them alike from the same logits.
    const correct = softmaxXentRows(
      this.view(this.z, n * classes),
      y,
      n,
      classes,
      this.plan.labelSmoothing,
      this.loss,
      this.view(this.dy, n * classes),
    );
    let loss = 0;
    for (let i = 0; i < n; i++) loss += this.loss[i];
    // The mean loss's gradient: tf.mean divides by n in float32.
    k.fd_backward(this.x, n, d, this.dy, classes, 1 / n, this.grads, this.grads + d * classes * 4);
    this.update(lr);
    this.results.push({ loss, correct });
  }

  private update(lr: number): void {
    const cfg = this.plan.optimizer;
    const wd = cfg.weightDecay ?? 0;
    const decayed = this.d * this.classes;
    this.optimizerStep++;
    if (cfg.name === 'sgd') {
      const mu = cfg.momentum ?? 0;
      this.k.fd_sgd(
        this.params,
        this.grads,
        this.slots[0] ?? 0,
        this.size,
        decayed,
        lr,
        mu,
        cfg.nesterov ? 1 : 0,
        wd,
      );
      return;
    }
    const b1 = cfg.beta1 ?? 0.9;
    const b2 = cfg.beta2 ?? 0.999;
    const t = this.optimizerStep;
    this.k.fd_adam(
      this.params,
      this.grads,
      this.slots[0],
      this.slots[1],
      this.size,
      decayed,
      lr,
      b1,
      1 - b1,
      b2,
      1 - b2,
      1 - b1 ** t,
      1 - b2 ** t,
      cfg.epsilon ?? 1e-8,
      wd,
      cfg.name === 'adamw' ? 1 : 0,
      1 - lr * wd,
    );
  }

  async drain(): Promise<{ loss: number; correct: number }[]> {
    const r = this.results;
    this.results = [];
    return r;
  }

  async sync(net: Net, optimizer: Optimizer): Promise<void> {
    const { d, classes } = this;
    const [kernel, bias] = net.trainableVariables;
    const [w, b] = this.get(this.params);
    tf.tidy(() => {
      kernel.assign(tf.tensor2d(w, [d, classes]));
      bias.assign(tf.tensor1d(b));
    });
    const kernels: tf.Tensor[] = [];
    const biases: tf.Tensor[] = [];
    for (const at of this.slots) {
      const [sw, sb] = this.get(at);
      kernels.push(tf.tensor2d(sw, [d, classes]));
      biases.push(tf.tensor1d(sb));
    }
    optimizer.setState({ step: this.optimizerStep, slots: [...kernels, ...biases] });
  }
}
