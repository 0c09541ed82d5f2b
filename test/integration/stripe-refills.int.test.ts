import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/lib/ids.js';
import { balanceOf, expectErrorBody } from '../helpers/api.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam, uniqueId } from '../helpers/factories.js';
import { expectLedgerConsistent } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { deliver, startScriptedStripe, stripeEnv, stripeEvent, type ScriptedStripe } from '../helpers/stripe.js';
import { poll, sleep } from '../helpers/wait.js';

/**
 * Selling credits from creditgate's side, against a scripted Stripe API: Checkout sessions for credit packs, and
 * auto-refills charged off-session to the team's Stripe customer (each refill once, whichever instance claims it),
 * granted when Stripe's webhook confirms the payment. Refill requests are written here as the low-balance monitor
 * writes them.
 */

let app: TestApp;
/** A second instance on the same database: its refill charger competes with the first one's. */
let other: TestApp;
let stripe: ScriptedStripe;

beforeAll(async () => {
  stripe = await startScriptedStripe();
  const env = { ...stripeEnv(stripe, { price_pack: 500 }), CREDIT_PRICE_USD: '0.01' };
  app = await createTestApp(env);
  other = await createTestApp({ ...env, DATABASE_URL: app.databaseUrl });
  const endpoint = await app.request('POST', '/api/webhooks/endpoints', { body: { url: 'http://127.0.0.1:9/unused', events: ['credits.refill_failed'] } });
  expect(endpoint.status, JSON.stringify(endpoint.body)).toBe(201);
});
afterAll(async () => {
  await other?.close();
  await app?.close();
  await stripe?.close();
});

const id = (prefix: string) => uniqueId(prefix).replace('-', '_');
const urls = { success_url: 'https://app.example.com/billing/done', cancel_url: 'https://app.example.com/billing' };

async function teamWithCustomer(paymentMethod: string | null) {
  const team = await setupTeam(app, { credits: 5 });
  const customer = id('cus_test');
  stripe.customers.set(customer, paymentMethod);
  await query(app, 'UPDATE teams SET stripe_customer_id = $1 WHERE id = $2', [customer, team.teamId]);
  return { ...team, customer };
}

/** A refill request, as the low-balance monitor writes it. */
async function requestRefill(database: TestApp, teamId: string, credits: number): Promise<string> {
  const refillId = newId('rfl');
  await query(database, 'INSERT INTO credit_refills (id, team_id, credits) VALUES ($1, $2, $3)', [refillId, teamId, credits]);
  return refillId;
}

async function refill(refillId: string) {
  const [row] = await query(app, 'SELECT status::text, stripe_payment_intent_id, error FROM credit_refills WHERE id = $1', [refillId]);
  return row as { status: string; stripe_payment_intent_id: string | null; error: string | null };
}

const settled = (refillId: string) =>
  poll(async () => {
    const row = await refill(refillId);
    return row.status === 'requested' ? undefined : row;
  }, 10_000, `refill ${refillId} to be charged`);

/** The payments Stripe created for a refill (a request replaying an idempotency key creates none). */
const chargesOf = (refillId: string) => stripe.paymentIntentsCreated().filter((request) => request.form['metadata[refill_id]'] === refillId);
const chargeRequestsOf = (refillId: string) => stripe.requests.filter((request) => request.path === '/v1/payment_intents' && request.form['metadata[refill_id]'] === refillId);

const refillFailedEvents = (refillId: string) => query(app, `SELECT payload FROM webhook_events WHERE type = 'credits.refill_failed' AND payload->>'refill_id' = $1`, [refillId]);

// ---------------------------------------------------------------------------------------------------------------

describe('POST /api/teams/{team_id}/checkout', () => {
  it('creates a Checkout session for a pack of credits at CREDIT_PRICE_USD each, paid by the team’s customer', async () => {
    const team = await teamWithCustomer(null);
    const response = await app.request('POST', `/api/teams/${team.teamId}/checkout`, { body: { credits: 1000, ...urls } });
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    expect(response.body).toEqual({ session_id: expect.stringMatching(/^cs_test_/), url: expect.stringMatching(/^https:\/\/checkout\.stripe\.test\//), credits: 1000 });
    const [sent, ...more] = stripe.requests.filter((request) => request.path === '/v1/checkout/sessions' && request.form['metadata[team_id]'] === team.teamId);
    expect(more).toEqual([]);
    expect(sent!.form).toEqual({
      mode: 'payment',
      'line_items[0][quantity]': '1',
      'line_items[0][price_data][currency]': 'usd',
      'line_items[0][price_data][unit_amount]': '1000',
      'line_items[0][price_data][product_data][name]': '1000 credits',
      success_url: urls.success_url,
      cancel_url: urls.cancel_url,
      client_reference_id: team.teamId,
      'metadata[team_id]': team.teamId,
      'metadata[credits]': '1000',
      customer: team.customer,
    });
  });

  it('sells units of a mapped price; a price not in STRIPE_PRICE_CREDITS is refused before Stripe is asked', async () => {
    const team = await setupTeam(app, { credits: 0 });
    const response = await app.request('POST', `/api/teams/${team.teamId}/checkout`, { body: { price_id: 'price_pack', quantity: 3, ...urls } });
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    expect(response.body.credits).toBe(1500);
    const sent = stripe.requests.findLast((request) => request.form['metadata[team_id]'] === team.teamId)!;
    expect(sent.form).toMatchObject({ 'line_items[0][price]': 'price_pack', 'line_items[0][quantity]': '3', 'metadata[credits]': '1500' });
    expect(sent.form.customer).toBeUndefined();

    const sessions = stripe.requests.length;
    expectErrorBody(await app.request('POST', `/api/teams/${team.teamId}/checkout`, { body: { price_id: 'price_other', ...urls } }), 400, 'price_not_mapped');
    expectErrorBody(await app.request('POST', `/api/teams/${team.teamId}/checkout`, { body: { credits: 10, price_id: 'price_pack', ...urls } }), 400);
    expectErrorBody(await app.request('POST', '/api/teams/no-such-team/checkout', { body: { credits: 10, ...urls } }), 404);
    expect(stripe.requests.length).toBe(sessions);
  });
});

describe('auto-refill charging', () => {
  it("charges the customer's default payment method once, with the refill id as idempotency key; Stripe's confirmation grants once", async () => {
    const team = await teamWithCustomer('pm_card_visa');
    const refillId = await requestRefill(app, team.teamId, 500);
    const charged = await settled(refillId);
    const [charge, ...more] = chargesOf(refillId);
    expect(more).toEqual([]);
    expect(charge).toMatchObject({
      idempotencyKey: refillId,
      form: expect.objectContaining({ amount: '500', currency: 'usd', customer: team.customer, payment_method: 'pm_card_visa', off_session: 'true', confirm: 'true', 'metadata[team_id]': team.teamId, 'metadata[credits]': '500' }),
    });
    expect(charged).toEqual({ status: 'charging', stripe_payment_intent_id: expect.stringMatching(/^pi_test_/), error: null });
    expect((await balanceOf(app, team.teamId)).balance).toBe(5);

    // An instance that died after charging leaves the refill requested: charging it again gets the same payment back.
    await query(app, `UPDATE credit_refills SET status = 'requested' WHERE id = $1`, [refillId]);
    expect(await settled(refillId)).toEqual(charged);
    expect(chargeRequestsOf(refillId).map((request) => request.idempotencyKey)).toEqual([refillId, refillId]);
    expect(chargesOf(refillId)).toHaveLength(1);

    const succeeded = stripeEvent('payment_intent.succeeded', {
      id: charged.stripe_payment_intent_id,
      object: 'payment_intent',
      status: 'succeeded',
      amount: 500,
      metadata: { team_id: team.teamId, credits: '500', refill_id: refillId },
    });
    const answers = await Promise.all([deliver(app, succeeded), deliver(app, succeeded), deliver(app, succeeded)]);
    expect(answers.filter((answer) => answer.body.duplicate === false).map((answer) => answer.body)).toEqual([
      expect.objectContaining({ outcome: 'granted', team_id: team.teamId, credits: 500 }),
    ]);
    expect(await refill(refillId)).toEqual({ status: 'succeeded', stripe_payment_intent_id: charged.stripe_payment_intent_id, error: null });
    expect(await balanceOf(app, team.teamId)).toMatchObject({ balance: 505, credits_remaining: 505 });
    await expectLedgerConsistent(app, team.teamId);
  });

  it('two instances charge each of many refills once', async () => {
    const teams = await Promise.all(Array.from({ length: 6 }, () => teamWithCustomer('pm_card_visa')));
    const refills = await Promise.all(teams.map((team, i) => requestRefill(app, team.teamId, 100 + i)));
    for (const refillId of refills) expect((await settled(refillId)).status).toBe('charging');
    for (const refillId of refills) expect(chargeRequestsOf(refillId)).toHaveLength(1);
  });

  it('a declined card fails the refill with the reason, tells credits.refill_failed once and changes no credits', async () => {
    const team = await teamWithCustomer('pm_card_declined');
    stripe.declines.set('pm_card_declined', 'insufficient_funds');
    const before = await balanceOf(app, team.teamId);
    const refillId = await requestRefill(app, team.teamId, 300);
    const failed = await settled(refillId);
    // Stripe's message, after the id of the request it answered (for Stripe's support), and the issuer's reason.
    const declined = expect.stringMatching(/^\[req-\w+\] Your card was declined\. \(insufficient_funds\)$/);
    expect(failed).toEqual({ status: 'failed', stripe_payment_intent_id: expect.stringMatching(/^pi_test_/), error: declined });
    expect(chargesOf(refillId)).toHaveLength(1);
    // Stripe reports the same failure by webhook: the refill already failed, so nothing more is told.
    const paymentFailed = stripeEvent('payment_intent.payment_failed', {
      id: failed.stripe_payment_intent_id,
      object: 'payment_intent',
      metadata: { refill_id: refillId },
      last_payment_error: { message: 'Your card was declined.', code: 'card_declined', decline_code: 'insufficient_funds' },
    });
    expect((await deliver(app, paymentFailed)).body).toMatchObject({ outcome: 'ignored', credits: 0 });
    expect(await refillFailedEvents(refillId)).toEqual([{ payload: { team_id: team.teamId, refill_id: refillId, credits: 300, reason: declined } }]);
    expect(await balanceOf(app, team.teamId)).toEqual(before);
    expect(await query(app, `SELECT count(*)::int AS n FROM credit_ledger WHERE team_id = $1 AND actor LIKE 'stripe:%'`, [team.teamId])).toEqual([{ n: 0 }]);
  });

  it('fails a refill whose team has no Stripe customer, or whose customer has no saved payment method, without asking for a payment', async () => {
    const bare = await setupTeam(app, { credits: 1 });
    const noMethod = await teamWithCustomer(null);
    const [first, second] = [await requestRefill(app, bare.teamId, 100), await requestRefill(app, noMethod.teamId, 100)];
    expect((await settled(first)).error).toBe('the team has no Stripe customer (stripe_customer_id)');
    expect((await settled(second)).error).toBe(`Stripe customer ${noMethod.customer} has no default payment method (invoice_settings.default_payment_method)`);
    expect([...chargesOf(first), ...chargesOf(second)]).toEqual([]);

    const listed = await app.request('GET', `/api/teams/${noMethod.teamId}/refills`);
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual({
      data: [expect.objectContaining({ refill_id: second, team_id: noMethod.teamId, credits: 100, status: 'failed', stripe_payment_intent_id: null, error: expect.stringContaining('no default payment method') })],
      has_more: false,
      next_cursor: null,
    });
  });

  it("a payment that fails after it was taken (Stripe's payment_intent.payment_failed) fails the refill with Stripe's reason, once", async () => {
    const team = await teamWithCustomer('pm_bank_debit');
    const refillId = newId('rfl');
    const paymentIntent = id('pi_test');
    await query(app, `INSERT INTO credit_refills (id, team_id, credits, status, stripe_payment_intent_id) VALUES ($1, $2, 200, 'charging', $3)`, [refillId, team.teamId, paymentIntent]);
    const failed = stripeEvent('payment_intent.payment_failed', {
      id: paymentIntent,
      object: 'payment_intent',
      metadata: { refill_id: refillId },
      last_payment_error: { message: 'The bank account has insufficient funds.', code: 'insufficient_funds' },
    });
    const answers = await Promise.all([deliver(app, failed), deliver(app, failed)]);
    expect(answers.map((answer) => answer.body.outcome)).toEqual(['refill_failed', 'refill_failed']);
    expect(answers.filter((answer) => answer.body.duplicate)).toHaveLength(1);
    const reason = 'The bank account has insufficient funds. (insufficient_funds)';
    expect(await refill(refillId)).toEqual({ status: 'failed', stripe_payment_intent_id: paymentIntent, error: reason });
    expect(await refillFailedEvents(refillId)).toEqual([{ payload: { team_id: team.teamId, refill_id: refillId, credits: 200, reason } }]);
    expect((await balanceOf(app, team.teamId)).balance).toBe(5);
  });

  it("a payment the webhook names for an unknown refill → 400 stripe_unknown_refill; a payment that is not a refill's is ignored", async () => {
    const intent = { id: id('pi_test'), object: 'payment_intent', status: 'succeeded', metadata: { refill_id: 'rfl_unknown' } };
    expectErrorBody(await deliver(app, stripeEvent('payment_intent.succeeded', intent)), 400, 'stripe_unknown_refill');
    expect((await deliver(app, stripeEvent('payment_intent.succeeded', { ...intent, metadata: {} }))).body).toMatchObject({ outcome: 'ignored' });
  });
});

describe('without Stripe configured', () => {
  let plain: TestApp;
  beforeAll(async () => {
    plain = await createTestApp();
  });
  afterAll(() => plain?.close());

  it('the webhook and checkout answer 409 stripe_not_configured, and refills stay requested for your own consumer', async () => {
    const team = await setupTeam(plain, { credits: 5 });
    const event = stripeEvent('checkout.session.completed', { id: id('cs_test'), object: 'checkout.session', mode: 'payment', payment_status: 'paid', metadata: { team_id: team.teamId, credits: '100' } });
    expectErrorBody(await deliver(plain, event), 409, 'stripe_not_configured');
    expectErrorBody(await plain.request('POST', `/api/teams/${team.teamId}/checkout`, { body: { credits: 100, ...urls } }), 409, 'stripe_not_configured');
    const refillId = await requestRefill(plain, team.teamId, 100);
    await sleep(1_500);
    const listed = await plain.request('GET', `/api/teams/${team.teamId}/refills`);
    expect(listed.body.data).toEqual([expect.objectContaining({ refill_id: refillId, status: 'requested', error: null })]);
    expect(await balanceOf(plain, team.teamId)).toMatchObject({ balance: 5, credits_owed: 0 });
    expect(await query(plain, 'SELECT count(*)::int AS n FROM stripe_events')).toEqual([{ n: 0 }]);
  });
});
