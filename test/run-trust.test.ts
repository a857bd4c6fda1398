/**
 * Run directories as untrusted input, and one writer per run directory, on the real CLI and
 * Fashion-MNIST: manifests that name files outside the run, links and pipes and devices where
 * files should be, oversized files, a model.json whose layers outgrow its weights, killed cache
 * writes, a full disk while saving, and trainings that race for one directory.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/index.js';
import { create } from '../src/core/models/index.js';
import { STALE_TEMP_MS, writeEntry } from '../src/node/cache.js';
import { diskErrorReason } from '../src/node/fs.js';
import { LOCK_FILE } from '../src/node/run/lock.js';
import { runPath } from '../src/node/run/paths.js';
import { loadRun } from '../src/node/run/rundir.js';
import { recoverRun, verifyRun } from '../src/node/run/save.js';
import { checkTopology } from '../src/node/run/topology.js';
import { trainedRun } from './fixtures/trained-run.js';
import { BIN, cli, type CliResult, expectCleanError, ROOT, tempDir } from './helpers.js';

let work = '';
/** A finished 1-epoch softmax run, copied by the tests that change one. */
let trained = '';

/** A fresh copy of `trained` in `work`/name. */
let copyOf: (name: string) => string;

beforeAll(async () => {
  await selectBackend('wasm');
  work = tempDir('imgclf-trust-');
  ({ trained, copyOf } = trainedRun(work));
});

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

/** Rewrites the manifest of `dir` (or its staged one) with `change` applied to its files. */
function editManifest(
  file: string,
  change: (files: Record<string, { size: number; sha256: string }>) => void,
  from = file,
): void {
  const m = JSON.parse(readFileSync(from, 'utf8'));
  change(m.files);
  writeFileSync(file, JSON.stringify(m));
}

/** Runs the CLI without waiting (for trainings that race). */
function cliAsync(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Resident memory growth (MB) and seconds of `f`: a refused file must cost neither. */
async function cost(f: () => Promise<unknown>): Promise<{ mb: number; seconds: number }> {
  const rss = process.memoryUsage().rss;
  const start = performance.now();
  await f();
  return {
    mb: (process.memoryUsage().rss - rss) / 2 ** 20,
    seconds: (performance.now() - start) / 1000,
  };
}

/** Waits (polling) until `condition` holds. */
async function until(condition: () => boolean, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const LOCK_LINE = /is being written by pid \d+ on .+ since .+; wait for it or stop it/;

describe('paths a run names', () => {
  it('one rule: relative, "/"-separated, no "..", ".", empty or absolute parts, no backslash', () => {
    const dir = path.join(work, 'any');
    for (const bad of [
      '../victim.txt',
      '../../victim.txt',
      'a/../../x',
      '/etc/passwd',
      'C:/x',
      'a\\b',
      'a//b',
      './a',
      'a/.',
      '',
      'a\0b',
    ])
      expect(() => runPath(dir, bad, 'manifest.json'), bad).toThrow(/manifest\.json names the file/);
    expect(runPath(dir, 'checkpoint/weights.bin', 'm')).toBe(path.join(dir, 'checkpoint', 'weights.bin'));
    expect(() => runPath(dir, 42, 'm')).toThrow(/not a file name/);
  });

  it('a staged manifest naming ../victim.txt: evaluate refuses and moves nothing out of the run', async () => {
    const dir = copyOf('staged-escape');
    const victim = path.join(work, 'victim.txt');
    writeFileSync(victim, 'ORIGINAL');
    // The roll-forward would move DIR/victim.txt (from .staging/../victim.txt) over the victim.
    writeFileSync(path.join(dir, 'victim.txt'), 'PAYLOAD');
    mkdirSync(path.join(dir, '.staging'));
    for (const listed of ['../victim.txt', '../../victim.txt', '/tmp/victim.txt', 'a\\..\\..\\victim.txt']) {
      editManifest(
        path.join(dir, '.staging', 'manifest.json'),
        (files) => (files[listed] = { size: 7, sha256: sha256('PAYLOAD') }),
        path.join(dir, 'manifest.json'),
      );
      expectCleanError(
        cli(['evaluate', '--run', dir]),
        /\.staging\/manifest\.json names the file .*victim\.txt.*restore it or retrain/,
      );
      await expect(recoverRun(dir)).rejects.toThrow(/names the file/);
      expect(readFileSync(victim, 'utf8')).toBe('ORIGINAL');
    }
    expect(readFileSync(path.join(dir, 'victim.txt'), 'utf8')).toBe('PAYLOAD');
  });

  it('a staging folder reached through a link is refused, not followed', async () => {
    const dir = copyOf('staged-link');
    const outside = path.join(work, 'outside-staging');
    mkdirSync(outside, { recursive: true });
    writeFileSync(path.join(outside, 'keep.txt'), 'KEEP');
    symlinkSync(outside, path.join(dir, '.staging'));
    await expect(recoverRun(dir)).rejects.toThrow(/\.staging is a symbolic link/);
    expect(readFileSync(path.join(outside, 'keep.txt'), 'utf8')).toBe('KEEP');
  });

  it('a manifest naming ../x: train --force replaces the run and leaves x alone', () => {
    const dir = copyOf('force-escape');
    const x = path.join(work, 'x');
    writeFileSync(x, 'OUTSIDE');
    editManifest(
      path.join(dir, 'manifest.json'),
      (files) => (files['../x'] = { size: 7, sha256: sha256('OUTSIDE') }),
    );
    expectCleanError(cli(['evaluate', '--run', dir]), /manifest\.json names the file "\.\.\/x"/);
    const r = cli(['train', '--epochs', '1', '--out', dir, '--force']);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(x, 'utf8')).toBe('OUTSIDE');
    expect(cli(['evaluate', '--run', dir]).code).toBe(0);
  });

  it('a model.json naming weights outside the run is refused', async () => {
    const dir = copyOf('weights-path');
    const model = JSON.parse(readFileSync(path.join(dir, 'model.json'), 'utf8'));
    model.weightsManifest[0].paths = ['../../trained/weights.bin'];
    writeFileSync(path.join(dir, 'model.json'), JSON.stringify(model));
    rmSync(path.join(dir, 'manifest.json'));
    await expect(loadRun(dir)).rejects.toThrow(
      /model\.json names the file "\.\.\/\.\.\/trained\/weights\.bin"/,
    );
  });
});

describe('files that are not what they claim', () => {
  it('a manifest entry reaching /dev/zero is refused at once, without reading it', async () => {
    const dir = copyOf('dev-zero');
    editManifest(path.join(dir, 'manifest.json'), (files) => {
      files['../../../../../../../../dev/zero'] = { size: 6e9, sha256: '0'.repeat(64) };
    });
    const c1 = await cost(() =>
      expect(verifyRun(dir)).rejects.toThrow(/names the file "(\.\.\/)+dev\/zero"/),
    );
    // The same device behind a link inside the run.
    editManifest(path.join(dir, 'manifest.json'), (files) => {
      for (const k of Object.keys(files)) if (k.includes('dev/zero')) delete files[k];
      files['zero.bin'] = { size: 6e9, sha256: '0'.repeat(64) };
    });
    symlinkSync('/dev/zero', path.join(dir, 'zero.bin'));
    const c2 = await cost(() => expect(verifyRun(dir)).rejects.toThrow(/zero\.bin is a symbolic link/));
    for (const c of [c1, c2]) {
      expect(c.seconds).toBeLessThan(2);
      expect(c.mb).toBeLessThan(100);
    }
    expectCleanError(cli(['evaluate', '--run', dir]), /zero\.bin is a symbolic link, not a regular file/);
  });

  it('weights.bin as a link to /dev/zero or as a FIFO is refused quickly, with or without a manifest', async () => {
    for (const manifest of [true, false]) {
      const dir = copyOf(`weights-special-${manifest}`);
      if (!manifest) rmSync(path.join(dir, 'manifest.json'));
      const weights = path.join(dir, 'weights.bin');
      rmSync(weights);
      symlinkSync('/dev/zero', weights);
      const c = await cost(() => expect(loadRun(dir)).rejects.toThrow(/weights\.bin is a symbolic link/));
      expect(c.seconds).toBeLessThan(2);
      expect(c.mb).toBeLessThan(100);
      rmSync(weights);
      expect(spawnSync('mkfifo', [weights]).status).toBe(0);
      // Nothing writes to the FIFO: an open that blocked would hang here until the timeout.
      const start = performance.now();
      await expect(loadRun(dir)).rejects.toThrow(
        /weights\.bin is a device, pipe or socket, not a regular file/,
      );
      expect(performance.now() - start).toBeLessThan(2000);
      expectCleanError(cli(['evaluate', '--run', dir]), /weights\.bin is a device, pipe or socket/);
    }
  }, 60_000);

  it('a 600 MB metadata.json is "too large", not "missing", and is not read', async () => {
    const dir = copyOf('big-metadata');
    spawnSync('truncate', ['-s', '600M', path.join(dir, 'metadata.json')]);
    // With the manifest, its size already differs from the listed one.
    expectCleanError(cli(['evaluate', '--run', dir]), /metadata\.json does not match .*manifest\.json/);
    // --resume reads the metadata before anything else.
    expectCleanError(
      cli(['train', '--resume', dir]),
      /metadata\.json is too large \(600 MB, more than the 16 MB a metadata file may take\)/,
    );
    rmSync(path.join(dir, 'manifest.json'));
    const c = await cost(() => expect(loadRun(dir)).rejects.toThrow(/metadata\.json is too large/));
    expect(c.mb).toBeLessThan(100);
    expectCleanError(cli(['evaluate', '--run', dir]), /metadata\.json is too large/);
  });

  it('a model.json declaring Dense(500000) is refused before any layer is built', async () => {
    const dir = copyOf('huge-dense');
    const file = path.join(dir, 'model.json');
    const model = JSON.parse(readFileSync(file, 'utf8'));
    const layers = model.modelTopology.config.layers;
    layers.at(-1).config.units = 500000;
    const text = JSON.stringify(model);
    expect(text.length).toBeLessThan(2000);
    writeFileSync(file, text);
    // The manifest is made to agree, as a deliberate edit would.
    editManifest(path.join(dir, 'manifest.json'), (files) => {
      files['model.json'] = { size: Buffer.byteLength(text), sha256: sha256(text) };
    });
    const c = await cost(() =>
      expect(loadRun(dir)).rejects.toThrow(
        /model\.json: its layers need at least 392500000 parameters by layer 2 \(Dense\) but its weights hold 7850/,
      ),
    );
    expect(c.seconds).toBeLessThan(2);
    expect(c.mb).toBeLessThan(100);
    expectCleanError(cli(['evaluate', '--run', dir]), /its layers need at least 392500000 parameters/);
  });

  it('the layers check counts exactly the parameters of every model imgclf trains', async () => {
    const nets = [
      create('softmax', { inputShape: [28, 28, 1], numClasses: 10, seed: 0 }),
      create('mlp', {
        inputShape: [28, 28, 1],
        numClasses: 10,
        seed: 0,
        options: { hidden: [64, 32], dropout: 0.2 },
      }),
      create('lenet', { inputShape: [28, 28, 1], numClasses: 10, seed: 0, options: { pool: 'avg' } }),
      create('cnn', {
        inputShape: [32, 32, 3],
        numClasses: 5,
        seed: 0,
        options: { batchNorm: true, dropout: 0.2 },
      }),
      create('cnn', { inputShape: [28, 28, 1], numClasses: 10, seed: 0, options: { batchNorm: false } }),
    ];
    for (const net of nets) {
      const a = await net.artifacts();
      const declared = a.weightSpecs.reduce((s, w) => s + w.shape.reduce((x, y) => x * y, 1), 0);
      expect(checkTopology(a.modelTopology, declared, 'model.json'), net.name).toBe(declared);
      net.dispose();
    }
  });
});

describe('the cache', () => {
  it("removes a killed write's temp file, and keeps one another process may be writing", async () => {
    const dir = tempDir('imgclf-trust-cache-');
    const stale = path.join(dir, 'decoded-0123.bin.deadbeef.part');
    const fresh = path.join(dir, 'decoded-0123.bin.cafebabe.part');
    writeFileSync(stale, 'half an entry');
    writeFileSync(fresh, 'an entry being written');
    const old = (Date.now() - STALE_TEMP_MS - 60_000) / 1000;
    utimesSync(stale, old, old);
    await writeEntry(path.join(dir, 'decoded-4567.bin'), { format: 'x' }, [new Uint8Array([1, 2, 3])]);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(fresh)).toBe(true);
    expect(existsSync(path.join(dir, 'decoded-4567.bin'))).toBe(true);
  });
});

describe('one writer per run directory', () => {
  it('three `train --out SAME` at once: one trains, the others are told who writes', async () => {
    const dir = path.join(work, 'race');
    const results = await Promise.all(
      [1, 2, 3].map(() => cliAsync(['train', '--epochs', '3', '--out', dir])),
    );
    const won = results.filter((r) => r.code === 0);
    expect(won, results.map((r) => r.stderr).join('\n')).toHaveLength(1);
    expect(won[0].stdout).toMatch(/saved /);
    for (const r of results.filter((x) => x.code !== 0)) expectCleanError(r, LOCK_LINE);
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    expect(readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(3);
    const ev = cli(['evaluate', '--run', dir]);
    expect(ev.code, ev.stderr).toBe(0);
  });

  it('--resume (or --out) while the run trains is refused; the training finishes; readers load it meanwhile', async () => {
    const dir = copyOf('busy');
    const first = cliAsync(['train', '--resume', dir, '--epochs', '11']);
    const lock = path.join(dir, LOCK_FILE);
    // The lock is created, then written: wait until it names its holder.
    const holderOf = (): { pid: number } | undefined => {
      try {
        return JSON.parse(readFileSync(lock, 'utf8')) as { pid: number };
      } catch {
        return undefined;
      }
    };
    await until(() => holderOf() !== undefined);
    const holder = holderOf()!;
    expect(holder).toMatchObject({
      pid: expect.any(Number),
      host: os.hostname(),
      started: expect.any(String),
    });
    const again = cli(['train', '--resume', dir, '--epochs', '11']);
    expectCleanError(again, new RegExp(`${dir} is being written by pid ${holder.pid} on `));
    expectCleanError(cli(['train', '--epochs', '1', '--out', dir, '--force']), LOCK_LINE);
    // A reader takes no lock and loads the last committed save.
    const ev = cli(['evaluate', '--run', dir, '--json']);
    expect(ev.code, ev.stderr).toBe(0);
    const r = await first;
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(lock)).toBe(false);
    expect(readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(11);
    const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(Object.keys(manifest.files)).not.toContain(LOCK_FILE);
  });

  it('Ctrl-C, and a second Ctrl-C that quits at once, leave no lock behind', async () => {
    for (const presses of [1, 2]) {
      const dir = copyOf(`sigint-${presses}`);
      const child = spawn(process.execPath, [BIN, 'train', '--resume', dir, '--epochs', '30'], { cwd: ROOT });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
      await until(() => /epoch 2\/30/.test(output));
      expect(existsSync(path.join(dir, LOCK_FILE))).toBe(true);
      child.kill('SIGINT');
      if (presses === 2) {
        // Signals sent back to back may merge into one: the second waits for the first's line.
        await until(() => /interrupted: saving a checkpoint/.test(output));
        child.kill('SIGINT');
      }
      expect(await closed, output).toBe(130);
      expect(existsSync(path.join(dir, LOCK_FILE)), `${presses} Ctrl-C`).toBe(false);
    }
  });

  it('a lock left by a process that is gone is taken over; one of another host is not', () => {
    const dir = copyOf('stale-lock');
    const gone = spawnSync(process.execPath, ['-e', '']).pid!;
    const lock = path.join(dir, LOCK_FILE);
    writeFileSync(
      lock,
      JSON.stringify({ pid: gone, host: os.hostname(), started: '2026-01-01T00:00:00.000Z' }),
    );
    const r = cli(['train', '--resume', dir, '--epochs', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`taking over the lock of pid ${gone} .*no longer running`));
    expect(existsSync(lock)).toBe(false);
    writeFileSync(lock, JSON.stringify({ pid: 1, host: 'elsewhere', started: '2026-01-01T00:00:00.000Z' }));
    expectCleanError(
      cli(['train', '--resume', dir, '--epochs', '3']),
      new RegExp(
        `being written by pid 1 on elsewhere since 2026-01-01T00:00:00.000Z; wait for it or stop it \\(if no such process is running, remove ${lock}\\)`,
      ),
    );
    rmSync(lock);
  });

  it("a reader leaves a live writer's staging folder alone, and discards it once the writer is gone", async () => {
    const dir = copyOf('reader-staging');
    const staging = path.join(dir, '.staging');
    mkdirSync(staging);
    writeFileSync(path.join(staging, 'weights.bin'), 'being written');
    // This test process stands in for a training that is writing its next save.
    writeFileSync(
      path.join(dir, LOCK_FILE),
      JSON.stringify({ pid: process.pid, host: os.hostname(), started: new Date().toISOString() }),
    );
    expect(cli(['evaluate', '--run', dir]).code).toBe(0);
    expect(existsSync(path.join(staging, 'weights.bin'))).toBe(true);
    rmSync(path.join(dir, LOCK_FILE));
    expect(cli(['evaluate', '--run', dir]).code).toBe(0);
    expect(existsSync(staging)).toBe(false);
  });
});

describe('a full disk while saving', () => {
  it('names the code and the path', () => {
    const e = Object.assign(new Error('no space'), { code: 'ENOSPC', path: '/r/weights.bin' });
    expect(diskErrorReason(e)).toBe('the disk is full (ENOSPC, /r/weights.bin)');
    expect(diskErrorReason(Object.assign(new Error('x'), { code: 'EROFS' }))).toBe(
      'the file system is read-only (EROFS)',
    );
    expect(diskErrorReason(new Error('other'))).toBeUndefined();
  });

  // A small tmpfs filled up: needs root and mount (as on CI containers and this machine).
  // Mounted in a hook, not while tests are collected, so a filtered run mounts nothing.
  const mnt = path.join(os.tmpdir(), `imgclf-trust-tmpfs-${process.pid}`);
  let mounted = false;
  beforeAll(() => {
    if (process.getuid?.() !== 0) return;
    mkdirSync(mnt, { recursive: true });
    mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]).status === 0;
  });
  afterAll(() => {
    if (mounted) spawnSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });

  it('says the disk is full and the previous save is kept, exit 2; the run still loads', (ctx) => {
    if (!mounted) ctx.skip();
    const dir = path.join(mnt, 'run');
    cpSync(trained, dir, { recursive: true });
    // Leave room for the lock and little else: the next save fails at its first file.
    const s = statfsSync(mnt);
    writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(Number(s.bavail * s.bsize) - 8192));
    expectCleanError(
      cli(['train', '--resume', dir, '--epochs', '2']),
      /cannot save .*run: the disk is full \(ENOSPC(, .*)?\); the previous save \(epoch 1\) is kept; free some space/,
    );
    const ev = cli(['evaluate', '--run', dir, '--json']);
    expect(ev.code, ev.stderr).toBe(0);
    expect(readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
    expect(existsSync(path.join(dir, '.staging'))).toBe(false);
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    // No room left at all: even the lock of a new run cannot be written (the CLI's own line).
    const rest = statfsSync(mnt);
    writeFileSync(path.join(mnt, 'filler2'), Buffer.alloc(Number(rest.bavail * rest.bsize)));
    const fresh = path.join(mnt, 'fresh');
    expectCleanError(
      cli(['train', '--epochs', '1', '--out', fresh]),
      /cannot write: the disk is full \(ENOSPC.*\); files are replaced whole, so what was saved before is kept/,
    );
    expect(existsSync(path.join(fresh, LOCK_FILE))).toBe(false);
  });
});
