import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedUpstream, type SimulatedUpstream } from '../../src/upstream/simulated-server.js';
import { createTeam } from '../helpers/factories.js';
import { expectLedgerConsistent } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { poll } from '../helpers/wait.js';
import {
  outboxEvents,
  registerEndpoint,
  startWebhookReceiver,
  verifies,
  type RegisteredEndpoint,
  type WebhookReceiver,
} from '../helpers/webhook-receiver.js';
import { adminApi, api, freshDatabase, spawnServer, stopAllServers, type FreshDatabase } from './support.js';

/**
 * Issue 16: a creditgate process delivering webhooks is killed with -9 while deliveries are in flight (one of them
 * to a receiver that hangs) and admin grants are being made. A second process on the same database, once the dead
 * one's delivery leases lapse (WEBHOOK_TIMEOUT_MS + 5 s), delivers the rest. Nothing is lost (every committed grant's
 * credits.added reaches every endpoint), nothing is invented (every webhook is an outbox row, every credits.added
 * a grant of the ledger), and only what was in flight at the kill is sent twice.
 */

const SERVER_ENV = { WEBHOOK_POLL_MS: '50', WEBHOOK_RETRY_BASE_MS: '100', LOW_BALANCE_CHECK_MS: '200' };
/** The first process's attempt timeout: far beyond the kill, so the hanging delivery is still in flight then. */
const FIRST_TIMEOUT_MS = 30_000;
/** The lease it leaves on its in-flight deliveries: the timeout plus the dispatcher's 5 s margin. */
const LEASE_MS = FIRST_TIMEOUT_MS + 5_000;

let db: FreshDatabase;
let upstream: SimulatedUpstream;
let receivers: WebhookReceiver[] = [];

beforeAll(async () => {
  [db, upstream, ...receivers] = await Promise.all([freshDatabase(), startSimulatedUpstream(), startWebhookReceiver(), startWebhookReceiver()]);
});

afterAll(async () => {
  await stopAllServers();
  await Promise.all(receivers.map((receiver) => receiver.close()));
  await upstream?.close();
  await db?.drop();
});

describe('the dispatcher killed with -9 mid-delivery', () => {
  it('loses nothing and sends nothing that did not happen; a second process delivers the rest once the leases lapse', async () => {
    const first = await spawnServer({ databaseUrl: db.url, upstreamBaseURL: upstream.baseURL, env: { ...SERVER_ENV, WEBHOOK_TIMEOUT_MS: String(FIRST_TIMEOUT_MS) } });
    const admin = adminApi(first.url);
    const [hangs, answers] = receivers as [WebhookReceiver, WebhookReceiver];
    // One receiver hangs from its 12th request on; the other answers everything.
    hangs.reply = (webhook) => (hangs.received.indexOf(webhook) >= 11 ? 'hang' : { status: 204 });
    answers.reply = () => ({ status: 204 });
    const endpoints: RegisteredEndpoint[] = [];
    for (const receiver of receivers) endpoints.push(await registerEndpoint(admin, { url: receiver.url }));
    const teams = await Promise.all(Array.from({ length: 4 }, () => createTeam(admin, { credits_allocated: 10 }).then((team) => team.team_id)));

    // Four clients grant credits as fast as they can until the process dies under them.
    const outcomes = { answered: [] as string[], died: 0 };
    let stop = false;
    const clients = Array.from({ length: 4 }, async (_, client) => {
      for (let i = 0; !stop; i++) {
        try {
          const response = await api(first.url, 'POST', `/api/credits/teams/${teams[(client + i) % teams.length]}/add`, { body: { credits: 1 + (i % 7), reason: `c${client}-${i}` } });
          expect(response.status, JSON.stringify(response.body)).toBe(201);
          outcomes.answered.push(response.body.transaction.transaction_id);
        } catch (error) {
          if (!stop) throw error;
          outcomes.died++;
          return;
        }
      }
    });

    await hangs.waitUntil(() => hangs.hanging() >= 1, 'a hanging delivery', 30_000);
    await poll(async () => (outcomes.answered.length >= 24 ? true : undefined), 30_000, '24 grants');
    const hungIds = hangs.received.slice(11).map((webhook) => webhook.id);
    stop = true;
    await first.kill9();
    await Promise.all(clients);

    hangs.reply = () => ({ status: 204 });
    const second = await spawnServer({ databaseUrl: db.url, upstreamBaseURL: upstream.baseURL, env: { ...SERVER_ENV, WEBHOOK_TIMEOUT_MS: '5000' } });
    await poll(
      async () => {
        const [row] = await query(
          db.pool,
          `SELECT (SELECT count(*) FROM webhook_events WHERE NOT fanned_out)::int AS waiting,
                  (SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered')::int AS undelivered`,
        );
        return row.waiting === 0 && row.undelivered === 0 ? true : undefined;
      },
      LEASE_MS + 25_000,
      'every event delivered to every endpoint by the second process',
      250,
    );

    const events = await outboxEvents(db.pool);
    const eventsById = new Map(events.map((event) => [event.id, event]));
    const grants = await query(db.pool, `SELECT id, team_id, amount_micro::bigint AS micro FROM credit_ledger WHERE entry_type = 'grant'`);
    // Nothing invented: the credits.added events are exactly the grants committed, allocations included.
    const added = events.filter((event) => event.type === 'credits.added');
    expect(added.map((event) => event.payload.transaction.transaction_id).sort()).toEqual(grants.map((grant) => grant.id).sort());
    for (const grant of grants) {
      const event = added.find((candidate) => candidate.payload.transaction.transaction_id === grant.id)!;
      expect(event.payload).toMatchObject({ team_id: grant.team_id, transaction: { amount: Number(grant.micro) / 1_000_000 } });
    }
    // Every grant answered 201 was committed; those that died with the process may or may not have been.
    expect(grants.map((grant) => grant.id)).toEqual(expect.arrayContaining(outcomes.answered));
    expect(grants.length).toBeGreaterThanOrEqual(outcomes.answered.length + 4);
    expect(grants.length).toBeLessThanOrEqual(outcomes.answered.length + 4 + outcomes.died);
    for (const team of teams) await expectLedgerConsistent(db.pool, team);

    for (const [index, receiver] of receivers.entries()) {
      const endpoint = endpoints[index]!;
      const label = index === 0 ? 'the receiver that hung' : 'the receiver that answered';
      // Nothing lost: every event reached the endpoint; nothing else did, and every webhook is its event, signed.
      const distinct = [...new Set(receiver.received.map((webhook) => webhook.id))];
      expect(distinct.slice().sort(), label).toEqual(events.map((event) => event.id).sort());
      for (const webhook of receiver.received) {
        const event = eventsById.get(webhook.id)!;
        expect(webhook.json, label).toEqual({ type: event.type, timestamp: expect.any(String), data: event.payload });
        expect(verifies(endpoint.secret, webhook), label).toBe(true);
      }
      // In order: each endpoint's first arrivals follow its deliveries' order.
      const deliveries = await query(db.pool, 'SELECT event_id FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY seq', [endpoint.endpoint_id]);
      expect(distinct, label).toEqual(deliveries.map((delivery) => delivery.event_id));
      // Sent twice: at most the one delivery of the endpoint in flight at the kill, the hanging one if there was one.
      const twice = distinct.filter((id) => receiver.received.filter((webhook) => webhook.id === id).length > 1);
      expect(twice.length, label).toBeLessThanOrEqual(1);
      expect(receiver.received.length, label).toBe(distinct.length + twice.length);
      if (index === 0) {
        expect(hungIds).toHaveLength(1);
        expect(twice).toEqual(hungIds);
        // Sent again by the second process only once the dead one's lease lapsed.
        const [hung, resent] = receiver.received.filter((webhook) => webhook.id === hungIds[0]);
        expect(resent!.receivedAt - hung!.receivedAt).toBeGreaterThanOrEqual(LEASE_MS - 2_000);
      }
    }
    expect(second.output()).not.toMatch(/"level":(50|60)/);
    // Two process starts and the 35 s lease: more than the suite's default on a loaded machine.
  }, 150_000);
});
