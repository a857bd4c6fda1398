/**
 * The model registry: a map from name to factory, as timm has. The CLI's --model choices and
 * the per-model tests iterate `list()`; `create` fails loudly on unknown names.
 */
import { UserError } from '../errors.js';
import type { ImageShape } from '../data/dataset.js';
import type { Optimizer } from '../optim/optimizers.js';
import { loadLayersNet, type Net, type NetArtifacts } from './net.js';

/**
 * What a model is built for, always taken from the dataset: a model must read its input size,
 * channel count and class count from here and hard-code none of them, because `--data` feeds
 * it image folders and CSVs of any size, gray or RGB, with any number of classes.
 */
export interface ModelSpec {
  /** Input image shape [H, W, C], taken from the dataset (C = 1 gray or 3 RGB). */
  inputShape: ImageShape;
  /** Number of classes (2 to 256), taken from the dataset. */
  numClasses: number;
  /** Seed for weight initialization. */
  seed: number;
  /** Model-specific options (e.g. hidden sizes), already validated by the CLI. */
  options?: Record<string, unknown>;
}

/**
 * Training settings a model family works best with. The plan (core/plan.ts) starts from its
 * global defaults, then takes these, then the user's flags: only what differs goes here.
 */
export interface ModelDefaults {
  epochs?: number;
  lr?: number;
  optimizer?: string;
  batchSize?: number;
  /** LR schedule name (core/optim/schedule.ts). */
  schedule?: string;
  /** Warmup length in epochs (fractions allowed). */
  warmup?: number;
  momentum?: number;
  nesterov?: boolean;
  weightDecay?: number;
  labelSmoothing?: number;
  /** Batch augmentation (random crop with padding + horizontal flip). */
  augment?: boolean;
}

export interface ModelEntry {
  name: string;
  description: string;
  /** Builds a model whose output is the logits (no softmax): the loss applies it stably. */
  create(spec: ModelSpec): Net;
  /** Rebuilds a saved model; default: a tfjs layers model. */
  load?(artifacts: NetArtifacts): Promise<Net>;
  /** The model's own parameter update, chosen with `--optimizer own` (softmax-scratch's). */
  ownOptimizer?: (lr: number) => Optimizer;
  /**
   * The model learns by storing the training set (knn), not by gradient steps: it has no
   * trainable variables, so trainers memorize it instead of fitting it.
   */
  memorizes?: boolean;
  defaults: ModelDefaults;
}

/**
 * A nonzero seed for the initializer of layer `index`. tfjs treats seed 0 as "no seed" (it
 * tests `seed ? seed : Math.random()`), so `--seed 0` would silently not be reproducible;
 * distinct layers also need distinct seeds or they would start from identical values.
 */
export function layerSeed(seed: number, index: number): number {
  return seed * 1009 + index + 1;
}

const registry = new Map<string, ModelEntry>();

export function register(entry: ModelEntry): void {
  if (registry.has(entry.name)) throw new Error(`model '${entry.name}' is registered twice`);
  registry.set(entry.name, entry);
}

export function getEntry(name: string): ModelEntry {
  const entry = registry.get(name);
  if (!entry)
    throw new UserError(`unknown model '${name}'; choose one of: ${[...registry.keys()].join(', ')}`);
  return entry;
}

export function create(name: string, spec: ModelSpec): Net {
  return getEntry(name).create(spec);
}

/** Rebuilds a model saved in a run directory. */
export function loadNet(name: string, artifacts: NetArtifacts): Promise<Net> {
  const entry = registry.get(name);
  return entry?.load ? entry.load(artifacts) : loadLayersNet(name, artifacts);
}

export function list(): ModelEntry[] {
  return [...registry.values()];
}
