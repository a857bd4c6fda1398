/** File helpers (Node only). */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/**
 * Writes a file atomically: a temp file in the same folder, then rename. An interrupted write
 * leaves the previous version (or nothing), never a half-written file.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array | Uint8Array[]): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${randomBytes(4).toString('hex')}.part`;
  try {
    const handle = await open(tmp, 'w');
    try {
      // Chunks are written one after another, so large parts need not be joined in memory first.
      for (const chunk of Array.isArray(data) ? data : [data]) await handle.writeFile(chunk);
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
