import type { Transaction } from '../../../db/client.js';
import { AppError } from '../../../lib/errors.js';
import { creditsToMicro, microToCredits } from '../../ledger/ledger.models.js';
import { addOwed, applyLedgerChange } from '../../ledger/ledger.repository.js';
import { presentTransaction } from '../../ledger/ledger.service.js';
import { assertNotArchived, requireTeam } from '../../tenancy/teams.repository.js';
import { recordEvent } from '../../webhooks/webhook-events.js';
import { succeedRefill } from './credit-refills.js';
import { eventUnknown } from './stripe.errors.js';
import { findPaymentGrant, lockPayment, takenBackForPayment, type StripeEventEffect } from './stripe-events.repository.js';
import { refundedShareMicro } from './stripe-money.models.js';

/**
 * How Stripe events move credits, inside the transaction that claimed the event (so each event moves them once):
 * a payment buys its credits once, whichever events report it; a refund takes back its share of them.
 */

export interface StripeEventRef {
  id: string;
  type: string;
}

export interface PaymentGrant {
  teamId: string;
  credits: number;
  /** The payment: it buys credits once, and a refund of it finds them. Null when the event does not say. */
  paymentIntentId: string | null;
  /** The ledger entry's reason: what was bought. */
  reason: string;
  /** The auto-refill this payment pays for: marked succeeded with the grant. */
  refillId?: string;
}

export async function grantPayment(tx: Transaction, event: StripeEventRef, grant: PaymentGrant): Promise<StripeEventEffect> {
  const { teamId, paymentIntentId } = grant;
  assertNotArchived(await requireTeam(tx, teamId));
  const unchanged = { teamId, paymentIntentId };
  if (paymentIntentId !== null) {
    await lockPayment(tx, paymentIntentId);
    // A Checkout session in payment mode with an invoice, say, is reported by two events: the payment buys once.
    if (await findPaymentGrant(tx, paymentIntentId)) return unchanged;
  }
  if (grant.refillId !== undefined && !(await succeedRefill(tx, grant.refillId, paymentIntentId))) return unchanged;
  const entry = await applyLedgerChange(tx, {
    teamId,
    entryType: 'grant',
    amountMicro: creditsToMicro(grant.credits),
    reason: grant.reason,
    actor: `stripe:${event.id}`,
  });
  if (!entry) throw new AppError('internal', `team ${teamId} has no credit balance`);
  await recordEvent(tx, 'credits.added', teamId, {
    team_id: teamId,
    transaction: presentTransaction(entry),
    source: { stripe_event_id: event.id, stripe_event_type: event.type, payment_intent_id: paymentIntentId },
  });
  return { teamId, paymentIntentId, creditsMicro: entry.amountMicro, ledgerEntryId: entry.id };
}

export interface RefundedCharge {
  id: string;
  paymentIntentId: string;
  amount: number;
  /** All refunded so far, this refund included. */
  amountRefunded: number;
}

/**
 * Takes back the share of a payment's credits that its refunds amount to, less what its earlier refunds took: from
 * the available credits only (never those held by open jobs); what had been spent is recorded as owed.
 */
export async function takeBackRefund(tx: Transaction, event: StripeEventRef, charge: RefundedCharge): Promise<StripeEventEffect> {
  const { paymentIntentId } = charge;
  await lockPayment(tx, paymentIntentId);
  const grant = await findPaymentGrant(tx, paymentIntentId);
  // Stripe does not promise order: a refund that arrives before the payment's grant is refused, and its retry finds it.
  if (!grant?.teamId) throw eventUnknown(event.id, 'stripe_unknown_payment', `no credits were granted for payment ${paymentIntentId}`);
  const teamId = grant.teamId;
  const dueMicro = refundedShareMicro(grant.creditsMicro, charge.amountRefunded, charge.amount) - (await takenBackForPayment(tx, paymentIntentId));
  if (dueMicro <= 0) return { teamId, paymentIntentId };
  const entry = await applyLedgerChange(tx, {
    teamId,
    entryType: 'adjustment',
    chargeUpToMicro: dueMicro,
    reason: `Stripe refund of ${charge.id}`,
    actor: `stripe:${event.id}`,
  });
  if (!entry) throw new AppError('internal', `team ${teamId} has no credit balance`);
  const takenMicro = -entry.amountMicro;
  const owedMicro = dueMicro - takenMicro;
  if (owedMicro > 0) await addOwed(tx, teamId, owedMicro);
  await recordEvent(tx, 'credits.refunded', teamId, {
    team_id: teamId,
    credits_taken: microToCredits(takenMicro),
    credits_owed: microToCredits(owedMicro),
    source: { stripe_event_id: event.id, stripe_event_type: event.type, charge_id: charge.id, payment_intent_id: paymentIntentId },
    transaction: presentTransaction(entry),
  });
  return { teamId, paymentIntentId, creditsMicro: -takenMicro, owedMicro, ledgerEntryId: entry.id };
}
