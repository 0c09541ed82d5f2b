import { z } from 'zod';
import { Timestamp } from './common.js';

/** Every event creditgate sends; README "Webhooks" describes each one's data. */
export const WebhookEventType = z.enum([
  'credits.added',
  'credits.low',
  'credits.depleted',
  'credits.refill_requested',
  'credits.refill_failed',
  'credits.refunded',
  'job.settled',
  'team.suspended',
  'team.resumed',
  'key.created',
  'key.revoked',
]);
export type WebhookEventType = z.infer<typeof WebhookEventType>;

const EndpointUrl = z
  .url({ protocol: /^https?$/ })
  .max(2048)
  .meta({ description: 'where events are POSTed; redirects are not followed' });

export const CreateWebhookEndpointRequest = z
  .strictObject({
    url: EndpointUrl,
    events: z.array(WebhookEventType).min(1).max(32).optional().meta({ description: 'the event types to send; omitted: all' }),
    description: z.string().max(500).optional(),
  })
  .meta({ id: 'CreateWebhookEndpointRequest', example: { url: 'https://billing.example.com/creditgate', events: ['credits.low', 'job.settled'] } });
export type CreateWebhookEndpointRequest = z.infer<typeof CreateWebhookEndpointRequest>;

export const UpdateWebhookEndpointRequest = z
  .strictObject({
    url: EndpointUrl.optional(),
    events: z.array(WebhookEventType).min(1).max(32).nullable().optional().meta({ description: 'null: all types' }),
    description: z.string().max(500).nullable().optional(),
    enabled: z.boolean().optional(),
    rotate_secret: z.literal(true).optional().meta({ description: 'replace the signing secret; the new one is in this answer only' }),
  })
  .meta({ id: 'UpdateWebhookEndpointRequest', example: { enabled: false } });
export type UpdateWebhookEndpointRequest = z.infer<typeof UpdateWebhookEndpointRequest>;

export const WebhookEndpoint = z
  .object({
    endpoint_id: z.string(),
    url: z.string(),
    events: z.array(z.string()).nullable(),
    description: z.string().nullable(),
    enabled: z.boolean(),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .meta({ id: 'WebhookEndpoint' });
export type WebhookEndpoint = z.infer<typeof WebhookEndpoint>;

export const WebhookEndpointWithSecret = WebhookEndpoint.extend({
  secret: z.string().meta({ description: 'the Standard Webhooks signing secret (whsec_...), shown only in this answer' }),
}).meta({ id: 'WebhookEndpointWithSecret' });
export type WebhookEndpointWithSecret = z.infer<typeof WebhookEndpointWithSecret>;

export const WebhookEndpointParams = z.strictObject({ endpoint_id: z.string().regex(/^whe_[a-z0-9]{21}$/, 'not an endpoint id') });
export const WebhookDeliveryParams = z.strictObject({ delivery_id: z.string().regex(/^whd_[a-z0-9]{21}$/, 'not a delivery id') });

export const WebhookDelivery = z
  .object({
    delivery_id: z.string(),
    endpoint_id: z.string(),
    event_id: z.string().meta({ description: 'the webhook-id header: the same for every attempt and replay of one event' }),
    event_type: z.string(),
    status: z.enum(['pending', 'delivered', 'failed']),
    attempts: z.number().int(),
    next_attempt_at: Timestamp.nullable(),
    last_status_code: z.number().int().nullable(),
    last_error: z.string().nullable(),
    delivered_at: Timestamp.nullable(),
    created_at: Timestamp,
  })
  .meta({ id: 'WebhookDelivery' });
export type WebhookDelivery = z.infer<typeof WebhookDelivery>;

export const WebhookDeliveriesQuery = z.strictObject({
  status: z.enum(['pending', 'delivered', 'failed']).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().regex(/^\d{1,19}$/, 'the next_cursor of the previous page').optional().meta({ description: 'the next_cursor of the previous page' }),
});
