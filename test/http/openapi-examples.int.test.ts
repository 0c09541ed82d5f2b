import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOpenApiDocument } from '../../src/http/openapi.js';
import { allRoutes } from '../../src/http/routes/index.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam } from '../helpers/factories.js';

/**
 * The OpenAPI document is checked against the server itself: every route is documented, and every request
 * example it shows is sent, in route order, to a fresh app and accepted (the examples build on each other:
 * the organization, model group and team of the first ones are the ones the later ones use).
 */
type Schema = { $ref?: string; example?: unknown };
const doc = buildOpenApiDocument() as {
  paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: Schema }> } }>>;
  components: { schemas: Record<string, Schema> };
};

const exampleOf = (schema: Schema): unknown =>
  schema.$ref ? doc.components.schemas[schema.$ref.replace('#/components/schemas/', '')]!.example : schema.example;

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app.close());

describe('OpenAPI document', () => {
  it('documents every route', () => {
    for (const route of allRoutes) expect(doc.paths[route.path]?.[route.method], `${route.method} ${route.path}`).toBeDefined();
  });

  it('has an example for every request body, and the server accepts each one', async () => {
    const fixtures: Record<string, string> = { team_id: 'acme-support', organization_id: 'acme', group_name: 'fast', model_name: 'gpt-4o-mini' };
    let teamKey = '';
    const answers: string[] = [];
    for (const route of allRoutes.filter((r) => r.body)) {
      const schema = doc.paths[route.path]![route.method]!.requestBody!.content['application/json']!.schema;
      const example = exampleOf(schema);
      expect(example, `example of ${route.method} ${route.path}`).toBeDefined();
      const path = route.path.replace(/\{(\w+)\}/g, (_, name: string) => {
        expect(fixtures[name], `fixture for {${name}}`).toBeDefined();
        return fixtures[name]!;
      });
      const token = route.auth === 'public' ? null : route.auth === 'team' ? teamKey : undefined;
      const response = await app.request(route.method.toUpperCase(), path, { body: example, token });
      answers.push(`${route.method} ${route.path} → ${response.status}`);
      // A queue id in an example names nothing that exists: 404 is the right answer to a valid request.
      const accepted = response.status < 300 || response.status === 404 || response.body?.error?.code === 'stripe_not_configured';
      expect(accepted, `${route.method} ${route.path}: ${JSON.stringify(response.body)}`).toBe(true);
      if (route.path === '/api/teams/create') {
        teamKey = response.body.virtual_key;
        fixtures.key_id = response.body.key.key_id;
      }
      if (route.path === '/api/jobs/create') fixtures.job_id = response.body.job_id;
      if (route.path === '/api/webhooks/endpoints' && route.method === 'post') fixtures.endpoint_id = response.body.endpoint_id;
    }
    expect(answers.filter((answer) => !/→ 2\d\d$/.test(answer))).toEqual([
      // This app sells no credits through Stripe (STRIPE_SECRET_KEY unset): a valid request, refused as such.
      'post /api/teams/{team_id}/checkout → 409',
      'post /api/llm/queue/stream → 404',
      'post /api/llm/queue/cancel → 404',
    ]);
  });

  it("declares the headers the server's answers carry: the rate limit headers on a team's answers, Retry-After on a 429", async () => {
    const team = await setupTeam(app, { team: { limits: { requests_per_minute: 100, tokens_per_minute: 100_000, max_concurrent_jobs: 1 } } });
    const createJob = () => app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'headers' } });
    const answers = [
      { route: 'post /api/jobs/create', response: await createJob() },
      { route: 'post /api/jobs/create', response: await createJob() },
      { route: 'get /v1/models', response: await app.request('GET', '/v1/models', { token: team.key }) },
    ];
    expect(answers.map(({ response }) => response.status)).toEqual([201, 429, 200]);
    expect(answers[1]!.response.body.error.code).toBe('concurrent_jobs_limit');
    for (const { route, response } of answers) {
      const [method, path] = route.split(' ') as [string, string];
      const documented = (doc.paths[path]![method] as { responses: Record<string, { headers?: Record<string, unknown> }> }).responses[response.status];
      expect(documented, `${route} documents ${response.status}`).toBeDefined();
      const sent = [...response.headers.keys()].filter((name) => name === 'retry-after' || name.startsWith('x-ratelimit-'));
      const declared = Object.keys(documented!.headers ?? {}).map((name) => name.toLowerCase());
      expect(sent.length, `${route} → ${response.status} sends rate limit headers`).toBeGreaterThanOrEqual(6);
      expect(sent.filter((name) => !declared.includes(name)), `${route} → ${response.status}: headers sent but not declared`).toEqual([]);
    }
    expect(answers[1]!.response.headers.get('retry-after')).toBe('1');
  });
});
