/**
 * Vite's `?url` imports (a file of the build, as its URL), declared here rather than through
 * vite/client so that the root tsconfig.json, which checks the page's modules the tests import,
 * knows them too.
 */
declare module '*.wasm?url' {
  const url: string;
  export default url;
}
