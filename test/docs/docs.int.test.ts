import { execFile, spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { createModelGroup, createTeam } from '../helpers/factories.js';
import { codeBlocks, documentationFiles, REPO, type CodeBlock } from './markdown.js';

/**
 * The code in the docs runs, so the docs cannot rot: each page's shell blocks run in order as one bash session,
 * and each TypeScript block runs as its own program (node + tsx), against a fresh app with a team ready. Python
 * blocks are run by the Python client's tests (clients/python/tests/test_docs.py). A block marked `norun` (an
 * install command, a placeholder, a package not installable here) is only checked for syntax.
 */

const RUN_DIR = path.join(REPO, 'test/docs/.run');
const SHELLS = new Set(['sh', 'bash', 'shell']);
const TYPESCRIPT = new Set(['ts', 'typescript']);
const run = promisify(execFile);

const runnable = (block: CodeBlock) => !block.flags.includes('norun');
const allBlocks = documentationFiles().flatMap((file) => codeBlocks(file));
const pages = documentationFiles()
  .map((file) => ({ file, blocks: codeBlocks(file) }))
  .filter(({ blocks }) => blocks.some((block) => SHELLS.has(block.lang) || (TYPESCRIPT.has(block.lang) && runnable(block))));
const slug = (block: CodeBlock) => `${block.file.replace(/[^a-z0-9]+/gi, '-')}-${block.line}`;

function execute(command: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const child = spawn(command, args, { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (data) => (output += data));
  child.stderr.on('data', (data) => (output += data));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, output })));
}

beforeAll(() => mkdir(RUN_DIR, { recursive: true }));

describe.each(pages)('$file', ({ blocks }) => {
  let app: TestApp;
  let env: Record<string, string>;

  beforeAll(async () => {
    app = await createTestApp();
    const group = await createModelGroup(app);
    const team = await createTeam(app, { model_groups: [group], credits_allocated: 100 });
    // What the pages' programs read: the server, a team's key and id, a model group, the admin key.
    env = {
      CG: app.url,
      MK: TEST_MASTER_KEY,
      SK: team.virtual_key,
      TEAM: team.team_id,
      MODEL: group,
      CREDITGATE_URL: app.url,
      CREDITGATE_KEY: team.virtual_key,
      CREDITGATE_TEAM_ID: team.team_id,
      CREDITGATE_MODEL: group,
      CREDITGATE_MASTER_KEY: TEST_MASTER_KEY,
    };
  });
  afterAll(() => app?.close());

  const shell = blocks.filter((block) => SHELLS.has(block.lang));
  if (shell.some(runnable)) {
    it('its shell blocks run in order as one session', async () => {
      const script = ['set -euo pipefail', ...shell.filter(runnable).map((block) => `# ${block.file}:${block.line}\n${block.code}`)].join('\n');
      const result = await execute('bash', ['-c', script], env);
      expect(result.code, result.output).toBe(0);
    }, 60_000);
  }
  if (shell.some((block) => !runnable(block))) {
    it('its shell blocks that are not run are valid bash', async () => {
      for (const block of shell.filter((b) => !runnable(b))) {
        const result = await execute('bash', ['-n', '-c', block.code], {});
        expect(result.code, `${block.file}:${block.line} ${result.output}`).toBe(0);
      }
    });
  }
  for (const block of blocks.filter((b) => TYPESCRIPT.has(b.lang) && runnable(b))) {
    it(`the TypeScript block at line ${block.line} runs`, async () => {
      const program = path.join(RUN_DIR, `${slug(block)}.ts`);
      await writeFile(program, block.code);
      const result = await execute(process.execPath, ['--import', 'tsx', program], env);
      expect(result.code, result.output).toBe(0);
    }, 60_000);
  }
});

it('every TypeScript block of the docs type-checks (strict, the client from its sources)', async () => {
  const dir = path.join(RUN_DIR, 'typecheck');
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (const block of allBlocks.filter((b) => TYPESCRIPT.has(b.lang))) {
    // Each block is a module of its own (top-level await, imports), as when it runs.
    const file = path.join(dir, `${slug(block)}.ts`);
    await writeFile(file, block.code.includes('import ') || block.code.includes('export ') ? block.code : `${block.code}\nexport {};\n`);
    files.push(file);
  }
  expect(files.length).toBeGreaterThan(0);
  const config = path.join(dir, 'tsconfig.json');
  await writeFile(config, JSON.stringify({ extends: '../../../../tsconfig.json', include: files, exclude: [] }));
  const checked = await run(path.join(REPO, 'node_modules/.bin/tsc'), ['-p', config]).then(
    () => '',
    (error: { stdout: string }) => error.stdout,
  );
  expect(checked).toBe('');
}, 120_000);

afterAll(() => rm(RUN_DIR, { recursive: true, force: true }));
