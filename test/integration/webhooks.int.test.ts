import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createTeam, setupTeam, uniqueId } from '../helpers/factories.js';
import { query } from '../helpers/postgres.js';
import { poll } from '../helpers/wait.js';
import {
  outboxEvents,
  registerEndpoint,
  specSignature,
  startWebhookReceiver,
  verifies,
  type ReceivedWebhook,
  type WebhookReceiver,
} from '../helpers/webhook-receiver.js';

/**
 * Issue 16: every event type reaches a real local receiver, signed per Standard Webhooks (verified by the
 * specification's HMAC and by the standardwebhooks library), with the data it describes, once per change: once
 * per crossing for the balance alerts, nothing for a repeated suspension or revocation.
 */

const FAST = { WEBHOOK_POLL_MS: '50', WEBHOOK_RETRY_BASE_MS: '50', LOW_BALANCE_CHECK_MS: '100' };

let app: TestApp;
let receiver: WebhookReceiver;
let secret: string;

beforeAll(async () => {
  [app, receiver] = await Promise.all([createTestApp(FAST), startWebhookReceiver()]);
  secret = (await registerEndpoint(app, { url: receiver.url })).secret;
});

afterAll(async () => {
  await app?.close();
  await receiver?.close();
});

// Whatever a test received must verify with the endpoint's secret.
afterEach(() => {
  for (const webhook of receiver.received) expect(verifies(secret, webhook), `${webhook.json.type} ${webhook.id}`).toBe(true);
});

const types = (webhooks: ReceivedWebhook[]) => webhooks.map((webhook) => webhook.json.type);

/** The team's webhooks once one of `type` (the `count`-th) arrived. */
function arrived(teamId: string, type: string, count = 1): Promise<ReceivedWebhook[]> {
  return receiver
    .waitUntil(() => receiver.ofTeam(teamId).filter((webhook) => webhook.json.type === type).length >= count, `${count} ${type} of ${teamId}`)
    .then(() => receiver.ofTeam(teamId));
}

/**
 * A grant that ends the team's story so far: events are delivered in the order they were written, so once its
 * credits.added arrived, every earlier event of the team has too.
 */
async function grantAndSettle(teamId: string, credits = 1): Promise<ReceivedWebhook[]> {
  const added = await app.request('POST', `/api/credits/teams/${teamId}/add`, { body: { credits, reason: 'barrier' } });
  expect(added.status, JSON.stringify(added.body)).toBe(201);
  const id = added.body.transaction.transaction_id;
  await receiver.waitUntil(() => receiver.ofTeam(teamId).some((webhook) => webhook.json.data.transaction?.transaction_id === id), `the credits.added of ${id}`);
  return receiver.ofTeam(teamId);
}

/**
 * One round of the low-balance monitor that started after everything before it committed: a new team below its
 * threshold is noticed by it, and everything one round writes is committed together.
 */
async function monitorRound(): Promise<void> {
  const probe = await createTeam(app, { credits_allocated: 0, balance_alerts: { low_balance_credits: 1 } });
  await poll(async () => ((await outboxEvents(app, probe.team_id)).some((event) => event.type === 'credits.low') ? true : undefined), 10_000, 'a low-balance round');
}

async function deduct(teamId: string, credits: number) {
  const response = await app.request('POST', `/api/credits/teams/${teamId}/deduct`, { body: { credits, reason: 'spent' } });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
}

async function add(teamId: string, credits: number) {
  const response = await app.request('POST', `/api/credits/teams/${teamId}/add`, { body: { credits, reason: 'top-up' } });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body;
}

const outboxCount = async (teamId: string, type: string) => (await outboxEvents(app, teamId)).filter((event) => event.type === type).length;

describe('signed events', () => {
  it('the HMAC matches the specification example', () => {
    // The example of the Standard Webhooks specification (and of svix, its reference implementation).
    const signature = new Webhook('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw').sign('msg_p5jXN8AQM9LWM0D4loKWxJek', new Date(1614265330 * 1000), '{"test": 2432232314}');
    expect(signature).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
    expect(specSignature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', { id: 'msg_p5jXN8AQM9LWM0D4loKWxJek', timestamp: '1614265330', body: '{"test": 2432232314}' })).toBe(signature);
  });

  it('credits.added, key.created and job.settled arrive signed, verifiable, in the order they happened', async () => {
    const team = await setupTeam(app, { credits: 5 });
    const call = await app.request('POST', '/api/jobs/create-and-call', {
      token: team.key,
      body: { team_id: team.teamId, job_type: 'hook', model: team.group, messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(call.status, JSON.stringify(call.body)).toBe(201);
    const ofTeam = await arrived(team.teamId, 'job.settled');
    expect(types(ofTeam)).toEqual(['credits.added', 'key.created', 'job.settled']);
    for (const webhook of ofTeam) {
      expect(webhook.signature).toBe(specSignature(secret, webhook));
      expect(() => new Webhook(secret).verify(webhook.body, webhook.headers as Record<string, string>)).not.toThrow();
      expect(webhook.headers['content-type']).toMatch(/^application\/json/);
      expect(Math.abs(Number(webhook.timestamp) - Date.now() / 1000)).toBeLessThan(60);
      expect(Object.keys(webhook.json).sort()).toEqual(['data', 'timestamp', 'type']);
    }
    expect(ofTeam[2]!.json.data).toMatchObject({ job_id: call.body.job_id, team_id: team.teamId, job_type: 'hook', status: 'completed', credits_charged: 1, credits_remaining: 4 });
    expect(ofTeam[2]!.json.data.completed_at).toEqual(expect.any(String));
    const events = await outboxEvents(app, team.teamId);
    expect(ofTeam.map((webhook) => webhook.id)).toEqual(events.map((event) => event.id));
    expect(ofTeam.map((webhook) => webhook.json.data)).toEqual(events.map((event) => event.payload));
  });

  it('a wrong secret or a changed body does not verify', async () => {
    const team = await createTeam(app, { credits_allocated: 3 });
    const [webhook] = await arrived(team.team_id, 'credits.added');
    const other = `whsec_${Buffer.alloc(24, 7).toString('base64')}`;
    expect(() => new Webhook(other).verify(webhook!.body, webhook!.headers as Record<string, string>)).toThrow();
    expect(webhook!.signature).not.toBe(specSignature(secret, { ...webhook!, body: webhook!.body.replace('3', '4') }));
  });
});

describe('credits.added', () => {
  it("is sent for a new team's allocation and for each admin grant, with the ledger entry", async () => {
    const team = await createTeam(app, { credits_allocated: 10 });
    const grant = await add(team.team_id, 7);
    const ofTeam = (await arrived(team.team_id, 'credits.added', 2)).filter((webhook) => webhook.json.type === 'credits.added');
    expect(ofTeam).toHaveLength(2);
    expect(ofTeam[0]!.json.data).toMatchObject({ team_id: team.team_id, transaction: { type: 'grant', amount: 10, balance_after: 10, reason: 'initial allocation' } });
    expect(ofTeam[1]!.json.data).toEqual({ team_id: team.team_id, transaction: grant.transaction });
    expect(ofTeam[1]!.json.data.transaction).toMatchObject({ type: 'grant', amount: 7, balance_after: 17, reason: 'top-up' });
    const ledger = await query(app, `SELECT id FROM credit_ledger WHERE team_id = $1 AND entry_type = 'grant' ORDER BY id`, [team.team_id]);
    expect(ofTeam.map((webhook) => webhook.json.data.transaction.transaction_id).sort()).toEqual(ledger.map((entry) => entry.id).sort());
  });
});

describe('key.created and key.revoked', () => {
  it('are sent for a new key and its first revocation only', async () => {
    const team = await createTeam(app, { credits_allocated: 1 });
    const created = await app.request('POST', `/api/teams/${team.team_id}/keys`, { body: { name: 'ci' } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    for (let i = 0; i < 2; i++) expect((await app.request('DELETE', `/api/keys/${created.body.key_id}`)).status).toBe(200);
    const ofTeam = await grantAndSettle(team.team_id);
    expect(types(ofTeam)).toEqual(['credits.added', 'key.created', 'key.created', 'key.revoked', 'credits.added']);
    const [, first, second, revoked] = ofTeam;
    expect(first!.json.data).toMatchObject({ team_id: team.team_id, key: { key_id: team.key.key_id, status: 'active' } });
    expect(second!.json.data).toMatchObject({ team_id: team.team_id, key: { key_id: created.body.key_id, name: 'ci' } });
    expect(revoked!.json.data).toMatchObject({ team_id: team.team_id, key: { key_id: created.body.key_id, name: 'ci', status: 'revoked', revoked_at: expect.any(String) } });
    for (const webhook of ofTeam) expect(JSON.stringify(webhook.json)).not.toContain(created.body.virtual_key);
  });
});

describe('team.suspended and team.resumed', () => {
  it('are sent once per change of status: suspending or resuming twice sends one', async () => {
    const team = await createTeam(app, { credits_allocated: 1 });
    for (const action of ['suspend', 'suspend', 'resume', 'resume']) {
      const response = await app.request('PUT', `/api/teams/${team.team_id}/${action}`);
      expect(response.status, JSON.stringify(response.body)).toBe(200);
    }
    const ofTeam = await grantAndSettle(team.team_id);
    expect(types(ofTeam)).toEqual(['credits.added', 'key.created', 'team.suspended', 'team.resumed', 'credits.added']);
    expect(ofTeam[2]!.json.data).toEqual({ team_id: team.team_id });
    expect(ofTeam[3]!.json.data).toEqual({ team_id: team.team_id });
  });
});

describe('job.settled', () => {
  it('is sent for a cancelled job (its hold released, nothing charged) and a failed one, once each', async () => {
    const team = await setupTeam(app, { credits: 5 });
    const jobs: string[] = [];
    for (let i = 0; i < 2; i++) {
      const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: `settle-${i}` } });
      expect(job.status, JSON.stringify(job.body)).toBe(201);
      jobs.push(job.body.job_id);
    }
    for (let i = 0; i < 2; i++) expect((await app.request('POST', `/api/jobs/${jobs[0]}/cancel`, { token: team.key })).status).toBe(200);
    const failed = await app.request('POST', `/api/jobs/${jobs[1]}/complete`, { token: team.key, body: { status: 'failed' } });
    expect(failed.status, JSON.stringify(failed.body)).toBe(200);
    expect((await app.request('POST', `/api/jobs/${jobs[1]}/complete`, { token: team.key, body: { status: 'completed' } })).status).not.toBe(200);
    const settled = (await grantAndSettle(team.teamId)).filter((webhook) => webhook.json.type === 'job.settled');
    expect(settled.map((webhook) => webhook.json.data)).toEqual([
      expect.objectContaining({ job_id: jobs[0], team_id: team.teamId, job_type: 'settle-0', status: 'cancelled', credits_charged: 0, credits_remaining: 4 }),
      expect.objectContaining({ job_id: jobs[1], team_id: team.teamId, job_type: 'settle-1', status: 'failed', credits_charged: 0, credits_remaining: 5 }),
    ]);
  });
});

describe('credits.low', () => {
  it('is sent once per crossing of a threshold in credits: again only after the credits were back above', async () => {
    const team = await createTeam(app, { credits_allocated: 10, balance_alerts: { low_balance_credits: 5 } });
    await deduct(team.team_id, 6);
    const [low] = (await arrived(team.team_id, 'credits.low')).filter((webhook) => webhook.json.type === 'credits.low');
    expect(low!.json.data).toEqual({ team_id: team.team_id, credits_remaining: 4, threshold: 5 });

    await deduct(team.team_id, 1); // further down: the same crossing
    await monitorRound();
    expect(await outboxCount(team.team_id, 'credits.low')).toBe(1);

    await add(team.team_id, 10); // back above (13)...
    await monitorRound();
    await deduct(team.team_id, 10); // ...and down again (3): a second crossing
    const lows = (await arrived(team.team_id, 'credits.low', 2)).filter((webhook) => webhook.json.type === 'credits.low');
    expect(lows.map((webhook) => webhook.json.data)).toEqual([
      { team_id: team.team_id, credits_remaining: 4, threshold: 5 },
      { team_id: team.team_id, credits_remaining: 3, threshold: 5 },
    ]);
    await monitorRound();
    expect(await outboxCount(team.team_id, 'credits.low')).toBe(2);
  });

  it("is sent below a percentage of the team's last grant (set by PATCH)", async () => {
    const team = await createTeam(app, { credits_allocated: 10 });
    const patched = await app.request('PATCH', `/api/teams/${team.team_id}`, { body: { balance_alerts: { low_balance_percent: 50 } } });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    expect(patched.body.balance_alerts).toEqual({ low_balance_credits: null, low_balance_percent: 50, auto_refill: null });
    await deduct(team.team_id, 6); // 4 < 50% of 10
    await arrived(team.team_id, 'credits.low');
    await add(team.team_id, 20); // 24, above 50% of the new last grant (10)
    await monitorRound();
    await deduct(team.team_id, 15); // 9 < 10
    const lows = (await arrived(team.team_id, 'credits.low', 2)).filter((webhook) => webhook.json.type === 'credits.low');
    expect(lows.map((webhook) => webhook.json.data)).toEqual([
      { team_id: team.team_id, credits_remaining: 4, threshold: 5 },
      { team_id: team.team_id, credits_remaining: 9, threshold: 10 },
    ]);
  });
});

describe('credits.depleted', () => {
  it('is sent once when the team cannot pay for a job any more', async () => {
    const team = await setupTeam(app, { credits: 1 });
    const call = await app.request('POST', '/api/jobs/create-and-call', {
      token: team.key,
      body: { team_id: team.teamId, job_type: 'last', model: team.group, messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(call.status, JSON.stringify(call.body)).toBe(201);
    // The job's hold already takes the last credit, so the monitor may tell before or after the job settles.
    await arrived(team.teamId, 'job.settled');
    const ofTeam = await arrived(team.teamId, 'credits.depleted');
    expect(types(ofTeam).sort()).toEqual(['credits.added', 'credits.depleted', 'job.settled', 'key.created']);
    expect(ofTeam.find((webhook) => webhook.json.type === 'credits.depleted')!.json.data).toEqual({ team_id: team.teamId, credits_remaining: 0 });
    const refused = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'more' } });
    expect(refused.status).toBe(402);
    await monitorRound();
    expect(await outboxCount(team.teamId, 'credits.depleted')).toBe(1);
  });
});

describe('credits.refill_requested', () => {
  it('is sent with a credit_refills row, once per crossing of the auto-refill line', async () => {
    const team = await createTeam(app, { credits_allocated: 10, balance_alerts: { auto_refill: { below_credits: 5, refill_credits: 50 } } });
    expect(team.balance_alerts).toEqual({ low_balance_credits: null, low_balance_percent: null, auto_refill: { below_credits: 5, refill_credits: 50 } });
    await deduct(team.team_id, 6);
    const [first] = (await arrived(team.team_id, 'credits.refill_requested')).filter((webhook) => webhook.json.type === 'credits.refill_requested');
    expect(first!.json.data).toEqual({ team_id: team.team_id, refill_id: expect.stringMatching(/^rfl_/), credits: 50, credits_remaining: 4, below: 5 });
    await deduct(team.team_id, 1);
    await monitorRound();
    const refills = () => query(app, 'SELECT id, credits, status FROM credit_refills WHERE team_id = $1 ORDER BY id', [team.team_id]);
    expect(await refills()).toEqual([{ id: first!.json.data.refill_id, credits: 50, status: 'requested' }]);

    await add(team.team_id, 10);
    await monitorRound();
    await deduct(team.team_id, 10);
    const requested = (await arrived(team.team_id, 'credits.refill_requested', 2)).filter((webhook) => webhook.json.type === 'credits.refill_requested');
    expect(requested[1]!.json.data).toMatchObject({ credits: 50, credits_remaining: 3, below: 5 });
    expect((await refills()).map((refill) => refill.id)).toEqual(requested.map((webhook) => webhook.json.data.refill_id));
  });
});

describe('the outbox', () => {
  it('holds each delivered event once, with its team, in the order of the changes', async () => {
    const team = await createTeam(app, { credits_allocated: 2, team_id: uniqueId('outbox') });
    await add(team.team_id, 3);
    const ofTeam = await grantAndSettle(team.team_id);
    const events = await outboxEvents(app, team.team_id);
    expect(events.map((event) => [event.id, event.type])).toEqual(ofTeam.map((webhook) => [webhook.id, webhook.json.type]));
    expect(new Set(ofTeam.map((webhook) => webhook.id)).size).toBe(ofTeam.length);
  });
});
