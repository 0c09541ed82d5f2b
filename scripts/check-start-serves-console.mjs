#!/usr/bin/env node
/**
 * CI's proof that `npm start` on a fresh clone serves the operator console: runs `npm start` (which builds the
 * console when console/dist is missing) with a throwaway DATA_DIR, waits for it to listen, fetches /, /console/,
 * a deep link and the page's script, then stops it with SIGTERM. Exits non-zero if any of that fails.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const dataDir = mkdtempSync(path.join(tmpdir(), 'creditgate-console-start-'));
const env = { ...process.env, DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' };
for (const name of ['DATABASE_URL', 'TEST_DATABASE_URL', 'LLM_BASE_URL', 'MASTER_KEY', 'JWT_SECRET']) delete env[name];
// Its own process group, so the stop reaches npm, the shell and node, and nothing else.
const child = spawn('npm', ['start'], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
let output = '';
child.stdout.on('data', (data) => (output += data));
child.stderr.on('data', (data) => (output += data));

const fail = (message) => {
  console.error(`npm start does not serve the console: ${message}\n--- output ---\n${output}`);
  finish(1);
};
let finished = false;
function finish(code) {
  if (finished) return;
  finished = true;
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {}
  setTimeout(() => {
    rmSync(dataDir, { recursive: true, force: true });
    process.exit(code);
  }, 3000);
}

const timer = setTimeout(() => fail('no "listening" line within 180 s'), 180_000);
child.once('exit', (code) => !finished && fail(`it exited with ${code}`));
const poll = setInterval(async () => {
  const port = output.match(/listening on http:\/\/localhost:(\d+)/)?.[1];
  if (!port) return;
  clearInterval(poll);
  clearTimeout(timer);
  const base = `http://127.0.0.1:${port}`;
  try {
    const root = await fetch(`${base}/`, { redirect: 'manual' });
    if (root.status !== 302 || root.headers.get('location') !== '/console/') return fail(`/ answered ${root.status} ${root.headers.get('location')}`);
    for (const page of ['/console/', '/console/teams/some-team']) {
      const response = await fetch(base + page);
      const html = await response.text();
      if (response.status !== 200 || !html.includes('<div id="app">')) return fail(`${page} answered ${response.status}: ${html.slice(0, 200)}`);
      if (!response.headers.get('content-security-policy')?.includes("frame-ancestors 'none'")) return fail(`${page} has no CSP`);
      const script = html.match(/src="(\/console\/assets\/[^"]+\.js)"/)?.[1];
      const asset = script && (await fetch(base + script));
      if (!asset || asset.status !== 200) return fail(`the script ${script} answered ${asset?.status}`);
    }
    console.log('npm start served the console: /, /console/, a deep link and its script');
    finish(0);
  } catch (error) {
    fail(String(error));
  }
}, 200);
