import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allRoutes } from '../../src/http/routes/index.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app.close());

describe('API documentation', () => {
  it('serves Swagger UI from the npm package, pointed at /openapi.json', async () => {
    const page = await fetch(`${app.url}/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    const html = await page.text();
    expect(html).toContain('/docs/assets/swagger-ui-bundle.js');
    const init = await (await fetch(`${app.url}/docs/init.js`)).text();
    expect(init).toContain("url: '/openapi.json'");
    const bundle = await fetch(`${app.url}/docs/assets/swagger-ui-bundle.js`);
    expect(bundle.status).toBe(200);
    expect((await bundle.text()).length).toBeGreaterThan(100_000);
    expect((await fetch(`${app.url}/docs/assets/swagger-ui.css`)).status).toBe(200);
  });

  it('documents every route with its method, errors and security', async () => {
    const doc = (await (await fetch(`${app.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, unknown>; security?: unknown[] }>>;
    };
    for (const route of allRoutes) {
      const operation = doc.paths[route.path]?.[route.method];
      expect(operation, `${route.method} ${route.path}`).toBeDefined();
      if (route.auth !== 'public') {
        expect(operation!.security, route.path).toEqual([{ bearer: [] }]);
        expect(operation!.responses['401'], route.path).toBeDefined();
      }
      if (route.body) expect(operation!.responses['400'], route.path).toBeDefined();
    }
  });
});
