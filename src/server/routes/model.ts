/** GET /api/health and GET /api/model: what the server runs. */
import type { FastifyInstance } from 'fastify';
import { displayName } from '../../core/data/classes.js';
import { VERSION } from '../../core/version.js';
import type { ServerContext } from '../context.js';

export function registerModelRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { run, meta, shape, names, opts } = ctx;

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
}
