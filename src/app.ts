import express, { type Express } from 'express';
import type { Deps } from './deps.js';
import { AppError } from './lib/errors.js';
import { errorHandler } from './http/middleware/error-handler.js';
import { loadShedding } from './http/middleware/load-shedding.js';
import { requestContext } from './http/middleware/request-context.js';
import { storableJson } from './http/middleware/storable-json.js';
import { observeRequests } from './http/metrics.js';
import { docsRouter } from './http/docs.js';
import { buildRouter } from './http/router.js';
import { allRoutes } from './http/routes/index.js';

/** The express application; it never listens, so tests can run it in-process on any port. */
export function createApp(deps: Deps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(requestContext(deps.log));
  app.use(observeRequests(deps.metrics));
  app.use(loadShedding({ maxInflight: deps.config.MAX_INFLIGHT_REQUESTS, maxDbWaiting: deps.config.MAX_DB_WAITING, pool: deps.pool }));
  app.use(express.json({ limit: deps.config.BODY_LIMIT, type: ['application/json', 'application/*+json'] }));
  app.use(storableJson);
  app.use(buildRouter(allRoutes, deps));
  app.use(docsRouter());
  app.use((req) => {
    throw new AppError('not_found', `no route for ${req.method} ${req.path}`, { reason: 'route_not_found' });
  });
  app.use(errorHandler);
  return app;
}
