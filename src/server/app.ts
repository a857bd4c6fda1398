/**
 * The web server: a JSON API over a run directory, the run's data for the gallery and for
 * training in the browser, and the page built from web/. A thin shell: decoding is
 * node/image.ts's, probabilities are core/predict.ts's, data loading is node/run/data.ts's (the
 * source the run recorded, through node/data/load.ts). The routes live in routes/, by group:
 * model.ts (health, model), predict.ts (the POST routes that take images), data.ts (data and
 * gallery); this module builds the app around them.
 *
 * Every error leaves as JSON { statusCode, error, message }: 413 for oversized uploads and
 * requests and for images over the decode budget (pixels, seconds), 415 for bodies that are no
 * image (any Content-Type but an image's or multipart, refused before the body is read: no JSON
 * or text body is ever parsed), 400 for images that fail to decode, malformed multipart bodies
 * and other bad requests, 401 without the token when one is set, 403 for cross-site requests,
 * 404 for unknown routes and for data the run was trained on that is not available, 421 for a
 * Host that is not this loopback-bound server's, 503 (with Retry-After) when the inference queue
 * or the downloads are full.
 *
 * Hardening (docs/serve.md, "Security and limits"): socket timeouts, the inference limiter and
 * the decode budget are limits.ts's; security headers, the Host, cross-site and token checks
 * security.ts's; path and credential hiding paths.ts's.
 */
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import { existsSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import { UserError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import { ImageTooLargeError, NotAnImageError } from '../node/image.js';
import type { ServerContext, ServerOptions } from './context.js';
import { runDataLoader } from './data.js';
import { HOW_TO_SEND, HttpError, requestTooLarge } from './errors.js';
import {
  checkIntervalMs,
  DEFAULT_MAX_QUEUE,
  defaultMaxConcurrent,
  InferenceLimiter,
  resolveDecodeBudget,
  resolveTimeouts,
} from './limits.js';
import { baseName } from './paths.js';
import { registerDataRoutes } from './routes/data.js';
import { registerModelRoutes } from './routes/model.js';
import { registerPredictRoutes } from './routes/predict.js';
import { registerSecurity } from './security.js';
import { tfjsEngine } from '../node/export/engine.js';

export type { ServerOptions } from './context.js';
export { HttpError } from './errors.js';

/** Raw image bodies; parameters (`image/png; charset=utf-8`) are allowed and ignored. */
const RAW_TYPES = /^(image\/[\w.+-]+|application\/octet-stream)\s*(;.*)?$/i;

const toMb = (bytes: number) => +(bytes / 1024 / 1024).toFixed(2);

/** Builds the app (not listening): tests use `inject`, the CLI calls `listen`. */
export async function buildServer(opts: ServerOptions): Promise<FastifyInstance> {
  const { run, maxUploadBytes } = opts;
  const maxBatch = opts.maxBatch ?? 64;
  const maxRequestBytes = opts.maxRequestBytes ?? 2 * maxUploadBytes;
  if (maxRequestBytes < maxUploadBytes)
    throw new UserError(
      `the request limit (${toMb(maxRequestBytes)} MB) is below the image limit (${toMb(maxUploadBytes)} MB)`,
    );
  const meta = run.metadata;
  const limitMb = toMb(maxUploadBytes);
  const requestLimitMb = toMb(maxRequestBytes);
  const timeouts = resolveTimeouts(opts.timeouts);
  const limiter = new InferenceLimiter(
    opts.maxConcurrent ?? defaultMaxConcurrent(),
    opts.maxQueue ?? DEFAULT_MAX_QUEUE,
  );

  const decode = resolveDecodeBudget(opts.decode);
  const maxDownloads = opts.maxDownloads ?? 4;
  if (!(Number.isInteger(maxDownloads) && maxDownloads >= 1))
    throw new Error(`maxDownloads must be a positive integer (got ${maxDownloads})`);

  const app = Fastify({
    logger: opts.logger ?? false,
    // A raw body is one image; multipart bodies are held to maxRequestBytes below.
    bodyLimit: maxUploadBytes,
    connectionTimeout: timeouts.idleMs,
    keepAliveTimeout: timeouts.keepAliveMs,
    requestTimeout: timeouts.requestMs,
    http: {
      headersTimeout: timeouts.headersMs,
      requestTimeout: timeouts.requestMs,
      connectionsCheckingInterval: checkIntervalMs(timeouts),
    },
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    let status = err.statusCode ?? 500;
    let message = err.message;
    if (err instanceof HttpError) reply.headers(err.headers);
    else if (err instanceof ImageTooLargeError) status = 413;
    else if (err instanceof NotAnImageError) status = 415;
    else if (err instanceof UserError) status = 400;
    else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || err.code === 'FST_REQ_FILE_TOO_LARGE')
      message = `upload too large: the limit is ${limitMb} MB per image`;
    else if (err.code === 'FST_FILES_LIMIT') message = `too many images: at most ${maxBatch} per request`;
    else if (err.code === 'FST_PARTS_LIMIT' || err.code === 'FST_FIELDS_LIMIT')
      message = `too many form parts: at most ${maxBatch} files and 16 other fields per request`;
    else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      message = `Content-Type '${(req.headers['content-type'] ?? '').slice(0, 100)}' is not an image; ${HOW_TO_SEND}`;
    // Only an unexpected error hides its message; an HttpError's (a 503's too) is for the client.
    if (status >= 500 && !(err instanceof HttpError)) {
      req.log.error(err);
      message = 'internal server error';
    }
    // Refused before its body was read (too large, busy, malformed): the rest of the body is
    // read and dropped, not buffered, so the answer reaches the client and the connection stays
    // usable; requestTimeout bounds how long that may take.
    if (req.raw.complete === false) {
      req.raw.unpipe();
      req.raw.resume();
    }
    reply.status(status).send({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', message });
  });

  // No route takes JSON or text: without their parsers such bodies are refused (415) before
  // they are read, instead of being parsed first (a 5 MB nested JSON array holds the event loop
  // for seconds). Image and multipart bodies have their own parsers below.
  app.removeAllContentTypeParsers();
  registerSecurity(app, { host: opts.host ?? '127.0.0.1', token: opts.token });
  // The whole-request cap, before any of the body is read, when the client says its length;
  // without a Content-Length the multipart reader counts (routes/predict.ts).
  app.addHook('onRequest', (req, _reply, done) => {
    const length = Number(req.headers['content-length'] ?? 0);
    done(length > maxRequestBytes ? requestTooLarge(requestLimitMb) : undefined);
  });

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'imgclf',
        version: VERSION,
        description: `Classify images with the model in ${baseName(run.dir)} (${meta.model} on ${meta.dataset}), and fetch the dataset for in-browser training.`,
      },
    },
  });
  await app.register(multipart, {
    limits: {
      fileSize: maxUploadBytes,
      files: maxBatch,
      fields: 16,
      fieldSize: 64 * 1024,
      parts: maxBatch + 16,
    },
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
    maxRequestBytes,
    requestLimitMb,
    decode,
    limiter,
    engine: opts.engine ?? tfjsEngine(run),
    dataset: runDataLoader(meta, opts.dataDir, run.dir, {
      retryMs: opts.dataRetryMs,
      log: (message) => app.log.warn(message),
    }),
    downloads: { running: 0, max: maxDownloads },
  };
  app.addHook('onClose', async () => ctx.engine.dispose());
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
