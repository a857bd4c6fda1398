/**
 * Terminal output shared by the commands. With --json, human-readable lines go to stderr and
 * stdout carries exactly one JSON object, so `imgclf ... --json | jq` works.
 */
import cliProgress from 'cli-progress';
import type { Lang } from '../core/data/classes.js';
import { UserError } from '../core/errors.js';

export interface GlobalOptions {
  json?: boolean;
  verbose?: boolean;
  lang?: Lang;
}

export class Output {
  constructor(readonly opts: GlobalOptions) {}

  get lang(): Lang {
    return this.opts.lang ?? 'en';
  }

  /** A human-readable line (stdout, or stderr in --json mode). */
  line(text = ''): void {
    (this.opts.json ? process.stderr : process.stdout).write(text + '\n');
  }

  /** The command's JSON result, printed last, in --json mode only. */
  json(value: unknown): void {
    if (this.opts.json) process.stdout.write(JSON.stringify(value) + '\n');
  }

  /**
   * A progress bar on a TTY stderr; a no-op when output is piped or in --json mode.
   * cli-progress redraws from a timer, and the training loop is synchronous between batches,
   * so `update` hands back a promise about every 100 ms: the loop awaits it and the timer gets
   * its turn. (Its synchronous redraws are off: they leave stray timers that redraw over the
   * epoch line after the bar has stopped.)
   */
  progress(
    total: number,
    label: string,
    unit = 'batches',
  ): { update(done: number): void | Promise<void>; stop(): void } {
    if (!process.stderr.isTTY || this.opts.json || process.env.CI) return { update() {}, stop() {} };
    const bar = new cliProgress.SingleBar(
      {
        // Images also show their rate (decoding, backbone features): what a user waits on.
        format: `${label} [{bar}] {value}/{total} ${unit}${unit === 'images' ? ' {rate}' : ''}`,
        stream: process.stderr,
        clearOnComplete: true,
        hideCursor: true,
        synchronousUpdate: false,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    const started = performance.now();
    bar.start(total, 0, { rate: '' });
    let lastYield = started;
    return {
      update: (d) => {
        const seconds = (performance.now() - started) / 1000;
        bar.update(d, { rate: seconds > 0 ? `(${(d / seconds).toFixed(1)} ${unit}/s)` : '' });
        if (performance.now() - lastYield < 100) return;
        lastYield = performance.now();
        return new Promise<void>((resolve) => setImmediate(resolve));
      },
      stop: () => bar.stop(),
    };
  }
  /**
   * A progress bar for work counted in items, with their rate and the time left: on a TTY
   * stderr only, as `progress`. Without a total (paths read from stdin) it shows the count and
   * the rate. `update` takes the items done and the rate to show.
   */
  rateProgress(
    total: number | undefined,
    label: string,
    unit: string,
  ): { update(done: number, perSecond: number): void; stop(): void } {
    if (!process.stderr.isTTY || this.opts.json || process.env.CI) return { update() {}, stop() {} };
    const format =
      total === undefined
        ? `${label} {value} ${unit} | {rate} ${unit}/s`
        : `${label} [{bar}] {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted}`;
    const bar = new cliProgress.SingleBar(
      { format, stream: process.stderr, clearOnComplete: true, hideCursor: true, fps: 5, etaBuffer: 50 },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total ?? 0, 0, { rate: '0' });
    return {
      update: (done, perSecond) => bar.update(done, { rate: perSecond.toFixed(1) }),
      stop: () => bar.stop(),
    };
  }
}

/** Parses a number flag, with a one-line error naming the flag. */
/**
 * Loads a run with its messages (which engine runs its backbone, a re-download) printed on
 * stderr once it has loaded: the command's output on stdout stays as it was, and a load that
 * fails prints only its one-line error.
 */
export async function withRunLog<T>(load: (log: (message: string) => void) => Promise<T>): Promise<T> {
  const lines: string[] = [];
  const result = await load((m) => lines.push(m));
  for (const line of lines) process.stderr.write(`${line}\n`);
  return result;
}

export function numberArg(flag: string, integer = false): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
      throw new UserError(`${flag} expects ${integer ? 'a whole number' : 'a number'}, got '${value}'`);
    }
    return n;
  };
}

/** Fixed-width table for the terminal. */
export function table(rows: (string | number)[][], header?: string[]): string {
  const all = header ? [header, ...rows] : rows;
  const widths = all[0].map((_, c) => Math.max(...all.map((r) => displayWidth(String(r[c])))));
  const fmt = (r: (string | number)[]) =>
    r
      .map((cell, c) => {
        const s = String(cell);
        const pad = ' '.repeat(widths[c] - displayWidth(s));
        return typeof cell === 'number' ? pad + s : s + pad;
      })
      .join('  ');
  return all.map(fmt).join('\n');
}

/** Terminal columns a string takes: CJK characters are two wide. */
export function displayWidth(s: string): number {
  let w = 0;
  for (const ch of s)
    w += /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/.test(
      ch,
    )
      ? 2
      : 1;
  return w;
}
