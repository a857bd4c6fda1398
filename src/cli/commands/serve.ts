/** `imgclf serve`: the web app and JSON API over a run directory (see src/server/app.ts). */
import type { Command } from 'commander';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { selectBackend, type BackendName } from '../../backend/index.js';
import { UserError } from '../../core/errors.js';
import { loadRun } from '../../node/run/rundir.js';
import { buildServer } from '../../server/app.js';
import { type GlobalOptions, numberArg, Output } from '../output.js';

/** web/dist of this package: dist/src/cli/commands -> repository root (or src/cli/commands under tsx). */
function defaultWebRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = here.includes(`${path.sep}dist${path.sep}`)
    ? path.resolve(here, '../../../..')
    : path.resolve(here, '../../..');
  return path.join(root, 'web', 'dist');
}

export function registerServe(program: Command, globals: () => GlobalOptions): void {
  program
    .command('serve')
    .description(
      'serve a web page and a JSON API that classify images with a trained run, and train in the browser',
    )
    .requiredOption('--model <dir>', 'run directory written by `imgclf train`')
    .option('--host <host>', 'address to bind; 0.0.0.0 exposes the server to the network', '127.0.0.1')
    .option('--port <port>', 'TCP port (0 = any free port)', numberArg('--port', true), 8080)
    .option('--max-upload-mb <mb>', 'largest accepted image, in MB', numberArg('--max-upload-mb'), 5)
    .option('--backend <name>', 'auto, wasm, cpu or tensorflow', 'auto')
    .option('--data-dir <dir>', 'folder with the dataset files (for the gallery and in-browser training)')
    .action(
      async (opts: {
        model: string;
        host: string;
        port: number;
        maxUploadMb: number;
        backend: BackendName;
        dataDir?: string;
      }) => {
        const out = new Output(globals());
        if (opts.port < 0 || opts.port > 65535)
          throw new UserError(`--port must be 0 to 65535 (got ${opts.port})`);
        if (!(opts.maxUploadMb > 0))
          throw new UserError(`--max-upload-mb must be positive (got ${opts.maxUploadMb})`);
        const backend = await selectBackend(opts.backend);
        const run = await loadRun(opts.model);
        const app = await buildServer({
          run,
          backend,
          maxUploadBytes: Math.round(opts.maxUploadMb * 1024 * 1024),
          dataDir: opts.dataDir,
          webRoot: defaultWebRoot(),
        });
        let address: string;
        try {
          address = await app.listen({ host: opts.host, port: opts.port });
        } catch (err) {
          throw new UserError(`cannot listen on ${opts.host}:${opts.port} (${(err as Error).message})`);
        }
        out.line(
          `imgclf serve: ${run.metadata.model} from ${run.dir} on ${backend}, listening on ${address}`,
        );
        out.json({ url: address, model: run.metadata.model, backend });
        await new Promise<void>((resolve) => {
          const stop = () => {
            app.close().then(resolve, resolve);
          };
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
      },
    );
}
