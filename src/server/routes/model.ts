/**
 * GET /api/health and GET /api/model: what the server runs. Paths in the run's config and data
 * source are shown as base names (server/paths.ts): answers do not tell where files are.
 */
import type { FastifyInstance } from 'fastify';
import { displayName } from '../../core/data/classes.js';
import { VERSION } from '../../core/version.js';
import type { ServerContext } from '../context.js';
import { publicPaths } from '../paths.js';

export function registerModelRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { run, meta, shape, names, opts, limiter } = ctx;

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
              engine: { type: 'string' },
              version: { type: 'string' },
              inference: {
                type: 'object',
                description: 'the inference limiter: slots, queue, and requests refused (503) or dropped',
                properties: {
                  concurrency: { type: 'integer' },
                  queue: { type: 'integer' },
                  running: { type: 'integer' },
                  waiting: { type: 'integer' },
                  completed: { type: 'integer' },
                  rejected: { type: 'integer' },
                  abandoned: { type: 'integer' },
                },
              },
            },
          },
        },
      },
    },
    async () => ({
      status: 'ok',
      model: meta.model,
      backend: opts.backend ?? 'unknown',
      engine: ctx.engine.name,
      version: VERSION,
      inference: limiter.stats(),
    }),
  );

  app.get(
    '/api/model',
    {
      schema: {
        summary: 'The model: classes, input shape, preprocessing and training metrics (metrics.jsonl)',
        description: 'Paths in `config` and `data` (the training data source) are shown as base names.',
      },
    },
    async () => ({
      model: meta.model,
      dataset: meta.dataset,
      classNames: names,
      classNamesZh: names.map((n) => displayName(n, 'zh')),
      inputShape: shape,
      preprocessing: publicPaths(meta.preprocessing),
      config: publicPaths(meta.config),
      data: meta.data ? publicPaths(meta.data) : null,
      testAccuracy: meta.testAccuracy ?? null,
      created: meta.created,
      metrics: run.metrics,
    }),
  );
}
