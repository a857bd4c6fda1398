/**
 * All-or-nothing saves (node/run/save.ts): a crash at any rename, or a full disk at any write,
 * leaves the previous save or the new one, whole, never a mix, and no temp files.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { tempDir } from './helpers.js';

/** Fault injection: the Nth rename throws (a crash there), or the Nth file opened for writing fails with ENOSPC. */
const fault = { renameAt: 0, enospcAt: 0, renames: 0, writes: 0 };

vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...fs,
    rename: async (from: string, to: string) => {
      if (fault.renameAt && ++fault.renames === fault.renameAt)
        throw new Error(`crash at rename ${fault.renameAt}`);
      return fs.rename(from, to);
    },
    open: async (file: string, flags?: string) => {
      if (flags === 'w' && fault.enospcAt && ++fault.writes === fault.enospcAt) {
        throw Object.assign(new Error(`ENOSPC: no space left on device, open '${file}'`), { code: 'ENOSPC' });
      }
      return fs.open(file, flags);
    },
  };
});

const { commitSave, recoverRun, verifyRun, MANIFEST_FILE, STAGING_DIR } =
  await import('../src/node/run/save.js');

afterEach(() => Object.assign(fault, { renameAt: 0, enospcAt: 0, renames: 0, writes: 0 }));

const saveA = new Map<string, string>([
  ['weights.bin', 'A-weights'],
  ['metadata.json', 'A-meta'],
  ['checkpoint/state.json', 'A-state'],
]);
const saveB = new Map<string, string>([
  ['weights.bin', 'B-weights-longer'],
  ['metadata.json', 'B-meta'],
  ['checkpoint/state.json', 'B-state'],
]);

const read = (dir: string, rel: string) => readFileSync(path.join(dir, rel), 'utf8');

/** Which save the directory holds, after recovery: 'A' or 'B', and never a mix. */
async function holds(dir: string): Promise<string> {
  await recoverRun(dir);
  const manifest = await verifyRun(dir);
  const letters = new Set([...saveA.keys()].map((rel) => read(dir, rel)[0]));
  expect(letters.size, `files of one save only: ${[...saveA.keys()].map((r) => read(dir, r))}`).toBe(1);
  const letter = [...letters][0];
  expect(manifest?.epoch).toBe(letter === 'A' ? 1 : 2);
  return letter;
}

function leftovers(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter(
    (f) => f.endsWith('.part') || f.startsWith(STAGING_DIR),
  );
}

describe('all-or-nothing saves', () => {
  it('a crash at any rename leaves save A or save B, whole', async () => {
    const seen = new Set<string>();
    for (let n = 1; ; n++) {
      const dir = tempDir();
      await commitSave(dir, saveA, { epoch: 1 });
      Object.assign(fault, { renameAt: n, renames: 0 });
      let crashed = false;
      await commitSave(dir, saveB, { epoch: 2 }).catch(() => (crashed = true));
      fault.renameAt = 0;
      seen.add(await holds(dir));
      expect(leftovers(dir)).toEqual([]);
      if (!crashed) break;
    }
    // Every rename is after the staged manifest, so a crash in them rolls forward to B.
    expect(seen).toEqual(new Set(['B']));
  });

  it('a full disk at any write leaves save A, and nothing of B behind', async () => {
    for (let n = 1; ; n++) {
      const dir = tempDir();
      await commitSave(dir, saveA, { epoch: 1 });
      Object.assign(fault, { enospcAt: n, writes: 0 });
      const err = await commitSave(dir, saveB, { epoch: 2 }).then(
        () => undefined,
        (e: Error) => e,
      );
      fault.enospcAt = 0;
      if (!err) {
        expect(await holds(dir)).toBe('B');
        break;
      }
      expect(err.message).toMatch(/ENOSPC/);
      expect(leftovers(dir)).toEqual([]);
      expect(await holds(dir)).toBe('A');
    }
  });

  it('staging without its manifest (a crash while writing) is discarded', async () => {
    const dir = tempDir();
    await commitSave(dir, saveA, { epoch: 1 });
    const staging = path.join(dir, STAGING_DIR);
    (await import('node:fs')).mkdirSync(staging);
    writeFileSync(path.join(staging, 'weights.bin'), 'B-weights-longer');
    expect(await recoverRun(dir)).toMatch(/discarded an unfinished save/);
    expect(existsSync(staging)).toBe(false);
    expect(await holds(dir)).toBe('A');
  });

  it('a directory that mixes two saves is refused with one clear line', async () => {
    const dir = tempDir();
    await commitSave(dir, saveA, { epoch: 1 });
    writeFileSync(path.join(dir, 'weights.bin'), 'B-weights-longer');
    await expect(verifyRun(dir)).rejects.toThrow(
      /weights\.bin does not match .*manifest\.json \(epoch 1\): the run directory mixes two saves or was changed/,
    );
    writeFileSync(path.join(dir, MANIFEST_FILE), '{"format": "imgclf-manif');
    await expect(verifyRun(dir)).rejects.toThrow(/manifest\.json is corrupt or truncated/);
  });

  it('a replacing save removes the old run’s other files only once it is committed', async () => {
    const dir = tempDir();
    await commitSave(dir, new Map([...saveA, ['final/weights.bin', 'A-final']]), { epoch: 1 });
    await commitSave(dir, saveB, { epoch: 2, replace: true });
    expect(existsSync(path.join(dir, 'final', 'weights.bin'))).toBe(false);
    expect(await holds(dir)).toBe('B');
  });
});
