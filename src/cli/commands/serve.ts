/** `imgclf serve`: the web app and JSON API over a run directory (see src/server/app.ts). */
import type { Command } from 'commander';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '../../backend/index.js';
import { UserError } from '../../core/errors.js';
import { loadRun } from '../../node/run/rundir.js';
import { createEngine, ENGINES, type EngineName } from '../../node/export/engine.js';
import { buildServer } from '../../server/app.js';
import { DEFAULT_MAX_QUEUE } from '../../server/limits.js';
import { isLoopbackAddress } from '../../server/security.js';
import { type GlobalOptions, withRunLog, numberArg, Output } from '../output.js';
import { runDirOf, type RunOptions, withRunOptions } from '../run-options.js';

/** web/dist of this package: dist/src/cli/commands -> repository root (or src/cli/commands under tsx). */
function defaultWebRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = here.includes(`${path.sep}dist${path.sep}`)
    ? path.resolve(here, '../../../..')
    : path.resolve(here, '../../..');
  return path.join(root, 'web', 'dist');
}

type ServeOptions = RunOptions & {
  host: string;
  port: number;
  maxUploadMb: number;
  maxRequestMb?: number;
  maxConcurrent?: number;
  maxQueue: number;
  allowSvg?: boolean;
  token?: string;
};

export function registerServe(program: Command, globals: () => GlobalOptions): void {
  withRunOptions(
    program
      .command('serve')
      .description(
        'serve a web page and a JSON API that classify images with a trained run, and train in the browser',
      ),
    'folder with the dataset files of a built-in set (for the gallery and in-browser training)',
  )
    .option('--host <host>', 'address to bind; 0.0.0.0 exposes the server to the network', '127.0.0.1')
    .option('--port <port>', 'TCP port (0 = any free port)', numberArg('--port', true), 8080)
    .option('--max-upload-mb <mb>', 'largest accepted image, in MB', numberArg('--max-upload-mb'), 5)
    .option(
      '--max-request-mb <mb>',
      'largest accepted request, all its images together, in MB (default: twice --max-upload-mb)',
      numberArg('--max-request-mb'),
    )
    .option(
      '--max-concurrent <n>',
      'requests decoding or classifying at once (default: twice the CPU cores)',
      numberArg('--max-concurrent', true),
    )
    .option(
      '--max-queue <n>',
      'requests that may wait for a slot; beyond, 503 with Retry-After',
      numberArg('--max-queue', true),
      DEFAULT_MAX_QUEUE,
    )
    .option(
      '--allow-svg',
      'decode SVG uploads too (off by default: rendering an SVG is work no size or time limit bounds)',
    )
    .option(
      '--token <token>',
      'require Authorization: Bearer <token> on the API (default $IMGCLF_TOKEN); open the page as URL#token=<token>',
    )
    .option(
      '--engine <name>',
      'what runs the model for /api/predict: tfjs (the run itself) or onnx (its ONNX export on ONNX Runtime)',
      'tfjs',
    )
    .action(async (opts: ServeOptions & { engine: string }) => {
      const out = new Output(globals());
      if (opts.port < 0 || opts.port > 65535)
        throw new UserError(`--port must be 0 to 65535 (got ${opts.port})`);
      if (!(opts.maxUploadMb > 0))
        throw new UserError(`--max-upload-mb must be positive (got ${opts.maxUploadMb})`);
      const maxRequestMb = opts.maxRequestMb ?? 2 * opts.maxUploadMb;
      if (!(maxRequestMb >= opts.maxUploadMb))
        throw new UserError(
          `--max-request-mb must be at least --max-upload-mb (${opts.maxUploadMb}; got ${maxRequestMb})`,
        );
      if (opts.maxConcurrent !== undefined && !(opts.maxConcurrent >= 1))
        throw new UserError(`--max-concurrent must be at least 1 (got ${opts.maxConcurrent})`);
      if (!(opts.maxQueue >= 0)) throw new UserError(`--max-queue must be 0 or more (got ${opts.maxQueue})`);
      if (!(ENGINES as readonly string[]).includes(opts.engine))
        throw new UserError(`--engine must be one of ${ENGINES.join(', ')} (got '${opts.engine}')`);
      const token = opts.token ?? process.env.IMGCLF_TOKEN;
      if (token !== undefined && !/^[\x21-\x7e]+$/.test(token))
        throw new UserError(
          '--token (or IMGCLF_TOKEN) must be printable ASCII without spaces, and not empty',
        );
      const backend = await selectBackend(opts.backend);
      const run = await withRunLog((log) => loadRun(runDirOf(opts), log));
      const engine = await createEngine(opts.engine as EngineName, run);
      const app = await buildServer({
        run,
        backend,
        maxUploadBytes: Math.round(opts.maxUploadMb * 1024 * 1024),
        maxRequestBytes: Math.round(maxRequestMb * 1024 * 1024),
        maxConcurrent: opts.maxConcurrent,
        maxQueue: opts.maxQueue,
        host: opts.host,
        token,
        decode: { allowSvg: opts.allowSvg ?? false },
        dataDir: opts.dataDir,
        webRoot: defaultWebRoot(),
        engine,
      });
      let address: string;
      try {
        address = await app.listen({ host: opts.host, port: opts.port });
      } catch (err) {
        throw new UserError(`cannot listen on ${opts.host}:${opts.port} (${(err as Error).message})`);
      }
      const on = engine.name === 'onnx' ? 'ONNX Runtime' : backend;
      out.line(`imgclf serve: ${run.metadata.model} from ${run.dir} on ${on}, listening on ${address}`);
      // The page sends the token it finds after '#' in its address; a fragment never reaches
      // the server's (or a proxy's) request log.
      if (token !== undefined) out.line(`open the page at ${address}/#token=<the token>`);
      if (!isLoopbackAddress(opts.host)) {
        process.stderr.write(
          `warning: --host ${opts.host} exposes the server beyond this machine: anyone who reaches it can classify images and download the run's data` +
            (token === undefined
              ? '; set --token (or IMGCLF_TOKEN) to require a token, or bind to 127.0.0.1\n'
              : ' with the token; it travels in plain HTTP, so use a trusted network or put HTTPS in front\n'),
        );
      }
      out.json({ url: address, model: run.metadata.model, backend, engine: engine.name });
      await new Promise<void>((resolve) => {
        const stop = () => {
          app.close().then(resolve, resolve);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
