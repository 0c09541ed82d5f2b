import { OpenAPIRegistry, OpenApiGeneratorV31, type RouteConfig } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { ErrorBody } from '../contracts/index.js';
import { allRoutes } from './routes/index.js';
import type { RouteSpec } from './route.js';

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'invalid request',
  401: 'missing, invalid, revoked or expired credential',
  402: 'insufficient credits',
  403: 'credential not allowed on this route',
  404: 'not found (or owned by another team)',
  409: 'state conflict, or Idempotency-Key reused with another request',
  413: 'body too large',
  429: 'rate limited',
  502: 'upstream failed before the first byte',
  503: 'not ready',
  504: 'upstream timed out before the first byte',
};

function errorStatuses(route: RouteSpec): number[] {
  const statuses = new Set(route.errors ?? []);
  if (route.params || route.query || route.body) statuses.add(400);
  if (route.auth !== 'public') statuses.add(401);
  if (route.auth === 'admin' || route.auth === 'team') statuses.add(403);
  if (route.body) statuses.add(413);
  return [...statuses].sort();
}

function toRouteConfig(route: RouteSpec): RouteConfig {
  const errorResponses = Object.fromEntries(
    errorStatuses(route).map((status) => [
      status,
      { description: ERROR_DESCRIPTIONS[status] ?? 'error', content: { 'application/json': { schema: ErrorBody } } },
    ]),
  );
  const contentType = route.response.contentType ?? 'application/json';
  return {
    method: route.method,
    path: route.path,
    summary: route.summary,
    tags: route.tags,
    ...(route.auth !== 'public' && { security: [{ bearer: [] }] }),
    request: {
      ...(route.params && { params: route.params as z.ZodObject }),
      ...(route.query && { query: route.query as z.ZodObject }),
      ...(route.idempotent && {
        headers: z.object({
          'Idempotency-Key': z.string().max(255).optional().meta({
            description: 'retry safely: the same key and body replay the first answer for 24 hours',
          }),
        }),
      }),
      ...(route.body && { body: { required: true, content: { 'application/json': { schema: route.body } } } }),
    },
    responses: {
      [route.response.status ?? 200]: {
        description: route.response.description,
        ...(route.response.schema
          ? { content: { [contentType]: { schema: route.response.schema } } }
          : { content: { [contentType]: { schema: z.string() } } }),
      },
      ...errorResponses,
    },
  };
}

let cached: object | undefined;

export function buildOpenApiDocument(): object {
  if (cached) return cached;
  const registry = new OpenAPIRegistry();
  registry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'a team virtual key (sk-...), the MASTER_KEY, or an admin JWT from /api/admin-users/login',
  });
  for (const route of allRoutes) registry.registerPath(toRouteConfig(route));
  cached = new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'creditgate',
      version: '0.1.0',
      description: 'Job-and-credits billing gateway for LLM products. Errors use the OpenAI error shape.',
    },
  });
  return cached;
}
