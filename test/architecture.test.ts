/**
 * The shape of the code (docs/architecture.md): imports only point down and never run in a
 * circle, the page uses the package's public browser entries only, and src/core compiles
 * without Node's types. `npm run check` runs the same checks on
 * the real tree; these tests show that each check catches what it is there to catch.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, tempDir } from './helpers.js';

const bin = (name: string) => path.join(ROOT, 'node_modules', '.bin', name);

function cruise(cwd: string, dirs: string[]) {
  return spawnSync(bin('depcruise'), [...dirs, '--config', path.join(ROOT, '.dependency-cruiser.cjs')], {
    cwd,
    encoding: 'utf8',
  });
}

/** A throwaway tree laid out like src/, holding the given files. */
function tree(files: Record<string, string>): string {
  const dir = tempDir('imgclf-arch-');
  writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true } }),
  );
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), text);
  }
  return dir;
}

describe('architecture', () => {
  it('the source tree has no import cycle and no import that points up', () => {
    const r = cruise(ROOT, ['src', 'web/src']);
    expect(r.stdout + r.stderr).toMatch(/no dependency violations found/);
    expect(r.status).toBe(0);
  });

  it('the check fails on an import cycle', () => {
    const dir = tree({
      'src/node/a.ts': "import { b } from './b.js';\nexport const a = (): unknown => b;\n",
      'src/node/b.ts': "import { a } from './a.js';\nexport const b = (): unknown => a;\n",
    });
    const r = cruise(dir, ['src']);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toMatch(/no-circular: src\/node\/a\.ts/);
  });

  it('the check fails when core imports Node or a layer above it', () => {
    const dir = tree({
      'src/node/n.ts': 'export const n = 1;\n',
      'src/core/c.ts':
        "import { readFileSync } from 'node:fs';\nimport { n } from '../node/n.js';\nexport const c = [readFileSync, n];\n",
    });
    const r = cruise(dir, ['src']);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toMatch(/core-is-browser-safe: src\/core\/c\.ts → src\/node\/n\.ts/);
    expect(r.stdout).toMatch(/core-is-browser-safe: src\/core\/c\.ts → fs/);
  });

  it('the check fails when the page reaches into src/ instead of imgclf/core and imgclf/backend', () => {
    const dir = tree({
      'src/core/index.ts': "export { n } from './data/n.js';\n",
      'src/core/data/n.ts': 'export const n = 1;\n',
      'src/backend/browser.ts': 'export const k = 1;\n',
      'src/backend/kernels.ts': 'export const kernel = 1;\n',
      'web/src/ok.ts':
        "import { n } from 'imgclf/core';\nimport { k } from 'imgclf/backend';\nexport const ok = [n, k];\n",
      'web/src/internal.ts': "import { n } from '../../src/core/data/n.js';\nexport const internal = n;\n",
      'web/src/kernel.ts':
        "import { kernel } from '../../src/backend/kernels.js';\nexport const x = kernel;\n",
      'web/src/by-path.ts': "import { n } from '../../src/core/index.js';\nexport const byPath = n;\n",
    });
    // As the repository maps them (tsconfig.json paths): the package names to the sources.
    writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          paths: { 'imgclf/core': ['./src/core/index.ts'], 'imgclf/backend': ['./src/backend/browser.ts'] },
        },
      }),
    );
    const r = cruise(dir, ['src', 'web/src']);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toMatch(/page-uses-the-public-api: web\/src\/internal\.ts → src\/core\/data\/n\.ts/);
    expect(r.stdout).toMatch(/page-uses-the-public-api: web\/src\/kernel\.ts → src\/backend\/kernels\.ts/);
    expect(r.stdout).toMatch(/page-imports-by-package-name: web\/src\/by-path\.ts → src\/core\/index\.ts/);
    expect(r.stdout).not.toMatch(/web\/src\/ok\.ts/);
  });

  it('src/core compiles without Node types, and a Node API in core would not', () => {
    const ok = spawnSync(bin('tsc'), ['-p', 'tsconfig.core.json'], { cwd: ROOT, encoding: 'utf8' });
    expect(ok.stdout + ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    const dir = tree({ 'src/core/leak.ts': 'export const home = process.env.HOME;\n' });
    writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        extends: path.join(ROOT, 'tsconfig.core.json'),
        compilerOptions: { rootDir: '.', typeRoots: [path.join(ROOT, 'node_modules', '@types')] },
        include: ['src/core'],
      }),
    );
    const bad = spawnSync(bin('tsc'), ['-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stdout).toMatch(/Cannot find name 'process'/);
  });
});
