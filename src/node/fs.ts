/** File helpers (Node only). */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/**
 * Flushes a folder's entries (a rename, a new file) to disk. Without it, a power cut after a
 * rename may bring back the old name. Platforms that cannot open a folder (Windows) skip it.
 */
export async function fsyncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
  } catch {
    return;
  }
  try {
    await handle.sync();
  } catch {
    // Some file systems refuse fsync on a folder; the rename itself is still atomic.
  } finally {
    await handle.close();
  }
}

/** Writes `data` to `file` (created or truncated) and flushes it to disk. */
export async function writeFileSynced(file: string, data: string | Uint8Array | Uint8Array[]): Promise<void> {
  const handle = await open(file, 'w');
  try {
    // Chunks are written one after another, so large parts need not be joined in memory first.
    for (const chunk of Array.isArray(data) ? data : [data]) await handle.writeFile(chunk);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes a file atomically: a temp file in the same folder, flushed, then renamed over the
 * target, and the folder flushed. An interrupted write leaves the previous version (or
 * nothing), never a half-written file, and no temp file behind when the write fails.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array | Uint8Array[]): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${randomBytes(4).toString('hex')}.part`;
  try {
    await writeFileSynced(tmp, data);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(file));
}

/**
 * Creates `file` atomically from a temp file in the same folder (`<file>.<random>.part`) that
 * `fill` writes, flushes (as writeFileSynced does) and may check: the temp file is renamed into
 * place only when `fill` resolves, and removed when it (or the rename) throws. So `file` is
 * never half-written and never holds bytes `fill` rejected, e.g. a download that failed its
 * checksum. For data that is produced as it is written, where writeFileAtomic needs it all first.
 */
export async function withAtomicFile<T>(file: string, fill: (tmp: string) => Promise<T>): Promise<T> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${randomBytes(4).toString('hex')}.part`;
  let result: T;
  try {
    result = await fill(tmp);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(file));
  return result;
}

/** What a write failed on, for the errors a user fixes on the machine rather than in a flag. */
const DISK_ERRORS: Record<string, string> = {
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is used up',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
};

/**
 * For an error of a full disk, a used-up quota, a read-only file system or a permission: a few
 * words saying so, with the code and the path (`the disk is full (ENOSPC, /runs/a/weights.bin)`);
 * for any other error, undefined.
 */
export function diskErrorReason(err: unknown): string | undefined {
  const e = err as NodeJS.ErrnoException | undefined;
  const what = e?.code ? DISK_ERRORS[e.code] : undefined;
  if (!what) return undefined;
  return `${what} (${e!.code}${e!.path ? `, ${e!.path}` : ''})`;
}
