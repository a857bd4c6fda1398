/**
 * The run's data: GET /api/data (what it is), /api/data/:split/images|labels (IDX files, for
 * training in the page), /api/data/:split/image/:index (one image as PNG) and /api/gallery (test
 * images with the server model's predictions). All of them serve the data the run was trained
 * on (server/data.ts), and answer 404 with the reason when it is not available. The gallery's
 * inference takes a slot of the limiter, as the predict routes do.
 *
 * An IDX download is sent from the split's one shared file (views, no copy), and only a few are
 * served at once (maxDownloads; beyond, 503 with Retry-After): slow readers cannot make the
 * server hold more than a few sockets' worth of 47 MB answers.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { displayName } from '../../core/data/classes.js';
import { imageSize, type ImageShape, type Split } from '../../core/data/dataset.js';
import { evaluate } from '../../core/train/loop.js';
import type { ServerContext } from '../context.js';
import { idxParts, type SplitName } from '../data.js';
import { HttpError } from '../errors.js';

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

const TRAINING = "training in the page needs the run's images";

/** The parts of an IDX file as one answer: a Buffer view of a whole file, or a stream of header and data views. */
function sendIdx(reply: FastifyReply, parts: Uint8Array[]) {
  const buffers = parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength));
  reply
    .type('application/octet-stream')
    .header('cache-control', 'public, max-age=3600')
    .header(
      'content-length',
      buffers.reduce((n, b) => n + b.length, 0),
    );
  return reply.send(buffers.length === 1 ? buffers[0] : Readable.from(buffers, { objectMode: false }));
}

/** Takes a download slot for `req` until its answer is done (or its client gone); 503 when none is free. */
function takeDownloadSlot(
  req: FastifyRequest,
  reply: FastifyReply,
  downloads: ServerContext['downloads'],
): void {
  if (downloads.running >= downloads.max)
    throw new HttpError(
      503,
      `the server is busy: ${downloads.running} downloads of the run's data are in progress, the most it serves at once; try again in a few seconds`,
      { 'retry-after': '5' },
    );
  downloads.running++;
  let held = true;
  const release = () => {
    if (held) downloads.running--;
    held = false;
  };
  // 'finish' once the answer is handed to the socket, 'close' if the client went first.
  reply.raw.once('finish', release).once('close', release);
}

/** One image's bytes as PNG: grayscale for one channel (built-in sets, CSV), RGB for three (folders). */
function png(bytes: Uint8Array, [h, w, c]: ImageShape): Promise<Buffer> {
  if (c !== 1 && c !== 3) throw new Error(`cannot draw images of ${c} channels as PNG`);
  return sharp(Buffer.from(bytes), { raw: { width: w, height: h, channels: c } })
    .png()
    .toBuffer();
}

export function registerDataRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { run, meta, shape, names, dataset, limiter, downloads } = ctx;

  app.get(
    '/api/data',
    { schema: { summary: 'The dataset served for in-browser training: classes, shape, counts' } },
    async () => {
      const ds = await dataset(TRAINING);
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

  // The two IDX routes differ only in what they send.
  for (const [what, summary] of [
    ['images', 'Images of a split as an uncompressed IDX file of bytes (0..255)'],
    ['labels', 'Labels of a split as an uncompressed idx1 file'],
  ] as const) {
    app.get(
      `/api/data/:split/${what}`,
      {
        schema: {
          summary,
          description: `At most ${downloads.max} downloads at once; beyond, 503 with Retry-After.`,
          params: splitParams,
          querystring: limitQuery,
        },
      },
      async (req, reply) => {
        const { split } = req.params as { split: SplitName };
        const { limit } = req.query as { limit?: number };
        const ds = await dataset(TRAINING);
        takeDownloadSlot(req, reply, downloads);
        return sendIdx(reply, idxParts(ds, split, what, limit ?? ds[split].count));
      },
    );
  }

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
      const ds = await dataset(`this route serves the run's ${split} images`);
      const s = ds[split];
      if (index >= s.count)
        throw new HttpError(404, `${split} has ${s.count} images; index ${index} is out of range`);
      const row = imageSize(ds.shape);
      const image = await png(s.images.subarray(index * row, (index + 1) * row), ds.shape);
      return reply.type('image/png').header('cache-control', 'public, max-age=3600').send(image);
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
      const ds = await dataset("the gallery needs the run's test images");
      const n = Math.max(0, Math.min(count, ds.test.count - offset));
      const row = imageSize(ds.shape);
      const bytes = ds.test.images.subarray(offset * row, (offset + n) * row);
      // The loader checked that the data has the model's input shape (a run trained with
      // --resize reloads its data resized), so the images go to the model as they are.
      const split: Split = {
        images: Float32Array.from(bytes, (b) => b / meta.preprocessing.scale),
        labels: ds.test.labels.subarray(offset, offset + n),
        count: n,
      };
      const r = n
        ? await limiter.run(req, async () => evaluate(run.model, split, { shape, withProbabilities: true }))
        : undefined;
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
}
