import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { balanceOf, expectErrorBody } from '../helpers/api.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createTeam, setupTeam, uniqueId } from '../helpers/factories.js';
import { expectLedgerConsistent, MICRO } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { deliver, startScriptedStripe, STRIPE_WEBHOOK_SECRET, stripeEnv, stripeEvent, type ScriptedStripe } from '../helpers/stripe.js';

/**
 * Stripe top-ups through POST /api/billing/stripe/webhook: every event is signed with the `stripe` package's own
 * test-header helper and goes through the real verification path. Two app instances share one database; the
 * scripted Stripe API answers the reads the webhook needs (Checkout line items, invoice payments).
 */

let app: TestApp;
let other: TestApp;
let stripe: ScriptedStripe;

beforeAll(async () => {
  stripe = await startScriptedStripe();
  const env = stripeEnv(stripe, { price_pack: 500 });
  app = await createTestApp(env);
  other = await createTestApp({ ...env, DATABASE_URL: app.databaseUrl });
  // Outgoing events are written only while an endpoint subscribes to them.
  const endpoint = await app.request('POST', '/api/webhooks/endpoints', { body: { url: 'http://127.0.0.1:9/unused', events: ['credits.added', 'credits.refunded'] } });
  expect(endpoint.status, JSON.stringify(endpoint.body)).toBe(201);
});
afterAll(async () => {
  await other?.close();
  await app?.close();
  await stripe?.close();
});

// ---------------------------------------------------------------------------------------------------------------
// helpers

const id = (prefix: string) => uniqueId(prefix).replace('-', '_');

function checkoutSession(teamId: string | null, overrides: Record<string, unknown> = {}) {
  return {
    id: id('cs_test'),
    object: 'checkout.session',
    mode: 'payment',
    payment_status: 'paid',
    status: 'complete',
    amount_total: 1000,
    currency: 'usd',
    customer: null,
    payment_intent: id('pi_test'),
    metadata: teamId === null ? {} : { team_id: teamId, credits: '100' },
    ...overrides,
  };
}

const refundedCharge = (paymentIntent: string, amountRefunded: number, amount = 1000) => ({
  id: id('ch_test'),
  object: 'charge',
  amount,
  amount_refunded: amountRefunded,
  refunded: amountRefunded === amount,
  payment_intent: paymentIntent,
});

async function setCustomer(teamId: string, customerId: string) {
  await query(app, 'UPDATE teams SET stripe_customer_id = $1 WHERE id = $2', [customerId, teamId]);
}

/** The team's ledger entries written by Stripe events: [type, credits, event id, reason]. */
async function stripeEntries(teamId: string) {
  const rows = await query(app, `SELECT entry_type, amount_micro, actor, reason FROM credit_ledger WHERE team_id = $1 AND actor LIKE 'stripe:%' ORDER BY id`, [teamId]);
  return rows.map((row) => [row.entry_type, Number(row.amount_micro) / MICRO, row.actor.slice('stripe:'.length), row.reason]);
}

async function outgoing(type: string, eventId: string) {
  const rows = await query(app, `SELECT payload FROM webhook_events WHERE type = $1 AND payload->'source'->>'stripe_event_id' = $2`, [type, eventId]);
  return rows.map((row) => row.payload);
}

/** Everything a refused event could have changed. */
async function state(teamId: string) {
  return {
    balance: await balanceOf(app, teamId),
    ledger: await query(app, 'SELECT id FROM credit_ledger WHERE team_id = $1 ORDER BY id', [teamId]),
    stripeEvents: await query(app, 'SELECT id FROM stripe_events ORDER BY id'),
  };
}

async function expectGranted(response: Awaited<ReturnType<typeof deliver>>, teamId: string, credits: number) {
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  expect(response.body).toMatchObject({ outcome: 'granted', duplicate: false, team_id: teamId, credits, credits_owed: 0 });
}

// ---------------------------------------------------------------------------------------------------------------

describe('a paid Checkout session', () => {
  it('grants its credits once, delivered 5 times concurrently to each of two instances, and a later replay answers the same', async () => {
    const team = await setupTeam(app, { credits: 10 });
    const event = stripeEvent('checkout.session.completed', checkoutSession(team.teamId, { metadata: { team_id: team.teamId, credits: '250' } }));
    const answers = await Promise.all(Array.from({ length: 5 }, () => [deliver(app, event), deliver(other, event)]).flat());
    for (const answer of answers) expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    const [first, ...duplicates] = [...answers].sort((a, b) => Number(a.body.duplicate) - Number(b.body.duplicate));
    expect(first!.body).toEqual({
      event_id: event.id,
      type: 'checkout.session.completed',
      outcome: 'granted',
      duplicate: false,
      team_id: team.teamId,
      credits: 250,
      credits_owed: 0,
      transaction_id: expect.stringMatching(/^led_/),
    });
    for (const duplicate of duplicates) expect(duplicate.body).toEqual({ ...first!.body, duplicate: true });

    const later = await deliver(other, event);
    expect(later.body).toEqual({ ...first!.body, duplicate: true });
    expect(await stripeEntries(team.teamId)).toEqual([['grant', 250, event.id, `Stripe Checkout ${event.data.object.id}`]]);
    expect(await balanceOf(app, team.teamId)).toMatchObject({ balance: 260, held: 0, credits_remaining: 260, credits_owed: 0 });
    await expectLedgerConsistent(app, team.teamId);
    const [added, ...more] = await outgoing('credits.added', event.id);
    expect(more).toEqual([]);
    expect(added).toMatchObject({ team_id: team.teamId, transaction: { transaction_id: first!.body.transaction_id, type: 'grant', amount: 250, balance_after: 260 } });
  });

  it("finds the team by its Stripe customer when the metadata names none, and reads the credits from the session's priced lines", async () => {
    const team = await setupTeam(app, { credits: 0 });
    const customer = id('cus_test');
    await setCustomer(team.teamId, customer);
    const session = checkoutSession(null, { customer });
    stripe.lineItems.set(session.id, [
      { price: 'price_pack', quantity: 3 },
      { price: 'price_not_mapped', quantity: 1 },
    ]);
    await expectGranted(await deliver(app, stripeEvent('checkout.session.completed', session)), team.teamId, 1500);
    expect(stripe.requests.filter((request) => request.path === `/v1/checkout/sessions/${session.id}/line_items`)).toHaveLength(1);
    expect((await balanceOf(app, team.teamId)).balance).toBe(1500);
  });

  it('an unpaid (asynchronous) payment grants nothing until async_payment_succeeded; subscriptions and other types are acknowledged and ignored', async () => {
    const team = await setupTeam(app, { credits: 0 });
    const session = checkoutSession(team.teamId, { payment_status: 'unpaid' });
    const ignored = { outcome: 'ignored', duplicate: false, team_id: null, credits: 0, credits_owed: 0, transaction_id: null };
    expect((await deliver(app, stripeEvent('checkout.session.completed', session))).body).toMatchObject(ignored);
    expect((await deliver(app, stripeEvent('checkout.session.completed', checkoutSession(team.teamId, { mode: 'subscription' })))).body).toMatchObject(ignored);
    expect((await deliver(app, stripeEvent('customer.created', { id: id('cus_test'), object: 'customer' }))).body).toMatchObject(ignored);
    expect((await balanceOf(app, team.teamId)).balance).toBe(0);
    await expectGranted(await deliver(app, stripeEvent('checkout.session.async_payment_succeeded', { ...session, payment_status: 'paid' })), team.teamId, 100);
  });

  it('a payment reported by two events (its session and its invoice) buys its credits once', async () => {
    const team = await setupTeam(app, { credits: 0 });
    const session = checkoutSession(team.teamId);
    await expectGranted(await deliver(app, stripeEvent('checkout.session.completed', session)), team.teamId, 100);
    const invoice = { id: id('in_test'), object: 'invoice', customer: null, metadata: { team_id: team.teamId, credits: '100' }, lines: { data: [] }, payment_intent: session.payment_intent };
    const second = await deliver(app, stripeEvent('invoice.paid', invoice));
    expect(second.body).toMatchObject({ outcome: 'already_granted', duplicate: false, team_id: team.teamId, credits: 0, transaction_id: null });
    expect((await balanceOf(app, team.teamId)).balance).toBe(100);
  });
});

describe('a paid invoice', () => {
  it('grants the credits of its mapped prices × quantity, to the team of its customer, and records the payment read from Stripe', async () => {
    const team = await setupTeam(app, { credits: 0 });
    const customer = id('cus_test');
    await setCustomer(team.teamId, customer);
    const invoice = {
      id: id('in_test'),
      object: 'invoice',
      customer,
      metadata: {},
      lines: { data: [{ quantity: 2, pricing: { type: 'price_details', price_details: { price: 'price_pack', product: 'prod_credits' } } }], has_more: false },
    };
    const paymentIntent = id('pi_test');
    stripe.invoicePayments.set(invoice.id, paymentIntent);
    const event = stripeEvent('invoice.paid', invoice);
    await expectGranted(await deliver(app, event), team.teamId, 1000);
    expect(await query(app, 'SELECT payment_intent_id, credits_micro FROM stripe_events WHERE id = $1', [event.id])).toEqual([
      { payment_intent_id: paymentIntent, credits_micro: String(1000 * MICRO) },
    ]);
    // Rendered in an API version before 2025-03-31: the line's price and the invoice's payment intent are where they were.
    const older = { ...invoice, id: id('in_test'), lines: { data: [{ quantity: 1, price: { id: 'price_pack' } }] }, payment_intent: id('pi_test') };
    await expectGranted(await deliver(app, stripeEvent('invoice.paid', older)), team.teamId, 500);
    expect((await balanceOf(app, team.teamId)).balance).toBe(1500);
  });
});

describe('refused, and nothing changes', () => {
  it.each([
    ['a tampered body', { tamper: (payload: string) => payload.replace('"credits":"100"', '"credits":"100000"') }],
    ['a stale timestamp (older than 5 minutes)', { timestamp: Math.floor(Date.now() / 1000) - 301 }],
    ['a wrong secret', { secret: 'whsec_not_the_endpoint_secret' }],
    ['no signature', { unsigned: true }],
  ])('%s → 400 stripe_signature_invalid; the genuine event still grants', async (_name, delivery) => {
    const team = await setupTeam(app, { credits: 5 });
    const event = stripeEvent('checkout.session.completed', checkoutSession(team.teamId));
    const before = await state(team.teamId);
    expectErrorBody(await deliver(app, event, delivery), 400, 'stripe_signature_invalid');
    expect(await state(team.teamId)).toEqual(before);
    await expectGranted(await deliver(app, event), team.teamId, 100);
  });

  it('a signed body that is not JSON → 400 stripe_event_invalid', async () => {
    const payload = 'not json';
    const response = await app.request('POST', '/api/billing/stripe/webhook', {
      token: null,
      rawBody: payload,
      headers: { 'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload, secret: STRIPE_WEBHOOK_SECRET }) },
    });
    expectErrorBody(response, 400, 'stripe_event_invalid');
  });

  it('an event naming no team, an unknown team or no credits → 400 with the reason; once the team exists its retry grants', async () => {
    const team = await setupTeam(app, { credits: 5 });
    const missing = uniqueId('team-to-come');
    const cases: [string, Record<string, unknown>, string][] = [
      ['checkout.session.completed', checkoutSession(null), 'stripe_unknown_team'],
      ['checkout.session.completed', checkoutSession(null, { customer: id('cus_nobody') }), 'stripe_unknown_team'],
      ['checkout.session.completed', checkoutSession(team.teamId, { metadata: { team_id: team.teamId, credits: '1.5' } }), 'stripe_no_credits'],
      ['checkout.session.completed', checkoutSession(team.teamId, { metadata: { team_id: team.teamId } }), 'stripe_no_credits'],
      ['invoice.paid', { id: id('in_test'), object: 'invoice', metadata: { team_id: team.teamId }, lines: { data: [{ quantity: 1, price: { id: 'price_other' } }] } }, 'stripe_no_credits'],
      ['charge.refunded', refundedCharge(id('pi_never_paid'), 1000), 'stripe_unknown_payment'],
    ];
    const before = await state(team.teamId);
    for (const [type, object, code] of cases) expectErrorBody(await deliver(app, stripeEvent(type, object)), 400, code);
    const early = stripeEvent('checkout.session.completed', checkoutSession(missing));
    expectErrorBody(await deliver(app, early), 400, 'stripe_unknown_team');
    expect(await state(team.teamId)).toEqual(before);
    await createTeam(app, { team_id: missing });
    await expectGranted(await deliver(app, early), missing, 100);
  });
});

describe('refunds', () => {
  it("take back the refunded share, from available credits only: what was spent is owed, held credits stay held", async () => {
    const team = await setupTeam(app, { credits: 0, team: { credits_per_job: 30 } });
    const paid = stripeEvent('checkout.session.completed', checkoutSession(team.teamId));
    const paymentIntent = paid.data.object.payment_intent as string;
    await expectGranted(await deliver(app, paid), team.teamId, 100);
    expect((await app.request('POST', `/api/credits/teams/${team.teamId}/deduct`, { body: { credits: 40, reason: 'spent' } })).status).toBe(201);
    const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'open' } });
    expect(job.status, JSON.stringify(job.body)).toBe(201);
    expect(await balanceOf(app, team.teamId)).toMatchObject({ balance: 60, held: 30, credits_remaining: 30, credits_owed: 0 });

    // A quarter refunded: 25 of the 100 credits go back, and 30 are available.
    const quarter = stripeEvent('charge.refunded', refundedCharge(paymentIntent, 250));
    expect((await deliver(app, quarter)).body).toMatchObject({ outcome: 'refunded', duplicate: false, team_id: team.teamId, credits: -25, credits_owed: 0 });
    // Then the rest: 75 more are due, 5 are available, 70 are owed; the job's 30 stay held.
    const rest = stripeEvent('charge.refunded', refundedCharge(paymentIntent, 1000));
    const [restAnswer, restAgain] = await Promise.all([deliver(app, rest), deliver(other, rest)]);
    const answers = [restAnswer!.body, restAgain!.body].sort((a, b) => Number(a.duplicate) - Number(b.duplicate));
    expect(answers[0]).toMatchObject({ outcome: 'refunded', duplicate: false, credits: -5, credits_owed: 70 });
    expect(answers[1]).toEqual({ ...answers[0], duplicate: true });
    expect((await deliver(other, quarter)).body).toMatchObject({ duplicate: true, credits: -25 });

    expect(await balanceOf(app, team.teamId)).toMatchObject({ balance: 30, held: 30, credits_remaining: 0, credits_owed: 70 });
    expect(await stripeEntries(team.teamId)).toEqual([
      ['grant', 100, paid.id, `Stripe Checkout ${paid.data.object.id}`],
      ['adjustment', -25, quarter.id, `Stripe refund of ${quarter.data.object.id}`],
      ['adjustment', -5, rest.id, `Stripe refund of ${rest.data.object.id}`],
    ]);
    await expectLedgerConsistent(app, team.teamId);
    expect(await outgoing('credits.refunded', rest.id)).toEqual([
      expect.objectContaining({ team_id: team.teamId, credits_taken: 5, credits_owed: 70, transaction: expect.objectContaining({ amount: -5, held_after: 30 }) }),
    ]);
    // The open job still completes against its hold.
    const completed = await app.request('POST', `/api/jobs/${job.body.job_id}/complete`, { token: team.key, body: { status: 'completed' } });
    expect(completed.status, JSON.stringify(completed.body)).toBe(200);
  });
});
