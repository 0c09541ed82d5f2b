import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/**
 * The reliability suite: crashes (kill -9 and restart), overload, two instances on one database, hostile input
 * and a database outage, each against real PostgreSQL and, where it matters, real creditgate processes.
 * `npx vitest run --config vitest.reliability.config.ts`
 */
export default defineConfig({
  resolve: { alias: { '@creditgate/client': fileURLToPath(new URL('./packages/client/src/index.ts', import.meta.url)) } },
  test: {
    // Not named *.test.ts: the default `npm test` (test/**/*.test.ts) does not run this slower suite.
    include: ['test/reliability/**/*.reliability.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    // Each file gets its own databases and processes; they may run side by side.
    fileParallelism: true,
    testTimeout: 120_000,
    hookTimeout: 90_000,
    teardownTimeout: 30_000,
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: '.vitest-reliability-report.json' },
  },
});
