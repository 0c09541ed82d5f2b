import { OpenAPIRegistry, OpenApiGeneratorV31, type RouteConfig } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { ErrorBody } from '../contracts/index.js';
import { allRoutes } from './routes/index.js';
import type { RouteSpec } from './route.js';

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'invalid request (`unknown_parameter` names a field that is not an allowed OpenAI parameter; `model_unpriced` a model consumption_usd cannot bill)',
  401: 'missing, invalid, revoked or expired credential',
  402: 'insufficient credits: the team cannot reserve this job or call (for a call: its prompt and a minimal answer)',
  403: 'credential not allowed on this route, or (`team_suspended`) a valid key of a suspended team',
  404: 'not found (or owned by another team)',
  409: 'state conflict (e.g. `job_not_open`, `calls_in_progress`, `job_limit_reached`), or Idempotency-Key reused with another request',
  413: 'body too large',
  429: 'rate limited',
  502: 'upstream failed before the first byte',
  503: 'not ready',
  504: 'upstream timed out before the first byte',
};

function errorStatuses(route: RouteSpec): number[] {
  const statuses = new Set(route.errors ?? []);
  if (route.params || route.query || route.body || route.rawBody) statuses.add(400);
  if (route.auth !== 'public') statuses.add(401);
  // A team key may be refused on any route that takes one: its team is suspended.
  if (route.auth !== 'public') statuses.add(403);
  if (route.body || route.rawBody) statuses.add(413);
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
      ...(route.rawBody && {
        body: { required: true, description: route.rawBody.description, content: { 'application/json': { schema: route.rawBody.schema } } },
      }),
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
      description: [
        'Job-and-credits billing gateway for LLM products. Errors use the OpenAI error shape.',
        '',
        'Billing follows consumption: a job is charged, once, for what its calls delivered (output the upstream produced, read by the client or not), whatever status it ends with (completed, failed, cancelled, a client that disconnected, expired); a job none of whose calls delivered anything is free. job_based teams pay credits_per_job, consumption teams the usage of the delivered calls. A team setting, waive_failed_jobs (off by default), makes jobs completed `failed` free; it never applies to cancelled, disconnected or expired jobs.',
        '',
        "Bounded use is reserved before each call: its prompt's token bound plus its completion limit (max_tokens, else the server's DEFAULT_MAX_TOKENS). In the consumption modes the completion limit sent upstream is lowered to what the team's credits cover (402 below a minimal answer); job_based jobs are capped by max_calls_per_job and max_tokens_per_job (409 job_limit_reached).",
      ].join('\n'),
    },
  });
  return cached;
}
