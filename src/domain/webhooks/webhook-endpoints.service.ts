import { randomBytes } from 'node:crypto';
import { and, desc, eq, lt } from 'drizzle-orm';
import type {
  CreateWebhookEndpointRequest,
  UpdateWebhookEndpointRequest,
  WebhookDelivery,
  WebhookEndpoint,
  WebhookEndpointWithSecret,
} from '../../contracts/index.js';
import { webhookDeliveries, webhookEndpoints, webhookEvents } from '../../db/schema/index.js';
import { notFound } from '../../lib/errors.js';
import { newId } from '../../lib/ids.js';
import type { ServiceContext } from '../context.js';
import type { SecretBox } from '../../lib/secret-box.js';

type EndpointRow = typeof webhookEndpoints.$inferSelect;

/** A Standard Webhooks secret: `whsec_` and 24 random bytes in base64. */
function newSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

export async function createWebhookEndpoint(ctx: ServiceContext, box: SecretBox, input: CreateWebhookEndpointRequest): Promise<WebhookEndpointWithSecret> {
  const secret = newSecret();
  const [row] = await ctx.db
    .insert(webhookEndpoints)
    .values({ id: newId('whe'), url: input.url, events: input.events ?? null, description: input.description ?? null, secretEncrypted: box.seal(secret) })
    .returning();
  return { ...presentEndpoint(row!), secret };
}

export async function listWebhookEndpoints(ctx: ServiceContext): Promise<{ data: WebhookEndpoint[] }> {
  const rows = await ctx.db.select().from(webhookEndpoints).orderBy(webhookEndpoints.id);
  return { data: rows.map(presentEndpoint) };
}

/** Changes what is given; `rotate_secret` answers with the new secret (the old one stops signing at once). */
export async function updateWebhookEndpoint(
  ctx: ServiceContext,
  box: SecretBox,
  endpointId: string,
  input: UpdateWebhookEndpointRequest,
): Promise<WebhookEndpoint | WebhookEndpointWithSecret> {
  const secret = input.rotate_secret ? newSecret() : undefined;
  const [row] = await ctx.db
    .update(webhookEndpoints)
    .set({
      ...(input.url !== undefined && { url: input.url }),
      ...(input.events !== undefined && { events: input.events }),
      ...(input.description !== undefined && { description: input.description }),
      ...(input.enabled !== undefined && { enabled: input.enabled }),
      ...(secret && { secretEncrypted: box.seal(secret) }),
      updatedAt: new Date(),
    })
    .where(eq(webhookEndpoints.id, endpointId))
    .returning();
  if (!row) throw notFound('webhook endpoint', 'endpoint_id');
  return secret ? { ...presentEndpoint(row), secret } : presentEndpoint(row);
}

/** The endpoint and its deliveries go; the events stay in the outbox for the other endpoints. */
export async function deleteWebhookEndpoint(ctx: ServiceContext, endpointId: string): Promise<{ endpoint_id: string; deleted: true }> {
  const deleted = await ctx.db.delete(webhookEndpoints).where(eq(webhookEndpoints.id, endpointId)).returning({ id: webhookEndpoints.id });
  if (deleted.length === 0) throw notFound('webhook endpoint', 'endpoint_id');
  return { endpoint_id: endpointId, deleted: true };
}

/** Newest first (in the order the deliveries were made), keyset-paginated. */
export async function listWebhookDeliveries(
  ctx: ServiceContext,
  endpointId: string,
  query: { status?: 'pending' | 'delivered' | 'failed' | undefined; limit: number; cursor?: string | undefined },
): Promise<{ data: WebhookDelivery[]; next_cursor: string | null }> {
  const [endpoint] = await ctx.db.select({ id: webhookEndpoints.id }).from(webhookEndpoints).where(eq(webhookEndpoints.id, endpointId));
  if (!endpoint) throw notFound('webhook endpoint', 'endpoint_id');
  const rows = await ctx.db
    .select({ delivery: webhookDeliveries, type: webhookEvents.type })
    .from(webhookDeliveries)
    .innerJoin(webhookEvents, eq(webhookEvents.id, webhookDeliveries.eventId))
    .where(
      and(
        eq(webhookDeliveries.endpointId, endpointId),
        query.status ? eq(webhookDeliveries.status, query.status) : undefined,
        query.cursor ? lt(webhookDeliveries.seq, Number(query.cursor)) : undefined,
      ),
    )
    .orderBy(desc(webhookDeliveries.seq))
    .limit(query.limit + 1);
  const page = rows.slice(0, query.limit);
  const last = page.at(-1);
  return {
    data: page.map(({ delivery, type }) => presentDelivery(delivery, type)),
    next_cursor: rows.length > query.limit && last ? String(last.delivery.seq) : null,
  };
}

/** Sends the delivery's event to its endpoint again, after whatever that endpoint has pending: a new delivery. */
export async function replayWebhookDelivery(ctx: ServiceContext, deliveryId: string): Promise<WebhookDelivery> {
  const [original] = await ctx.db
    .select({ delivery: webhookDeliveries, type: webhookEvents.type })
    .from(webhookDeliveries)
    .innerJoin(webhookEvents, eq(webhookEvents.id, webhookDeliveries.eventId))
    .where(eq(webhookDeliveries.id, deliveryId));
  if (!original) throw notFound('webhook delivery', 'delivery_id');
  const [replay] = await ctx.db
    .insert(webhookDeliveries)
    .values({ id: newId('whd'), eventId: original.delivery.eventId, endpointId: original.delivery.endpointId })
    .returning();
  return presentDelivery(replay!, original.type);
}

function presentEndpoint(row: EndpointRow): WebhookEndpoint {
  return {
    endpoint_id: row.id,
    url: row.url,
    events: row.events,
    description: row.description,
    enabled: row.enabled,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

function presentDelivery(row: typeof webhookDeliveries.$inferSelect, type: string): WebhookDelivery {
  return {
    delivery_id: row.id,
    endpoint_id: row.endpointId,
    event_id: row.eventId,
    event_type: type,
    status: row.status,
    attempts: row.attempts,
    next_attempt_at: row.status === 'pending' ? row.nextAttemptAt.toISOString() : null,
    last_status_code: row.lastStatusCode,
    last_error: row.lastError,
    delivered_at: row.deliveredAt?.toISOString() ?? null,
    created_at: row.createdAt.toISOString(),
  };
}
