/**
 * The images a batch prediction reads, as one stream of paths in a stable order, never as a
 * list in memory: a photo library of millions of files costs the listing of one folder at a time.
 *
 * Each command-line PATH is one of:
 *   - a file: taken as it is, whatever its extension (a non-image becomes an error row);
 *   - a folder: every image under it (by extension, IMAGE_EXTENSIONS), recursively, ordered by
 *     the path relative to the folder (code-unit order, so the same on every machine and locale);
 *   - a glob ('photos/**\/*.jpg', quoted so the shell leaves it): its matches, sorted the same way;
 *   - `@list.txt`: the paths in the file, one a line; `-`: the paths on stdin, one a line. A line
 *     naming a folder is walked as a folder is; anything else on a line is taken literally.
 *
 * A shard (`--shard K/N`) keeps the paths whose position in that order is K mod N: every shard
 * walks the same order, so the shards of one input are disjoint and together cover it, as
 * Kubernetes Indexed Jobs, Slurm arrays and GNU parallel expect from an index and a count.
 */
import { createReadStream, existsSync, type Stats } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { glob, isDynamicPattern } from 'tinyglobby';
import { UserError } from '../../core/errors.js';

/** What a folder walk takes as an image: the formats node/image.ts decodes (SVG only on request). */
export const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff', '.avif']);

export function isImagePath(p: string): boolean {
  return IMAGE_EXTENSIONS.has(path.extname(p).toLowerCase());
}

/** Code-unit order: the same on every machine, unlike localeCompare. */
const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Every image under `dir`, depth first. A folder sorts as its name plus '/', so the order is
 * exactly that of the relative paths ('a.png' before 'a/x.png', as '.' < '/'). Hidden entries
 * (.git, .DS_Store) are left out, as image folders leave them out for training; symbolic links
 * are followed, except one leading back to a folder being walked (a loop).
 */
export async function* walkImages(dir: string, open: string[] = []): AsyncGenerator<string> {
  const real = await realpath(dir);
  if (open.includes(real)) return;
  open.push(real);
  const entries: { key: string; path: string; dir: boolean }[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      const s = await stat(p).catch(() => undefined);
      isDir = s?.isDirectory() ?? false;
      isFile = s?.isFile() ?? false;
    }
    if (isDir) entries.push({ key: `${e.name}/`, path: p, dir: true });
    else if (isFile && isImagePath(e.name)) entries.push({ key: e.name, path: p, dir: false });
  }
  entries.sort((a, b) => byCodeUnits(a.key, b.key));
  for (const e of entries) {
    if (e.dir) yield* walkImages(e.path, open);
    else yield e.path;
  }
  open.pop();
}

/** The non-blank lines of a stream, '\r\n' endings taken too. */
export async function* linesOf(input: Readable): AsyncGenerator<string> {
  const rl = createInterface({ input, crlfDelay: Infinity });
  for await (const line of rl) if (line.trim() !== '') yield line;
}

async function statOf(p: string): Promise<Stats | undefined> {
  return stat(p).catch(() => undefined);
}

/** One path from a list or stdin: a folder is walked, anything else is taken literally. */
async function* listed(p: string): AsyncGenerator<string> {
  if ((await statOf(p))?.isDirectory()) yield* walkImages(p);
  else yield p;
}

export interface ExpandOptions {
  /** What `-` reads (default process.stdin). */
  stdin?: Readable;
}

/** Every path the arguments name, in order (see the module's comment). */
export async function* expandPaths(args: string[], opts: ExpandOptions = {}): AsyncGenerator<string> {
  for (const arg of args) {
    if (arg === '-') {
      for await (const line of linesOf(opts.stdin ?? process.stdin)) yield* listed(line);
    } else if (arg.startsWith('@') && !existsSync(arg)) {
      const file = arg.slice(1);
      if (!(await statOf(file))?.isFile())
        throw new UserError(`${arg}: the list file ${file} does not exist (a line per image path expected)`);
      for await (const line of linesOf(createReadStream(file))) yield* listed(line);
    } else {
      const s = await statOf(arg);
      if (s?.isDirectory()) yield* walkImages(arg);
      else if (s || !isDynamicPattern(arg)) yield arg;
      else {
        // A glob's matches are listed whole (tinyglobby has no streaming form); a folder or a
        // list streams, so for millions of files pass the folder itself.
        const matches = await glob(arg, { onlyFiles: true, expandDirectories: false });
        if (matches.length === 0) throw new UserError(`${arg}: no files match this pattern`);
        yield* matches.sort(byCodeUnits);
      }
    }
  }
}

/** A shard of the input: position K mod N, K from 0. */
export interface Shard {
  index: number;
  count: number;
}

/** `--shard K/N` parsed and checked. */
export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!m) throw new UserError(`--shard expects K/N, the shard's index from 0 and the count (got '${text}')`);
  return checkShard(Number(m[1]), Number(m[2]), '--shard');
}

function checkShard(index: number, count: number, what: string): Shard {
  if (!(count >= 1)) throw new UserError(`${what}: the shard count must be at least 1 (got ${count})`);
  if (!(index >= 0 && index < count))
    throw new UserError(`${what}: the shard index must be 0 to ${count - 1} (got ${index})`);
  return { index, count };
}

/**
 * `--shards N` with the index from the scheduler: JOB_COMPLETION_INDEX (a Kubernetes Indexed
 * Job, from 0) or SLURM_ARRAY_TASK_ID (a Slurm array, less SLURM_ARRAY_TASK_MIN, so --array=1-4
 * works as well as --array=0-3).
 */
export function shardFromEnv(count: number, env: NodeJS.ProcessEnv = process.env): Shard {
  const k8s = env.JOB_COMPLETION_INDEX;
  const slurm = env.SLURM_ARRAY_TASK_ID;
  const whole = (name: string, v: string) => {
    if (!/^\d+$/.test(v.trim())) throw new UserError(`${name} must be a whole number (got '${v}')`);
    return Number(v);
  };
  if (k8s !== undefined && k8s !== '')
    return checkShard(whole('JOB_COMPLETION_INDEX', k8s), count, '--shards with JOB_COMPLETION_INDEX');
  if (slurm !== undefined && slurm !== '') {
    const min = env.SLURM_ARRAY_TASK_MIN ? whole('SLURM_ARRAY_TASK_MIN', env.SLURM_ARRAY_TASK_MIN) : 0;
    return checkShard(whole('SLURM_ARRAY_TASK_ID', slurm) - min, count, '--shards with SLURM_ARRAY_TASK_ID');
  }
  throw new UserError(
    '--shards N takes the shard index from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID, and neither is set; give --shard K/N instead',
  );
}

/** The paths of `shard`, by position in the whole stream. */
export async function* inShard(paths: AsyncIterable<string>, shard?: Shard): AsyncGenerator<string> {
  if (!shard || shard.count === 1) return yield* paths;
  let i = 0;
  for await (const p of paths) if (i++ % shard.count === shard.index) yield p;
}
