/**
 * The POST routes that take images: /api/predict (one), /api/predict/batch (several) and
 * /api/prepare (the model's input, for a model trained in the page). Decoding and resizing are
 * node/image.ts's, probabilities core/predict.ts's.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { displayName } from '../../core/data/classes.js';
import { predictProbabilities, topK } from '../../core/predict.js';
import { prepareImage } from '../../node/image.js';
import type { ServerContext } from '../context.js';
import { HOW_TO_SEND, HttpError } from '../errors.js';

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

const topKQuery = {
  type: 'object',
  properties: { topK: { type: 'integer', minimum: 1, default: 3, description: 'classes in `top`' } },
  additionalProperties: false,
} as const;

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

export function registerPredictRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { run, meta, shape, names, maxBatch, limitMb } = ctx;

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

  async function classify(bytes: Buffer, name: string, k: number) {
    if (bytes.length === 0) throw new HttpError(400, `${name}: the image is empty (0 bytes); ${HOW_TO_SEND}`);
    const { input, inverted } = await prepareImage(bytes, shape, meta.preprocessing, name);
    const [p] = predictProbabilities(run.model, input, 1, shape);
    return describe(p, k, inverted);
  }

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
}
