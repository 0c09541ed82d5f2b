import { defineConfig } from 'vitest/config';
import base from '../../vitest.config.js';

/** Runs one fixture of test/harness/fixtures (FIXTURE=<name>) under the project's own setup (global setup included). */
export default defineConfig({
  test: {
    ...base.test,
    root: new URL('../..', import.meta.url).pathname,
    include: [`test/harness/fixtures/${process.env.FIXTURE}.fixture.ts`],
    reporters: ['default'],
  },
});
