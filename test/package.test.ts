/**
 * imgclf as users meet it: packed with `npm pack` (which runs the `prepare` build), installed
 * from the tarball into a new project, and used from there. The README's example runs with
 * plain `node` and type-checks with TypeScript; `imgclf/core` loads nothing but itself and
 * TensorFlow.js; the installed CLI evaluates and serves (with its page) a run saved in code.
 *
 * The package is built from a copy of the sources (the files git tracks or would track, plus
 * web/dist), as a fresh clone would build it, so the repository's own dist/ is left alone.
 */
import { type ChildProcess, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, tempDir } from './helpers.js';

const work = tempDir('imgclf-package-');
const stage = path.join(work, 'stage');
const project = path.join(work, 'project');
const installed = path.join(project, 'node_modules', 'imgclf');
const timings: Record<string, number> = {};

/** The environment without the npm_* variables of an enclosing `npm test`. */
const env = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')),
);

function run(cmd: string, args: string[], cwd: string, what: string): SpawnSyncReturns<string> {
  const start = performance.now();
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 600_000, maxBuffer: 64 << 20 });
  timings[what] = (performance.now() - start) / 1000;
  if (r.status !== 0)
    throw new Error(`${what}: '${cmd} ${args.join(' ')}' exited ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r;
}

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string; size: number }[];
}
let pack: PackResult;

/** The README's example, as written, plus a line printing what it got. */
const EXAMPLE = `import { loadFashionMnist, createModel, fit, evaluate, predict } from 'imgclf';

const data = await loadFashionMnist();                      // { train, test, classNames, shape }
const model = createModel('softmax', { inputShape: data.shape, numClasses: 10, seed: 0 });
const history = await fit(model, data.train, data.test, { epochs: 1, lr: 0.1, batchSize: 256 });
const { accuracy } = await evaluate(model, data.test);
const [first] = await predict(model, data.test, { count: 6 }); // { label, probabilities, true }
`;

const RUN_EXAMPLE = `${EXAMPLE}
import { saveRun } from 'imgclf';
await saveRun('run', { model, data, history });
console.log(JSON.stringify({ accuracy, epochs: history.length, first }));
`;

const TYPED_EXAMPLE = `${EXAMPLE}
import type { EpochMetrics, Prediction } from 'imgclf';
const epochs: EpochMetrics[] = history;
const label: number = first.label;
const truth: number = first.true;
const probabilities: number[] = first.probabilities;
const named: string | undefined = first.labelName;
const p: Prediction = first;
const shape: [number, number, number] = data.shape;
console.log(accuracy.toFixed(4), epochs.length, label, truth, probabilities.length, named, p.index, shape);
`;

const TYPED_CORE = `import * as tf from '@tensorflow/tfjs-core';
import { createModel, fit, predict, validationSplit, type Model, type Split } from 'imgclf/core';
// @ts-expect-error loading files is the Node entry's, not the browser-safe core's
import { loadFashionMnist } from 'imgclf/core';

await tf.setBackend('cpu');
const train: Split = { images: new Float32Array(8 * 4 * 4), labels: new Uint8Array(8).map((_, i) => i % 2), count: 8 };
const model: Model = createModel('softmax', { inputShape: [4, 4, 1], numClasses: 2 });
const { val } = validationSplit({ train, shape: [4, 4, 1], classNames: ['a', 'b'] }, 0.5);
await fit(model, train, val, { epochs: 1 });
const [first] = await predict(model, val, { count: 1, classNames: ['a', 'b'] });
const name: string | undefined = first.labelName;
console.log(name, loadFashionMnist);
`;

/**
 * Imports imgclf/core, trains a tiny model on the cpu backend, and lists every module that was
 * resolved on the way (a module hook), for the test to check.
 */
const CORE_CHECK = `import { register } from 'node:module';
register('./hooks.mjs', import.meta.url);
const tf = await import('@tensorflow/tfjs-core');
await import('@tensorflow/tfjs-backend-cpu');
await tf.setBackend('cpu');
const core = await import('imgclf/core');
const train = { images: new Float32Array(8 * 16), labels: new Uint8Array(8).map((_, i) => i % 2), count: 8 };
const model = core.createModel('softmax', { inputShape: [4, 4, 1], numClasses: 2 });
const history = await core.fit(model, train, train, { epochs: 2 });
const [p] = await core.predict(model, train, { count: 1, classNames: ['a', 'b'] });
console.log(JSON.stringify({ epochs: history.length, labelName: p.labelName, version: core.VERSION }));
`;
// Resolutions go to a file, not stderr: on Node 22 and later these hooks run on a thread of
// their own, whose stderr writes can be lost when the process exits.
const HOOKS = `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(new URL('./resolved.log', import.meta.url), r.url + '\\n');
  return r;
}
`;

/** The relative and bare imports of an ES module's text. */
function importsOf(text: string): string[] {
  const out: string[] = [];
  // `import x from '...'`, `export { x } from '...'`, `import '...'` and `import('...')`.
  const re =
    /(?:^|[;\s])(?:import|export)\s*(?:[^'";=()]*?\sfrom\s*)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of text.matchAll(re)) out.push(m[1] ?? m[2]);
  return out;
}

describe('the npm package', () => {
  beforeAll(() => {
    // 1. The sources as a fresh clone has them, plus the built page, and the dependencies.
    const listed = spawnSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(listed.status, listed.stderr).toBe(0);
    for (const rel of listed.stdout.split('\n').filter(Boolean)) {
      const from = path.join(ROOT, rel);
      if (!existsSync(from)) continue; // deleted in the working tree
      mkdirSync(path.dirname(path.join(stage, rel)), { recursive: true });
      cpSync(from, path.join(stage, rel));
    }
    const web = path.join(ROOT, 'web', 'dist');
    if (!existsSync(path.join(web, 'index.html')))
      throw new Error("web/dist is missing: 'npm test' builds it (or run 'npm run build:web')");
    cpSync(web, path.join(stage, 'web', 'dist'), { recursive: true });
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(stage, 'node_modules'), 'dir');

    // 2. npm pack (runs the prepare build).
    const packed = run('npm', ['pack', '--json', '--pack-destination', work], stage, 'npm pack (with build)');
    pack = (JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as PackResult[])[0];

    // 3. A new project that installs the tarball. Install-time scripts follow the repository's
    // own policy (onnxruntime-node's download is denied: its host is not reachable here).
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      allowScripts?: object;
    };
    mkdirSync(project);
    writeFileSync(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'imgclf-user', private: true, type: 'module', allowScripts: pkg.allowScripts }),
    );
    if (existsSync(path.join(ROOT, '.npmrc')))
      cpSync(path.join(ROOT, '.npmrc'), path.join(project, '.npmrc'));
    run(
      'npm',
      ['install', path.join(work, pack.filename), '--prefer-offline', '--no-audit', '--no-fund'],
      project,
      'npm install (tarball)',
    );
  }, 900_000);

  let server: ChildProcess | undefined;
  afterAll(() => {
    server?.kill('SIGTERM');
    console.log(
      `package: ${pack?.filename} ${(pack?.size / 1e6).toFixed(2)} MB packed, ${(pack?.unpackedSize / 1e6).toFixed(2)} MB unpacked, ${pack?.entryCount} files; seconds: ` +
        Object.entries(timings)
          .map(([k, v]) => `${k} ${v.toFixed(1)}`)
          .join(', '),
    );
    // The installed project holds about 500 MB of dependencies.
    rmSync(work, { recursive: true, force: true });
  });

  it('packs the build, the CLI and the page, and no tests or sources', () => {
    const files = pack.files.map((f) => f.path);
    for (const f of [
      'package.json',
      'README.md',
      'bin/imgclf.js',
      'dist/package.json',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/core/index.js',
      'dist/src/core/index.d.ts',
      'dist/src/cli/main.js',
      'web/dist/index.html',
    ])
      expect(files, f).toContain(f);
    const unwanted = files.filter(
      (f) =>
        /^(test|src|bench|scripts|runs|node_modules)\//.test(f) ||
        f.endsWith('.map') ||
        (f.endsWith('.ts') && !f.endsWith('.d.ts')),
    );
    expect(unwanted).toEqual([]);
    // The page's build holds ONNX Runtime Web's .wasm file (28 MB, 6.8 MB compressed: wasm and
    // WebGPU in one), which backbones in the page run on; the rest is under 3 MB.
    expect(pack.size).toBeLessThan(11e6);
  });

  it("runs the README's example with plain node, and the installed CLI accepts its run", async () => {
    writeFileSync(path.join(project, 'example.mjs'), RUN_EXAMPLE);
    const r = run(process.execPath, ['example.mjs'], project, 'example.mjs');
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      accuracy: number;
      epochs: number;
      first: Record<string, unknown>;
    };
    expect(out.accuracy).toBeGreaterThan(0.7);
    expect(out.epochs).toBe(1);
    expect(out.first).toMatchObject({ index: 0, label: expect.any(Number), true: expect.any(Number) });
    expect(out.first.probabilities).toHaveLength(10);

    const bin = path.join(project, 'node_modules', '.bin', 'imgclf');
    const ev = run(bin, ['evaluate', '--run', 'run', '--json'], project, 'imgclf evaluate');
    expect(JSON.parse(ev.stdout.trim().split('\n').at(-1)!).test_accuracy).toBe(out.accuracy);

    // serve finds its page inside the installed package (serve.ts defaultWebRoot).
    const child = spawn(bin, ['serve', '--run', 'run', '--port', '0', '--json'], { cwd: project, env });
    server = child;
    const url = await new Promise<string>((resolve, reject) => {
      let text = '';
      child.stdout!.on('data', (b: Buffer) => {
        text += b.toString();
        const line = text.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve((JSON.parse(line) as { url: string }).url);
      });
      child.on('exit', (code) => reject(new Error(`imgclf serve exited with ${code}`)));
    });
    const page = await fetch(url + '/');
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<html/i);
    expect(await (await fetch(url + '/api/health')).json()).toMatchObject({ status: 'ok', model: 'softmax' });
  });

  it("type-checks the example and imgclf/core with the repository's TypeScript", () => {
    writeFileSync(path.join(project, 'example.ts'), TYPED_EXAMPLE);
    writeFileSync(path.join(project, 'core-example.ts'), TYPED_CORE);
    writeFileSync(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          strict: true,
          skipLibCheck: true,
          noEmit: true,
        },
        include: ['example.ts', 'core-example.ts'],
      }),
    );
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    run(
      process.execPath,
      [tsc, '--noEmit', '-p', path.join(project, 'tsconfig.json')],
      project,
      'tsc --noEmit',
    );
  });

  it('imgclf/core loads only itself and TensorFlow.js: no sharp, fastify or node:fs', () => {
    // Statically: every import reachable from dist/src/core/index.js.
    const coreDir = path.join(installed, 'dist', 'src', 'core');
    const seen = new Set<string>();
    const bare = new Set<string>();
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      if (!file.endsWith('.js')) return;
      for (const spec of importsOf(readFileSync(file, 'utf8'))) {
        if (spec.startsWith('.')) visit(path.resolve(path.dirname(file), spec));
        else bare.add(spec);
      }
    };
    visit(path.join(coreDir, 'index.js'));
    const outside = [...seen].filter(
      (f) => !f.startsWith(coreDir + path.sep) && f !== path.join(installed, 'dist', 'package.json'),
    );
    expect(outside).toEqual([]);
    expect([...bare].filter((s) => !s.startsWith('@tensorflow/'))).toEqual([]);
    expect(seen.size).toBeGreaterThan(20);
    expect(readdirSync(coreDir)).toContain('api.js');

    // At run time: every module resolved while importing and using it.
    writeFileSync(path.join(project, 'hooks.mjs'), HOOKS);
    writeFileSync(path.join(project, 'core-check.mjs'), CORE_CHECK);
    const log = path.join(project, 'resolved.log');
    rmSync(log, { force: true });
    const r = run(process.execPath, ['core-check.mjs'], project, 'imgclf/core check');
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ epochs: 2, labelName: expect.any(String) });
    const resolved = readFileSync(log, 'utf8').split('\n').filter(Boolean);
    expect(resolved.some((u) => u.includes('/node_modules/imgclf/dist/src/core/index.js'))).toBe(true);
    const foreign = resolved.filter(
      (u) =>
        !u.includes('/node_modules/imgclf/dist/src/core/') &&
        !u.endsWith('/node_modules/imgclf/dist/package.json') &&
        !u.includes('/node_modules/@tensorflow/'),
    );
    expect(foreign).toEqual([]);
  });
});
