import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { CreditgateClient } from '@creditgate/client';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { createModelGroup, uniqueId } from '../helpers/factories.js';
import { startWebhookReceiver, verifies, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/**
 * The operator console end to end, in headless Chromium against the real app (the console built by
 * `npm run test:browser` first): an operator signs in with the master key, creates an organization, a model group, a
 * team and a key (copied from the page), adds credits with a double-click (applied once), finds a streamed job's
 * content on its page (as text), sees the overview change, edits the team's model groups and revokes the key, which
 * the API then refuses; registers a webhook endpoint at a real receiver, sees a credits.added delivered and replays
 * it, rotates the endpoint's secret and disables it. Every page is found by role and label, and screenshotted into reports/console/.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = path.resolve('reports/console');

let app: TestApp;
let receiver: WebhookReceiver;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const problems: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
  mkdirSync(SHOTS, { recursive: true });
  [app, receiver] = await Promise.all([createTestApp(), startWebhookReceiver()]);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: app.url });
  page = await context.newPage();
  // Any script error or CSP violation on any page fails the run.
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !/Failed to load resource: the server responded with a status of 4\d\d/.test(message.text())) problems.push(`console error: ${message.text()}`);
  });
  page.on('dialog', (dialog) => {
    problems.push(`unexpected dialog: ${dialog.message()}`);
    void dialog.dismiss();
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await app?.close();
  await receiver?.close();
});

const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
const heading = (name: string | RegExp) => page.getByRole('heading', { level: 1, name });
const todayJobs = async () => Number((await page.getByRole('row', { name: /^Today/ }).locator('[data-metric="jobs"]').textContent())!.replace(/,/g, ''));

/** The secret shown once under `label`, copied with its button: what the clipboard then holds is what was shown. */
async function copySecret(label: string, prefix = /^sk-/): Promise<string> {
  const shown = await page.getByRole('textbox', { name: label }).inputValue();
  await page.getByRole('button', { name: 'Copy', exact: true }).click();
  await page.getByRole('button', { name: 'Copied' }).waitFor();
  const copied = await page.evaluate<string>('navigator.clipboard.readText()');
  expect(copied).toBe(shown);
  expect(copied).toMatch(prefix);
  return copied;
}

describe('operator console', () => {
  it('runs an operator through sign-in, setup, credits, a streamed job, the overview, settings, revocation and webhooks', async () => {
    const organizationId = uniqueId('e2e-org');
    const teamId = uniqueId('e2e-team');
    const groupName = uniqueId('e2e-fast');
    const spareGroup = await createModelGroup(app, uniqueId('e2e-spare'), ['sim-large']);

    // Sign in: / redirects to the console, which asks for a credential; a deep link works the same.
    await page.goto(`${app.url}/`);
    expect(new URL(page.url()).pathname).toBe('/console/');
    await page.getByRole('heading', { name: 'First run: create the first admin user' }).waitFor();
    await shot('01-sign-in');
    await page.getByRole('tab', { name: 'Master key' }).click();
    await page.getByLabel('Master key', { exact: true }).fill('not-the-key-0000000000');
    await page.getByRole('button', { name: 'Sign in with the master key' }).click();
    await page.getByRole('alert').waitFor();
    await page.getByLabel('Master key', { exact: true }).fill(TEST_MASTER_KEY);
    await page.getByRole('button', { name: 'Sign in with the master key' }).click();
    await heading('Overview').waitFor();
    expect(await page.evaluate('({ local: localStorage.length, session: sessionStorage.length })')).toEqual({ local: 0, session: 1 });
    await page.getByRole('row', { name: /^Today/ }).waitFor();
    const jobsBefore = await todayJobs();

    // Keyboard: the first Tab reaches the skip link, the next ones the navigation.
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('Skip to content');
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('Overview');

    // A model group, through its page.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Model groups' }).click();
    await heading('Model groups and prices').waitFor();
    await page.getByText('Create a model group').click();
    await page.getByLabel('Group name').fill(groupName);
    await page.getByLabel('Model 1', { exact: true }).fill('sim-small');
    await page.getByRole('button', { name: 'Create model group' }).click();
    await page.getByRole('article', { name: `Model group ${groupName}` }).waitFor();
    await shot('02-model-groups');

    // An organization, then a team in it; the team's first key is shown once and copied.
    await page.getByRole('link', { name: 'Organizations' }).click();
    await heading('Organizations').waitFor();
    await page.getByLabel('Organization id').fill(organizationId);
    await page.getByLabel('Organization name').fill('End-to-end Inc.');
    await page.getByRole('button', { name: 'Create organization' }).click();
    await heading('Organization End-to-end Inc.').waitFor();
    await shot('03-organization');
    await page.getByRole('link', { name: 'Create a team in this organization' }).click();
    await heading('Teams').waitFor();
    expect(await page.getByLabel('Team organization').inputValue()).toBe(organizationId);
    await page.getByLabel('Team id').fill(teamId);
    await page.getByLabel('Team alias').fill('E2E support');
    await page.getByRole('checkbox', { name: groupName }).check();
    await page.getByRole('button', { name: 'Create team' }).click();
    await copySecret(`Virtual key of ${teamId}`);
    await shot('04-teams');
    await page.getByRole('button', { name: 'Done' }).click();
    await heading(`Team ${teamId}`).waitFor();

    // Another key, copied from the page; once dismissed, the secret is nowhere on the page.
    await page.getByLabel('Key name').fill('e2e');
    await page.getByRole('button', { name: 'Create key' }).click();
    const key = await copySecret('New virtual key');
    await page.getByRole('button', { name: 'Done' }).click();
    await page.getByRole('cell', { name: 'e2e', exact: true }).waitFor();
    expect(await page.content()).not.toContain(key);

    // Credits with a double-click: the balance grows once.
    await page.getByLabel('Credits', { exact: true }).fill('25');
    await page.getByLabel('Reason').fill('e2e top-up');
    await page.getByRole('button', { name: 'Apply' }).dblclick();
    await page.getByRole('status').filter({ hasText: 'Added 25 credits' }).waitFor();
    await page.waitForTimeout(300);
    const balance = await app.request('GET', `/api/credits/teams/${teamId}/balance`);
    expect(balance.body).toMatchObject({ balance: 25, held: 0 });
    const grants = await app.request('GET', `/api/credits/teams/${teamId}/transactions?type=grant`);
    expect(grants.body.data.map((entry: { amount: number; reason: string }) => [entry.amount, entry.reason])).toEqual([[25, 'e2e top-up']]);
    await expect.poll(() => page.getByTestId('team-balance').textContent()).toBe('25');
    await shot('05-team');

    // A streamed job with that key; its content is shown as text, markup and all.
    const content = '<img src=x onerror="alert(1)"> Hello from the stream & friends';
    app.upstream.enqueue({ steps: [{ type: 'content', text: content.slice(0, 20) }, { type: 'content', text: content.slice(20) }], usage: { prompt_tokens: 12, completion_tokens: 9 } });
    const client = new CreditgateClient({ baseUrl: app.url, apiKey: key });
    const stream = await client.createAndCallStream({ team_id: teamId, job_type: 'e2e_chat', model: groupName, messages: [{ role: 'user', content: 'Say hello' }] });
    let streamed = '';
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? '';
    expect(streamed).toBe(content);
    await page.getByRole('link', { name: 'Jobs', exact: true }).click();
    await heading('Jobs').waitFor();
    await page.getByLabel('Team id').fill(teamId);
    await page.getByRole('button', { name: 'Filter' }).click();
    const jobLink = page.getByRole('row', { name: /e2e_chat/ }).getByRole('link').first();
    await jobLink.waitFor();
    await shot('06-jobs');
    await jobLink.click();
    await heading(/^Job job_/).waitFor();
    expect(await page.getByTestId('call-content').textContent()).toBe(content);
    expect(await page.locator('main img').count()).toBe(0);
    await expect.poll(() => page.getByText('sim-small').count()).toBeGreaterThan(0);
    await shot('07-job');

    // The overview counts the new job.
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.getByRole('row', { name: /^Today/ }).waitFor();
    await expect.poll(todayJobs).toBe(jobsBefore + 1);
    await shot('08-overview');

    // Edit the team's model groups (a deep link loads the page directly).
    await page.goto(`${app.url}/console/teams/${teamId}`);
    await heading(`Team ${teamId}`).waitFor();
    await page.getByRole('checkbox', { name: spareGroup }).check();
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
    expect((await app.request('GET', `/api/teams/${teamId}`)).body.model_groups).toEqual([groupName, spareGroup]);

    // Revoke the key, after confirming; the API refuses it at once.
    await page.getByRole('button', { name: 'Revoke e2e' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke key' }).click();
    await page.getByRole('row', { name: /e2e/ }).getByText('revoked').waitFor();
    const refused = await fetch(`${app.url}/api/credits/teams/${teamId}/balance`, { headers: { authorization: `Bearer ${key}` } });
    expect(refused.status).toBe(401);

    // The teams list finds the team by its alias.
    await page.getByRole('link', { name: 'Teams' }).click();
    await page.getByRole('searchbox', { name: 'Search teams' }).fill('e2e supp');
    await page.getByRole('row', { name: new RegExp(teamId) }).waitFor();
    await shot('09-teams-search');

    // A webhook endpoint at a real receiver: its secret is shown once, and signs what the receiver gets.
    await page.getByRole('link', { name: 'Webhooks' }).click();
    await heading('Webhooks').waitFor();
    await page.getByLabel('Endpoint URL').fill(receiver.url);
    await page.getByLabel('Description').fill('e2e receiver');
    await page.getByRole('checkbox', { name: 'credits.added' }).check();
    await shot('10-webhooks-register');
    await page.getByRole('button', { name: 'Register endpoint' }).click();
    const secret = await copySecret(`Signing secret of ${receiver.url}`, /^whsec_/);
    await shot('11-webhook-secret');
    await page.getByRole('button', { name: 'Done' }).click();
    const endpointRow = page.getByRole('row', { name: new RegExp(`${receiver.url}.*credits\\.added.*enabled.*e2e receiver`) });
    await endpointRow.waitFor();
    expect(await page.content()).not.toContain(secret);

    // Credits added on the team's page are announced (credits.added); the endpoint's page, a deep link, lists the
    // delivery as delivered with the receiver's answer, and a replay sends the same event once more.
    await page.goto(`${app.url}/console/teams/${teamId}`);
    await page.getByLabel('Credits', { exact: true }).fill('5');
    await page.getByLabel('Reason').fill('e2e webhook');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByRole('status').filter({ hasText: 'Added 5 credits' }).waitFor();
    const [announced] = await receiver.waitFor(1);
    expect(announced!.json).toMatchObject({ type: 'credits.added', data: { team_id: teamId, transaction: { amount: 5, reason: 'e2e webhook' } } });
    expect(verifies(secret, announced!)).toBe(true);
    await page.goto(`${app.url}/console/webhooks`);
    await heading('Webhooks').waitFor();
    await endpointRow.getByRole('link', { name: receiver.url }).click();
    await heading(/^Webhook endpoint whe_/).waitFor();
    const deliveries = page.getByRole('table', { name: 'Deliveries, newest first' }).getByRole('row', { name: new RegExp(`credits\\.added ${announced!.id}`) });
    const delivered = deliveries.filter({ hasText: 'delivered' }).filter({ hasText: '204' });
    await expect
      .poll(
        async () => {
          await page.getByRole('button', { name: 'Refresh deliveries' }).click();
          return delivered.count();
        },
        { timeout: 10_000, interval: 300 },
      )
      .toBe(1);
    await deliveries.getByRole('button', { name: /^Replay/ }).click();
    await page.getByRole('status').filter({ hasText: /^Replayed credits\.added as delivery whd_/ }).waitFor();
    await receiver.waitFor(2);
    expect(receiver.received.map((webhook) => webhook.id)).toEqual([announced!.id, announced!.id]);
    // The replay shows as pending and is followed on the page until it is delivered.
    await expect.poll(() => delivered.count(), { timeout: 10_000 }).toBe(2);
    await shot('12-webhook-deliveries');

    // 25 deliveries to a page: More appends the older ones, and is gone once there are none left.
    for (let grant = 1; grant <= 25; grant++) await app.request('POST', `/api/credits/teams/${teamId}/add`, { body: { credits: 1, reason: `e2e grant ${grant}` } });
    await receiver.waitFor(27);
    const deliveryRows = page.getByRole('table', { name: 'Deliveries, newest first' }).locator('tbody tr');
    // Until a refresh has answered, the table still shows the two earlier deliveries (none of them pending).
    await expect
      .poll(
        async () => {
          await page.getByRole('button', { name: 'Refresh deliveries' }).click();
          return { rows: await deliveryRows.count(), pending: await page.getByRole('table', { name: 'Deliveries, newest first' }).getByText('pending').count() };
        },
        { timeout: 10_000, interval: 300 },
      )
      .toEqual({ rows: 25, pending: 0 });
    await page.getByRole('button', { name: 'More deliveries' }).click();
    await expect.poll(() => deliveryRows.count()).toBe(27);
    expect(await page.getByRole('button', { name: 'More deliveries' }).count()).toBe(0);
    expect(await delivered.count()).toBe(2);

    // Rotating the secret, after confirming, shows the new one once; disabling shows on the page.
    await page.getByRole('button', { name: 'Rotate secret' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Rotate secret' }).click();
    const rotated = await copySecret(`New signing secret of ${receiver.url}`, /^whsec_/);
    expect(rotated).not.toBe(secret);
    await page.getByRole('button', { name: 'Done' }).click();
    await page.getByRole('button', { name: 'Disable endpoint' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Disable' }).click();
    await page.getByRole('button', { name: 'Enable endpoint' }).waitFor();
    expect((await app.request('GET', '/api/webhooks/endpoints')).body.data).toMatchObject([{ url: receiver.url, enabled: false }]);

    // Sign out ends the session.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('tab', { name: 'Master key' }).waitFor();
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    expect(problems).toEqual([]);
  }, 120_000);

  it('creates the first admin user with the master key on the first run, then signs in with email and password', async () => {
    const email = `${uniqueId('ops')}@example.test`;
    const fresh = await context.newPage();
    fresh.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    await fresh.goto(`${app.url}/console/jobs`);
    await fresh.getByRole('heading', { name: 'First run: create the first admin user' }).waitFor();
    await fresh.getByLabel('Master key for setup').fill(TEST_MASTER_KEY);
    await fresh.getByLabel('New admin email').fill(email);
    await fresh.getByLabel('New admin password').fill('a long passphrase for e2e');
    await fresh.getByRole('button', { name: 'Create admin user and sign in' }).click();
    // The deep link it was opened on loads once signed in.
    await fresh.getByRole('heading', { level: 1, name: 'Jobs' }).waitFor();
    await fresh.getByRole('button', { name: 'Sign out' }).click();
    await fresh.getByRole('button', { name: 'Sign in', exact: true }).waitFor();
    expect(await fresh.getByRole('heading', { name: 'First run: create the first admin user' }).count()).toBe(0);
    await fresh.getByLabel('Email', { exact: true }).fill(email);
    await fresh.getByLabel('Password', { exact: true }).fill('a long passphrase for e2e');
    await fresh.getByRole('button', { name: 'Sign in', exact: true }).click();
    await fresh.getByRole('heading', { level: 1, name: 'Jobs' }).waitFor();
    const token = (await fresh.evaluate('sessionStorage.getItem("creditgate.console.token")')) as string;
    expect(token.split('.')).toHaveLength(3);
    expect(problems).toEqual([]);
    await fresh.close();
  }, 60_000);
});
