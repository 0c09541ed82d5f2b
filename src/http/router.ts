import { Router, type Request, type Response } from 'express';
import type { Deps } from '../deps.js';
import type { ServiceContext } from '../domain/context.js';
import type { Actor } from '../domain/actor.js';
import type { DbOrTx } from '../db/client.js';
import { requestFingerprint, runIdempotent, runIdempotentLong } from '../domain/idempotency/idempotency.service.js';
import { replayCallFrames } from '../domain/llm/call-replay.js';
import { SSE_HEADERS } from '../sse/encode.js';
import { validationFailed } from '../lib/errors.js';
import { authenticate } from './middleware/authenticate.js';
import { expressPath, type RouteSpec, type StreamedAnswer } from './route.js';

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
      const ctx: ServiceContext = { db: deps.db, actor, requestId: req.requestId, log: req.log, config: deps.config, upstream: deps.upstream, inflight: deps.inflight, leases: deps.leases, queue: deps.queue, caches: deps.caches };
      const status = route.response.status ?? 200;
      const idempotencyKey = route.idempotent ? req.get('idempotency-key') : undefined;
      const run = (db: DbOrTx, answered?: (body: unknown) => Promise<void>) =>
        route.handler({ ...input, ctx: { ...ctx, db }, deps, req, res, answered });
      if (idempotencyKey === undefined) {
        const body = await run(deps.db);
        if (body !== undefined && !res.headersSent) res.status(status).json(body);
        return;
      }
      if (!IDEMPOTENCY_KEY.test(idempotencyKey)) {
        throw validationFailed('Idempotency-Key must be 1-255 printable ASCII characters', 'Idempotency-Key');
      }
      const claim = { scope: idempotencyScope(actor), key: idempotencyKey, requestHash: requestFingerprint(req.method, req.path, req.body) };
      const ttl = deps.config.IDEMPOTENCY_TTL_HOURS;
      const result =
        route.idempotent === 'transaction'
          ? await runIdempotent(deps.db, claim, ttl, async (tx) => ({ status, body: await run(tx) }))
          : await runIdempotentLong(deps.db, claim, ttl, async (answered) => ({
              status,
              body: await run(deps.db, (body) => answered({ status, body })),
            }));
      if (!result.replayed) {
        if (!res.headersSent) res.status(result.status).json(result.body);
        return;
      }
      res.setHeader('Idempotent-Replayed', 'true');
      const streamCallId = (result.body as Partial<StreamedAnswer> | null)?.stream_call_id;
      if (!streamCallId) {
        res.status(result.status).json(result.body);
        return;
      }
      const { jobId, frames } = await replayCallFrames(deps.db, streamCallId);
      res.writeHead(200, { ...SSE_HEADERS, 'X-Job-Id': jobId, 'X-Call-Id': streamCallId });
      res.end(frames.join(''));
    });
  }
  return router;
}
