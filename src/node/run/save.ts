/**
 * All-or-nothing saves of a run directory.
 *
 * A save replaces several files at once (the model, its metadata, the metrics, the
 * checkpoint). Renaming them one by one is atomic per file only: a kill between two renames
 * would leave a directory that mixes two saves and still loads. So a save goes in two steps:
 *
 *   1. stage: every file of the save is written into DIR/.staging/ and flushed, and then
 *      DIR/.staging/manifest.json, which lists every file of the run with its size and
 *      SHA-256. Until that manifest is on disk the save does not exist: a crash leaves the
 *      previous save untouched, and the stray staging folder is removed on the next load.
 *   2. commit: the staged files are renamed into place, the manifest last, and DIR flushed.
 *      A crash in this step is finished on the next load ("roll forward"): the staged
 *      manifest says exactly what the save holds.
 *
 * Loading checks every file the manifest lists, so a directory that mixes two saves (or was
 * edited or damaged since) is refused with one clear line instead of loading half of each.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../core/errors.js';
import {
  isManifest,
  type Manifest,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  type ManifestEntry,
  manifestText,
  METADATA_FILE,
} from '../../core/run-format.js';
import { diskErrorReason, fsyncDir, writeFileSynced } from '../fs.js';
import { LOCK_FILE } from './lock.js';
import { checkParents, hashRunFile, LIMITS, readRunFile, runPath } from './paths.js';

// The manifest's name and format are the core's (core/run-format.ts): the page writes it too.
export { MANIFEST_FILE, type Manifest, type ManifestEntry };
export const STAGING_DIR = '.staging';

/** Top-level names a save never holds: the manifest itself, the staging folder, the lock. */
const RESERVED = new Set([MANIFEST_FILE, STAGING_DIR, LOCK_FILE]);

/** The temp file of an atomic write (node/fs.ts): `<name>.<8 hex digits>.part`. */
export const TEMP_FILE = /\.[0-9a-f]{8}\.part$/;

/** The files of one save, by path relative to the run directory. */
export type SaveFiles = Map<string, string | Uint8Array>;

function entryOf(data: string | Uint8Array): ManifestEntry {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return { size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/**
 * The manifest of a set of files, for a subfolder that must load as a run directory of its
 * own (final/): it is saved as one more file of the save.
 */
export function manifestOf(files: SaveFiles, epoch: number): string {
  const entries: Record<string, ManifestEntry> = {};
  for (const [rel, data] of files) entries[rel] = entryOf(data);
  const m: Manifest = { format: MANIFEST_FORMAT, epoch, saved: new Date().toISOString(), files: entries };
  return manifestText(m);
}

/** A manifest that does not parse: a damaged run, or a staged save cut short by a crash. */
class CorruptManifestError extends UserError {}

/**
 * Reads the manifest `rel` of the run directory `dir` (its own, or the staged one): undefined
 * when there is none. Every path it lists is checked (paths.ts runPath) before anyone renames,
 * removes or reads by it: a manifest naming '../x' is refused with one line, whoever made it.
 */
async function readManifest(dir: string, rel: string): Promise<Manifest | undefined> {
  const file = path.join(dir, rel);
  const bytes = await readRunFile(dir, rel, LIMITS.manifest, 'a manifest');
  if (!bytes) return undefined;
  let m: Manifest | undefined;
  try {
    m = JSON.parse(bytes.toString('utf8')) as Manifest;
  } catch {
    // Reported below with any other malformed manifest.
  }
  if (!isManifest(m))
    throw new CorruptManifestError(`${file} is corrupt or truncated; restore the run directory or retrain`);
  for (const listed of Object.keys(m.files)) {
    runPath(dir, listed, file);
    if (RESERVED.has(listed.split('/')[0]))
      throw new UserError(
        `${file} lists ${listed}, a name imgclf keeps for itself; the run directory was damaged or tampered with: restore it or retrain`,
      );
  }
  return m;
}

/** The manifest of a run directory, or undefined for a run written before manifests. */
export function runManifest(dir: string): Promise<Manifest | undefined> {
  return readManifest(dir, MANIFEST_FILE);
}

/** Every folder from `dir` down to each file's parent, deepest first (for flushing). */
function foldersOf(dir: string, rels: string[]): string[] {
  const out = new Set<string>();
  for (const rel of rels) {
    let d = path.dirname(path.join(dir, rel));
    while (d.length >= dir.length) {
      out.add(d);
      if (d === dir) break;
      d = path.dirname(d);
    }
  }
  return [...out].sort((a, b) => b.length - a.length);
}

export interface CommitOptions {
  /** Epochs finished (default: the previous save's). */
  epoch?: number;
  /**
   * This save replaces the run in `dir` as a whole (`train --force`): the previous run's files
   * that the save does not name are removed once it is committed, not before, so a run that
   * fails before its first save leaves the previous run as it was.
   */
  replace?: boolean;
}

/**
 * A full disk, a used-up quota, a read-only file system or a permission while saving: one line
 * that says so and that the previous save is intact (the staged files are gone by then).
 */
function saveError(err: unknown, dir: string, previous: Manifest | undefined): unknown {
  const reason = diskErrorReason(err);
  if (!reason) return err;
  const kept = previous ? `the previous save (epoch ${previous.epoch}) is kept` : 'nothing was saved';
  return new UserError(
    `cannot save ${dir}: ${reason}; ${kept}; free some space (or fix the permissions) and run again`,
  );
}

/**
 * Saves `files` into `dir` as one unit. Files the save does not name keep their previous
 * manifest entries (unless it replaces the run). On any failure (a full disk, a permission)
 * the previous save stays as it was and nothing of this one is left behind.
 */
export async function commitSave(dir: string, files: SaveFiles, opts: CommitOptions = {}): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw saveError(err, dir, undefined);
  }
  await recoverRun(dir);
  const previous = await runManifest(dir).catch((err) => {
    if (opts.replace) return undefined; // A damaged run is being replaced anyway.
    throw err;
  });
  for (const rel of files.keys()) {
    // The caller names these files, but a name made from input must not leave the run either.
    runPath(dir, rel, 'a save');
    if (RESERVED.has(rel.split('/')[0])) throw new Error(`a save cannot hold ${rel}`);
  }
  const staging = path.join(dir, STAGING_DIR);
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    epoch: opts.epoch ?? previous?.epoch ?? 0,
    saved: new Date().toISOString(),
    files: opts.replace ? {} : { ...(previous?.files ?? {}) },
  };
  try {
    await rm(staging, { recursive: true, force: true });
    for (const [rel, data] of files) {
      const target = path.join(staging, rel);
      await mkdir(path.dirname(target), { recursive: true });
      await writeFileSynced(target, data);
      manifest.files[rel] = entryOf(data);
    }
    for (const d of foldersOf(staging, [...files.keys()])) await fsyncDir(d);
    // The save exists from this point on.
    await writeFileSynced(path.join(staging, MANIFEST_FILE), manifestText(manifest));
    await fsyncDir(staging);
  } catch (err) {
    await rm(staging, { recursive: true, force: true }).catch(() => {});
    throw saveError(err, dir, previous);
  }
  await finishStaged(dir, manifest);
  if (opts.replace && previous) {
    for (const rel of Object.keys(previous.files)) {
      if (rel in manifest.files) continue;
      // readManifest checked the path; a folder on the way must not be a link out of the run.
      await checkParents(dir, rel);
      await rm(runPath(dir, rel, path.join(dir, MANIFEST_FILE)), { force: true });
    }
  }
}

/** Step 2: moves the staged files into place, the manifest last. Safe to repeat. */
async function finishStaged(dir: string, manifest: Manifest): Promise<void> {
  const staging = path.join(dir, STAGING_DIR);
  const moved: string[] = [];
  for (const rel of Object.keys(manifest.files)) {
    // readManifest checked each path; the folders on both sides must be folders, not links.
    await checkParents(staging, rel);
    await checkParents(dir, rel);
    const from = path.join(staging, rel);
    const s = await lstat(from).catch(() => undefined);
    if (!s) continue; // Not part of this save, or already moved.
    if (!s.isFile())
      throw new UserError(`${from} is not a regular file; remove ${staging} to keep the previous save`);
    const to = path.join(dir, rel);
    await mkdir(path.dirname(to), { recursive: true });
    await rename(from, to);
    moved.push(rel);
  }
  for (const d of foldersOf(dir, moved)) await fsyncDir(d);
  await rename(path.join(staging, MANIFEST_FILE), path.join(dir, MANIFEST_FILE));
  await fsyncDir(dir);
  await rm(staging, { recursive: true, force: true });
}

/**
 * Removes the temp files (`*.part`) an atomic write killed before its rename leaves behind
 * (node/fs.ts writeFileAtomic: the report's pictures), in `dir` and its subfolders. Best
 * effort: a read-only run directory keeps them, harmlessly.
 */
export async function removeTempFiles(dir: string): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch {
    return;
  }
  for (const e of entries) {
    if (e.isFile() && TEMP_FILE.test(e.name))
      await rm(path.join(e.parentPath, e.name), { force: true }).catch(() => {});
  }
}

/**
 * Finishes or discards a save that was interrupted: a staged manifest means the save was
 * complete and is moved into place; staging without one (or with one cut short) is discarded.
 * A staged manifest that names files outside the run is refused, and nothing is moved.
 * Returns a line to show when something was done. Only the run's one writer (or a reader
 * while no writer holds the lock, node/run/lock.ts) may call this.
 */
export async function recoverRun(dir: string): Promise<string | undefined> {
  await removeTempFiles(dir);
  const staging = path.join(dir, STAGING_DIR);
  if (!existsSync(staging)) return undefined;
  let staged: Manifest | undefined;
  try {
    staged = await readManifest(dir, `${STAGING_DIR}/${MANIFEST_FILE}`);
  } catch (err) {
    // A manifest cut short is a crash while it was written: that save never existed.
    if (!(err instanceof CorruptManifestError)) throw err;
    staged = undefined;
  }
  try {
    if (!staged) {
      await rm(staging, { recursive: true, force: true });
      return `${dir}: discarded an unfinished save (the run keeps its previous state)`;
    }
    await finishStaged(dir, staged);
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(
      `${dir}: cannot finish an interrupted save (${(err as Error).message}); the run directory needs write access`,
    );
  }
  return `${dir}: finished an interrupted save of epoch ${staged.epoch}`;
}

/**
 * A file that does not match the manifest: the run was changed, or a reader met a save being
 * committed (its files are renamed into place before its manifest), which a reader retries.
 */
export class MixedSaveError extends UserError {}

function mixed(dir: string, rel: string, manifest: Manifest): MixedSaveError {
  return new MixedSaveError(
    `${path.join(dir, rel)} does not match ${path.join(dir, MANIFEST_FILE)} (epoch ${manifest.epoch}): the run directory mixes two saves or was changed; restore it or retrain`,
  );
}

/**
 * Checks bytes read from `dir/rel` against `manifest` (when it lists the file): a load uses
 * exactly the bytes the manifest vouches for, even if a save is committed while it reads.
 */
export function checkListed(dir: string, rel: string, bytes: Uint8Array, manifest?: Manifest): void {
  const want = manifest?.files[rel];
  if (!want) return;
  const got = entryOf(bytes);
  if (got.size !== want.size || got.sha256 !== want.sha256) throw mixed(dir, rel, manifest!);
}

/** Checks a listed file's size before it is read (see checkListed). */
export function checkListedSize(dir: string, rel: string, size: number, manifest?: Manifest): void {
  const want = manifest?.files[rel];
  if (want && want.size !== size) throw mixed(dir, rel, manifest!);
}

/**
 * Checks every file the manifest lists against its size and SHA-256. A run written before
 * manifests has none and passes. `under` limits the check to files in that subfolder. Each
 * file is read in chunks and never past the size the manifest lists (paths.ts hashRunFile).
 */
export async function verifyRun(dir: string, under = ''): Promise<Manifest | undefined> {
  const manifest = await runManifest(dir);
  if (!manifest) return undefined;
  for (const [rel, want] of Object.entries(manifest.files)) {
    if (under && !rel.startsWith(under + '/')) continue;
    const file = path.join(dir, rel);
    const got = await hashRunFile(dir, rel, want.size);
    if (!got) {
      // Also what a reader meets when a replacing save removes the old run's files.
      throw new MixedSaveError(
        `${file} is missing but ${path.join(dir, MANIFEST_FILE)} lists it; the run directory is incomplete`,
      );
    }
    if (got.size !== want.size || got.sha256 !== want.sha256) throw mixed(dir, rel, manifest);
  }
  return manifest;
}

/** Whether `dir` holds a run (a manifest, or the metadata of a run written before manifests). */
export function holdsRun(dir: string): boolean {
  return existsSync(path.join(dir, MANIFEST_FILE)) || existsSync(path.join(dir, METADATA_FILE));
}
