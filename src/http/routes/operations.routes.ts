import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { AppError } from '../../lib/errors.js';
import { buildOpenApiDocument } from '../openapi.js';
import { defineRoute } from '../route.js';

const tags = ['Operations'];
const READY_TIMEOUT_MS = 2_000;

export const operationRoutes = [
  defineRoute({
    method: 'get',
    path: '/health',
    auth: 'public',
    summary: 'Liveness: the process answers',
    tags,
    response: { schema: z.object({ status: z.literal('ok') }), description: 'alive' },
    handler: async () => ({ status: 'ok' as const }),
  }),
  defineRoute({
    method: 'get',
    path: '/ready',
    auth: 'public',
    summary: 'Readiness: the database answers',
    tags,
    response: { schema: z.object({ status: z.literal('ready') }), description: 'ready for traffic' },
    errors: [503],
    handler: async ({ deps }) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timeout')), READY_TIMEOUT_MS);
      });
      try {
        await Promise.race([deps.db.execute(sql`SELECT 1`), timeout]);
      } catch (error) {
        throw new AppError('unavailable', 'database is not reachable', { reason: 'database_unavailable', cause: error });
      } finally {
        clearTimeout(timer);
      }
      return { status: 'ready' as const };
    },
  }),
  defineRoute({
    method: 'get',
    path: '/metrics',
    auth: 'public',
    summary: 'Prometheus metrics',
    tags,
    response: { description: 'Prometheus text format', contentType: 'text/plain' },
    handler: async ({ deps, res }) => {
      res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
      return undefined;
    },
  }),
  defineRoute({
    method: 'get',
    path: '/openapi.json',
    auth: 'public',
    summary: 'This OpenAPI document',
    tags,
    response: { description: 'OpenAPI 3.1 document', contentType: 'application/json' },
    handler: async () => buildOpenApiDocument(),
  }),
];
