import { Router, type Response } from 'express';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';

/** Where `npm run build:console` (vite) writes the operator console; `npm start` builds it when missing or stale. */
export const CONSOLE_DIST = fileURLToPath(new URL('../../console/dist', import.meta.url));

/**
 * What the console's pages may do: scripts, styles and requests of this origin only (no inline script, no CDN),
 * images from here or data: URLs (charts), and never be framed.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

function secure(res: Response): void {
  res.setHeader('Content-Security-Policy', CONSOLE_CSP);
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
}

interface Asset {
  raw: Buffer;
  gzipped: Buffer;
}

/**
 * The built assets by name, each read and gzipped once (the bundle is a third of its size gzipped, and its names
 * change with its content, so nothing is ever compressed twice). Only names present in the directory are served.
 */
function assetStore(dir: string): (name: string) => Promise<Asset> | undefined {
  const assets = new Map<string, Promise<Asset>>();
  let names: Set<string> | undefined;
  return (name) => {
    names ??= existsSync(dir) ? new Set(readdirSync(dir)) : undefined;
    if (!names?.has(name)) return undefined;
    let asset = assets.get(name);
    if (!asset) {
      const raw = readFileSync(path.join(dir, name));
      asset = promisify(gzip)(raw, { level: 9 }).then((gzipped) => ({ raw, gzipped }));
      assets.set(name, asset);
    }
    return asset;
  };
}

/**
 * The operator console at /console: hashed assets cached for good and sent gzipped to browsers that accept it
 * (all do), and index.html (never cached) for every other
 * path under /console, so deep links such as /console/teams/acme load the app, which routes itself. `/` redirects
 * here.
 */
export function consoleRouter(dist = CONSOLE_DIST): Router {
  const router = Router();
  const indexFile = path.join(dist, 'index.html');
  let indexHtml: string | undefined;
  const page = () => (indexHtml ??= existsSync(indexFile) ? readFileSync(indexFile, 'utf8') : undefined);

  router.get('/', (_req, res) => {
    res.locals.route = '/';
    res.redirect(302, '/console/');
  });
  router.use('/console', (_req, res, next) => {
    res.locals.route = '/console';
    secure(res);
    next();
  });
  const asset = assetStore(path.join(dist, 'assets'));
  router.get('/console/assets/:name', async (req, res, next) => {
    const found = asset(req.params.name);
    if (!found) return next();
    const { raw, gzipped } = await found;
    res.setHeader('Cache-Control', 'public, max-age=31536000, immutable');
    res.setHeader('Vary', 'Accept-Encoding');
    res.type(path.extname(req.params.name));
    if (req.acceptsEncodings('gzip', 'identity') === 'gzip') {
      res.setHeader('Content-Encoding', 'gzip');
      res.send(gzipped);
    } else res.send(raw);
  });
  // A missing asset is a plain 404, never the app's page (a browser would run HTML as a script otherwise).
  router.use('/console/assets', (_req, res) => void res.status(404).type('text').send('Not found\n'));
  router.get(['/console', '/console/{*rest}'], (_req, res) => {
    const html = page();
    if (!html) {
      res.status(503).type('text').send('The operator console is not built: run `npm run build:console` (`npm start` builds it).\n');
      return;
    }
    res.setHeader('Cache-Control', 'no-cache');
    res.type('html').send(html);
  });
  return router;
}
