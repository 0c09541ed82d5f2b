import express, { Router } from 'express';
import { createRequire } from 'node:module';
import path from 'node:path';

// Served from the npm package, not a CDN: the docs work on a closed network too. Located without importing the
// package, whose entry point loads its megabyte bundle into the server.
const SWAGGER_UI_DIR = path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>creditgate API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>`;

const INIT = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true });`;

/** GET /docs: Swagger UI over /openapi.json. */
export function docsRouter(): Router {
  const router = Router();
  router.get('/docs', (_req, res) => {
    res.locals.route = '/docs';
    res.type('html').send(PAGE);
  });
  router.get('/docs/init.js', (_req, res) => {
    res.locals.route = '/docs';
    res.type('js').send(INIT);
  });
  router.use('/docs/assets', express.static(SWAGGER_UI_DIR, { index: false, maxAge: '1d' }));
  return router;
}
