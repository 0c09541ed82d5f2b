import { page, PageQuery, TeamParams } from '../../contracts/index.js';
import { CheckoutSession, CreateCheckoutRequest, CreditRefill, StripeEventBody, StripeWebhookResult } from '../../contracts/index.js';
import { listRefills } from '../../domain/billing/stripe/credit-refills.js';
import { createCheckout } from '../../domain/billing/stripe/stripe-checkout.service.js';
import { handleStripeWebhook } from '../../domain/billing/stripe/stripe-webhook.service.js';
import { defineRoute } from '../route.js';

const tags = ['Stripe'];

export const stripeRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/billing/stripe/webhook',
    auth: 'public',
    summary:
      "Stripe's webhook (no bearer: verified with STRIPE_WEBHOOK_SECRET). Paid Checkout sessions, paid invoices and auto-refill payments grant credits once per event id; refunds take their share back",
    tags,
    rawBody: { schema: StripeEventBody, description: 'the event exactly as Stripe sent it; its Stripe-Signature header signs these bytes' },
    response: { schema: StripeWebhookResult, description: 'what the event did (a repeated delivery answers what the first did)' },
    errors: [409, 502],
    handler: ({ ctx, deps, req, rawBody }) =>
      handleStripeWebhook(ctx, deps.stripe, { payload: rawBody ?? Buffer.alloc(0), signature: req.get('stripe-signature') }),
  }),
  defineRoute({
    method: 'post',
    path: '/api/teams/{team_id}/checkout',
    auth: 'admin',
    summary: 'Create a Stripe Checkout session that sells the team credits (needs STRIPE_SECRET_KEY)',
    tags,
    params: TeamParams,
    body: CreateCheckoutRequest,
    idempotent: 'long',
    response: { status: 201, schema: CheckoutSession, description: "the session and its hosted payment page's URL" },
    errors: [404, 409, 502],
    handler: ({ ctx, deps, params, body }) => createCheckout(ctx, deps.stripe, params.team_id, body),
  }),
  defineRoute({
    method: 'get',
    path: '/api/teams/{team_id}/refills',
    auth: 'admin',
    summary: "A team's auto-refills, newest first, with their status and why any failed",
    tags,
    params: TeamParams,
    query: PageQuery,
    response: { schema: page(CreditRefill), description: 'one page of refills' },
    errors: [404],
    handler: ({ ctx, params, query }) => listRefills(ctx, params.team_id, query),
  }),
];
