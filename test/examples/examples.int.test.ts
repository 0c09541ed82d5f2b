import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createModelGroup, createTeam } from '../helpers/factories.js';

/** The examples are run as a user would run them, as their own processes, against the running app. */
let app: TestApp;
let team: Awaited<ReturnType<typeof createTeam>>;
let group: string;

beforeAll(async () => {
  app = await createTestApp();
  group = await createModelGroup(app);
  team = await createTeam(app, { model_groups: [group], credits_allocated: 10 });
});
afterAll(() => app.close());

function runExample(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('examples', file)], {
    env: {
      ...process.env,
      CREDITGATE_URL: app.url,
      CREDITGATE_KEY: team.virtual_key,
      CREDITGATE_TEAM_ID: team.team_id,
      CREDITGATE_MODEL: group,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (data) => (stdout += data));
  child.stderr.on('data', (data) => (stderr += data));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

async function balance(): Promise<number> {
  return (await app.request('GET', `/api/credits/teams/${team.team_id}/balance`)).body.balance;
}

describe('examples', () => {
  it('multi-turn-chat.ts streams three turns in one job and is charged once', async () => {
    const before = await balance();
    const run = await runExample('multi-turn-chat.ts');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('Simulated reply to: "My invoice shows two charges."');
    expect(run.stdout).toContain('Simulated reply to: "Thanks, how long will it take?"');
    expect(run.stdout).toMatch(/job completed: 3 calls, \d+ tokens, 1 credit charged/);
    expect(await balance()).toBe(before - 1);
  });

  it('openai-sdk.ts works unchanged against /v1, one billed job per request', async () => {
    const before = await balance();
    const run = await runExample('openai-sdk.ts');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('non-streamed: Simulated reply to: "Say hello in French."');
    expect(run.stdout).toContain('streamed: Simulated reply to: "Count to five."');
    expect(run.stdout).toMatch(/usage: \d+ tokens/);
    expect(await balance()).toBe(before - 2);
  });
});
