/** The backend names a plan may ask for; src/backend/index.ts turns one into a running backend. */
export const BACKENDS = ['auto', 'wasm', 'cpu', 'tensorflow'] as const;
export type BackendName = (typeof BACKENDS)[number];
