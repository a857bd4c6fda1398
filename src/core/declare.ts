/**
 * Declared values: the one description of a training setting (core/settings.ts) or a model
 * option (each model's `options` in core/models/) that everything else reads. From a
 * declaration come its TypeScript type (`ValueOf`), the check of a value (`checkValue`), the
 * parse of a command-line word (`parseText`) and the phrases of help and errors, so a message
 * always states the range that is actually enforced.
 */
import { UserError } from './errors.js';

export type ValueType = 'number' | 'int' | 'string' | 'boolean' | 'enum' | 'list';

export interface Declared {
  type: ValueType;
  /**
   * int, number: the smallest value allowed; list: the smallest item. (Lists hold whole
   * numbers: hidden sizes, filter counts.)
   */
  min?: number;
  /** The smallest value itself is not allowed (a learning rate is above 0). */
  minExclusive?: boolean;
  /** int, number: the largest value allowed; list: the largest item. */
  max?: number;
  /** The largest value itself is not allowed (momentum is below 1). */
  maxExclusive?: boolean;
  /** enum: the values allowed. */
  choices?: readonly (string | number)[];
  /** enum: the thing a value names, for "unknown optimizer 'x'; choose one of: ...". */
  noun?: string;
  /** What the number counts, in messages: "a whole number of epochs >= 1". */
  unit?: string;
  /** list: what a command-line value looks like, for "expects sizes like 256 or 256,128". */
  example?: string;
  /** Used when the value is not given. */
  default?: unknown;
  /** One line of help: the meaning, with units; choices and the default are added to it. */
  help: string;
}

/** The TypeScript type of a declared value. */
export type ValueOf<D> = D extends { type: 'enum'; choices: readonly (infer C)[] }
  ? C
  : D extends { type: 'int' | 'number' }
    ? number
    : D extends { type: 'boolean' }
      ? boolean
      : D extends { type: 'list' }
        ? number[]
        : string;

/** "a, b or c". */
export function orList(items: readonly unknown[]): string {
  const words = items.map(String);
  return words.length <= 1 ? words.join('') : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`;
}

/** What a valid value is, as the end of "--lr must be ...". */
export function ruleOf(d: Declared): string {
  const { min, max } = d;
  const unit = d.unit ? ` ${d.unit}` : '';
  switch (d.type) {
    case 'int':
    case 'list': {
      const whole =
        d.type === 'list' ? 'a list of whole numbers' : `a whole number${d.unit ? ` of${unit}` : ''}`;
      if (min !== undefined && max !== undefined) return `${whole} from ${min} to ${max}`;
      if (min !== undefined) return `${whole} >= ${min}`;
      return whole;
    }
    case 'number':
      if (min !== undefined && max !== undefined) {
        if (d.minExclusive && !d.maxExclusive)
          return `${max <= 1 ? 'a fraction ' : ''}above ${min} and at most ${max}`;
        return `in ${d.minExclusive ? '(' : '['}${min}, ${max}${d.maxExclusive ? ')' : ']'}`;
      }
      if (min === 0 && d.minExclusive) return 'a positive number';
      if (min !== undefined) return `${d.minExclusive ? '>' : '>='} ${min}${unit}`;
      return 'a number';
    case 'enum':
      return orList(d.choices ?? []);
    case 'boolean':
      return 'true or false';
    case 'string':
      return 'text';
  }
}

function shown(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (Array.isArray(value)) return value.map(String).join(',');
  return String(value);
}

function inRange(d: Declared, n: number): boolean {
  if (d.min !== undefined && (d.minExclusive ? n <= d.min : n < d.min)) return false;
  if (d.max !== undefined && (d.maxExclusive ? n >= d.max : n > d.max)) return false;
  return true;
}

function isValid(d: Declared, value: unknown): boolean {
  switch (d.type) {
    case 'int':
      return typeof value === 'number' && Number.isInteger(value) && inRange(d, value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) && inRange(d, value);
    case 'list':
      return (
        Array.isArray(value) &&
        value.length > 0 &&
        value.every((v) => typeof v === 'number' && Number.isInteger(v) && inRange(d, v))
      );
    case 'enum':
      return (d.choices ?? []).includes(value as string | number);
    case 'boolean':
      return typeof value === 'boolean';
    case 'string':
      return typeof value === 'string';
  }
}

/**
 * Fails with one line when `value` is not what `d` declares; `label` names it as the user
 * gave it (a flag such as `--lr`, or "cnn option 'dropout'").
 */
export function checkValue(d: Declared, value: unknown, label: string): void {
  if (isValid(d, value)) return;
  if (d.type === 'enum' && d.noun)
    throw new UserError(`unknown ${d.noun} ${shown(value)}; choose one of: ${(d.choices ?? []).join(', ')}`);
  throw new UserError(`${label} must be ${ruleOf(d)} (got ${shown(value)})`);
}

/**
 * The value a command-line word gives, of the declared type; a word that is not one fails with
 * one line ("--epochs expects a whole number, got 'many'"). The range is checked later, with
 * the rest of the plan.
 */
export function parseText(d: Declared, text: string, label: string): unknown {
  const numeric =
    d.type === 'int' || d.type === 'number' || (d.type === 'enum' && typeof d.choices?.[0] === 'number');
  if (numeric) {
    const whole = d.type !== 'number';
    const n = Number(text);
    if (text.trim() === '' || !Number.isFinite(n) || (whole && !Number.isInteger(n)))
      throw new UserError(`${label} expects ${whole ? 'a whole number' : 'a number'}, got '${text}'`);
    return n;
  }
  if (d.type === 'list') {
    const words = text.split(',').map((w) => w.trim());
    if (words.some((w) => w === '' || !Number.isInteger(Number(w))))
      throw new UserError(`${label} expects ${d.example ?? 'whole numbers like 16,32'}, got '${text}'`);
    return words.map(Number);
  }
  if (d.type === 'boolean') {
    if (text === 'true' || text === 'false') return text === 'true';
    throw new UserError(`${label} expects true or false, got '${text}'`);
  }
  return text;
}

/** Edits (insert, delete, replace, case ignored) between two names. */
function distance(a: string, b: string): number {
  const [s, t] = [a.toLowerCase(), b.toLowerCase()];
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const row = [i];
    for (let j = 1; j <= t.length; j++)
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (s[i - 1] === t[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[t.length];
}

/**
 * The known name `name` is most likely a misspelling of, or undefined when none is close (at
 * most a third of its letters, and at least 2, differ).
 */
export function nearest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const k of known) {
    const d = distance(name, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best;
}

/** "; did you mean 'x'?" when a known name is close to `name`, else "". */
export function didYouMean(name: string, known: readonly string[]): string {
  const near = nearest(name, known);
  return near === undefined ? '' : `; did you mean '${near}'?`;
}

/** "--flag-name" for a camelCase name. */
export function flagOf(name: string): string {
  return `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}
