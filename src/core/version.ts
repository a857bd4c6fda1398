/** The package version, read from package.json at build time by tsc's resolveJsonModule. */
import pkg from '../../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;
