import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The embedded PostgreSQL keeps its port (issue 13, item 7): chosen once, stored under DATA_DIR, reused on every
 * start, so a second instance pointed at it by DATABASE_URL comes back after the first one restarts. Real
 * processes, started as `npm start` starts them.
 */
const ENTRY = path.resolve('src/main.ts');

interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
}

function run(env: Record<string, string>): ChildProcess {
  const clean: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ['DATABASE_URL', 'TEST_DATABASE_URL', 'LLM_BASE_URL', 'LLM_API_KEY', 'MASTER_KEY', 'JWT_SECRET']) delete clean[name];
  return spawn(process.execPath, ['--import', 'tsx', ENTRY], { env: { ...clean, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

function start(env: Record<string, string>): Promise<Started> {
  const child = run(env);
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line after 60 s:\n${out}`)), 60_000);
    child.stderr!.on('data', (data) => (out += data));
    child.stdout!.on('data', (data) => {
      out += data;
      const match = out.match(/listening on http:\/\/localhost:(\d+)/);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: `http://127.0.0.1:${match[1]}`, output: () => out });
      }
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code} before listening:\n${out}`)));
  });
}

function stop(started: Started): Promise<number | null> {
  return new Promise((resolve) => {
    started.child.once('exit', (code) => resolve(code));
    started.child.kill('SIGTERM');
  });
}

/** The port the embedded PostgreSQL reported in the start's log line. */
function loggedPort(started: Started): number {
  const line = started.output().split('\n').find((entry) => entry.includes('using embedded PostgreSQL'));
  return JSON.parse(line!).port as number;
}

async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`not true within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

let dataDir: string;
let secondDataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'creditgate-port-'));
  secondDataDir = await mkdtemp(path.join(tmpdir(), 'creditgate-port-second-'));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
  await rm(secondDataDir, { recursive: true, force: true });
});

describe('the embedded PostgreSQL port', () => {
  it('is chosen once and kept across restarts, so an instance using it by DATABASE_URL comes back', async () => {
    const first = await start({ DATA_DIR: dataDir });
    const masterKey = first.output().match(/MASTER_KEY=(mk-[\w-]+)/)![1]!;
    const port = Number((await readFile(path.join(dataDir, 'postgres-port'), 'utf8')).trim());
    expect(loggedPort(first)).toBe(port);
    const password = (await readFile(path.join(dataDir, 'postgres-password'), 'utf8')).trim();

    // What README tells an operator to do: the stored port and password make the second instance's DATABASE_URL.
    const databaseUrl = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
    const second = await start({ DATA_DIR: secondDataDir, DATABASE_URL: databaseUrl });
    try {
      const admin = { authorization: `Bearer ${masterKey}` };
      expect((await fetch(`${second.url}/api/organizations`, { headers: admin })).status).toBe(200);

      expect(await stop(first)).toBe(0);
      await eventually(async () => (await fetch(`${second.url}/ready`)).status === 503, 10_000);

      const restarted = await start({ DATA_DIR: dataDir });
      try {
        expect(loggedPort(restarted)).toBe(port);
        await eventually(async () => (await fetch(`${second.url}/ready`)).status === 200, 15_000);
        expect((await fetch(`${second.url}/api/organizations`, { headers: admin })).status).toBe(200);
      } finally {
        expect(await stop(restarted)).toBe(0);
      }
    } finally {
      await stop(second);
    }
  }, 180_000);

  it('taken by another program at start: one line naming the port and the file, exit 1', async () => {
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const { port } = squatter.address() as AddressInfo;
    const squattedDir = await mkdtemp(path.join(tmpdir(), 'creditgate-port-taken-'));
    await writeFile(path.join(squattedDir, 'postgres-port'), `${port}\n`);
    try {
      const child = run({ DATA_DIR: squattedDir });
      let err = '';
      child.stderr!.on('data', (data) => (err += data));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      expect(code).toBe(1);
      const lines = err.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`port ${port}`);
      expect(lines[0]).toContain(path.join(squattedDir, 'postgres-port'));
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
      await rm(squattedDir, { recursive: true, force: true });
    }
  }, 60_000);
});
