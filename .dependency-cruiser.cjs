/**
 * The layering rules of docs/architecture.md, checked by `npm run check:deps` (part of npm test):
 * imports only point down (apps -> node -> backend -> core), and no module imports itself
 * back through a cycle.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import cycle: modules that need each other belong in one module, or a type moves down.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'core-is-browser-safe',
      severity: 'error',
      comment:
        'src/core runs in the page: it imports TensorFlow.js, itself and d3-dsv (a browser-safe CSV parser without dependencies, for quoted CSV records), nothing else.',
      from: { path: '^src/core/' },
      to: {
        pathNot: ['^src/core/', '^node_modules/@tensorflow/', '^node_modules/d3-dsv/', '^package\\.json$'],
      },
    },
    {
      name: 'backend-sits-on-core',
      severity: 'error',
      comment:
        'src/backend holds kernels, backend choice and the training threads: it imports core, TensorFlow.js, and Node threads and the core count.',
      from: { path: '^src/backend/' },
      to: { pathNot: ['^src/(core|backend)/', '^node_modules/@tensorflow/', '^(worker_threads|os)$'] },
    },
    {
      name: 'libraries-know-no-apps',
      severity: 'error',
      comment: 'The CLI, the server and the page are shells over the library; nothing below knows them.',
      from: { path: '^src/(core|backend|node)/' },
      to: { path: '^(src/(cli|server)|web)/' },
    },
    {
      name: 'page-uses-the-public-api',
      severity: 'error',
      comment:
        'The page is a user of the package: it imports imgclf/core and imgclf/backend (the public browser entries), its own files, TensorFlow.js and the browser libraries listed here, never src/ internals; what it needs from the core is exported there. onnxruntime-web runs ONNX backbones, imported dynamically, with its .wasm file as a URL of the build (vite `?url`).',
      from: { path: '^web/src/' },
      to: {
        pathNot: [
          '^web/src/',
          '^src/core/index\\.ts$',
          '^src/backend/browser\\.ts$',
          '^node_modules/(@tensorflow|chart\\.js|fflate|onnxruntime-web)/',
          '^onnxruntime-web/ort-wasm-[\\w.-]+\\.wasm\\?url$',
        ],
      },
    },
    {
      name: 'page-imports-by-package-name',
      severity: 'error',
      comment:
        "The page reaches the public entries by their names, 'imgclf/core' and 'imgclf/backend' (web/vite.config.ts and tsconfig paths map them to the sources), as a user's code does, not by a path into src/.",
      from: { path: '^web/src/' },
      to: { path: '^src/', dependencyTypesNot: ['aliased-tsconfig-paths'] },
    },
    {
      name: 'apps-know-no-apps',
      severity: 'error',
      comment: 'The CLI, the server and the page each stand on the library, not on each other.',
      from: { path: '^src/server/' },
      to: { path: '^(src/cli|web)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
    },
  },
};
