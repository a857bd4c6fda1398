/**
 * Where a worker thread starts: `name`.js next to the module that starts it, once built. Under
 * tsx or vitest, which run the TypeScript sources, it is `name`.ts, loaded through tsx's ESM
 * hooks (a worker does not inherit the main thread's loader). `moduleUrl` is the starting
 * module's import.meta.url; the training pool (pool.ts) and batch prediction's decoders
 * (node/predict/decode-pool.ts) start theirs here.
 */
export function threadEntry(moduleUrl: string, name: string): { entry: string | URL; eval: boolean } {
  if (!moduleUrl.endsWith('.ts')) return { entry: new URL(`./${name}.js`, moduleUrl), eval: false };
  const thread = new URL(`./${name}.ts`, moduleUrl).href;
  const tsx = new URL('../../../node_modules/tsx/dist/esm/api/index.mjs', import.meta.url).href;
  return {
    entry: `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(thread)}); });`,
    eval: true,
  };
}
