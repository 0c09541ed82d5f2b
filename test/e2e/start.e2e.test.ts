import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `npm start` as a user runs it: the real entry point in its own process, with no configuration at all,
 * so it starts the embedded PostgreSQL and the simulated upstream by itself.
 */
interface Started {
  child: ChildProcess;
  url: string;
  stdout: () => string;
}

const ENTRY = path.resolve('src/main.ts');

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const name of ['DATABASE_URL', 'TEST_DATABASE_URL', 'LLM_BASE_URL', 'LLM_API_KEY', 'MASTER_KEY', 'JWT_SECRET']) delete env[name];
  return { ...env, ...extra };
}

function run(extraEnv: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', ENTRY], { env: cleanEnv(extraEnv), stdio: ['ignore', 'pipe', 'pipe'] });
}

function start(dataDir: string): Promise<Started> {
  const child = run({ DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' });
  let out = '';
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line after 60 s:\n${out}\n${err}`)), 60_000);
    child.stderr!.on('data', (data) => (err += data));
    child.stdout!.on('data', (data) => {
      out += data;
      const match = out.match(/listening on http:\/\/localhost:(\d+)/);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: `http://127.0.0.1:${match[1]}`, stdout: () => out });
      }
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code} before listening:\n${out}\n${err}`)));
  });
}

function stop(started: Started): Promise<number | null> {
  return new Promise((resolve) => {
    started.child.once('exit', (code) => resolve(code));
    started.child.kill('SIGTERM');
  });
}

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'creditgate-e2e-'));
});
afterAll(() => rm(dataDir, { recursive: true, force: true }));

describe('starting creditgate with no configuration', () => {
  it('prints a generated MASTER_KEY once, keeps its data and key across restarts, and stops cleanly', async () => {
    const first = await start(dataDir);
    const masterKey = first.stdout().match(/MASTER_KEY=(mk-[\w-]+)/)?.[1];
    expect(masterKey).toBeDefined();
    expect((await fetch(`${first.url}/health`)).status).toBe(200);
    expect((await fetch(`${first.url}/ready`)).status).toBe(200);
    const auth = { authorization: `Bearer ${masterKey}`, 'content-type': 'application/json' };
    const created = await fetch(`${first.url}/api/organizations/create`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ organization_id: 'persisted', name: 'Survives restarts' }),
    });
    expect(created.status).toBe(201);
    expect(await stop(first)).toBe(0);

    const second = await start(dataDir);
    expect(second.stdout()).not.toContain('MASTER_KEY=');
    const fetched = await fetch(`${second.url}/api/organizations/persisted`, { headers: auth });
    expect(fetched.status).toBe(200);
    expect(await fetched.json()).toMatchObject({ organization_id: 'persisted', name: 'Survives restarts' });
    expect((await fetch(`${second.url}/api/organizations`, { headers: { authorization: 'Bearer mk-wrong-key-000000' } })).status).toBe(401);
    expect(await stop(second)).toBe(0);
  }, 120_000);

  it('refuses bad configuration with one line naming the variable', async () => {
    const child = run({ DATA_DIR: dataDir, PORT: 'eighty' });
    let err = '';
    child.stderr!.on('data', (data) => (err += data));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    const lines = err.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^creditgate: invalid configuration: PORT: /);
  }, 30_000);
});
