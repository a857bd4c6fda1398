/**
 * One writer per run directory. `train --out DIR` and `train --resume DIR` take DIR/.lock
 * before they read or write anything there, and give it back when they end (also on Ctrl-C,
 * and on a second Ctrl-C's process.exit). Two trainings into one directory would otherwise
 * stage their saves into the same .staging/ and remove each other's files mid-save.
 *
 * The lock is a file created only if absent (open with 'wx'), holding who holds it:
 * {"pid": 1234, "host": "box", "started": "2026-12-01T10:00:00.000Z"}. A lock whose process
 * is gone (same host, no such pid: a kill -9, a power cut) is stale and is taken over. A lock
 * of another host cannot be checked and counts as held; its message says how to remove it.
 *
 * Readers (evaluate, predict, serve) take no lock: they load the last committed save at any
 * time, and only leave an interrupted save's recovery to the writer while one is at work.
 * The lock file is none of the run's files: no manifest lists it (save.ts refuses the name).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, mkdir, open, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../../core/errors.js';
import { readRunFile } from './paths.js';

export const LOCK_FILE = '.lock';

/** What DIR/.lock holds. */
export interface LockHolder {
  pid: number;
  host: string;
  started: string;
}

export interface RunLock {
  dir: string;
  /** Removes the lock (if it is still this one's). Safe to call twice. */
  release(): Promise<void>;
}

/** Run directories this process holds, by resolved path: the text of each one's lock. */
const held = new Map<string, string>();

/**
 * How long an empty or unreadable lock is waited on before it counts as stale. imgclf links its
 * locks into place whole, so only another writer (an older imgclf created the file, then wrote
 * it) leaves one for a moment.
 */
const EMPTY_LOCK_GRACE_MS = 5000;

/**
 * The text of `dir`'s lock, or undefined when there is none. Read as any run file is (a
 * regular file, a few KB at most): a FIFO planted as the lock must not hang a training.
 */
async function lockText(dir: string): Promise<string | undefined> {
  return (await readRunFile(dir, LOCK_FILE, 4096, 'a lock file'))?.toString('utf8');
}

function parse(text: string): LockHolder | undefined {
  try {
    const h = JSON.parse(text) as LockHolder;
    if (Number.isSafeInteger(h.pid) && h.pid > 0 && typeof h.host === 'string') return h;
  } catch {
    // An empty or cut-short lock: the caller decides by its age.
  }
  return undefined;
}

/** Whether the process a lock names still runs (on another host: assumed so). */
function alive(h: LockHolder, key: string): boolean {
  if (h.host !== os.hostname()) return true;
  // Our own pid: a session of this process holds it, or the lock is left by an earlier process
  // that had the same pid (a container restarted): then it is stale.
  if (h.pid === process.pid) return held.has(key);
  try {
    process.kill(h.pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function busy(dir: string, h: LockHolder | undefined): UserError {
  const file = path.join(dir, LOCK_FILE);
  return new UserError(
    h
      ? `${dir} is being written by pid ${h.pid} on ${h.host} since ${h.started}; wait for it or stop it (if no such process is running, remove ${file})`
      : `${dir} is locked by ${file}, which names no process; if no training writes there, remove it`,
  );
}

/**
 * The live writer of `dir` other than this process, or undefined. Readers ask before they
 * finish an interrupted save: while a writer is at work, its staging folder is its own.
 */
export async function writerOf(dir: string): Promise<LockHolder | undefined> {
  // A lock that cannot be read was not made by a writer: the reader goes on as without one.
  const text = await lockText(dir).catch(() => undefined);
  if (text === undefined) return undefined;
  const h = parse(text);
  if (!h) return { pid: 0, host: '?', started: '?' }; // Being created: assume a writer.
  if (h.host === os.hostname() && h.pid === process.pid) return undefined;
  return alive(h, path.resolve(dir)) ? h : undefined;
}

/**
 * Moves a stale lock aside, unless another process took the lock over since `text` was read
 * (then its lock is put back).
 */
async function breakStale(file: string, text: string): Promise<void> {
  const aside = `${file}.${randomBytes(4).toString('hex')}.stale`;
  try {
    await rename(file, aside);
  } catch {
    return; // Another process broke it first, or it was released.
  }
  const moved = (
    await readRunFile(path.dirname(aside), path.basename(aside), 4096, 'a lock file').catch(() => undefined)
  )?.toString('utf8');
  if (moved !== undefined && moved !== text) await link(aside, file).catch(() => {});
  await rm(aside, { force: true });
}

/**
 * Takes the lock of run directory `dir` (created first unless `create` is false), or throws a
 * UserError naming the live holder. A stale lock is taken over, and `log` says so.
 */
export async function lockRun(
  dir: string,
  opts: { create?: boolean; log?: (message: string) => void } = {},
): Promise<RunLock> {
  const key = path.resolve(dir);
  const file = path.join(dir, LOCK_FILE);
  // The first folder mkdir made: removed again on release if the run saved nothing there.
  const created = opts.create === false ? undefined : await mkdir(dir, { recursive: true });
  const me: LockHolder = { pid: process.pid, host: os.hostname(), started: new Date().toISOString() };
  const text = JSON.stringify(me) + '\n';
  for (let broken = 0; ;) {
    let taken = false;
    // The lock is written whole to a file of its own, then linked into place: link fails when a
    // lock exists, so exactly one writer wins, and nobody ever reads a lock half written.
    const temp = `${file}.${randomBytes(4).toString('hex')}.new`;
    try {
      const handle = await open(temp, 'wx');
      try {
        await handle.writeFile(text);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await link(temp, file);
      taken = true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT')
        throw new UserError(
          `run directory ${dir} does not exist; train one with 'imgclf train --out ${dir}'`,
        );
      if (code !== 'EEXIST') {
        // A full disk, say: nothing is left behind to hold off the next training.
        await unlink(temp).catch(() => {});
        if (created) await rmdir(dir).catch(() => {});
        throw err;
      }
    } finally {
      await unlink(temp).catch(() => {});
    }
    if (taken) {
      held.set(key, text);
      return heldLock(dir, key, file, text, created);
    }
    const current = await lockText(dir);
    if (current === undefined) continue; // Released meanwhile: try again.
    const holder = parse(current);
    if (!holder) {
      const age = await stat(file).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      // Created a moment ago by a writer that writes after creating: ask again shortly.
      if (age < EMPTY_LOCK_GRACE_MS) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
    } else if (alive(holder, key)) {
      throw busy(dir, holder);
    }
    // Two processes may break the same stale lock; a third attempt means something else is wrong.
    if (++broken > 3) throw busy(dir, holder);
    opts.log?.(
      holder
        ? `${dir}: taking over the lock of pid ${holder.pid} (started ${holder.started}), which is no longer running`
        : `${dir}: removing a damaged lock file`,
    );
    await breakStale(file, current);
  }
}

function heldLock(dir: string, key: string, file: string, text: string, created?: string): RunLock {
  // process.exit (a second Ctrl-C) skips `finally`: the lock goes with the process anyway.
  const onExit = () => {
    try {
      if (readFileSync(file, 'utf8') === text) unlinkSync(file);
    } catch {
      // Already gone.
    }
  };
  process.on('exit', onExit);
  return {
    dir,
    release: async () => {
      if (held.get(key) !== text) return;
      held.delete(key);
      process.off('exit', onExit);
      // Only our own lock is removed: a lock taken over as stale belongs to its new holder.
      if ((await lockText(dir).catch(() => undefined)) === text) await unlink(file).catch(() => {});
      // A run that saved nothing leaves no empty folder behind.
      if (created) await rmdir(dir).catch(() => {});
    },
  };
}
