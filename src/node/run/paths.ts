/**
 * A run directory is untrusted input: it may have been downloaded, unpacked from an archive or
 * edited by hand. Every path and every file the run's own files name goes through this module
 * before it is read, renamed or removed:
 *
 *   - runPath: a path named by a manifest, a staged manifest or model.json must be relative,
 *     '/'-separated, without '..', '.', empty or absolute parts or backslashes, and stay
 *     inside the run directory. Otherwise a manifest listing '../victim.txt' would make a
 *     roll-forward overwrite, or a replacing save delete, a file outside the run.
 *   - checkParents: no folder between the run directory and a file may be a symbolic link,
 *     which would lead a rename or a read out of the run by another way.
 *   - readRunFile and hashRunFile read regular files only (a link to /dev/zero, a FIFO or a
 *     device is refused without being read, and a FIFO is opened without blocking), and never
 *     more than the caller's limit, so a damaged run cannot make a load read gigabytes.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, lstat, open } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../core/errors.js';

const MB = 1024 * 1024;

/** Caps on the files a run directory holds: generous, far above what `imgclf train` writes. */
export const LIMITS = {
  manifest: 16 * MB,
  metadata: 16 * MB,
  model: 64 * MB,
  state: 16 * MB,
  metrics: 64 * MB,
  /** weights.bin and optimizer.bin: a knn model stores its training set, so this is large. */
  weights: 2048 * MB,
} as const;

/** How much to read at a time when hashing, so a large file never sits in memory at once. */
const CHUNK = 4 * MB;

function sizeText(bytes: number): string {
  return bytes >= MB ? `${(bytes / MB).toFixed(0)} MB` : `${bytes} bytes`;
}

/**
 * `rel` (a path a run's own files name) as a path inside the run directory `dir`, or a
 * UserError naming `source` (the file that named it). The only path form accepted is the one
 * imgclf writes: relative, '/'-separated parts, none empty, '.' or '..'.
 */
export function runPath(dir: string, rel: unknown, source: string): string {
  const refuse = (why: string) =>
    new UserError(
      `${source} names the file ${JSON.stringify(rel)}, ${why}; the run directory was damaged or tampered with: restore it or retrain`,
    );
  if (typeof rel !== 'string' || rel === '') throw refuse('which is not a file name');
  if (rel.includes('\\') || rel.includes('\0')) throw refuse('which has a backslash or a NUL byte');
  if (rel.startsWith('/') || /^[A-Za-z]:/.test(rel)) throw refuse('which is an absolute path');
  for (const part of rel.split('/')) {
    if (part === '' || part === '.' || part === '..')
      throw refuse("which has an empty, '.' or '..' part (a run's files stay inside it)");
  }
  const root = path.resolve(dir);
  const full = path.resolve(root, rel);
  // The checks above already keep the path inside; this says so in one place for the reader.
  if (!full.startsWith(root + path.sep)) throw refuse('which is outside the run directory');
  return full;
}

/**
 * Refuses when a folder between `dir` and `dir/rel` is a symbolic link (or not a folder): a
 * rename or read through it would leave the run directory. Folders that do not exist yet are
 * fine (a save creates them).
 */
export async function checkParents(dir: string, rel: string): Promise<void> {
  const parts = rel.split('/').slice(0, -1);
  let at = dir;
  for (const part of parts) {
    at = path.join(at, part);
    let s;
    try {
      s = await lstat(at);
    } catch {
      return;
    }
    if (s.isSymbolicLink() || !s.isDirectory())
      throw new UserError(
        `${at} is ${s.isSymbolicLink() ? 'a symbolic link' : 'not a folder'}; a run directory holds its files and folders themselves: restore it or retrain`,
      );
  }
}

/**
 * Opens `dir/rel` for reading if it is a regular file (not a link, FIFO, device or folder).
 * Returns undefined when it does not exist. O_NONBLOCK keeps a FIFO swapped in after the
 * check from blocking the open; O_NOFOLLOW refuses a link swapped in; fstat confirms the file
 * opened is the one checked.
 */
async function openRegular(
  dir: string,
  rel: string,
): Promise<{ handle: FileHandle; size: number } | undefined> {
  const file = path.join(dir, rel);
  await checkParents(dir, rel);
  let before;
  try {
    before = await lstat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const notRegular = (what: string) =>
    new UserError(
      `${file} is ${what}, not a regular file; a run directory holds its files themselves: restore it or retrain`,
    );
  if (before.isSymbolicLink()) throw notRegular('a symbolic link');
  if (!before.isFile()) throw notRegular(before.isDirectory() ? 'a folder' : 'a device, pipe or socket');
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ELOOP') throw notRegular('a symbolic link');
      throw err;
    },
  );
  const s = await handle.stat();
  if (!s.isFile() || s.ino !== before.ino || s.dev !== before.dev) {
    await handle.close();
    throw notRegular('changing while it is read');
  }
  return { handle, size: s.size };
}

/**
 * The bytes of the regular file `dir/rel`, at most `limit` of them, or undefined when it does
 * not exist. A larger file is refused as "too large" (`what` names it) without being read;
 * `checkSize` may refuse the file by its size before it is read, too.
 */
export async function readRunFile(
  dir: string,
  rel: string,
  limit: number,
  what: string,
  checkSize?: (size: number) => void,
): Promise<Buffer | undefined> {
  const opened = await openRegular(dir, rel);
  if (!opened) return undefined;
  const { handle, size } = opened;
  const tooLarge = (n: number) =>
    new UserError(
      `${path.join(dir, rel)} is too large (${sizeText(n)}, more than the ${sizeText(limit)} ${what} may take); it is not a file imgclf wrote: restore the run directory or retrain`,
    );
  try {
    checkSize?.(size);
    if (size > limit) throw tooLarge(size);
    // Read at most limit + 1 bytes: a file that grew since fstat is caught, never read whole.
    const buf = Buffer.alloc(Math.min(size, limit) + 1);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await handle.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got > limit) throw tooLarge(got);
    return buf.subarray(0, got);
  } finally {
    await handle.close();
  }
}

/**
 * The size and SHA-256 of the regular file `dir/rel`, reading at most `expected + 1` bytes in
 * chunks: a file of another size is reported by its size alone, unread. Undefined when absent.
 */
export async function hashRunFile(
  dir: string,
  rel: string,
  expected: number,
): Promise<{ size: number; sha256: string } | undefined> {
  const opened = await openRegular(dir, rel);
  if (!opened) return undefined;
  const { handle, size } = opened;
  try {
    if (size !== expected) return { size, sha256: '' };
    const hash = createHash('sha256');
    const buf = Buffer.alloc(Math.min(CHUNK, expected + 1));
    let got = 0;
    while (got <= expected) {
      const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, expected + 1 - got), got);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      got += bytesRead;
    }
    return { size: got, sha256: hash.digest('hex') };
  } finally {
    await handle.close();
  }
}
