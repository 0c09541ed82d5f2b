import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * The test command is only worth something if it fails when a test does. Each fixture runs in a vitest of its own
 * under the project's configuration (its global setup starts the embedded PostgreSQL, whose exit hooks once turned
 * every failing run into exit code 0), with no database configured, as on a fresh clone.
 */
function runFixture(fixture: string): Promise<{ code: number | null; output: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, FIXTURE: fixture };
  delete env.DATABASE_URL;
  delete env.TEST_DATABASE_URL;
  delete env.CI;
  const child = spawn(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', '--config', 'test/harness/vitest.fixture.config.ts'], {
    cwd: root,
    env,
  });
  let output = '';
  child.stdout.on('data', (data: Buffer) => (output += data.toString()));
  child.stderr.on('data', (data: Buffer) => (output += data.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

describe('the test command exit code', () => {
  it.each([
    ['passing', 0],
    ['failing-test', 1],
    ['failing-before-all', 1],
  ])('a run of %s exits %i', async (fixture, expected) => {
    const { code, output } = await runFixture(fixture);
    expect(code, output).toBe(expected);
  }, 120_000);
});
