import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The console is served by creditgate at /console (same origin as the API). Everything is bundled: no CDN, no
 * inline script (the Content-Security-Policy allows only 'self'), the client from its sources as in the rest of
 * the repository.
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/console/',
  resolve: {
    alias: { '@creditgate/client': fileURLToPath(new URL('../packages/client/src/index.ts', import.meta.url)) },
  },
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // The polyfill would be inlined into index.html, which the CSP forbids; every browser the console supports
    // has modulepreload.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    reportCompressedSize: true,
  },
});
