import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

/** Browser checks need Debian's chromium (`apt-get install chromium`); `npm run test:browser` runs them. */
export default defineConfig({
  resolve: base.resolve,
  test: { ...base.test, include: ['test/browser/**/*.browser.ts'], outputFile: { json: '.vitest-browser-report.json' } },
});
