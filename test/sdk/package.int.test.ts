import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createModelGroup, createTeam } from '../helpers/factories.js';

/**
 * The client as its users get it: `npm pack` (which builds it), the tarball installed into a fresh project that has
 * no TypeScript loader, then imported by plain node as ESM, required as CommonJS, type-checked with tsc --strict and
 * bundled for the browser, and driving a job against the running app.
 */

const repo = path.resolve(import.meta.dirname, '../..');
const bin = (name: string) => path.join(repo, 'node_modules/.bin', name);
const run = promisify(execFile);
// Whatever `npm test` put in the environment (npm_config_*, a loader in NODE_OPTIONS) must not reach the consumer.
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('npm_') && name !== 'NODE_OPTIONS'));
const exec = (file: string, args: string[], cwd: string) => run(file, args, { cwd, env: cleanEnv, maxBuffer: 16 * 1024 * 1024 });

let app: TestApp;
let team: Awaited<ReturnType<typeof createTeam>>;
let project: string;

beforeAll(async () => {
  const [started, dir] = await Promise.all([createTestApp(), mkdtemp(path.join(tmpdir(), 'creditgate-client-consumer-'))]);
  app = started;
  project = dir;
  team = await createTeam(app, { model_groups: [await createModelGroup(app)], credits_allocated: 2 });

  // prepack builds dist/ (scripts/build.ts).
  await exec('npm', ['pack', '--workspace', '@creditgate/client', '--pack-destination', project], repo);
  const tarball = (await readdir(project)).find((file) => file.endsWith('.tgz'));
  await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  await cp(path.join(repo, 'test/sdk/package-consumer'), project, { recursive: true });
  // Its one dependency (eventsource-parser) comes from npm's cache when it is there.
  await exec('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', `./${tarball}`], project);
}, 180_000);

afterAll(async () => {
  await app?.close();
  if (project) await rm(project, { recursive: true, force: true });
});

describe('@creditgate/client as a packed package', () => {
  it('ships only dist/ (ESM, CommonJS, declarations for both), with no zod, openai or TypeScript sources inside', async () => {
    const installed = path.join(project, 'node_modules/@creditgate/client');
    const manifest = JSON.parse(await readFile(path.join(installed, 'package.json'), 'utf8'));
    expect(manifest.exports['.']).toEqual({
      import: { types: './dist/index.d.ts', default: './dist/index.js' },
      require: { types: './dist/index.d.cts', default: './dist/index.cjs' },
    });
    expect(Object.keys(manifest.dependencies)).toEqual(['eventsource-parser']);
    for (const file of ['index.js', 'index.cjs', 'index.d.ts', 'index.d.cts']) {
      const text = await readFile(path.join(installed, 'dist', file), 'utf8');
      expect(text, file).not.toMatch(/['"](zod|openai|node:[a-z_/]+)['"]|src\/contracts/);
    }
  });

  it('plain node imports it as ESM and drives a job against the running server', async () => {
    const { stdout } = await exec(process.execPath, ['esm.mjs', app.url, team.virtual_key, team.team_id], project);
    const output = JSON.parse(stdout);
    expect(output).toEqual({
      result: { text: expect.stringMatching(/^Simulated reply to: "Hello from plain node"/), chunks: expect.any(Number), jobId: expect.stringMatching(/^job_/) },
      status: 'completed',
      total_calls: 1,
      credits_charged: 1,
      credits_remaining: 1,
      refused: { insufficient: true, base: true, status: 402, code: 'insufficient_credits' },
    });
    expect(output.result.chunks).toBeGreaterThanOrEqual(2);
    const job = await app.request('GET', `/api/jobs/${output.result.jobId}`, { token: team.virtual_key });
    expect(job.body).toMatchObject({ status: 'completed', calls: [{ streamed: true, status: 'success' }], costs: { credits_charged: 1 } });
    expect((await app.request('GET', `/api/credits/teams/${team.team_id}/balance`)).body).toMatchObject({ balance: 1, held: 0 });
  });

  it('plain node requires it as CommonJS', async () => {
    const { stdout } = await exec(process.execPath, ['cjs.cjs', app.url, team.virtual_key, team.team_id], project);
    const output = JSON.parse(stdout);
    expect(output.resolved).toMatch(/node_modules\/@creditgate\/client\/dist\/index\.cjs$/);
    expect(output).toMatchObject({ notFound: true, requestId: true });
    expect(typeof output.balance).toBe('number');
  });

  it('type-checks a consumer with tsc --strict against both entry points, without Node types', async () => {
    const result = await exec(bin('tsc'), ['-p', 'tsconfig.json'], project).then(
      () => 'ok',
      (error: { stdout: string }) => error.stdout,
    );
    expect(result).toBe('ok');
  });

  it('bundles for the browser with esbuild (no Node built-ins) into a few kilobytes', async () => {
    const { stdout } = await exec(bin('esbuild'), ['browser.js', '--bundle', '--platform=browser', '--format=esm', '--minify', '--target=es2022', '--outfile=bundle.js', '--log-level=warning'], project);
    expect(stdout).toBe('');
    const bundle = await readFile(path.join(project, 'bundle.js'));
    const gzipped = gzipSync(bundle, { level: 9 }).length;
    console.log(`browser bundle of @creditgate/client: ${bundle.length} bytes minified, ${gzipped} bytes gzip`);
    expect(bundle.toString()).not.toMatch(/['"]node:[a-z_/]+['"]|\brequire\(/);
    expect(gzipped).toBeLessThan(10_000);
  });
});
