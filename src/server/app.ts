/**
 * The web server: a JSON API over a run directory, the dataset for in-browser training, and the
 * page built from web/. A thin shell: decoding is predict/preprocess.ts's, probabilities are
 * predict/predict.ts's, data loading is data/'s.
 *
 * Every error leaves as JSON { statusCode, error, message }: 413 for oversized uploads, 415 for
 * bodies that are no image, 400 for images that fail to decode and other bad requests.
 */
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { existsSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import sharp from 'sharp';
import { displayName } from '../core/data/classes.js';
import { imageSize, type Split } from '../core/data/dataset.js';
import { resizeSplit } from '../core/data/transforms.js';
import { UserError } from '../core/errors.js';
import { predictProbabilities, topK } from '../core/predict.js';
import { NotAnImageError, prepareImage } from '../node/image.js';
import type { LoadedRun } from '../node/run/rundir.js';
import { evaluate } from '../core/train/loop.js';
import { VERSION } from '../core/version.js';
import { imagesIdx, labelsIdx, loadRawDataset, type RawDataset, type SplitName } from './data.js';

export interface ServerOptions {
  run: LoadedRun;
  /** Largest accepted image (and request body), in bytes. */
  maxUploadBytes: number;
  /** Most images in one POST /api/predict/batch. */
  maxBatch?: number;
  /** Folder with the built page (web/dist); null or missing = API only. */
  webRoot?: string | null;
  /** Dataset folder for the data and gallery routes (default: the usual search chain). */
  dataDir?: string;
  /** tfjs backend in use, reported by /api/health. */
  backend?: string;
  logger?: boolean;
}

/** An error with an HTTP status, answered as JSON by the error handler. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

const errorSchema = {
  type: 'object',
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string' },
    message: { type: 'string' },
  },
} as const;

const predictionSchema = {
  type: 'object',
  properties: {
    label: { type: 'string', description: 'most probable class' },
    labelZh: { type: 'string' },
    classIndex: { type: 'integer' },
    top: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          label: { type: 'string' },
          index: { type: 'integer' },
          probability: { type: 'number' },
        },
      },
    },
    probabilities: { type: 'array', items: { type: 'number' }, description: 'one per class, in class order' },
    inverted: { type: 'boolean', description: 'light background inverted to match the dataset' },
    file: { type: 'string' },
  },
} as const;

const errorResponses = { 400: errorSchema, 413: errorSchema, 415: errorSchema } as const;

const RAW_TYPES = /^(image\/[\w.+-]+|application\/octet-stream)$/;

const HOW_TO_SEND =
  "send an image as the multipart form field 'image' or as the raw request body with Content-Type image/* or application/octet-stream";

/** Builds the app (not listening): tests use `inject`, the CLI calls `listen`. */
export async function buildServer(opts: ServerOptions): Promise<FastifyInstance> {
  const { run, maxUploadBytes } = opts;
  const maxBatch = opts.maxBatch ?? 64;
  const meta = run.metadata;
  const shape = meta.inputShape;
  const names = meta.classNames;
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

  let datasetPromise: Promise<RawDataset> | undefined;
  const dataset = (): Promise<RawDataset> => {
    datasetPromise ??= loadRawDataset(meta.dataset, opts.dataDir).catch((err: Error) => {
      datasetPromise = undefined;
      throw new HttpError(503, `dataset unavailable: ${err.message}`);
    });
    return datasetPromise;
  };

  /** One image's bytes from a multipart field `image` or a raw body. */
  async function singleImage(req: FastifyRequest): Promise<{ bytes: Buffer; name: string }> {
    if (req.isMultipart()) {
      for await (const part of req.parts()) {
        if (part.type === 'file' && part.fieldname === 'image') {
          return { bytes: await part.toBuffer(), name: part.filename || 'image' };
        }
        if (part.type === 'file') await part.toBuffer();
      }
      throw new HttpError(400, `the multipart form has no file field 'image'; ${HOW_TO_SEND}`);
    }
    if (!Buffer.isBuffer(req.body))
      throw new HttpError(
        415,
        `Content-Type '${req.headers['content-type'] ?? ''}' is not an image; ${HOW_TO_SEND}`,
      );
    return { bytes: req.body, name: 'body' };
  }

  async function classify(bytes: Buffer, name: string, k: number) {
    if (bytes.length === 0) throw new HttpError(400, `${name}: the image is empty (0 bytes); ${HOW_TO_SEND}`);
    const { input, inverted } = await prepareImage(bytes, shape, meta.preprocessing, name);
    const [p] = predictProbabilities(run.model, input, 1, shape);
    return describe(p, k, inverted);
  }

  function describe(p: Float32Array, k: number, inverted: boolean) {
    const top = topK(p, Math.min(k, names.length));
    return {
      label: names[top[0]],
      labelZh: displayName(names[top[0]], 'zh'),
      classIndex: top[0],
      top: top.map((i) => ({ label: names[i], index: i, probability: p[i] })),
      probabilities: Array.from(p),
      inverted,
    };
  }

  const topKQuery = {
    type: 'object',
    properties: { topK: { type: 'integer', minimum: 1, default: 3, description: 'classes in `top`' } },
    additionalProperties: false,
  } as const;

  app.get(
    '/api/health',
    {
      schema: {
        summary: 'Health check',
        response: {
          200: {
            type: 'object',
            properties: {
              status: { type: 'string' },
              model: { type: 'string' },
              backend: { type: 'string' },
              version: { type: 'string' },
            },
          },
        },
      },
    },
    async () => ({ status: 'ok', model: meta.model, backend: opts.backend ?? 'unknown', version: VERSION }),
  );

  app.get(
    '/api/model',
    {
      schema: {
        summary: 'The model: classes, input shape, preprocessing and training metrics (metrics.jsonl)',
      },
    },
    async () => ({
      model: meta.model,
      dataset: meta.dataset,
      classNames: names,
      classNamesZh: names.map((n) => displayName(n, 'zh')),
      inputShape: shape,
      preprocessing: meta.preprocessing,
      config: meta.config,
      testAccuracy: meta.testAccuracy ?? null,
      created: meta.created,
      metrics: run.metrics,
    }),
  );

  app.post(
    '/api/predict',
    {
      schema: {
        summary: 'Classify one image',
        description: `${HOW_TO_SEND}. At most ${limitMb} MB. Any size or colour; it is converted as for training.`,
        consumes: [
          'multipart/form-data',
          'image/png',
          'image/jpeg',
          'image/webp',
          'application/octet-stream',
        ],
        querystring: topKQuery,
        response: { 200: predictionSchema, ...errorResponses },
      },
    },
    async (req) => {
      const { bytes, name } = await singleImage(req);
      return classify(bytes, name, (req.query as { topK: number }).topK);
    },
  );

  app.post(
    '/api/predict/batch',
    {
      schema: {
        summary: 'Classify several images',
        description: `Multipart form with one or more file fields (any field name), at most ${maxBatch} images of ${limitMb} MB each. Results keep the upload order. One bad image fails the request, naming the file.`,
        consumes: ['multipart/form-data'],
        querystring: topKQuery,
        response: {
          200: { type: 'object', properties: { predictions: { type: 'array', items: predictionSchema } } },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      if (!req.isMultipart())
        throw new HttpError(415, 'send the images as multipart/form-data file fields (one field per image)');
      const k = (req.query as { topK: number }).topK;
      const files: { bytes: Buffer; name: string }[] = [];
      for await (const part of req.parts()) {
        if (part.type === 'file')
          files.push({ bytes: await part.toBuffer(), name: part.filename || part.fieldname });
      }
      if (files.length === 0) throw new HttpError(400, 'the multipart form holds no image files');
      const predictions = [];
      for (const f of files) predictions.push({ file: f.name, ...(await classify(f.bytes, f.name, k)) });
      return { predictions };
    },
  );

  app.post(
    '/api/prepare',
    {
      schema: {
        summary: "An image converted to the model's input (for a model trained in the page)",
        description: `${HOW_TO_SEND}. Returns H*W*C values in [0, 1].`,
        consumes: ['multipart/form-data', 'image/png', 'image/jpeg', 'application/octet-stream'],
      },
    },
    async (req) => {
      const { bytes, name } = await singleImage(req);
      if (bytes.length === 0) throw new HttpError(400, `${name}: the image is empty (0 bytes)`);
      const { input, inverted } = await prepareImage(bytes, shape, meta.preprocessing, name);
      return { shape, input: Array.from(input), inverted };
    },
  );

  const splitParams = {
    type: 'object',
    properties: { split: { type: 'string', enum: ['train', 'test'] } },
    required: ['split'],
  } as const;
  const limitQuery = {
    type: 'object',
    properties: {
      limit: { type: 'integer', minimum: 1, description: 'only the first N examples (default: all)' },
    },
    additionalProperties: false,
  } as const;

  app.get(
    '/api/data',
    { schema: { summary: 'The dataset served for in-browser training: classes, shape, counts' } },
    async () => {
      const ds = await dataset();
      return {
        name: ds.name,
        classNames: ds.classNames,
        classNamesZh: ds.classNames.map((n) => displayName(n, 'zh')),
        shape: ds.shape,
        train: ds.train.count,
        test: ds.test.count,
      };
    },
  );

  const sendIdx = (reply: FastifyReply, bytes: Uint8Array) =>
    reply
      .type('application/octet-stream')
      .header('cache-control', 'public, max-age=3600')
      .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));

  app.get(
    '/api/data/:split/images',
    {
      schema: {
        summary: 'Images of a split as an uncompressed IDX file of bytes (0..255)',
        params: splitParams,
        querystring: limitQuery,
      },
    },
    async (req, reply) => {
      const { split } = req.params as { split: SplitName };
      const { limit } = req.query as { limit?: number };
      const ds = await dataset();
      return sendIdx(reply, imagesIdx(ds, split, limit ?? ds[split].count));
    },
  );

  app.get(
    '/api/data/:split/labels',
    {
      schema: {
        summary: 'Labels of a split as an uncompressed idx1 file',
        params: splitParams,
        querystring: limitQuery,
      },
    },
    async (req, reply) => {
      const { split } = req.params as { split: SplitName };
      const { limit } = req.query as { limit?: number };
      const ds = await dataset();
      return sendIdx(reply, labelsIdx(ds, split, limit ?? ds[split].count));
    },
  );

  app.get(
    '/api/data/:split/image/:index',
    {
      schema: {
        summary: 'One image of a split as PNG',
        params: {
          type: 'object',
          properties: {
            split: { type: 'string', enum: ['train', 'test'] },
            index: { type: 'integer', minimum: 0 },
          },
          required: ['split', 'index'],
        },
      },
    },
    async (req, reply) => {
      const { split, index } = req.params as { split: SplitName; index: number };
      const ds = await dataset();
      const s = ds[split];
      if (index >= s.count)
        throw new HttpError(404, `${split} has ${s.count} images; index ${index} is out of range`);
      const [h, w, c] = ds.shape;
      const row = imageSize(ds.shape);
      const png = await sharp(Buffer.from(s.images.subarray(index * row, (index + 1) * row)), {
        raw: { width: w, height: h, channels: c as 1 | 3 | 4 },
      })
        .png()
        .toBuffer();
      return reply.type('image/png').header('cache-control', 'public, max-age=3600').send(png);
    },
  );

  app.get(
    '/api/gallery',
    {
      schema: {
        summary: 'Test images with their true labels and the model’s predictions',
        querystring: {
          type: 'object',
          properties: {
            offset: { type: 'integer', minimum: 0, default: 0 },
            count: { type: 'integer', minimum: 1, maximum: 200, default: 24 },
          },
          additionalProperties: false,
        },
      },
    },
    async (req) => {
      const { offset, count } = req.query as { offset: number; count: number };
      const ds = await dataset();
      const n = Math.max(0, Math.min(count, ds.test.count - offset));
      const row = imageSize(ds.shape);
      const bytes = ds.test.images.subarray(offset * row, (offset + n) * row);
      let split: Split = {
        images: Float32Array.from(bytes, (b) => b / meta.preprocessing.scale),
        labels: ds.test.labels.subarray(offset, offset + n),
        count: n,
      };
      // A run trained with --resize expects larger inputs than the stored images.
      if (shape[0] !== ds.shape[0] || shape[1] !== ds.shape[1])
        split = resizeSplit(split, ds.shape, shape[0]);
      const r = n ? evaluate(run.model, split, { shape, withProbabilities: true }) : undefined;
      const k = names.length;
      const items = Array.from({ length: n }, (_, i) => {
        const predicted = r!.predicted[i];
        const truth = split.labels[i];
        return {
          index: offset + i,
          image: `/api/data/test/image/${offset + i}`,
          label: names[truth],
          predicted: names[predicted],
          probability: r!.probabilities![i * k + predicted],
          correct: predicted === truth,
        };
      });
      return { offset, total: ds.test.count, items };
    },
  );

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
