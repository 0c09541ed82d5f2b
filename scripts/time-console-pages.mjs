#!/usr/bin/env node
/**
 * Times the operator console's main pages to interactive in headless Chromium, against a running server (filled
 * with `npm run seed:demo`): from navigation until the page's heading and its first data row are on screen
 * (overview: the "Today" usage row; teams: the first team; a team: its first ledger entry; jobs: the first job;
 * a job: its first call). Two ways, each repeated and reported as a median:
 *   - cold: a deep link in a new browser context (empty cache; the credential already in sessionStorage);
 *   - in-app: a link clicked in a tab where the console is already open (a client-side route change).
 *
 *   node scripts/time-console-pages.mjs http://127.0.0.1:8003 <master key> <team id> <job id> [runs, default 3]
 *
 * CHROMIUM_PATH overrides /usr/bin/chromium.
 */
import { chromium } from 'playwright-core';

const [base, key, teamId, jobId, runsArgument] = process.argv.slice(2);
if (!base || !key || !teamId || !jobId) {
  console.error('usage: node scripts/time-console-pages.mjs <base url> <master key> <team id> <job id> [runs]');
  process.exit(2);
}
const runs = Number(runsArgument ?? 3);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const heading = (page, name) => page.getByRole('heading', { level: 1, name }).waitFor();
const pages = [
  ['overview', '/console/', async (page) => (await heading(page, 'Overview'), await page.getByRole('row', { name: /^Today/ }).waitFor())],
  ['teams list', '/console/teams', async (page) => (await heading(page, 'Teams'), await page.locator('main table tbody th[scope=row] a').first().waitFor())],
  ["a team's page", `/console/teams/${encodeURIComponent(teamId)}`, async (page) => (await heading(page, `Team ${teamId}`), await page.locator('main table tbody td a[href^="/console/jobs/"]').first().waitFor())],
  ['jobs list', '/console/jobs', async (page) => (await heading(page, 'Jobs'), await page.locator('main table tbody a[href^="/console/jobs/"]').first().waitFor())],
  ["a job's page", `/console/jobs/${jobId}`, async (page) => (await heading(page, `Job ${jobId}`), await page.locator('ol.calls > li').first().waitFor())],
];

async function signedInPage() {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  await context.addInitScript((token) => sessionStorage.setItem('creditgate.console.token', token), key);
  return { context, page: await context.newPage() };
}

const cold = new Map();
const inApp = new Map();
const record = (map, name, ms) => map.set(name, [...(map.get(name) ?? []), ms]);
for (let run = 0; run < runs; run++) {
  for (const [name, path, ready] of pages) {
    const { context, page } = await signedInPage();
    const started = performance.now();
    await page.goto(base + path, { waitUntil: 'commit' });
    await ready(page);
    record(cold, name, performance.now() - started);
    await context.close();
  }
  const { context, page } = await signedInPage();
  for (const [name, path, ready] of pages) {
    await page.goto(`${base}/console/model-groups`);
    await heading(page, 'Model groups and prices');
    const started = performance.now();
    // A link click, which the console's router turns into a client-side route change.
    await page.evaluate((href) => {
      const link = Object.assign(document.createElement('a'), { href });
      document.body.append(link);
      link.click();
      link.remove();
    }, path);
    await ready(page);
    record(inApp, name, performance.now() - started);
  }
  await context.close();
}
await browser.close();

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const list = (values) => values.map((value) => Math.round(value)).join(', ');
console.log('| page | cold deep link, median ms | runs | in-app navigation, median ms | runs |');
console.log('|---|---:|---|---:|---|');
for (const [name] of pages) {
  console.log(`| ${name} | ${Math.round(median(cold.get(name)))} | ${list(cold.get(name))} | ${Math.round(median(inApp.get(name)))} | ${list(inApp.get(name))} |`);
}
