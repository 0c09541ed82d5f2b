import { AdminClient, NotFoundError, type WebhookDelivery } from '@creditgate/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { createTeam } from '../helpers/factories.js';
import { poll } from '../helpers/wait.js';
import { startWebhookReceiver, verifies, type ReceivedWebhook, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/**
 * The AdminClient's webhook admin calls (admin.webhooks.*) against the real app and a real receiver: an endpoint
 * registered once per Idempotency-Key with its secret shown once, an event delivered and replayed, the deliveries
 * paged and filtered, disabling, secret rotation and deletion.
 */

const FAST = { WEBHOOK_POLL_MS: '50', WEBHOOK_RETRY_BASE_MS: '50' };

let app: TestApp;
let receiver: WebhookReceiver;
const receivers: WebhookReceiver[] = [];
let admin: AdminClient;
beforeAll(async () => {
  [app, receiver] = await Promise.all([createTestApp(FAST), startWebhookReceiver()]);
  admin = new AdminClient({ baseUrl: app.url, apiKey: TEST_MASTER_KEY });
});
afterAll(async () => {
  await app?.close();
  await Promise.all([receiver, ...receivers].map((each) => each?.close()));
});

/** The endpoint's deliveries once `check` holds for them (newest first, one page of up to 200). */
const deliveriesWhen = (endpointId: string, check: (deliveries: WebhookDelivery[]) => boolean, what: string) =>
  poll(
    async () => {
      const { data } = await admin.webhooks.listDeliveries(endpointId, { limit: 200 });
      return check(data) ? data : undefined;
    },
    10_000,
    what,
    25,
  );

describe('AdminClient webhooks', () => {
  it('registers an endpoint once per Idempotency-Key, delivers an event, replays it and pages the deliveries', async () => {
    const options = { idempotencyKey: 'sdk-webhook-endpoint-1' };
    const body = { url: receiver.url, events: ['credits.added' as const], description: 'sdk' };
    const created = await admin.webhooks.createEndpoint(body, options);
    expect(created).toMatchObject({ url: receiver.url, events: ['credits.added'], description: 'sdk', enabled: true });
    expect(created.secret).toMatch(/^whsec_/);
    // The same key again (a retry after a lost answer) answers the same endpoint and secret, creating nothing.
    expect(await admin.webhooks.createEndpoint(body, options)).toEqual(created);
    const { data: endpoints } = await admin.webhooks.listEndpoints();
    const { secret, ...listed } = created;
    expect(endpoints).toEqual([listed]);

    const team = await createTeam(app, { credits_allocated: 1 });
    await admin.credits.add(team.team_id, { credits: 5, reason: 'sdk webhook' });
    const isGrant = (webhook: ReceivedWebhook) => webhook.json.data.team_id === team.team_id && webhook.json.data.transaction?.amount === 5;
    const grant = (await receiver.waitUntil((received) => received.some(isGrant), 'the grant of 5')).find(isGrant)!;
    expect(grant.json.type).toBe('credits.added');
    expect(verifies(secret, grant)).toBe(true);
    const ofGrant = (delivery: WebhookDelivery) => delivery.event_id === grant.id && delivery.status === 'delivered';
    const delivered = (await deliveriesWhen(created.endpoint_id, (data) => data.some(ofGrant), 'the delivered grant')).find(ofGrant);
    expect(delivered).toMatchObject({ endpoint_id: created.endpoint_id, event_id: grant.id, event_type: 'credits.added', status: 'delivered', attempts: 1, last_status_code: 204 });

    const replay = await admin.webhooks.replayDelivery(delivered!.delivery_id);
    expect(replay).toMatchObject({ endpoint_id: created.endpoint_id, event_id: grant.id, event_type: 'credits.added' });
    expect(replay.delivery_id).not.toBe(delivered!.delivery_id);
    await receiver.waitUntil((received) => received.filter((webhook) => webhook.id === grant.id).length === 2, 'the replay');
    await deliveriesWhen(created.endpoint_id, (data) => data.filter(ofGrant).length === 2, 'the replay delivered');

    // Keyset pages, newest first: the replay, then after its cursor the delivery it replayed; then a status filter.
    const page1 = await admin.webhooks.listDeliveries(created.endpoint_id, { limit: 1 });
    expect(page1.data.map((delivery) => delivery.delivery_id)).toEqual([replay.delivery_id]);
    expect(page1.next_cursor).toEqual(expect.any(String));
    const page2 = await admin.webhooks.listDeliveries(created.endpoint_id, { limit: 1, cursor: page1.next_cursor! });
    expect(page2.data.map((delivery) => delivery.delivery_id)).toEqual([delivered!.delivery_id]);
    expect((await admin.webhooks.listDeliveries(created.endpoint_id, { status: 'failed' })).data).toEqual([]);
  });

  it('disables, changes, rotates the secret of and deletes an endpoint', async () => {
    // A receiver of its own: the other test's endpoint, signing with its own secret, posts to the shared one.
    const own = await startWebhookReceiver();
    receivers.push(own);
    const endpoint = await admin.webhooks.createEndpoint({ url: own.url, events: ['credits.added'] });
    const disabled = await admin.webhooks.updateEndpoint(endpoint.endpoint_id, { enabled: false, description: 'paused' });
    expect(disabled).toMatchObject({ endpoint_id: endpoint.endpoint_id, enabled: false, description: 'paused' });
    expect(disabled).not.toHaveProperty('secret');
    const enabled = await admin.webhooks.updateEndpoint(endpoint.endpoint_id, { enabled: true, events: null });
    expect(enabled).toMatchObject({ enabled: true, events: null });

    const rotated = await admin.webhooks.rotateEndpointSecret(endpoint.endpoint_id);
    expect(rotated).toMatchObject({ endpoint_id: endpoint.endpoint_id, enabled: true });
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(endpoint.secret);
    const team = await createTeam(app, { credits_allocated: 3 });
    const isGrant = (webhook: ReceivedWebhook) => webhook.json.type === 'credits.added' && webhook.json.data.team_id === team.team_id;
    const afterRotation = (await own.waitUntil((received) => received.some(isGrant), 'the grant after the rotation')).find(isGrant)!;
    expect(verifies(rotated.secret, afterRotation)).toBe(true);
    expect(verifies(endpoint.secret, afterRotation)).toBe(false);

    expect(await admin.webhooks.deleteEndpoint(endpoint.endpoint_id)).toEqual({ endpoint_id: endpoint.endpoint_id, deleted: true });
    await expect(admin.webhooks.listDeliveries(endpoint.endpoint_id)).rejects.toBeInstanceOf(NotFoundError);
    await expect(admin.webhooks.updateEndpoint(endpoint.endpoint_id, { enabled: false })).rejects.toBeInstanceOf(NotFoundError);
  });
});
