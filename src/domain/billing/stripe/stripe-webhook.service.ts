import { eq } from 'drizzle-orm';
import Stripe from 'stripe';
import type { z } from 'zod';
import type { StripeWebhookResult } from '../../../contracts/index.js';
import { withTransaction, type DbOrTx, type Transaction } from '../../../db/client.js';
import { teams } from '../../../db/schema/index.js';
import { microToCredits } from '../../ledger/ledger.models.js';
import type { ServiceContext } from '../../context.js';
import { failRefill, findRefill } from './credit-refills.js';
import { grantPayment, takeBackRefund, type PaymentGrant, type RefundedCharge, type StripeEventRef } from './stripe-credits.js';
import { eventInvalid, eventUnknown, fromStripeError, signatureRefused, stripeNotConfigured } from './stripe.errors.js';
import { claimStripeEvent, findStripeEvent, recordStripeEffect, type StripeEventEffect, type StripeEventRow } from './stripe-events.repository.js';
import { creditsOfLines } from './stripe-money.models.js';
import {
  ChargeObject,
  CheckoutSessionObject,
  InvoiceObject,
  linePriceId,
  metadataCredits,
  PaymentIntentObject,
  StripeEventEnvelope,
  type StripeMetadata,
} from './stripe-objects.js';

/**
 * POST /api/billing/stripe/webhook: verifies Stripe's signature over the raw body, then moves credits once per
 * Stripe event id. What an event means is decided first (reading Stripe's API when the event does not say enough),
 * outside any transaction; the change is then made in one transaction that claims the event id, so a retried,
 * replayed or concurrently delivered event (on any instance) changes nothing more and answers what the first did.
 */

export interface StripeWebhookInput {
  payload: Buffer;
  signature: string | undefined;
}

type PriceCredits = ServiceContext['config']['STRIPE_PRICE_CREDITS'];

type Action =
  | { kind: 'ignore' }
  | { kind: 'grant'; grant: PaymentGrant }
  | { kind: 'refund'; charge: RefundedCharge }
  | { kind: 'refill_failed'; refillId: string; reason: string; paymentIntentId: string };

export async function handleStripeWebhook(ctx: ServiceContext, stripe: Stripe | undefined, input: StripeWebhookInput): Promise<StripeWebhookResult> {
  const secret = ctx.config.STRIPE_WEBHOOK_SECRET;
  if (!secret) throw stripeNotConfigured('STRIPE_WEBHOOK_SECRET');
  const event = verify(input, secret);
  const handled = await findStripeEvent(ctx.db, event.id);
  if (handled) return presentResult(handled, true);
  const action = await decide(ctx, stripe, event);
  if (action.kind === 'ignore') return presentResult({ id: event.id, type: event.type, teamId: null, creditsMicro: 0, owedMicro: 0, ledgerEntryId: null }, false);
  return withTransaction(ctx.db, async (tx) => {
    if (!(await claimStripeEvent(tx, event.id, event.type))) return presentResult((await findStripeEvent(tx, event.id))!, true);
    return presentResult(await recordStripeEffect(tx, event.id, await apply(tx, event, action)), false);
  });
}

function verify(input: StripeWebhookInput, secret: string): StripeEventEnvelope {
  if (!input.signature) throw signatureRefused('the request has no Stripe-Signature header');
  let event: unknown;
  try {
    // Default tolerance: a signature more than five minutes old is refused, so a captured request cannot be replayed.
    event = Stripe.webhooks.constructEvent(input.payload, input.signature, secret);
  } catch (error) {
    if (error instanceof Stripe.errors.StripeSignatureVerificationError) throw signatureRefused(error.message);
    throw eventInvalid('the signed body is not JSON');
  }
  return parseObject(StripeEventEnvelope, event, 'the event');
}

function parseObject<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw eventInvalid(`${what}: ${issue.path.join('.') || 'value'}: ${issue.message}`);
}

async function decide(ctx: ServiceContext, stripe: Stripe | undefined, event: StripeEventEnvelope): Promise<Action> {
  const object = event.data.object;
  switch (event.type) {
    case 'checkout.session.completed':
    case 'checkout.session.async_payment_succeeded': {
      const session = parseObject(CheckoutSessionObject, object, 'the Checkout session');
      // An asynchronous payment (a bank debit) completes the session unpaid; async_payment_succeeded follows.
      // Subscriptions are paid by invoices: invoice.paid grants those.
      if (session.mode !== 'payment' || session.payment_status !== 'paid') return { kind: 'ignore' };
      const teamId = await resolveTeam(ctx.db, event.id, session.metadata, session.customer);
      const credits = metadataCreditsOf(event.id, session.metadata) ?? (await creditsOfCheckout(stripe, ctx.config.STRIPE_PRICE_CREDITS, event.id, session.id));
      return { kind: 'grant', grant: { teamId, credits, paymentIntentId: session.payment_intent ?? null, reason: `Stripe Checkout ${session.id}` } };
    }
    case 'invoice.paid': {
      const invoice = parseObject(InvoiceObject, object, 'the invoice');
      const metadata = { ...invoice.parent?.subscription_details?.metadata, ...invoice.metadata };
      const teamId = await resolveTeam(ctx.db, event.id, metadata, invoice.customer);
      const credits = metadataCreditsOf(event.id, metadata) ?? creditsOfInvoice(ctx.config.STRIPE_PRICE_CREDITS, event.id, invoice);
      const paymentIntentId = await paymentOfInvoice(stripe, invoice);
      return { kind: 'grant', grant: { teamId, credits, paymentIntentId, reason: `Stripe invoice ${invoice.id}` } };
    }
    case 'payment_intent.succeeded': {
      // Every payment succeeds with this event, Checkout's included: only an auto-refill's is acted on here.
      const intent = parseObject(PaymentIntentObject, object, 'the payment intent');
      if (!intent.metadata.refill_id) return { kind: 'ignore' };
      const refill = await requireRefill(ctx.db, event.id, intent.metadata.refill_id);
      return {
        kind: 'grant',
        grant: { teamId: refill.teamId, credits: refill.credits, paymentIntentId: intent.id, reason: `auto-refill ${refill.id}`, refillId: refill.id },
      };
    }
    case 'payment_intent.payment_failed': {
      const intent = parseObject(PaymentIntentObject, object, 'the payment intent');
      if (!intent.metadata.refill_id) return { kind: 'ignore' };
      const refill = await requireRefill(ctx.db, event.id, intent.metadata.refill_id);
      const failure = intent.last_payment_error;
      const code = failure?.decline_code ?? failure?.code;
      const reason = `${failure?.message ?? 'the payment failed'}${code ? ` (${code})` : ''}`;
      return { kind: 'refill_failed', refillId: refill.id, reason, paymentIntentId: intent.id };
    }
    case 'charge.refunded': {
      const charge = parseObject(ChargeObject, object, 'the charge');
      if (!charge.payment_intent) throw eventUnknown(event.id, 'stripe_unknown_payment', `charge ${charge.id} has no payment intent, so it bought no credits here`);
      return { kind: 'refund', charge: { id: charge.id, paymentIntentId: charge.payment_intent, amount: charge.amount, amountRefunded: charge.amount_refunded } };
    }
    default:
      // Acknowledged so Stripe stops sending it; subscribe the endpoint to the types above only.
      return { kind: 'ignore' };
  }
}

async function apply(tx: Transaction, event: StripeEventRef, action: Exclude<Action, { kind: 'ignore' }>): Promise<StripeEventEffect> {
  switch (action.kind) {
    case 'grant':
      return grantPayment(tx, event, action.grant);
    case 'refund':
      return takeBackRefund(tx, event, action.charge);
    case 'refill_failed': {
      const refill = await failRefill(tx, action.refillId, action.reason, action.paymentIntentId);
      // Already ended (the charger reported the decline, or the payment succeeded after all): nothing to tell.
      return refill ? { teamId: refill.teamId, paymentIntentId: action.paymentIntentId } : { teamId: null };
    }
  }
}

/** The team a payment is for: `team_id` in its metadata, else the team whose stripe_customer_id is its customer. */
async function resolveTeam(db: DbOrTx, eventId: string, metadata: StripeMetadata, customer: string | null | undefined): Promise<string> {
  const named = metadata.team_id?.trim();
  if (named) {
    const [team] = await db.select({ id: teams.id }).from(teams).where(eq(teams.id, named));
    if (!team) throw eventUnknown(eventId, 'stripe_unknown_team', `metadata.team_id "${named}" is not a team`);
    return team.id;
  }
  if (!customer) throw eventUnknown(eventId, 'stripe_unknown_team', 'its metadata names no team_id and it has no customer');
  const owners = await db.select({ id: teams.id }).from(teams).where(eq(teams.stripeCustomerId, customer)).limit(2);
  if (owners.length === 1) return owners[0]!.id;
  throw eventUnknown(
    eventId,
    'stripe_unknown_team',
    owners.length === 0
      ? `its metadata names no team_id and customer ${customer} is no team's stripe_customer_id`
      : `customer ${customer} is the stripe_customer_id of several teams: name one in metadata.team_id`,
  );
}

function metadataCreditsOf(eventId: string, metadata: StripeMetadata): number | undefined {
  const credits = metadataCredits(metadata);
  if (credits === null) throw eventUnknown(eventId, 'stripe_no_credits', `metadata.credits "${metadata.credits}" is not a whole number of credits from 1 to 1000000000`);
  return credits;
}

function mappedCredits(eventId: string, credits: number, where: string): number {
  if (credits > 0 && credits <= 1_000_000_000) return credits;
  throw eventUnknown(
    eventId,
    'stripe_no_credits',
    credits > 0 ? `${where} buy ${credits} credits, more than one payment may grant` : `metadata names no credits and no price of ${where} is in STRIPE_PRICE_CREDITS`,
  );
}

/** A Checkout session's events do not carry its line items: they are read from Stripe's API. */
async function creditsOfCheckout(stripe: Stripe | undefined, priceCredits: PriceCredits, eventId: string, sessionId: string): Promise<number> {
  if (!stripe) throw eventUnknown(eventId, 'stripe_no_credits', 'metadata names no credits, and without STRIPE_SECRET_KEY its line items cannot be read to map their prices');
  const lines: { priceId: string | null; quantity: number | null }[] = [];
  try {
    for await (const item of stripe.checkout.sessions.listLineItems(sessionId, { limit: 100 })) {
      lines.push({ priceId: item.price?.id ?? null, quantity: item.quantity });
    }
  } catch (error) {
    throw fromStripeError(error);
  }
  return mappedCredits(eventId, creditsOfLines(lines, priceCredits), `the lines of Checkout session ${sessionId}`);
}

function creditsOfInvoice(priceCredits: PriceCredits, eventId: string, invoice: InvoiceObject): number {
  if (invoice.lines.has_more) throw eventUnknown(eventId, 'stripe_no_credits', `invoice ${invoice.id} has more lines than its event carries: name its credits in metadata.credits`);
  const lines = invoice.lines.data.map((line) => ({ priceId: linePriceId(line), quantity: line.quantity ?? null }));
  return mappedCredits(eventId, creditsOfLines(lines, priceCredits), `the lines of invoice ${invoice.id}`);
}

/** The payment intent that paid an invoice: in the event (older API versions, or expanded payments), else read. */
async function paymentOfInvoice(stripe: Stripe | undefined, invoice: InvoiceObject): Promise<string | null> {
  const inEvent = invoice.payment_intent ?? invoice.payments?.data.find((payment) => payment.payment.payment_intent)?.payment.payment_intent;
  if (inEvent) return inEvent;
  if (!stripe) return null;
  try {
    const payments = await stripe.invoicePayments.list({ invoice: invoice.id, status: 'paid', limit: 10 });
    const intent = payments.data.find((payment) => payment.payment.payment_intent)?.payment.payment_intent;
    return typeof intent === 'object' ? intent.id : (intent ?? null);
  } catch (error) {
    throw fromStripeError(error);
  }
}

async function requireRefill(db: DbOrTx, eventId: string, refillId: string) {
  const refill = await findRefill(db, refillId);
  if (!refill) throw eventUnknown(eventId, 'stripe_unknown_refill', `metadata.refill_id "${refillId}" is not a refill`);
  return refill;
}

type Recorded = Pick<StripeEventRow, 'id' | 'type' | 'teamId' | 'creditsMicro' | 'owedMicro' | 'ledgerEntryId'>;

function presentResult(row: Recorded, duplicate: boolean): StripeWebhookResult {
  return {
    event_id: row.id,
    type: row.type,
    outcome: outcomeOf(row),
    duplicate,
    team_id: row.teamId,
    credits: microToCredits(row.creditsMicro),
    credits_owed: microToCredits(row.owedMicro),
    transaction_id: row.ledgerEntryId,
  };
}

/** What an event did, read back from its record (a repeated delivery answers the same). */
function outcomeOf(row: Recorded): StripeWebhookResult['outcome'] {
  if (row.teamId === null) return 'ignored';
  if (row.type === 'charge.refunded') return 'refunded';
  if (row.type === 'payment_intent.payment_failed') return 'refill_failed';
  return row.creditsMicro > 0 ? 'granted' : 'already_granted';
}
