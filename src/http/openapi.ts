import { OpenAPIRegistry, OpenApiGeneratorV31, type RouteConfig } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { ErrorBody } from '../contracts/index.js';
import { allRoutes } from './routes/index.js';
import { takesInflightSlot } from './middleware/load-shedding.js';
import type { RouteSpec } from './route.js';

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'invalid request (`unknown_parameter` names a field that is not an allowed OpenAI parameter; `model_unpriced` a model consumption_usd cannot bill)',
  401: 'missing, invalid, revoked or expired credential',
  402: 'insufficient credits: the team cannot reserve this job or call (for a call: its prompt and a minimal answer)',
  403: 'credential not allowed on this route, or (`team_suspended`) a valid key of a suspended team',
  404: 'not found (or owned by another team)',
  409: 'state conflict (e.g. `job_not_open`, `calls_in_progress`, `job_limit_reached`), or Idempotency-Key reused with another request',
  413: 'body too large',
  429:
    'rate limited: a per-minute limit of the team or key (`requests_per_minute_limit`, `tokens_per_minute_limit`, `request_too_large_for_limit`), ' +
    'a concurrency limit (`concurrent_jobs_limit`, `concurrent_calls_limit`), `queue_full`, or the upstream (`upstream_rate_limited`)',
  502: 'upstream failed before the first byte',
  503: 'unavailable: the instance is overloaded (`overloaded`), cannot reach its database (`database_unavailable`) or is not ready',
  504: 'upstream timed out before the first byte',
};

// A type alias, not an interface: HeaderObject carries an index signature only an alias satisfies.
type ResponseHeader = {
  description: string;
  schema: { type: 'integer' | 'string'; minimum?: number };
};

/** OpenAI's headers for one kind of per-minute limit, as RateLimiter.headers writes them. */
function rateLimitHeaders(kind: 'requests' | 'tokens', what: string): Record<string, ResponseHeader> {
  const sent = 'sent to a team key when the team or the key has this limit (the tighter of the two)';
  return {
    [`x-ratelimit-limit-${kind}`]: { description: `${what} allowed per minute; ${sent}`, schema: { type: 'integer' } },
    [`x-ratelimit-remaining-${kind}`]: {
      description: `${what} left in the current minute, as the answering instance knows it; ${sent}`,
      schema: { type: 'integer' },
    },
    [`x-ratelimit-reset-${kind}`]: {
      description: `time until the current minute's window resets, e.g. \`17.25s\`; ${sent}`,
      schema: { type: 'string' },
    },
  };
}

const RATE_LIMIT_HEADERS = { ...rateLimitHeaders('requests', 'model calls'), ...rateLimitHeaders('tokens', 'tokens (prompt and completion)') };

/** Response headers, declared once as components and referenced from the responses that carry them. */
const RESPONSE_HEADERS: Record<string, ResponseHeader> = {
  'Retry-After': {
    description: 'seconds to wait before retrying (absent when waiting would not help, e.g. `request_too_large_for_limit`)',
    schema: { type: 'integer', minimum: 1 },
  },
  ...RATE_LIMIT_HEADERS,
};

const headerRef = (name: string) => ({ $ref: `#/components/headers/${name}` });

/**
 * The headers a response of `route` with `status` may carry: Retry-After on 429 and 503, and the rate limit headers
 * on every answer to a team key past authentication (the credential refusals, 401 and 403, come before them).
 */
function responseHeaders(route: RouteSpec, status: number) {
  const headers: Record<string, { $ref: string }> = {};
  if (status === 429 || status === 503) headers['Retry-After'] = headerRef('Retry-After');
  if ((route.auth === 'team' || route.auth === 'team_or_admin') && status !== 401 && status !== 403) {
    for (const name of Object.keys(RATE_LIMIT_HEADERS)) headers[name] = headerRef(name);
  }
  return Object.keys(headers).length > 0 ? { headers } : {};
}

function errorStatuses(route: RouteSpec): number[] {
  const statuses = new Set(route.errors ?? []);
  if (route.params || route.query || route.body || route.rawBody) statuses.add(400);
  if (route.auth !== 'public') statuses.add(401);
  // A team key may be refused on any route that takes one: its team is suspended.
  if (route.auth !== 'public') statuses.add(403);
  if (route.body || route.rawBody) statuses.add(413);
  if (takesInflightSlot(route)) statuses.add(503);
  return [...statuses].sort();
}

function toRouteConfig(route: RouteSpec): RouteConfig {
  const errorResponses = Object.fromEntries(
    errorStatuses(route).map((status) => [
      status,
      {
        description: ERROR_DESCRIPTIONS[status] ?? 'error',
        ...responseHeaders(route, status),
        content: { 'application/json': { schema: ErrorBody } },
      },
    ]),
  );
  const status = route.response.status ?? 200;
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
      [status]: {
        description: route.response.description,
        ...responseHeaders(route, status),
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
  for (const [name, header] of Object.entries(RESPONSE_HEADERS)) registry.registerComponent('headers', name, header);
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
