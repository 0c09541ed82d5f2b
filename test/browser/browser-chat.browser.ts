import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createModelGroup, createTeam } from '../helpers/factories.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

let app: TestApp;
let server: ChildProcess;
let browser: Browser;
let pageUrl: string;
let team: Awaited<ReturnType<typeof createTeam>>;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
  app = await createTestApp();
  const group = await createModelGroup(app);
  team = await createTeam(app, { model_groups: [group], credits_allocated: 5 });
  server = spawn(process.execPath, ['--import', 'tsx', path.resolve('examples/browser-chat/server.ts')], {
    env: { ...process.env, CREDITGATE_URL: app.url, CREDITGATE_KEY: team.virtual_key, CREDITGATE_TEAM_ID: team.team_id, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  pageUrl = await new Promise<string>((resolve, reject) => {
    let out = '';
    server.stdout!.on('data', (data) => {
      out += data;
      const match = out.match(/browser chat on (http:\/\/\S+)/);
      if (match) resolve(match[1]!);
    });
    server.once('exit', (code) => reject(new Error(`example server exited with ${code}`)));
  });
  // The flags this machine's Chromium needs: no sandbox as root, and no background calls to the outside world.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  server?.kill();
  await app?.close();
});

describe('browser chat example', () => {
  it('streams a reply into the page chunk by chunk and charges the team one credit', async () => {
    app.upstream.setResponder((request) => {
      const last = request.body.messages.at(-1).content as string;
      const words = `Simulated reply to: "${last}". Streaming word by word.`.split(' ');
      return { steps: words.map((word) => ({ type: 'content' as const, text: `${word} `, delayMs: 60 })) };
    });
    const page = await browser.newPage();
    await page.goto(pageUrl);
    await page.fill('#input', 'Hello from the browser');
    await page.click('button');
    const reply = page.locator('p.assistant');
    // Part of the reply is on screen while the rest is still streaming.
    await expect.poll(async () => (await reply.textContent()) ?? '', { timeout: 5_000, interval: 20 }).toMatch(/^Simulated reply/);
    expect(await reply.textContent()).not.toContain('word by word.');
    await page.waitForSelector('body[data-turns="1"]', { timeout: 10_000 });
    expect((await reply.textContent())?.trim()).toBe('Simulated reply to: "Hello from the browser". Streaming word by word.');
    await page.screenshot({ path: path.resolve('.scratch', 'browser-chat.png') }).catch(() => undefined);
    const balance = await app.request('GET', `/api/credits/teams/${team.team_id}/balance`);
    expect(balance.body).toMatchObject({ balance: 4, held: 0 });
  });
});
