import { Router, type Request, type Response } from 'express';
import { describe, expect, it } from 'vitest';
import { expressPath, type RouteSpec } from '../../src/http/route.js';
import { dataPlaneFirst } from '../../src/http/router.js';
import { allRoutes } from '../../src/http/routes/index.js';

/** A path the route's pattern matches, its parameters filled in. */
const samplePath = (route: RouteSpec) => route.path.replace(/\{\w+\}/g, 'sample_1');

/** The route express picks for a request, with the routes mounted in `order` (express's own matching). */
function routeFor(order: RouteSpec[], method: string, url: string): string | undefined {
  const router = Router();
  for (const route of order) router[route.method](expressPath(route.path), (_req: Request, res: Response) => (res.locals.picked = route.path));
  const res = { locals: {} as { picked?: string } };
  router({ method: method.toUpperCase(), url, headers: {} } as Request, res as unknown as Response, () => undefined);
  return res.locals.picked;
}

describe('route order', () => {
  it('decides nothing: every path finds its own route whatever the order', () => {
    for (const route of allRoutes) {
      const url = samplePath(route);
      expect(routeFor(allRoutes, route.method, url), `${route.method} ${url}`).toBe(route.path);
      expect(routeFor([...allRoutes].reverse(), route.method, url), `${route.method} ${url}, routes reversed`).toBe(route.path);
    }
  });

  it("mounts the team keys' routes first, each route once", () => {
    const ordered = dataPlaneFirst(allRoutes);
    expect(new Set(ordered)).toEqual(new Set(allRoutes));
    expect(ordered).toHaveLength(allRoutes.length);
    const firstOther = ordered.findIndex((route) => route.auth !== 'team');
    expect(ordered.slice(firstOther).every((route) => route.auth !== 'team')).toBe(true);
    expect(ordered.findIndex((route) => route.path === '/api/jobs/create-and-call-stream')).toBeLessThan(firstOther);
  });
});
