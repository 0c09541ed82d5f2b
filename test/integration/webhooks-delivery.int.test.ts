import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createTeam } from '../helpers/factories.js';
import { query } from '../helpers/postgres.js';
import {
  deliveriesOf,
  outboxEvents,
  registerEndpoint,
  startWebhookReceiver,
  verifies,
  waitForDelivery,
  type ReceivedWebhook,
  type ReceiverReply,
  type WebhookReceiver,
} from '../helpers/webhook-receiver.js';

/**
 * Issue 16, how deliveries go: at least once, retried with exponential backoff (jitter) while holding back the
 * endpoint's later events, never following a redirect, within a timeout, reading at most a small part of an
 * answer, given up once the event is older than WEBHOOK_MAX_AGE_HOURS, and replayed on request with the same id.
 */

const RETRY_BASE_MS = 200;
const TIMEOUT_MS = 3_000;
const ENV = { WEBHOOK_POLL_MS: '50', WEBHOOK_RETRY_BASE_MS: String(RETRY_BASE_MS), WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS), LOW_BALANCE_CHECK_MS: '100' };

let app: TestApp;
const receivers: WebhookReceiver[] = [];

beforeAll(async () => {
  app = await createTestApp(ENV);
});

afterAll(async () => {
  await app?.close();
  await Promise.all(receivers.map((receiver) => receiver.close()));
});

/** Endpoints a test registered, deleted after it whatever happened: a failing one would be retried for the next tests. */
const endpoints: string[] = [];
afterEach(async () => {
  for (const id of endpoints.splice(0)) await app.request('DELETE', `/api/webhooks/endpoints/${id}`);
});

/** A receiver of the test's own, answering as `reply` says, and an endpoint (every event type) posting to it. */
async function endpointWith(reply: WebhookReceiver['reply']) {
  const receiver = await startWebhookReceiver();
  receivers.push(receiver);
  receiver.reply = reply;
  const endpoint = await registerEndpoint(app, { url: receiver.url });
  endpoints.push(endpoint.endpoint_id);
  return { receiver, endpoint };
}

/** A reply that waits for `release()`: the attempt stays in flight meanwhile, so its delivery can be looked at. */
function gate(reply: Exclude<ReceiverReply, 'hang'>) {
  let release!: () => void;
  const opened = new Promise<void>((resolve) => (release = resolve));
  return { release, reply: opened.then(() => reply) };
}

/** The distinct webhook-ids of `webhooks`, in the order each first arrived. */
const firstArrivals = (webhooks: ReceivedWebhook[]) => [...new Set(webhooks.map((webhook) => webhook.id))];

describe('a receiver that fails', () => {
  it('answering 500 three times gets the event a fourth time, later events held back until then, with growing backoff', async () => {
    let failing: string | undefined;
    const fourth = gate({ status: 200 });
    const { receiver, endpoint } = await endpointWith((webhook, seenBefore) => {
      failing ??= webhook.id;
      if (webhook.id !== failing) return { status: 200 };
      return seenBefore < 3 ? { status: 500, body: 'nope' } : fourth.reply;
    });
    const team = await createTeam(app, { credits_allocated: 5 });
    await receiver.waitFor(1);
    const grant = await app.request('POST', `/api/credits/teams/${team.team_id}/add`, { body: { credits: 1, reason: 'later' } });
    expect(grant.status).toBe(201);

    // The fourth attempt is in flight: the delivery shows the attempts so far and the last failure.
    await receiver.waitFor(4);
    const inFlight = await waitForDelivery(app, endpoint.endpoint_id, failing!, (delivery) => delivery.attempts === 4, 'the fourth attempt');
    expect(inFlight).toMatchObject({ status: 'pending', last_status_code: 500, last_error: 'HTTP 500: nope', delivered_at: null });
    expect(receiver.received.map((webhook) => webhook.id)).toEqual([failing, failing, failing, failing]);
    fourth.release();

    const events = await outboxEvents(app, team.team_id);
    expect(events.map((event) => event.type)).toEqual(['credits.added', 'key.created', 'credits.added']);
    expect(events[0]!.id).toBe(failing);
    await receiver.waitFor(6);
    expect(receiver.received.map((webhook) => webhook.id)).toEqual([...Array(4).fill(failing), events[1]!.id, events[2]!.id]);
    for (const webhook of receiver.received) expect(verifies(endpoint.secret, webhook)).toBe(true);

    const delivered = await waitForDelivery(app, endpoint.endpoint_id, failing!, (delivery) => delivery.status === 'delivered', 'the delivery');
    expect(delivered).toMatchObject({ attempts: 4, last_status_code: 200, last_error: null, next_attempt_at: null, event_type: 'credits.added' });
    expect(Date.parse(delivered.delivered_at!)).toBeGreaterThanOrEqual(receiver.received[3]!.receivedAt - 1_000);

    // Each retry waits at least 0.8 x base x 2^(n-1); the third gap is far longer than the first.
    const at = receiver.received.slice(0, 4).map((webhook) => webhook.receivedAt);
    const gaps = at.slice(1).map((time, i) => time - at[i]!);
    gaps.forEach((gap, i) => expect(gap, `gap ${i + 1} of ${JSON.stringify(gaps)}`).toBeGreaterThanOrEqual(0.8 * RETRY_BASE_MS * 2 ** i - 5));
    expect(gaps[2], JSON.stringify(gaps)).toBeGreaterThan(gaps[0]!);
  });

  it('a redirect is not followed: the delivery stays pending with the 3xx', async () => {
    const target = await startWebhookReceiver();
    receivers.push(target);
    const { receiver, endpoint } = await endpointWith(() => ({ status: 302, headers: { location: target.url } }));
    await createTeam(app, { credits_allocated: 1 });
    const [first] = await receiver.waitFor(1);
    const delivery = await waitForDelivery(app, endpoint.endpoint_id, first!.id, (candidate) => candidate.attempts >= 2 && candidate.last_status_code === 302, 'two redirected attempts', 5_000);
    expect(delivery.status).toBe('pending');
    expect(delivery.last_error).toMatch(/redirect/);
    // Had either attempt followed the redirect, the target would have been asked before the attempt was recorded.
    expect(target.received).toEqual([]);
  });

  it('a receiver that does not answer within WEBHOOK_TIMEOUT_MS: the attempt records an error and is retried', async () => {
    const second = gate({ status: 204 });
    const { receiver, endpoint } = await endpointWith((_, seenBefore) => (seenBefore === 0 ? 'hang' : second.reply));
    const team = await createTeam(app, { credits_allocated: 1 });
    const [first] = await receiver.waitFor(1);
    expect(first!.json.data.team_id).toBe(team.team_id);
    await receiver.waitFor(2, TIMEOUT_MS + 5_000);
    const retried = await waitForDelivery(app, endpoint.endpoint_id, first!.id, (delivery) => delivery.attempts === 2, 'the retry');
    expect(retried).toMatchObject({ status: 'pending', last_status_code: null, last_error: expect.stringMatching(/time|abort/i) });
    expect(receiver.received[1]!.receivedAt - first!.receivedAt).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(receiver.received[1]!.id).toBe(first!.id);
    second.release();
    await waitForDelivery(app, endpoint.endpoint_id, first!.id, (delivery) => delivery.status === 'delivered', 'the delivery');
  });

  it('an answer of 20 MB (or 256 MB) is not read: the attempt ends at once with its status and a short error', async () => {
    const third = gate({ status: 204 });
    const { receiver, endpoint } = await endpointWith((_, seenBefore) =>
      seenBefore === 0 ? { status: 500, body: 'x'.repeat(20 * 1024 * 1024) } : seenBefore === 1 ? { status: 500, fillerBytes: 256 * 1024 * 1024 } : third.reply,
    );
    await createTeam(app, { credits_allocated: 1 });
    const [first, second] = await receiver.waitFor(3, TIMEOUT_MS + 5_000);
    const failed = await waitForDelivery(app, endpoint.endpoint_id, first!.id, (delivery) => delivery.attempts === 3, 'the third attempt');
    // 500, not a timeout: each answer was given up on once its first KiBs were read.
    expect(failed.last_status_code).toBe(500);
    expect(failed.last_error).toMatch(/^HTTP 500: x+$/);
    expect(failed.last_error!.length).toBeLessThanOrEqual(300);
    expect(second!.receivedAt - first!.receivedAt).toBeLessThan(TIMEOUT_MS);
    // 256 MB is far more than the kernel buffers between the two: the sender stopped reading and closed.
    expect(await second!.answered, 'the sender closed the connection before the whole answer was written').toBe(false);
    third.release();
    await waitForDelivery(app, endpoint.endpoint_id, first!.id, (delivery) => delivery.status === 'delivered', 'the delivery');
  });

  it('a hanging receiver does not hold back the deliveries to other endpoints', async () => {
    const stuck = await endpointWith(() => 'hang');
    const healthy = await endpointWith(() => ({ status: 204 }));
    await createTeam(app, { credits_allocated: 1 });
    await stuck.receiver.waitUntil(() => stuck.receiver.hanging() >= 1, 'a hanging request');
    const started = Date.now();
    const team = await createTeam(app, { credits_allocated: 1 });
    await healthy.receiver.waitUntil(() => healthy.receiver.ofTeam(team.team_id).length >= 2, "the healthy endpoint's deliveries", TIMEOUT_MS + 5_000);
    expect(Date.now() - started, 'the healthy endpoint waited for the hanging one to time out').toBeLessThan(TIMEOUT_MS / 3);
  });
});

describe('the maximum age', () => {
  it('an event older than WEBHOOK_MAX_AGE_HOURS is given up after its next failed attempt; the next event then goes', async () => {
    let doomed: string | undefined;
    const { receiver, endpoint } = await endpointWith((webhook) => {
      doomed ??= webhook.id;
      return webhook.id === doomed ? { status: 500, body: 'down' } : { status: 204 };
    });
    const team = await createTeam(app, { credits_allocated: 1 });
    await receiver.waitFor(1);
    await query(app, `UPDATE webhook_events SET created_at = now() - interval '73 hours' WHERE id = $1`, [doomed]);
    const failed = await waitForDelivery(app, endpoint.endpoint_id, doomed!, (delivery) => delivery.status !== 'pending', 'the delivery to be given up', 5_000);
    expect(failed).toMatchObject({ status: 'failed', last_status_code: 500, last_error: 'HTTP 500: down', next_attempt_at: null, delivered_at: null });
    expect(failed.attempts).toBeGreaterThanOrEqual(2);

    const [, next] = await outboxEvents(app, team.team_id);
    await waitForDelivery(app, endpoint.endpoint_id, next!.id, (delivery) => delivery.status === 'delivered', 'the next event');
    const attemptsOfDoomed = receiver.received.filter((webhook) => webhook.id === doomed);
    expect(attemptsOfDoomed).toHaveLength(failed.attempts);
    expect(receiver.received.at(-1)!.id).toBe(next!.id);
  });
});

describe('replay', () => {
  it('sends the same event (same webhook-id, same body) again as a new delivery', async () => {
    const { receiver, endpoint } = await endpointWith(() => ({ status: 200 }));
    await createTeam(app, { credits_allocated: 2 });
    const [original] = await receiver.waitFor(1);
    const delivered = await waitForDelivery(app, endpoint.endpoint_id, original!.id, (delivery) => delivery.status === 'delivered', 'the delivery');

    const replay = await app.request('POST', `/api/webhooks/deliveries/${delivered.delivery_id}/replay`);
    expect(replay.status, JSON.stringify(replay.body)).toBe(201);
    expect(replay.body).toMatchObject({ endpoint_id: endpoint.endpoint_id, event_id: original!.id, event_type: 'credits.added', status: 'pending', attempts: 0 });
    expect(replay.body.delivery_id).not.toBe(delivered.delivery_id);

    await receiver.waitUntil((received) => received.filter((webhook) => webhook.id === original!.id).length === 2, 'the replay');
    const again = receiver.received.filter((webhook) => webhook.id === original!.id)[1]!;
    expect(again.body).toBe(original!.body);
    expect(verifies(endpoint.secret, again)).toBe(true);
    const deliveries = await deliveriesOf(app, endpoint.endpoint_id);
    const ofEvent = deliveries.filter((delivery) => delivery.event_id === original!.id);
    expect(ofEvent.map((delivery) => [delivery.delivery_id, delivery.attempts])).toEqual(
      expect.arrayContaining([
        [delivered.delivery_id, 1],
        [replay.body.delivery_id, expect.any(Number)],
      ]),
    );
    await waitForDelivery(app, endpoint.endpoint_id, original!.id, (delivery) => delivery.delivery_id === replay.body.delivery_id && delivery.status === 'delivered', 'the replay delivered');
  });
});

describe('the delivery list', () => {
  it('shows deliveries newest first: the reverse of the order they are sent in', async () => {
    const { receiver, endpoint } = await endpointWith(() => ({ status: 204 }));
    // Holding the dispatcher's fan-out lock, so that the 20 events become deliveries in one batch.
    const holder = new pg.Client({ connectionString: app.databaseUrl });
    await holder.connect();
    const teams: string[] = [];
    try {
      await holder.query('SELECT pg_advisory_lock($1)', [0x77686b73]);
      for (let i = 0; i < 10; i++) teams.push((await createTeam(app, { credits_allocated: 1 })).team_id);
      await holder.query('SELECT pg_advisory_unlock($1)', [0x77686b73]);
    } finally {
      await holder.end();
    }
    const ours = (webhooks: ReceivedWebhook[]) => webhooks.filter((webhook) => teams.includes(webhook.json.data.team_id));
    await receiver.waitUntil((received) => ours(received).length >= 20, 'the 20 events');
    const sent = firstArrivals(ours(receiver.received));
    const listed = (await deliveriesOf(app, endpoint.endpoint_id)).map((delivery) => delivery.event_id).filter((id) => sent.includes(id));
    expect(listed).toEqual([...sent].reverse());
  });
});

describe('a burst of events', () => {
  it('is delivered to a fast endpoint without waiting a poll interval per event', async () => {
    // The default poll interval: an endpoint must not be limited to one delivery per interval.
    const paced = await createTestApp({ WEBHOOK_POLL_MS: '500' });
    const receiver = await startWebhookReceiver();
    receivers.push(receiver);
    try {
      await registerEndpoint(paced, { url: receiver.url, events: ['credits.added'] });
      const team = await createTeam(paced, { credits_allocated: 1 });
      await receiver.waitFor(1);
      await Promise.all(Array.from({ length: 20 }, () => paced.request('POST', `/api/credits/teams/${team.team_id}/add`, { body: { credits: 1, reason: 'burst' } })));
      // 20 events at one per 500 ms poll take 10 s; a dispatcher that goes on while deliveries are due, well under 4 s.
      await receiver.waitFor(21, 4_000);
    } finally {
      await paced.close();
    }
  });
});
