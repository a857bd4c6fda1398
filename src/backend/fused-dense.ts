/**
 * A fused training step for softmax regression (flatten, then one dense layer) on the wasm
 * backend: forward pass, softmax cross-entropy with label smoothing, backward pass and the
 * optimizer update (SGD with momentum, Nesterov and weight decay; Adam; AdamW) in two calls
 * into a small SIMD wasm module of our own (wasm/fused-dense.c): one for the loss and the
 * gradients, one for the update.
 *
 * Why: the unfused step runs about a dozen tfjs kernels on 256x10 and 784x10 tensors, and each
 * launch (engine bookkeeping, the gradient tape, allocation on the wasm heap) costs more than
 * its arithmetic: 2 M multiply-adds each way, a few hundred microseconds of SIMD work.
 *
 * How it plugs in: as a `StepRunner` (core/train/loop.ts), the hook the worker threads use,
 * registered with core/train/fused-step.ts. The weights and optimizer slots live in the
 * module's memory while an epoch runs, and `sync` writes them back into the model's tfjs
 * variables and the optimizer (`setState`) after every epoch and on an interrupt, so
 * evaluation, saving, checkpoints and resume see what they always see. Everything is float32,
 * so a checkpoint round trip is exact and a resumed run continues bit for bit.
 *
 * Two ways in: `stepRows` reads the rows of a byte split in place (the data set's bytes are
 * copied into the module's memory once, 47 MB for Fashion-MNIST; the loop then gathers no
 * pixels and `fit` keeps the split as bytes, not 188 MB of floats), and `step` takes a float
 * batch (augmented batches, features from a backbone), copied in.
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
import { transpose2d } from './wasm-kernels.js';

/** The module's exports (wasm/fused-dense.c); pointers are byte offsets into its memory. */
interface Kernels {
  memory: WebAssembly.Memory;
  fd_alloc(bytes: number): number;
  /** Rows per block: the scratch buffers hold one block. */
  fd_block(): number;
  fd_step_floats(
    x: number,
    labels: number,
    n: number,
    d: number,
    k: number,
    wt: number,
    b: number,
    on: number,
    off: number,
    scale: number,
    gw: number,
    gb: number,
    z: number,
    dy: number,
    dyw: number,
    stats: number,
  ): number;
  fd_step_bytes(
    images: number,
    rows: number,
    labels: number,
    n: number,
    d: number,
    k: number,
    wt: number,
    b: number,
    on: number,
    off: number,
    scale: number,
    gw: number,
    gb: number,
    xb: number,
    z: number,
    dy: number,
    dyw: number,
    stats: number,
  ): number;
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

/**
 * The compiled module, or null where WebAssembly SIMD is not available (or not yet compiled).
 * Node compiles it at once. A browser refuses to compile a module this size synchronously on
 * its main thread: there it is compiled in the background, and steps before it is ready use
 * the tfjs kernels.
 */
function wasmModule(): WebAssembly.Module | null {
  if (compiled !== undefined) return compiled;
  const bytes = Uint8Array.from(atob(FUSED_DENSE_WASM), (c) => c.charCodeAt(0));
  try {
    compiled = new WebAssembly.Module(bytes);
  } catch {
    compiled = null;
    WebAssembly.compile(bytes).then(
      (m) => (compiled = m),
      () => undefined, // no WebAssembly SIMD: the tfjs step it is
    );
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
  try {
    return new FusedDenseRunner(mod, kernel.shape[0], kernel.shape[1], perVar, plan);
  } catch {
    // Instantiating can be refused too (a browser's main thread, no memory): the tfjs step.
    return undefined;
  }
}

/** Registers the fused dense step with the training loop (safe to call more than once). */
export function registerFusedDense(): void {
  wasmModule();
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
  /** Scratch of one block of rows (wasm/fused-dense.c BLOCK): logits, dy, dy / div, pixels. */
  private readonly z: number;
  private readonly dy: number;
  private readonly dyw: number;
  private readonly xb: number;
  /** Batch buffers, laid out for `capacity` rows on the first step (again for a larger batch). */
  private capacity = 0;
  private x = 0;
  private labels = 0;
  private rows = 0;
  private stats = 0;
  /** The byte split read in place by stepRows, copied into the module's memory once. */
  private images?: Uint8Array;
  private imagesAt = 0;
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
    const block = this.k.fd_block();
    this.z = this.alloc(block * classes);
    this.dy = this.alloc(block * classes);
    this.dyw = this.alloc(block * classes);
    this.xb = this.alloc(block * d);
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
    this.labels = this.alloc(rows);
    this.rows = this.alloc(rows);
    this.stats = this.alloc(rows * 3);
    this.capacity = rows;
  }

  /** Targets with label smoothing eps: eps / k off the label, 1 - eps + eps / k on it. */
  /**
   * The arguments both step kernels take after their inputs, for a batch of n: the layer
   * (n, d, classes, weights, bias), the smoothed targets, the loss's gradient scale (tf.mean
   * divides by n in float32) and where the gradients go.
   */
  private layerArgs(
    n: number,
  ): [number, number, number, number, number, number, number, number, number, number] {
    const { d, classes } = this;
    const off = this.plan.labelSmoothing / classes;
    const on = 1 - this.plan.labelSmoothing + off;
    const bias = d * classes * 4;
    return [n, d, classes, this.params, this.params + bias, on, off, 1 / n, this.grads, this.grads + bias];
  }

  /** The scratch buffers both step kernels end with. */
  private scratch(): [number, number, number, number] {
    return [this.z, this.dy, this.dyw, this.stats];
  }

  /** A step on n float rows (augmented batches, features): copied into the module's memory. */
  async step(x: Float32Array, y: Int32Array, lr: number): Promise<void> {
    const { d } = this;
    const n = y.length;
    this.reserve(n);
    this.view(this.x, n * d).set(x.subarray(0, n * d));
    new Int32Array(this.k.memory.buffer, this.labels, n).set(y);
    const correct = this.k.fd_step_floats(this.x, this.labels, ...this.layerArgs(n), ...this.scratch());
    this.finish(n, correct, lr);
  }

  /** A step on rows `rows` of a byte split, read in place (see StepRunner.stepRows). */
  async stepRows(images: Uint8Array, rows: Uint32Array, y: Int32Array, lr: number): Promise<void> {
    const n = y.length;
    this.reserve(n);
    if (this.images !== images) {
      // Once per run: the split's bytes (47 MB for Fashion-MNIST) into the module's memory.
      this.imagesAt = this.k.fd_alloc(images.length);
      if (this.imagesAt === 0) throw new Error('the fused dense step ran out of WebAssembly memory');
      new Uint8Array(this.k.memory.buffer, this.imagesAt, images.length).set(images);
      this.images = images;
    }
    new Uint32Array(this.k.memory.buffer, this.rows, n).set(rows);
    new Int32Array(this.k.memory.buffer, this.labels, n).set(y);
    const correct = this.k.fd_step_bytes(
      this.imagesAt,
      this.rows,
      this.labels,
      ...this.layerArgs(n),
      this.xb,
      ...this.scratch(),
    );
    this.finish(n, correct, lr);
  }

  /** The step's summed loss from its rows' statistics, then the update. */
  private finish(n: number, correct: number, lr: number): void {
    // Per row: log(sum exp(z - max)) + max - sum_j t_j z_j, the cross-entropy, in double.
    const stats = this.view(this.stats, n * 3);
    let loss = 0;
    for (let i = 0; i < n; i++) loss += Math.log(stats[3 * i + 1]) + stats[3 * i] - stats[3 * i + 2];
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
