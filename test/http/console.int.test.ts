import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { get as httpGet, type IncomingHttpHeaders } from 'node:http';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONSOLE_DIST } from '../../src/http/console.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

/**
 * The operator console as the server serves it (built first when missing or stale, as `npm start` does): the page
 * for every path under /console, hashed assets, the redirect from /, and the security headers.
 */

let app: TestApp;
beforeAll(async () => {
  const build = spawnSync(process.execPath, ['console/scripts/ensure-built.mjs'], { stdio: 'inherit' });
  expect(build.status).toBe(0);
  app = await createTestApp();
}, 120_000);
afterAll(() => app?.close());

const get = (path: string) => fetch(app.url + path, { redirect: 'manual' });

/** The answer's bytes as sent (fetch would decode them), asking with `acceptEncoding`. */
function rawGet(path: string, acceptEncoding: string): Promise<{ headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    httpGet(app.url + path, { headers: { 'accept-encoding': acceptEncoding } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ headers: response.headers, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    }).on('error', reject);
  });
}

describe('the console', () => {
  it('/ redirects to /console/', async () => {
    const response = await get('/');
    expect(response.status).toBe(302);
    expect(response.headers.get('location')).toBe('/console/');
  });

  it.each(['/console', '/console/', '/console/teams/acme-support', '/console/jobs/job_0mwtigioowedigq763hd0', '/console/no/such/page'])(
    '%s loads the app, uncached, under a strict Content-Security-Policy',
    async (path) => {
      const response = await get(path);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/html/);
      expect(response.headers.get('cache-control')).toBe('no-cache');
      const csp = response.headers.get('content-security-policy')!;
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).not.toContain('unsafe-eval');
      expect(response.headers.get('x-frame-options')).toBe('DENY');
      expect(response.headers.get('x-content-type-options')).toBe('nosniff');
      const html = await response.text();
      expect(html).toContain('<div id="app"></div>');
      // No inline script: every <script> has a src on this origin.
      const scripts = [...html.matchAll(/<script\b[^>]*>([\s\S]*?)<\/script>/g)];
      expect(scripts.length).toBeGreaterThan(0);
      for (const [tag, body] of scripts) {
        expect(body!.trim()).toBe('');
        expect(tag).toMatch(/src="\/console\/assets\/[\w.-]+\.js"/);
      }
    },
  );

  it('serves hashed assets for a year, and a missing one as a plain 404', async () => {
    const html = await (await get('/console/')).text();
    const script = html.match(/src="(\/console\/assets\/[\w.-]+\.js)"/)![1]!;
    const asset = await get(script);
    expect(asset.status).toBe(200);
    expect(asset.headers.get('content-type')).toMatch(/javascript/);
    expect(asset.headers.get('cache-control')).toContain('immutable');
    const missing = await get('/console/assets/nope.js');
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toMatch(/^text\/plain/);
  });

  it('sends an asset gzipped to a client that accepts it and as it is to one that does not, varying on Accept-Encoding', async () => {
    const html = await (await get('/console/')).text();
    const script = html.match(/src="\/console\/assets\/([\w.-]+\.js)"/)![1]!;
    const onDisk = readFileSync(path.join(CONSOLE_DIST, 'assets', script));
    const gzipped = await rawGet(`/console/assets/${script}`, 'gzip, deflate, br');
    expect(gzipped.headers['content-encoding']).toBe('gzip');
    expect(gzipped.headers.vary).toMatch(/Accept-Encoding/i);
    expect(gzipped.body.length).toBeLessThan(onDisk.length / 2);
    expect(gunzipSync(gzipped.body).equals(onDisk)).toBe(true);
    const plain = await rawGet(`/console/assets/${script}`, 'identity');
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body.equals(onDisk)).toBe(true);
  });

  it('keeps its JavaScript lean: under 80 kB gzip, with no CDN URL and no HTML injection of model output', () => {
    const assets = path.join(CONSOLE_DIST, 'assets');
    const scripts = readdirSync(assets).filter((name) => name.endsWith('.js'));
    const gzip = scripts.reduce((sum, name) => sum + gzipSync(readFileSync(path.join(assets, name))).length, 0);
    expect(gzip).toBeLessThan(80 * 1024);
    for (const name of scripts) expect(readFileSync(path.join(assets, name), 'utf8')).not.toMatch(/https?:\/\/(cdn|unpkg|fonts\.googleapis)/);
    // The console's own code never hands a string to the DOM as HTML: text is rendered as text (Preact escapes it).
    const sources = readdirSync(path.resolve('console/src'), { recursive: true, encoding: 'utf8' }).filter((name) => /\.tsx?$/.test(name));
    expect(sources.length).toBeGreaterThan(5);
    for (const name of sources) expect(readFileSync(path.resolve('console/src', name), 'utf8')).not.toMatch(/dangerouslySetInnerHTML|\.innerHTML|insertAdjacentHTML|document\.write/);
  });
});
