import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectErrorBody } from '../helpers/api.js';
import { createTeam } from '../helpers/factories.js';
import { query } from '../helpers/postgres.js';
import { poll } from '../helpers/wait.js';
import {
  deliveriesOf,
  outboxEvents,
  registerEndpoint,
  startWebhookReceiver,
  verifies,
  type ReceivedWebhook,
  type WebhookReceiver,
} from '../helpers/webhook-receiver.js';

/**
 * Issue 16, the admin API of outgoing webhooks (/api/webhooks/...): the signing secret is shown once, bad input is
 * refused in the contract's shape with nothing created, team keys see nothing, and each change (disable, event
 * filter, secret rotation, delete) applies to the deliveries that follow it.
 */

const FAST = { WEBHOOK_POLL_MS: '50', WEBHOOK_RETRY_BASE_MS: '50', LOW_BALANCE_CHECK_MS: '100' };
const UNKNOWN_ENDPOINT = `whe_${'0'.repeat(21)}`;
const UNKNOWN_DELIVERY = `whd_${'0'.repeat(21)}`;

let app: TestApp;
/** Subscribed to everything for the whole file: events are written, and fanned out, whatever a test disables. */
let sink: WebhookReceiver;
const receivers: WebhookReceiver[] = [];

beforeAll(async () => {
  [app, sink] = await Promise.all([createTestApp(FAST), startWebhookReceiver()]);
  await registerEndpoint(app, { url: sink.url, description: 'sink' });
});

afterAll(async () => {
  await app?.close();
  await Promise.all([sink, ...receivers].map((receiver) => receiver?.close()));
});

/** A receiver of the test's own: nothing another test registered posts to it. */
async function newReceiver(): Promise<WebhookReceiver> {
  const receiver = await startWebhookReceiver();
  receivers.push(receiver);
  return receiver;
}

/** Never answers: where endpoints that must receive nothing point. */
const NOWHERE = 'http://127.0.0.1:9/hooks';

const endpointRows = async () => (await query(app, 'SELECT count(*)::int AS n FROM webhook_endpoints'))[0].n as number;

/** A team whose credits.added and key.created the sink has received: both are written and fanned out. */
async function teamSeenBySink(): Promise<string> {
  const team = await createTeam(app, { credits_allocated: 1 });
  await sink.waitUntil(() => sink.ofTeam(team.team_id).length >= 2, `the events of ${team.team_id} at the sink`);
  return team.team_id;
}

const typesOf = (webhooks: ReceivedWebhook[]) => webhooks.map((webhook) => webhook.json.type);

describe('registering an endpoint', () => {
  it('answers its secret once: never in the list, a PATCH, or the database in clear', async () => {
    const created = await registerEndpoint(app, { url: `${NOWHERE}?secret-once`, events: ['key.created'], description: 'once' });
    expect(created).toEqual({
      endpoint_id: expect.stringMatching(/^whe_[a-z0-9]{21}$/),
      url: `${NOWHERE}?secret-once`,
      events: ['key.created'],
      description: 'once',
      enabled: true,
      secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]+=*$/),
      created_at: expect.any(String),
      updated_at: expect.any(String),
    });
    expect(Buffer.from(created.secret.slice('whsec_'.length), 'base64').length).toBeGreaterThanOrEqual(24);
    const list = await app.request('GET', '/api/webhooks/endpoints');
    expect(list.status).toBe(200);
    const listed = list.body.data.find((endpoint: { endpoint_id: string }) => endpoint.endpoint_id === created.endpoint_id);
    const { secret, ...withoutSecret } = created;
    expect(listed).toEqual(withoutSecret);
    const patched = await app.request('PATCH', `/api/webhooks/endpoints/${created.endpoint_id}`, { body: { description: 'renamed' } });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    expect(patched.body).not.toHaveProperty('secret');
    expect(patched.body.description).toBe('renamed');
    for (const body of [list.body, patched.body]) expect(JSON.stringify(body)).not.toContain(secret.slice('whsec_'.length));
    const [row] = await query(app, 'SELECT * FROM webhook_endpoints WHERE id = $1', [created.endpoint_id]);
    expect(JSON.stringify(row)).not.toContain(secret.slice('whsec_'.length));
    expect((await app.request('DELETE', `/api/webhooks/endpoints/${created.endpoint_id}`)).status).toBe(200);
  });

  it.each([
    ['an ftp:// URL', { url: 'ftp://127.0.0.1/hooks' }, 'url'],
    ['not a URL', { url: 'not a url' }, 'url'],
    ['no URL', { events: ['credits.added'] }, 'url'],
    ['an unknown event type', { url: NOWHERE, events: ['credits.stolen'] }, 'events.0'],
    ['an empty events list', { url: NOWHERE, events: [] }, 'events'],
    ['an unknown field', { url: NOWHERE, secret: 'whsec_mine' }, 'secret'],
  ])('refuses %s with 400 and creates nothing', async (_, body, param) => {
    const before = await endpointRows();
    const error = expectErrorBody(await app.request('POST', '/api/webhooks/endpoints', { body }), 400);
    expect(error).toMatchObject({ type: 'invalid_request_error', param });
    expect(await endpointRows()).toBe(before);
  });

  it.each([
    ['an ftp:// URL', { url: 'ftp://127.0.0.1/hooks' }, 'url'],
    ['an unknown event type', { events: ['credits.stolen'] }, 'events.0'],
    ['an empty events list', { events: [] }, 'events'],
    ['rotate_secret false', { rotate_secret: false }, 'rotate_secret'],
    ['an unknown field', { secret: 'whsec_mine' }, 'secret'],
  ])('refuses a PATCH with %s with 400 and changes nothing', async (_, body, param) => {
    const endpoint = await registerEndpoint(app, { url: NOWHERE, events: ['team.suspended'] });
    try {
      const [before] = await query(app, 'SELECT * FROM webhook_endpoints WHERE id = $1', [endpoint.endpoint_id]);
      const error = expectErrorBody(await app.request('PATCH', `/api/webhooks/endpoints/${endpoint.endpoint_id}`, { body }), 400);
      expect(error).toMatchObject({ type: 'invalid_request_error', param });
      expect((await query(app, 'SELECT * FROM webhook_endpoints WHERE id = $1', [endpoint.endpoint_id]))[0]).toEqual(before);
    } finally {
      expect((await app.request('DELETE', `/api/webhooks/endpoints/${endpoint.endpoint_id}`)).status).toBe(200);
    }
  });

  it('answers 404 for unknown endpoints and deliveries, 400 for ids that are not ids', async () => {
    for (const [method, path, body] of [
      ['PATCH', `/api/webhooks/endpoints/${UNKNOWN_ENDPOINT}`, { enabled: false }],
      ['DELETE', `/api/webhooks/endpoints/${UNKNOWN_ENDPOINT}`, undefined],
      ['GET', `/api/webhooks/endpoints/${UNKNOWN_ENDPOINT}/deliveries`, undefined],
      ['POST', `/api/webhooks/deliveries/${UNKNOWN_DELIVERY}/replay`, undefined],
    ] as const) {
      expectErrorBody(await app.request(method, path, { body }), 404, 'not_found');
    }
    expectErrorBody(await app.request('DELETE', '/api/webhooks/endpoints/whe_nope'), 400);
    expectErrorBody(await app.request('POST', '/api/webhooks/deliveries/nope/replay'), 400);
  });

  it('is refused to a team key (403) and to no key (401), which see nothing', async () => {
    const endpoint = await registerEndpoint(app, { url: NOWHERE, events: ['team.resumed'] });
    const team = await createTeam(app);
    const routes = [
      ['POST', '/api/webhooks/endpoints', { url: NOWHERE }],
      ['GET', '/api/webhooks/endpoints', undefined],
      ['PATCH', `/api/webhooks/endpoints/${endpoint.endpoint_id}`, { enabled: false }],
      ['DELETE', `/api/webhooks/endpoints/${endpoint.endpoint_id}`, undefined],
      ['GET', `/api/webhooks/endpoints/${endpoint.endpoint_id}/deliveries`, undefined],
      ['POST', `/api/webhooks/deliveries/${UNKNOWN_DELIVERY}/replay`, undefined],
    ] as const;
    const before = await endpointRows();
    for (const [method, path, body] of routes) {
      const asTeam = await app.request(method, path, { token: team.virtual_key, body });
      expect(expectErrorBody(asTeam, 403, 'admin_required').type).toBe('permission_error');
      expect(JSON.stringify(asTeam.body)).not.toContain(endpoint.endpoint_id);
      expectErrorBody(await app.request(method, path, { token: null, body }), 401);
    }
    expect(await endpointRows()).toBe(before);
    const [row] = await query(app, 'SELECT enabled FROM webhook_endpoints WHERE id = $1', [endpoint.endpoint_id]);
    expect(row.enabled).toBe(true);
    expect((await app.request('DELETE', `/api/webhooks/endpoints/${endpoint.endpoint_id}`)).status).toBe(200);
  });
});

describe('changing an endpoint', () => {
  it('enabled=false: no delivery for the events that happen while it is disabled, even once enabled again', async () => {
    const receiver = await newReceiver();
    const endpoint = await registerEndpoint(app, { url: receiver.url });
    const before = await teamSeenBySink();
    await receiver.waitUntil(() => receiver.ofTeam(before).length >= 2, 'the events before the endpoint is disabled');

    const disabled = await app.request('PATCH', `/api/webhooks/endpoints/${endpoint.endpoint_id}`, { body: { enabled: false } });
    expect(disabled.status, JSON.stringify(disabled.body)).toBe(200);
    expect(disabled.body.enabled).toBe(false);
    const during = await teamSeenBySink();
    expect((await outboxEvents(app, during)).every((event) => event.fanned_out)).toBe(true);

    expect((await app.request('PATCH', `/api/webhooks/endpoints/${endpoint.endpoint_id}`, { body: { enabled: true } })).status).toBe(200);
    const after = await createTeam(app, { credits_allocated: 1 });
    // Deliveries go in order: once the later team's events arrived, none for the team of the disabled time can follow.
    await receiver.waitUntil(() => receiver.ofTeam(after.team_id).length >= 2, 'the events after the endpoint is enabled again');
    expect(receiver.ofTeam(during)).toEqual([]);
    const deliveries = await deliveriesOf(app, endpoint.endpoint_id);
    const duringEvents = new Set((await outboxEvents(app, during)).map((event) => event.id));
    expect(deliveries.filter((delivery) => duringEvents.has(delivery.event_id))).toEqual([]);
    expect((await app.request('DELETE', `/api/webhooks/endpoints/${endpoint.endpoint_id}`)).status).toBe(200);
  });

  it('enabled=false holds back its pending deliveries, sent once it is enabled again', async () => {
    const receiver = await newReceiver();
    const endpoint = await registerEndpoint(app, { url: receiver.url, events: ['team.suspended', 'team.resumed'] });
    receiver.reply = () => ({ status: 503 });
    try {
      const team = await createTeam(app);
      expect((await app.request('PUT', `/api/teams/${team.team_id}/suspend`)).status).toBe(200);
      await receiver.waitUntil(() => receiver.ofTeam(team.team_id).length >= 1, 'a first failing attempt');
      expect((await app.request('PATCH', `/api/webhooks/endpoints/${endpoint.endpoint_id}`, { body: { enabled: false } })).status).toBe(200);
      expect((await app.request('PUT', `/api/teams/${team.team_id}/resume`)).status).toBe(200);
      await sink.waitUntil(() => sink.ofTeam(team.team_id).some((webhook) => webhook.json.type === 'team.resumed'), 'team.resumed at the sink');
      receiver.reply = () => ({ status: 204 });
      // Held: its retry is due (a 50 ms backoff) but not attempted while the endpoint is disabled.
      const attemptsWhileDisabled = receiver.ofTeam(team.team_id).length;
      const pendingDue = async () => {
        const pending = (await deliveriesOf(app, endpoint.endpoint_id)).filter((delivery) => delivery.status === 'pending');
        return pending.length === 1 && Date.parse(pending[0]!.next_attempt_at!) < Date.now() - 200 ? true : undefined;
      };
      await poll(pendingDue, 5_000, 'the retry to be due');
      await teamSeenBySink(); // the dispatcher went round since
      expect(receiver.ofTeam(team.team_id)).toHaveLength(attemptsWhileDisabled);

      expect((await app.request('PATCH', `/api/webhooks/endpoints/${endpoint.endpoint_id}`, { body: { enabled: true } })).status).toBe(200);
      expect((await app.request('PUT', `/api/teams/${team.team_id}/suspend`)).status).toBe(200);
      await receiver.waitUntil(() => new Set(receiver.ofTeam(team.team_id).map((webhook) => webhook.id)).size >= 2, 'the held delivery, then the next');
      const firsts = [...new Map(receiver.ofTeam(team.team_id).map((webhook) => [webhook.id, webhook.json.type])).values()];
      // team.resumed happened while the endpoint was disabled: never delivered to it.
      expect(firsts).toEqual(['team.suspended', 'team.suspended']);
    } finally {
      receiver.reply = () => ({ status: 204 });
      expect((await app.request('DELETE', `/api/webhooks/endpoints/${endpoint.endpoint_id}`)).status).toBe(200);
    }
  });

  it('events: only the subscribed types are delivered; a PATCH changes them, null subscribes to all', async () => {
    const receiver = await newReceiver();
    const endpoint = await registerEndpoint(app, { url: receiver.url, events: ['key.created'] });
    const first = await teamSeenBySink();
    await receiver.waitUntil(() => receiver.ofTeam(first).length >= 1, 'key.created');

    let patched = await app.request('PATCH', `/api/webhooks/endpoints/${endpoint.endpoint_id}`, { body: { events: ['team.suspended'] } });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    expect(patched.body.events).toEqual(['team.suspended']);
    const second = await createTeam(app, { credits_allocated: 1 });
    expect((await app.request('PUT', `/api/teams/${second.team_id}/suspend`)).status).toBe(200);
    await receiver.waitUntil(() => receiver.ofTeam(second.team_id).length >= 1, 'team.suspended');

    patched = await app.request('PATCH', `/api/webhooks/endpoints/${endpoint.endpoint_id}`, { body: { events: null } });
    expect(patched.body.events).toBeNull();
    const third = await createTeam(app, { credits_allocated: 1 });
    await receiver.waitUntil(() => receiver.ofTeam(third.team_id).length >= 2, 'every type');

    expect(typesOf(receiver.ofTeam(first))).toEqual(['key.created']);
    expect(typesOf(receiver.ofTeam(second.team_id))).toEqual(['team.suspended']);
    expect(typesOf(receiver.ofTeam(third.team_id))).toEqual(['credits.added', 'key.created']);
    expect((await app.request('DELETE', `/api/webhooks/endpoints/${endpoint.endpoint_id}`)).status).toBe(200);
  });

  it('rotate_secret answers a new secret; later deliveries verify with it only', async () => {
    const receiver = await newReceiver();
    const endpoint = await registerEndpoint(app, { url: receiver.url, events: ['credits.added'] });
    const before = await teamSeenBySink();
    const [old] = await receiver.waitUntil(() => receiver.ofTeam(before).length >= 1, 'a delivery signed with the first secret').then(() => receiver.ofTeam(before));
    expect(verifies(endpoint.secret, old!)).toBe(true);

    const rotated = await app.request('PATCH', `/api/webhooks/endpoints/${endpoint.endpoint_id}`, { body: { rotate_secret: true } });
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    expect(rotated.body.secret).toMatch(/^whsec_/);
    expect(rotated.body.secret).not.toBe(endpoint.secret);
    const list = await app.request('GET', '/api/webhooks/endpoints');
    expect(JSON.stringify(list.body)).not.toContain(rotated.body.secret.slice('whsec_'.length));

    const after = await createTeam(app, { credits_allocated: 1 });
    const [fresh] = await receiver.waitUntil(() => receiver.ofTeam(after.team_id).length >= 1, 'a delivery after the rotation').then(() => receiver.ofTeam(after.team_id));
    expect(verifies(rotated.body.secret, fresh!)).toBe(true);
    expect(verifies(endpoint.secret, fresh!)).toBe(false);
    expect((await app.request('DELETE', `/api/webhooks/endpoints/${endpoint.endpoint_id}`)).status).toBe(200);
  });

  it('DELETE removes it and its deliveries; nothing is sent to it any more', async () => {
    const receiver = await newReceiver();
    const endpoint = await registerEndpoint(app, { url: receiver.url });
    const before = await teamSeenBySink();
    await receiver.waitUntil(() => receiver.ofTeam(before).length >= 2, 'deliveries before the delete');
    const deleted = await app.request('DELETE', `/api/webhooks/endpoints/${endpoint.endpoint_id}`);
    expect(deleted.status, JSON.stringify(deleted.body)).toBe(200);
    expect(deleted.body).toEqual({ endpoint_id: endpoint.endpoint_id, deleted: true });
    expectErrorBody(await app.request('GET', `/api/webhooks/endpoints/${endpoint.endpoint_id}/deliveries`), 404, 'not_found');
    expectErrorBody(await app.request('DELETE', `/api/webhooks/endpoints/${endpoint.endpoint_id}`), 404, 'not_found');
    const list = await app.request('GET', '/api/webhooks/endpoints');
    expect(list.body.data.map((listed: { endpoint_id: string }) => listed.endpoint_id)).not.toContain(endpoint.endpoint_id);
    expect((await query(app, 'SELECT count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1', [endpoint.endpoint_id]))[0].n).toBe(0);
    // The events stay for the other endpoints.
    expect((await outboxEvents(app, before)).length).toBe(2);

    const after = await teamSeenBySink();
    expect(receiver.ofTeam(after)).toEqual([]);
  });
});
