/**
 * The POST routes that take images: /api/predict (one), /api/predict/batch (several) and
 * /api/prepare (the model's input, for a model trained in the page). Decoding and resizing are
 * node/image.ts's, probabilities core/predict.ts's.
 *
 * A request's images are read whole first (each at most maxUploadBytes, all together at most
 * maxRequestBytes); then, in a slot of the limiter (limits.ts) held until the answer is ready,
 * every header is checked against the request's decode budget (formats, pixels), and decoding
 * (bounded in time) and inference follow. Work stops as soon as the client has gone: nothing is
 * decoded or classified for nobody.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { displayName } from '../../core/data/classes.js';
import { topK } from '../../core/predict.js';
import { type ImageHeader, prepareImage, readImageHeader } from '../../node/image.js';
import type { ServerContext } from '../context.js';
import { HOW_TO_SEND, HttpError, requestTooLarge } from '../errors.js';
import { checkClient, DecodeAllowance } from '../limits.js';

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

const errorResponses = {
  400: errorSchema,
  413: errorSchema,
  415: errorSchema,
  503: errorSchema,
} as const;

const topKQuery = {
  type: 'object',
  properties: { topK: { type: 'integer', minimum: 1, default: 3, description: 'classes in `top`' } },
  additionalProperties: false,
} as const;

interface Upload {
  bytes: Buffer;
  name: string;
  field: string;
}

/**
 * The file parts of a multipart body, each read whole as it arrives. The running total is held
 * to maxRequestBytes, so a request over it is refused once the cap is passed, not after the
 * whole body has been buffered. A body busboy cannot parse (no boundary, cut short, no
 * multipart at all) is a 400; the plugin's own errors (413 for its limits) pass as they are.
 */
async function* uploads(req: FastifyRequest, ctx: ServerContext): AsyncGenerator<Upload> {
  let total = 0;
  try {
    for await (const part of req.parts()) {
      if (part.type !== 'file') continue;
      const bytes = await part.toBuffer();
      total += bytes.length;
      if (total > ctx.maxRequestBytes) throw requestTooLarge(ctx.requestLimitMb);
      yield { bytes, name: part.filename || part.fieldname, field: part.fieldname };
    }
  } catch (err) {
    if (err instanceof HttpError || typeof (err as { statusCode?: unknown }).statusCode === 'number')
      throw err;
    throw new HttpError(
      400,
      `malformed multipart/form-data body (${(err as Error).message}); ${HOW_TO_SEND}`,
    );
  }
}

/** `upload`, unless it is empty (400). */
function nonEmpty<T extends { bytes: Buffer; name: string }>(upload: T): T {
  if (upload.bytes.length === 0)
    throw new HttpError(400, `${upload.name}: the image is empty (0 bytes); ${HOW_TO_SEND}`);
  return upload;
}

/** One image's bytes from a multipart field `image` or a raw body. */
async function singleImage(
  req: FastifyRequest,
  ctx: ServerContext,
): Promise<{ bytes: Buffer; name: string }> {
  if (req.isMultipart()) {
    for await (const u of uploads(req, ctx)) {
      if (u.field === 'image') return { bytes: u.bytes, name: u.name };
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
  const { meta, shape, names, maxBatch, limitMb, requestLimitMb, limiter } = ctx;

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

  /**
   * Reads the headers of a request's images and charges them to its decode budget, decoding
   * nothing: an unlisted format, a pixel bomb or a request over its pixels is refused here.
   */
  async function check(
    files: { bytes: Buffer; name: string }[],
    budget: DecodeAllowance,
    req: FastifyRequest,
  ) {
    const headers: ImageHeader[] = [];
    for (const f of files) {
      checkClient(req);
      const header = await readImageHeader(f.bytes, f.name, budget.imageOptions);
      budget.charge(header, f.name);
      headers.push(header);
    }
    return headers;
  }

  /** Decodes one checked image (once) into the model's input, within the request's time; nothing for a gone client. */
  async function prepare(
    bytes: Buffer,
    name: string,
    header: ImageHeader,
    budget: DecodeAllowance,
    req: FastifyRequest,
  ) {
    checkClient(req);
    return prepareImage(bytes, shape, meta.preprocessing, name, {
      ...budget.imageOptions,
      header,
      timeoutSeconds: budget.seconds(name),
    });
  }

  /** Decodes and classifies one checked image; a client gone while it decoded gets no inference. */
  async function classify(
    bytes: Buffer,
    name: string,
    header: ImageHeader,
    k: number,
    budget: DecodeAllowance,
    req: FastifyRequest,
  ) {
    const { input, inverted } = await prepare(bytes, name, header, budget, req);
    checkClient(req);
    const [p] = await ctx.engine.probabilities(input, 1);
    return describe(p, k, inverted);
  }

  /** One image, checked, decoded (and classified) in a slot of the limiter: the slot is held throughout. */
  const one = <T>(
    req: FastifyRequest,
    image: { bytes: Buffer; name: string },
    job: (h: ImageHeader, b: DecodeAllowance) => Promise<T>,
  ) =>
    limiter.run(req, async () => {
      const budget = new DecodeAllowance(ctx.decode);
      const [header] = await check([image], budget, req);
      return job(header, budget);
    });

  app.post(
    '/api/predict',
    {
      schema: {
        summary: 'Classify one image',
        description: `${HOW_TO_SEND}. At most ${limitMb} MB. Any size or colour; it is converted as for training. 503 with Retry-After when the server is busy.`,
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
      const { bytes, name } = nonEmpty(await singleImage(req, ctx));
      const k = (req.query as { topK: number }).topK;
      return one(req, { bytes, name }, (header, budget) => classify(bytes, name, header, k, budget, req));
    },
  );

  app.post(
    '/api/predict/batch',
    {
      schema: {
        summary: 'Classify several images',
        description: `Multipart form with one or more file fields (any field name), at most ${maxBatch} images of ${limitMb} MB each and ${requestLimitMb} MB together. Results keep the upload order. One bad image fails the request, naming the file.`,
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
      const files: Upload[] = [];
      for await (const u of uploads(req, ctx)) files.push(u);
      if (files.length === 0) throw new HttpError(400, 'the multipart form holds no image files');
      files.forEach(nonEmpty);
      // One slot for the whole batch, its images one after another: a batch is one request's
      // worth of work. Every header is checked before the first decode, so a batch over its
      // pixels decodes nothing, and the client is checked before each image.
      return limiter.run(req, async () => {
        const budget = new DecodeAllowance(ctx.decode);
        const headers = await check(files, budget, req);
        const predictions = [];
        for (const [i, f] of files.entries())
          predictions.push({
            file: f.name,
            ...(await classify(f.bytes, f.name, headers[i], k, budget, req)),
          });
        return { predictions };
      });
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
      const { bytes, name } = nonEmpty(await singleImage(req, ctx));
      const { input, inverted } = await one(req, { bytes, name }, (header, budget) =>
        prepare(bytes, name, header, budget, req),
      );
      return { shape, input: Array.from(input), inverted };
    },
  );
}
