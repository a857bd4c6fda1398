/**
 * The web server: a JSON API over a run directory, the run's data for the gallery and for
 * training in the browser, and the page built from web/. A thin shell: decoding is
 * node/image.ts's, probabilities are core/predict.ts's, data loading is node/run/data.ts's (the
 * source the run recorded, through node/data/load.ts). The routes live in routes/, by group:
 * model.ts (health, model), predict.ts (the POST routes that take images), data.ts (data and
 * gallery); this module builds the app around them.
 *
 * Every error leaves as JSON { statusCode, error, message }: 413 for oversized uploads, 415 for
 * bodies that are no image, 400 for images that fail to decode and other bad requests, 404 for
 * unknown routes and for data the run was trained on that is not available.
 */
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import { existsSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import { UserError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import { NotAnImageError } from '../node/image.js';
import type { ServerContext, ServerOptions } from './context.js';
import { runDataLoader } from './data.js';
import { HOW_TO_SEND } from './errors.js';
import { registerDataRoutes } from './routes/data.js';
import { registerModelRoutes } from './routes/model.js';
import { registerPredictRoutes } from './routes/predict.js';

export type { ServerOptions } from './context.js';
export { HttpError } from './errors.js';

const RAW_TYPES = /^(image\/[\w.+-]+|application\/octet-stream)$/;

/** Builds the app (not listening): tests use `inject`, the CLI calls `listen`. */
export async function buildServer(opts: ServerOptions): Promise<FastifyInstance> {
  const { run, maxUploadBytes } = opts;
  const maxBatch = opts.maxBatch ?? 64;
  const meta = run.metadata;
  const limitMb = +(maxUploadBytes / 1024 / 1024).toFixed(2);

  const app = Fastify({ logger: opts.logger ?? false, bodyLimit: maxUploadBytes });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    let status = err.statusCode ?? 500;
    let message = err.message;
    if (err instanceof NotAnImageError) status = 415;
    else if (err instanceof UserError) status = 400;
    else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || err.code === 'FST_REQ_FILE_TOO_LARGE')
      message = `upload too large: the limit is ${limitMb} MB per image`;
    else if (err.code === 'FST_FILES_LIMIT') message = `too many images: at most ${maxBatch} per request`;
    else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      message = `unsupported Content-Type '${req.headers['content-type'] ?? ''}'; ${HOW_TO_SEND}`;
    if (status >= 500) {
      req.log.error(err);
      message = 'internal server error';
    }
    reply.status(status).send({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', message });
  });

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'imgclf',
        version: VERSION,
        description: `Classify images with the model in ${run.dir} (${meta.model} on ${meta.dataset}), and fetch the dataset for in-browser training.`,
      },
    },
  });
  await app.register(multipart, {
    limits: { fileSize: maxUploadBytes, files: maxBatch, fields: 16, parts: maxBatch + 16 },
  });
  // Raw image bodies arrive as one Buffer; bodyLimit turns oversized ones into 413.
  app.addContentTypeParser(RAW_TYPES, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  const ctx: ServerContext = {
    opts,
    run,
    meta,
    shape: meta.inputShape,
    names: meta.classNames,
    maxBatch,
    limitMb,
    dataset: runDataLoader(meta, opts.dataDir),
  };
  registerModelRoutes(app, ctx);
  registerPredictRoutes(app, ctx);
  registerDataRoutes(app, ctx);

  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const webRoot = opts.webRoot;
  if (webRoot && existsSync(webRoot)) {
    await app.register(fastifyStatic, { root: webRoot, prefix: '/' });
  } else {
    app.get('/', { schema: { hide: true } }, async (_req, reply) =>
      reply
        .type('text/plain')
        .send("The page is not built (web/dist is missing): run 'npm run build:web'. The API is under /api."),
    );
  }

  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send({
      statusCode: 404,
      error: 'Not Found',
      message: `no route ${req.method} ${req.url.split('?')[0]}; see /api/openapi.json`,
    });
  });

  return app;
}
