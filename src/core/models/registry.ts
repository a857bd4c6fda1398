/**
 * The model registry: a map from name to factory, as timm has. The CLI's --model choices and
 * the per-model tests iterate `list()`; `create` fails loudly on unknown names.
 */
import { checkValue, type Declared, didYouMean, ruleOf, type ValueOf } from '../declare.js';
import { UserError } from '../errors.js';
import type { ModelDefaults } from '../settings.js';
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
  /** Model options (e.g. hidden sizes), as the model's `options` declare them; checked by `create`. */
  options?: Record<string, unknown>;
}

/**
 * Training settings a model family works best with (core/settings.ts declares which ones a
 * model may set). The plan (core/plan.ts) starts from the global defaults, then takes these,
 * then the user's flags: only what differs goes here.
 */
export type { ModelDefaults };

/** One option a model takes (hidden sizes, dropout, ...): type, default, range, help. */
export interface OptionDecl extends Declared {
  /** The `imgclf train` flag that sets it, when it has one of its own (`--knn-k <k>`). */
  flag?: string;
}

export type OptionDecls = Readonly<Record<string, OptionDecl>>;

/** A model's options with their declared types, every one with its default filled in. */
export type OptionValues<D extends OptionDecls> = { [K in keyof D]: ValueOf<D[K]> };

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
  /**
   * The options the model takes: `create` rejects any other and any value out of its range,
   * `imgclf models` and the CLI's flags describe them from here.
   */
  options: OptionDecls;
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

/**
 * The declaration of option `key` of model `name`; an option the model does not take fails with
 * one line naming the ones it does, and the nearest.
 */
export function optionDecl(name: string, key: string): OptionDecl {
  const options = getEntry(name).options;
  const decl = Object.hasOwn(options, key) ? options[key] : undefined;
  if (decl) return decl;
  const known = Object.keys(options);
  const takes = known.length ? `it takes ${known.join(', ')}` : 'it takes none';
  throw new UserError(`unknown option '${key}' for model ${name}; ${takes}${didYouMean(key, known)}`);
}

/**
 * Checks `options` for model `name`: each must be one the model declares, with a value in its
 * range. `label` names an option in the message (the CLI names its flag); by default
 * "cnn option 'dropout'".
 */
export function checkOptions(
  name: string,
  options: Record<string, unknown> = {},
  label: (key: string) => string = (key) => `${name} option '${key}'`,
): void {
  for (const [key, value] of Object.entries(options)) {
    if (value !== undefined) checkValue(optionDecl(name, key), value, label(key));
  }
}

/**
 * A model's options with the declared defaults filled in, checked: what a model's factory
 * builds from.
 */
export function optionValues<D extends OptionDecls>(
  name: string,
  decls: D,
  options: Record<string, unknown> = {},
): OptionValues<D> {
  checkOptions(name, options);
  const values: Record<string, unknown> = {};
  for (const [key, decl] of Object.entries(decls)) values[key] = options[key] ?? decl.default;
  // Each value was checked against its declaration above, or is the declared default.
  return values as OptionValues<D>;
}

/** An option's help with its range and default: "dropout rate ... (in [0, 1); default 0.1)". */
export function optionHelp(d: OptionDecl): string {
  const rule = d.type === 'boolean' ? 'on or off' : ruleOf(d);
  const dflt = Array.isArray(d.default) ? d.default.join(',') : String(d.default);
  return `${d.help} (${rule}; default ${dflt})`;
}

/** One line per option of model `name`: "dropout: dropout rate ... (in [0, 1); default 0.1)". */
export function describeOptions(name: string): string[] {
  return Object.entries(getEntry(name).options).map(([key, d]) => `${key}: ${optionHelp(d)}`);
}

/** Builds model `name`; an unknown option or a value out of range fails with one line first. */
export function create(name: string, spec: ModelSpec): Net {
  const entry = getEntry(name);
  checkOptions(name, spec.options);
  return entry.create(spec);
}

/** Rebuilds a model saved in a run directory. */
export function loadNet(name: string, artifacts: NetArtifacts): Promise<Net> {
  const entry = registry.get(name);
  return entry?.load ? entry.load(artifacts) : loadLayersNet(name, artifacts);
}

export function list(): ModelEntry[] {
  return [...registry.values()];
}
