import express, { type Express } from 'express';
import type { Deps } from './deps.js';
import { AppError } from './lib/errors.js';
import { errorHandler } from './http/middleware/error-handler.js';
import { requestContext } from './http/middleware/request-context.js';
import { observeRequests } from './http/metrics.js';
import { consoleRouter } from './http/console.js';
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
  // Authentication, the in-flight slot and the body are per route (see buildRouter): a request is authenticated from
  // its headers before it takes a slot or has its body read.
  app.use(buildRouter(allRoutes, deps));
  app.use(docsRouter());
  app.use(consoleRouter());
  app.use((req) => {
    throw new AppError('not_found', `no route for ${req.method} ${req.path}`, { reason: 'route_not_found' });
  });
  app.use(errorHandler);
  return app;
}
