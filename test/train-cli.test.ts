/** The training features through the CLI: the registry, --val-split, Ctrl-C + --resume, bad flags. */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BIN, cli, cliCwd, expectCleanError, tempDir } from './helpers.js';

let work = '';
beforeAll(() => {
  work = tempDir();
});

/** Starts `imgclf train`, sends SIGINT once `when` appears in its output, and waits for the exit. */
function interruptWhen(args: string[], when: RegExp): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: cliCwd() });
    let output = '';
    let sent = false;
    const onData = (d: Buffer) => {
      output += d.toString();
      if (!sent && when.test(output)) {
        sent = true;
        child.kill('SIGINT');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('imgclf train: models, validation split, interrupt and resume', () => {
  it('models lists every registered model with its parameter count', () => {
    const r = cli(['models', '--json']);
    expect(r.code).toBe(0);
    const models = r.json!.models as { name: string; params: number }[];
    const params = Object.fromEntries(models.map((m) => [m.name, m.params]));
    expect(params).toMatchObject({ softmax: 7850, 'softmax-scratch': 7850, mlp: 203530, lenet: 61706 });
    expect(params.cnn).toBeGreaterThan(100000);
  });

  it('--val-split keeps the best epoch at the top level and the last in final/', () => {
    const out = path.join(work, 'val');
    const r = cli(['train', '--epochs', '1', '--val-split', '0.1', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/54000 train \/ 6000 val \/ 10000 test/);
    expect(r.stderr).toMatch(/val acc \d\.\d{4}/);
    const meta = JSON.parse(readFileSync(path.join(out, 'metadata.json'), 'utf8'));
    expect(meta.bestEpoch).toBe(1);
    expect(r.json!.best_epoch).toBe(meta.bestEpoch);
    for (const f of ['model.json', 'weights.bin', 'metadata.json'])
      expect(existsSync(path.join(out, 'final', f)), f).toBe(true);
    const best = cli(['evaluate', '--model', out, '--json']);
    const last = cli(['evaluate', '--model', path.join(out, 'final'), '--json']);
    expect(best.json!.test_accuracy).toBeCloseTo(meta.testAccuracy, 6);
    expect(last.json!.test_accuracy).toBeCloseTo(meta.finalTestAccuracy, 6);
  });

  const interrupted: [string, string[]][] = [
    ['on one thread', []],
    // Two training threads, and dropout: its masks are seeded per step and worker.
    ['on 2 worker threads, with dropout', ['--workers', '2', '--dropout', '0.2']],
  ];
  for (const [name, extra] of interrupted) {
    it(`Ctrl-C saves a checkpoint; --resume ends where an uninterrupted run does (${name})`, async () => {
      const args = ['--model', 'mlp', '--hidden', '32', '--epochs', '2', '--seed', '4', ...extra];
      const tag = extra.length ? 'w2' : 'w1';
      const full = cli(['train', ...args, '--out', path.join(work, `full-${tag}`), '--json']);
      expect(full.code, full.stderr).toBe(0);

      const out = path.join(work, `cut-${tag}`);
      const r = await interruptWhen(['train', ...args, '--out', out], /epoch 1\/2 /);
      expect(r.code, r.output).toBe(130);
      expect(r.output).toContain(`continue with: imgclf train --resume ${out}`);
      expect(existsSync(path.join(out, 'checkpoint', 'state.json'))).toBe(true);

      const resumed = cli(['train', '--resume', out, '--json']);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stderr).toMatch(/resuming .* after epoch 1/);
      expect(resumed.json!.workers).toBe(extra.length ? 2 : 1);
      expect(resumed.json!.test_accuracy).toBe(full.json!.test_accuracy);
      const metrics = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
      expect(metrics).toHaveLength(2);
      const fullMetrics = readFileSync(path.join(work, `full-${tag}`, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n');
      const lossOf = (line: string) => (JSON.parse(line) as { train_loss: number }).train_loss;
      expect(metrics.map(lossOf)).toEqual(fullMetrics.map(lossOf));
    });
  }
});

describe('bad training flags: one line, exit 2', () => {
  it('names the problem', () => {
    expectCleanError(
      cli(['train', '--schedule', 'linear']),
      /unknown schedule 'linear'; choose one of: constant, step, cosine, onecycle/,
    );
    expectCleanError(cli(['train', '--optimizer', 'rmsprop']), /unknown optimizer 'rmsprop'/);
    expectCleanError(
      cli(['train', '--optimizer', 'own']),
      /--optimizer own needs a model with its own updater/,
    );
    expectCleanError(
      cli(['train', '--val-split', '1.5']),
      /--val-split must be a fraction above 0 and at most 0.9/,
    );
    expectCleanError(cli(['train', '--label-smoothing', '2']), /--label-smoothing must be in \[0, 1\)/);
    expectCleanError(
      cli(['train', '--model', 'mlp', '--hidden', '256,x']),
      /--hidden expects sizes like 256 or 256,128/,
    );
    expectCleanError(cli(['train', '--nesterov']), /--nesterov needs --optimizer sgd with --momentum > 0/);
    expectCleanError(
      cli(['train', '--resume', path.join(work, 'nothing')]),
      /is not a run directory to resume/,
    );
  });
});
