import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectErrorBody } from '../helpers/api.js';
import { createTeam, setupTeam, uniqueId } from '../helpers/factories.js';
import { query } from '../helpers/postgres.js';
import { poll } from '../helpers/wait.js';
import { outboxEvents, registerEndpoint, startWebhookReceiver, verifies, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/**
 * Issue 16, the transactional outbox: an event is written with the change it describes or not at all (a refused
 * change writes none, nor does a change no enabled endpoint subscribes to), and two instances dispatching from one
 * database send each event once between them, the events being exactly the ledger's grants.
 */

const FAST = { WEBHOOK_POLL_MS: '20', WEBHOOK_RETRY_BASE_MS: '50', LOW_BALANCE_CHECK_MS: '100' };

let app: TestApp;
let other: TestApp;
const receivers: WebhookReceiver[] = [];

beforeAll(async () => {
  app = await createTestApp(FAST);
  other = await createTestApp({ ...FAST, DATABASE_URL: app.databaseUrl });
});

afterAll(async () => {
  await other?.close();
  await app?.close();
  await Promise.all(receivers.map((receiver) => receiver.close()));
});

async function newReceiver(): Promise<WebhookReceiver> {
  const receiver = await startWebhookReceiver();
  receivers.push(receiver);
  return receiver;
}

const eventCount = async (teamId?: string) => (await outboxEvents(app, teamId)).length;

describe('two instances on one database', () => {
  it('deliver each of 100 grants once between them, and the events are exactly the grants of the ledger', async () => {
    const endpoints = await Promise.all(
      [0, 1].map(async () => {
        const receiver = await newReceiver();
        // A little latency, so that both instances are at work at the same time.
        receiver.reply = () => ({ status: 200, delayMs: Math.floor(Math.random() * 5) });
        return { receiver, endpoint: await registerEndpoint(app, { url: receiver.url }) };
      }),
    );
    const organizationId = uniqueId('org');
    expect((await app.request('POST', '/api/organizations/create', { body: { organization_id: organizationId, name: 'two' } })).status).toBe(201);
    const teams = await Promise.all(Array.from({ length: 5 }, () => createTeam(app, { organization_id: organizationId }).then((team) => team.team_id)));

    const grants = Array.from({ length: 100 }, (_, i) => ({ instance: i % 2 === 0 ? app : other, teamId: teams[i % teams.length]!, credits: i + 1 }));
    for (let i = 0; i < grants.length; i += 10) {
      await Promise.all(
        grants.slice(i, i + 10).map(async ({ instance, teamId, credits }) => {
          const response = await instance.request('POST', `/api/credits/teams/${teamId}/add`, { body: { credits, reason: `grant ${credits}` } });
          expect(response.status, JSON.stringify(response.body)).toBe(201);
        }),
      );
    }

    const ours = new Set(teams);
    const events = (await outboxEvents(app)).filter((event) => ours.has(event.team_id!));
    expect(events.filter((event) => event.type === 'credits.added')).toHaveLength(100);
    expect(events.filter((event) => event.type === 'key.created')).toHaveLength(5);
    const eventIds = events.map((event) => event.id).sort();
    for (const { receiver, endpoint } of endpoints) {
      const mine = () => receiver.received.filter((webhook) => ours.has(webhook.json.data.team_id));
      await receiver.waitUntil(() => new Set(mine().map((webhook) => webhook.id)).size >= events.length, `the ${events.length} events`, 45_000);
      await poll(
        async () => ((await query(app, `SELECT count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 AND status <> 'delivered'`, [endpoint.endpoint_id]))[0].n === 0 ? true : undefined),
        10_000,
        'every delivery recorded as delivered',
      );
      const received = mine();
      expect(received.map((webhook) => webhook.id).sort(), 'each event exactly once').toEqual(eventIds);
      for (const webhook of received) expect(verifies(endpoint.secret, webhook)).toBe(true);
      const [{ attempts }] = await query(app, 'SELECT sum(attempts)::int AS attempts FROM webhook_deliveries WHERE endpoint_id = $1', [endpoint.endpoint_id]);
      expect(attempts).toBe(receiver.received.length);
    }

    const ledger = await query(app, `SELECT id, team_id, amount_micro::bigint AS micro FROM credit_ledger WHERE entry_type = 'grant' AND team_id = ANY($1)`, [teams]);
    const byTransaction = new Map(events.filter((event) => event.type === 'credits.added').map((event) => [event.payload.transaction.transaction_id, event.payload]));
    expect([...byTransaction.keys()].sort()).toEqual(ledger.map((entry) => entry.id).sort());
    for (const entry of ledger) {
      expect(byTransaction.get(entry.id)).toMatchObject({ team_id: entry.team_id, transaction: { amount: Number(entry.micro) / 1_000_000 } });
    }
   }, 90_000);
});

describe('a change that does not happen', () => {
  let sink: WebhookReceiver;
  beforeAll(async () => {
    sink = await newReceiver();
    await registerEndpoint(app, { url: sink.url });
  });

  it('writes no event: a deduction over the balance, a grant to an unknown team, a duplicate team', async () => {
    const team = await createTeam(app, { credits_allocated: 3 });
    const before = await eventCount();
    expectErrorBody(await app.request('POST', `/api/credits/teams/${team.team_id}/deduct`, { body: { credits: 4, reason: 'too much' } }), 409, 'exceeds_available_credits');
    expectErrorBody(await app.request('POST', '/api/credits/teams/no-such-team/add', { body: { credits: 4, reason: 'nobody' } }), 404);
    expectErrorBody(await app.request('POST', '/api/teams/create', { body: { organization_id: team.organization_id, team_id: team.team_id, credits_allocated: 9 } }), 409);
    expect(await eventCount()).toBe(before);
    expect((await outboxEvents(app, team.team_id)).map((event) => [event.type, event.payload.transaction?.amount])).toEqual([
      ['credits.added', 3],
      ['key.created', undefined],
    ]);
  });

  it("writes no job.settled for a suspended team's refused call", async () => {
    const team = await setupTeam(app, { credits: 3 });
    expect((await app.request('PUT', `/api/teams/${team.teamId}/suspend`)).status).toBe(200);
    const refused = await app.request('POST', '/api/jobs/create-and-call', {
      token: team.key,
      body: { team_id: team.teamId, job_type: 'refused', model: team.group, messages: [{ role: 'user', content: 'hi' }] },
    });
    expectErrorBody(refused, 403, 'team_suspended');
    expect((await outboxEvents(app, team.teamId)).map((event) => event.type)).toEqual(['credits.added', 'key.created', 'team.suspended']);
  });

  it('a grant retried with the same Idempotency-Key is one ledger entry and one event', async () => {
    const team = await createTeam(app, { credits_allocated: 1 });
    const headers = { 'idempotency-key': `grant-${team.team_id}` };
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await app.request('POST', `/api/credits/teams/${team.team_id}/add`, { headers, body: { credits: 5, reason: 'invoice' } }));
    expect(answers.map((answer) => answer.status)).toEqual([201, 201, 201]);
    const added = (await outboxEvents(app, team.team_id)).filter((event) => event.type === 'credits.added');
    expect(added.map((event) => event.payload.transaction.amount)).toEqual([1, 5]);
    expect(added[1]!.payload.transaction.transaction_id).toBe(answers[0]!.body.transaction.transaction_id);
  });
});

describe('no endpoint subscribed', () => {
  it('writes no outbox row at all; an endpoint for one type, or a disabled one, gets only its rows written', async () => {
    const quiet = await createTestApp(FAST);
    try {
      const activity = async () => {
        const team = await setupTeam(quiet, { credits: 2, team: { balance_alerts: { low_balance_credits: 5, auto_refill: { below_credits: 5, refill_credits: 10 } } } });
        expect((await quiet.request('POST', `/api/credits/teams/${team.teamId}/add`, { body: { credits: 1, reason: 'x' } })).status).toBe(201);
        const key = await quiet.request('POST', `/api/teams/${team.teamId}/keys`, { body: { name: 'k' } });
        expect((await quiet.request('DELETE', `/api/keys/${key.body.key_id}`)).status).toBe(200);
        for (const action of ['suspend', 'resume']) expect((await quiet.request('PUT', `/api/teams/${team.teamId}/${action}`)).status).toBe(200);
        const call = await quiet.request('POST', '/api/jobs/create-and-call', {
          token: team.key,
          body: { team_id: team.teamId, job_type: 'quiet', model: team.group, messages: [{ role: 'user', content: 'hi' }] },
        });
        expect(call.status, JSON.stringify(call.body)).toBe(201);
        // The monitor noticed the team below both its thresholds (its refill row is written whatever the webhooks).
        // Each crossing is its own statement: a resume between them has the refill noticed one check before the
        // low balance, which must not be noticed only once an endpoint is registered below.
        const noticed = `SELECT 1 FROM credit_balances b WHERE b.team_id = $1 AND b.low_notified AND EXISTS (SELECT 1 FROM credit_refills r WHERE r.team_id = b.team_id)`;
        await poll(async () => ((await query(quiet, noticed, [team.teamId])).length ? true : undefined), 10_000, 'the low balance and the refill');
        return team.teamId;
      };
      await activity();
      expect(await outboxEvents(quiet)).toEqual([]);

      const disabled = await registerEndpoint(quiet, { url: 'http://127.0.0.1:9/hooks' });
      expect((await quiet.request('PATCH', `/api/webhooks/endpoints/${disabled.endpoint_id}`, { body: { enabled: false } })).status).toBe(200);
      await registerEndpoint(quiet, { url: 'http://127.0.0.1:9/hooks', events: ['key.revoked'] });
      const teamId = await activity();
      expect((await outboxEvents(quiet)).map((event) => [event.type, event.team_id])).toEqual([['key.revoked', teamId]]);
    } finally {
      await quiet.close();
    }
  });
});
