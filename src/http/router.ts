import { Router, type Request, type Response } from 'express';
import type { Deps } from '../deps.js';
import type { Actor, ServiceContext } from '../domain/context.js';
import { requestFingerprint, runIdempotent } from '../domain/idempotency/idempotency.service.js';
import { validationFailed } from '../lib/errors.js';
import { authenticate } from './middleware/authenticate.js';
import { expressPath, type RouteSpec } from './route.js';

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

function idempotencyScope(actor: Actor): string {
  return actor.kind === 'team' ? `team:${actor.teamId}` : actor.kind;
}

/** Mounts each route: authenticate, parse params/query/body with its zod schemas, run the handler, answer. */
export function buildRouter(routes: RouteSpec[], deps: Deps): Router {
  const router = Router();
  for (const route of routes) {
    router[route.method](expressPath(route.path), async (req: Request, res: Response) => {
      res.locals.route = route.path;
      const actor: Actor = route.auth === 'public' ? { kind: 'anonymous' } : await authenticate(route.auth, req, deps);
      const input = {
        params: route.params?.parse(req.params),
        query: route.query?.parse(req.query),
        body: route.body?.parse(req.body),
      };
      const ctx: ServiceContext = { db: deps.db, actor, requestId: req.requestId, log: req.log };
      const status = route.response.status ?? 200;
      const idempotencyKey = route.idempotent ? req.get('idempotency-key') : undefined;
      if (idempotencyKey === undefined) {
        const body = await route.handler({ ...input, ctx, deps, req, res });
        if (body !== undefined && !res.headersSent) res.status(status).json(body);
        return;
      }
      if (!IDEMPOTENCY_KEY.test(idempotencyKey)) {
        throw validationFailed('Idempotency-Key must be 1-255 printable ASCII characters', 'Idempotency-Key');
      }
      const claim = {
        scope: idempotencyScope(actor),
        key: idempotencyKey,
        requestHash: requestFingerprint(req.method, req.path, req.body),
      };
      const result = await runIdempotent(deps.db, claim, deps.config.IDEMPOTENCY_TTL_HOURS, async (tx) => ({
        status,
        body: await route.handler({ ...input, ctx: { ...ctx, db: tx }, deps, req, res }),
      }));
      if (result.replayed) res.setHeader('Idempotent-Replayed', 'true');
      res.status(result.status).json(result.body);
    });
  }
  return router;
}
