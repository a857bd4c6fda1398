/** Shared test helpers. */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Dataset, Split } from '../src/core/data/dataset.js';
import { subset } from '../src/core/data/split.js';
import { loadDataset } from '../src/node/data/load.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BIN = path.join(ROOT, 'bin', 'imgclf.js');

export function tempDir(prefix = 'imgclf-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * Where a browser test saves a picture of the page: IMGCLF_SCREENSHOT_DIR when set (`npm run
 * screenshots` points it at docs/screenshots), a temp folder otherwise, so a test run leaves
 * the checkout as it was.
 */
export function screenshotPath(name: string): string {
  const dir = process.env.IMGCLF_SCREENSHOT_DIR ?? cliCwd();
  mkdirSync(dir, { recursive: true });
  return path.join(dir, name);
}

let cwd: string | undefined;
/**
 * The working folder CLI runs start in: a temp folder of this test process, so a run that
 * writes its default output (runs/<timestamp>, runs/lr-find) never lands in the checkout.
 */
export function cliCwd(): string {
  cwd ??= tempDir('imgclf-cwd-');
  return cwd;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The last stdout line parsed as JSON, when it is JSON. */
  json?: Record<string, unknown>;
}

/** Runs the built CLI (as a user would) and captures its output. */
export function cli(args: string[], env: Record<string, string> = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: cliCwd(),
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 600_000,
  });
  const lines = (r.stdout ?? '').trim().split('\n');
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(lines.at(-1) ?? '');
  } catch {
    json = undefined;
  }
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '', json };
}

/** Asserts the CLI's bad-input contract: exit 2, one line on stderr, no stack trace. */
export function expectCleanError(r: CliResult, pattern: RegExp): void {
  if (r.code !== 2)
    throw new Error(`expected exit 2, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  if (lines.length !== 1) throw new Error(`expected one stderr line, got:\n${r.stderr}`);
  if (/\n\s+at /.test(r.stderr)) throw new Error(`stack trace leaked:\n${r.stderr}`);
  if (!pattern.test(lines[0]))
    throw new Error(`stderr ${JSON.stringify(lines[0])} does not match ${pattern}`);
}

/** Builds an IDX file of unsigned bytes. */
export function idx(dims: number[], data?: Uint8Array): Uint8Array {
  const n = dims.reduce((a, b) => a * b, 1);
  const header = new Uint8Array(4 + 4 * dims.length);
  const view = new DataView(header.buffer);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  const body = data ?? Uint8Array.from({ length: n }, (_, i) => i % 256);
  const out = new Uint8Array(header.length + body.length);
  out.set(header);
  out.set(body, header.length);
  return out;
}

/** Debian's Chromium, which the browser tests drive through playwright-core. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Launches headless Chromium as the tests need it on a machine without a network: no sandbox
 * (root), no GPU, and no background connections that would only fail here. `extraArgs` add to
 * these (a fake camera, say).
 */
export async function launchChromium(extraArgs: string[] = []): Promise<import('playwright-core').Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...extraArgs,
    ],
  });
}

/** Runs `f` on the cpu backend, then on wasm, and returns both results (for kernel checks). */
export async function onCpuAndWasm(
  f: () => import('@tensorflow/tfjs-core').Tensor,
): Promise<[Float32Array, Float32Array]> {
  const tf = await import('@tensorflow/tfjs-core');
  await tf.setBackend('cpu');
  const cpu = tf.tidy(f).dataSync() as Float32Array;
  await tf.setBackend('wasm');
  const wasm = tf.tidy(f).dataSync() as Float32Array;
  return [cpu, wasm];
}

/** Largest absolute difference between two equally long arrays. */
export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} and ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Largest absolute difference over the largest magnitude of the reference (a relative error). */
export function relDiff(expected: Float32Array, actual: Float32Array): number {
  let scale = 0;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  return maxAbsDiff(expected, actual) / scale;
}

/** The boundary `multipartForm` uses (a test that writes the request line by hand names it). */
export const MULTIPART_BOUNDARY = 'imgclfTestBoundary';

/** A multipart/form-data body with the given file fields (and plain fields), for app.inject. */
export function multipartForm(
  files: { field: string; name: string; type: string; bytes: Buffer }[],
  fields: Record<string, string> = {},
): { payload: Buffer; headers: Record<string, string> } {
  const b = MULTIPART_BOUNDARY;
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${b}\r\ncontent-disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  }
  for (const f of files) {
    parts.push(
      Buffer.from(
        `--${b}\r\ncontent-disposition: form-data; name="${f.field}"; filename="${f.name}"\r\ncontent-type: ${f.type}\r\n\r\n`,
      ),
      f.bytes,
      Buffer.from('\r\n'),
    );
  }
  parts.push(Buffer.from(`--${b}--\r\n`));
  return { payload: Buffer.concat(parts), headers: { 'content-type': `multipart/form-data; boundary=${b}` } };
}

/** Fashion-MNIST and the first `trainCount` / `testCount` images of its two splits. */
export async function fashionSlices(
  trainCount: number,
  testCount: number,
): Promise<{ dataset: Dataset; train: Split; test: Split }> {
  const { dataset } = await loadDataset({ dataset: 'fashion-mnist' });
  const first = (split: Split, n: number) =>
    subset(
      split,
      dataset.shape,
      Array.from({ length: n }, (_, i) => i),
    );
  return { dataset, train: first(dataset.train, trainCount), test: first(dataset.test, testCount) };
}
