/** The learning-rate finder: the sweep, the suggestion, the picture. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { suggest } from '../src/core/train/lr-find.js';
import { cli, expectCleanError, tempDir } from './helpers.js';

describe('lr-find', () => {
  it('suggests the rate where the smoothed loss falls fastest, before its minimum', () => {
    const lrs = Array.from({ length: 50 }, (_, i) => 1e-4 * 10 ** (i / 10));
    // Flat, then a fall steepest around lr 1e-2 (i = 20), a minimum at i = 30, then a blow-up.
    const loss = lrs.map((_, i) => (i < 30 ? 2.3 - 1 / (1 + Math.exp(-(i - 20))) : 1.3 + (i - 30) * 0.5));
    const s = suggest(lrs, loss);
    expect([lrs[20], lrs[21]]).toContain(s.suggested);
    expect(s.minimum).toBe(lrs[30]);
  });

  it('sweeps softmax on Fashion-MNIST, suggests a rate near the seed’s 0.1 and draws it', () => {
    const out = path.join(tempDir(), 'lr');
    const r = cli(['lr-find', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = r.json!;
    // The seed trains well at 0.1: the suggestion should be within a factor of 10 of it.
    expect(j.suggested_lr).toBeGreaterThan(0.01);
    expect(j.suggested_lr).toBeLessThan(1);
    expect(j.diverged).toBe(true);
    expect(r.stderr).toMatch(/This is a suggestion from one short sweep/);
    for (const f of ['lr-find.png', 'lr-find.svg', 'lr-find.json'])
      expect(existsSync(path.join(out, f))).toBe(true);
    expect(readFileSync(path.join(out, 'lr-find.svg'), 'utf8')).toMatch(/suggested: 0\.\d/);
    const saved = JSON.parse(readFileSync(path.join(out, 'lr-find.json'), 'utf8'));
    expect(saved.lrs.length).toBe(saved.losses.length);
    expectCleanError(
      cli(['lr-find', '--start-lr', '1', '--end-lr', '0.1']),
      /--start-lr and --end-lr must satisfy/,
    );
  });
});
