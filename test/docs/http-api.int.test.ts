import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { REPO } from './markdown.js';

/**
 * docs/http-api.md and the OpenAPI document the server serves agree on the routes: every route the page lists
 * (outside its "Planned" section) is served, and every served route is on the page.
 */

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app?.close());

/** `METHOD /path` pairs written as inline code, e.g. `GET/PUT/DELETE /api/model-groups/{group_name}`. */
function documentedRoutes(): Set<string> {
  const page = readFileSync(path.join(REPO, 'docs/http-api.md'), 'utf8');
  const served = page.slice(0, page.indexOf('\n## Planned'));
  const routes = new Set<string>();
  for (const match of served.matchAll(/`((?:GET|POST|PUT|PATCH|DELETE)(?:\/(?:GET|POST|PUT|PATCH|DELETE))*) (\/[^`\s]*)`/g)) {
    for (const method of match[1]!.split('/')) routes.add(`${method} ${match[2]}`);
  }
  return routes;
}

it('every route of the OpenAPI document is on docs/http-api.md, and every route listed there is served', async () => {
  const document = (await app.request('GET', '/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
  const served = new Set(Object.entries(document.paths).flatMap(([route, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${route}`)));
  const documented = documentedRoutes();
  // GET /docs renders the OpenAPI document; it is not part of it.
  documented.delete('GET /docs');
  expect([...served].filter((route) => !documented.has(route)).sort(), 'served but not documented').toEqual([]);
  expect([...documented].filter((route) => !served.has(route)).sort(), 'documented but not served').toEqual([]);
  expect(documented.size).toBeGreaterThan(30);
});
