import { z } from 'zod';
import { Credits, Timestamp } from './common.js';

const ReturnUrl = z.url({ protocol: /^https?$/ }).max(2048);

export const CreateCheckoutRequest = z
  .strictObject({
    credits: z.number().int().min(1).max(1_000_000_000).optional().meta({ description: 'a pack of this many credits, priced at CREDIT_PRICE_USD each' }),
    price_id: z.string().min(1).max(255).optional().meta({ description: 'or a Stripe price of STRIPE_PRICE_CREDITS (its credits × quantity)' }),
    quantity: z.number().int().min(1).max(10_000).optional().meta({ description: 'units of price_id (default 1)' }),
    success_url: ReturnUrl.meta({ description: 'where Stripe sends the buyer after paying' }),
    cancel_url: ReturnUrl.meta({ description: 'where Stripe sends the buyer who gives up' }),
  })
  .refine((body) => (body.credits === undefined) !== (body.price_id === undefined), { message: 'give either credits or price_id', path: ['credits'] })
  .refine((body) => body.quantity === undefined || body.price_id !== undefined, { message: 'quantity goes with price_id', path: ['quantity'] })
  .meta({
    id: 'CreateCheckoutRequest',
    example: { credits: 1000, success_url: 'https://app.example.com/billing/done', cancel_url: 'https://app.example.com/billing' },
  });
export type CreateCheckoutRequest = z.infer<typeof CreateCheckoutRequest>;

export const CheckoutSession = z
  .object({
    session_id: z.string(),
    url: z.string().nullable().meta({ description: "Stripe's hosted payment page: send the buyer there" }),
    credits: z.number().int().meta({ description: 'granted once Stripe reports the session paid' }),
  })
  .meta({ id: 'CheckoutSession' });
export type CheckoutSession = z.infer<typeof CheckoutSession>;

export const StripeEventOutcome = z.enum(['granted', 'refunded', 'refill_failed', 'already_granted', 'ignored']).meta({
  description:
    'granted: credits added; refunded: a refund took its share back (what was spent is owed); refill_failed: an auto-refill charge failed; already_granted: the payment had bought its credits through another event; ignored: an event that moves no credits (an unpaid or subscription Checkout session, a payment that is not an auto-refill, a type creditgate does not handle)',
});

/** What the Stripe webhook answers; a repeated delivery of an event answers what its first one did. */
export const StripeWebhookResult = z
  .object({
    event_id: z.string(),
    type: z.string(),
    outcome: StripeEventOutcome,
    duplicate: z.boolean().meta({ description: 'this event id was handled before; nothing changed now' }),
    team_id: z.string().nullable(),
    credits: Credits.meta({ description: 'credits added (positive) or taken back (negative)' }),
    credits_owed: Credits.meta({ description: 'of a refund: what had already been spent, recorded as owed' }),
    transaction_id: z.string().nullable().meta({ description: 'the ledger entry' }),
  })
  .meta({ id: 'StripeWebhookResult' });
export type StripeWebhookResult = z.infer<typeof StripeWebhookResult>;

/** Documents the webhook's body; the route reads it as bytes, since the signature covers them exactly. */
export const StripeEventBody = z
  .object({ id: z.string(), object: z.literal('event'), type: z.string(), data: z.object({ object: z.record(z.string(), z.unknown()) }) })
  .meta({ id: 'StripeEvent', description: 'a Stripe event, exactly as Stripe sent it (signed in the Stripe-Signature header)' });

export const CreditRefill = z
  .object({
    refill_id: z.string(),
    team_id: z.string(),
    credits: z.number().int(),
    status: z.enum(['requested', 'charging', 'succeeded', 'failed']).meta({
      description:
        'requested: waiting to be charged (or for your own webhook consumer when Stripe is not configured); charging: Stripe is taking the payment; succeeded: paid and granted; failed: see error',
    }),
    stripe_payment_intent_id: z.string().nullable(),
    error: z.string().nullable().meta({ description: 'why it failed (a declined card, no saved payment method, a Stripe error)' }),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .meta({ id: 'CreditRefill' });
export type CreditRefill = z.infer<typeof CreditRefill>;
