import { eq } from 'drizzle-orm';
import Stripe from 'stripe';
import type { Config } from '../../../config.js';
import { withTransaction, type Database, type Transaction } from '../../../db/client.js';
import { teams } from '../../../db/schema/index.js';
import type { Logger } from '../../../lib/logger.js';
import { claimRequestedRefill, failRefill, markRefillCharging, type RefillRow } from './credit-refills.js';
import { chargeAmount } from './stripe-money.models.js';

/** Refills are rare; a second's wait is nothing next to the card network's. */
const POLL_MS = 1_000;
/** Refills one instance charges per round, one after the other. */
const BATCH = 20;

type Charge = { ok: true; paymentIntentId: string } | { ok: false; reason: string; paymentIntentId: string | null };

/**
 * Charges requested auto-refills to the team's Stripe customer, off-session, with the customer's default payment
 * method, on every instance at once: each refill is claimed with FOR UPDATE SKIP LOCKED and charged while its row is
 * locked, with the refill id as Stripe's idempotency key, so instances never charge one twice and a retry after a
 * crash gets the first charge back instead of a new one. The credits are granted by the webhook when Stripe confirms
 * the payment (payment_intent.succeeded); a charge that cannot be made fails the refill with the reason and moves no
 * credits.
 */
export class RefillCharger {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Database,
    private readonly stripe: Stripe,
    private readonly config: Pick<Config, 'CREDIT_PRICE_USD' | 'STRIPE_CURRENCY'>,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running = this.running.then(() => this.tick()).catch((error: unknown) => this.log.warn({ err: error }, 'auto-refill charging failed'));
    }, POLL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  async tick(): Promise<void> {
    for (let i = 0; i < BATCH && (await this.chargeNext()); i++);
  }

  /** Charges the oldest requested refill no other instance holds; false when there is none. */
  private async chargeNext(): Promise<boolean> {
    return withTransaction(this.db, async (tx) => {
      const refill = await claimRequestedRefill(tx);
      if (!refill) return false;
      const charge = await this.charge(tx, refill);
      if (charge.ok) await markRefillCharging(tx, refill.id, charge.paymentIntentId);
      else await failRefill(tx, refill.id, charge.reason, charge.paymentIntentId);
      this.log.info({ refill_id: refill.id, team_id: refill.teamId, ...charge }, charge.ok ? 'auto-refill charged' : 'auto-refill failed');
      return true;
    });
  }

  private async charge(tx: Transaction, refill: RefillRow): Promise<Charge> {
    const failed = (reason: string, paymentIntentId: string | null = null): Charge => ({ ok: false, reason, paymentIntentId });
    const [team] = await tx.select({ customerId: teams.stripeCustomerId }).from(teams).where(eq(teams.id, refill.teamId));
    const customerId = team?.customerId;
    if (!customerId) return failed('the team has no Stripe customer (stripe_customer_id)');
    try {
      const customer = await this.stripe.customers.retrieve(customerId);
      if (customer.deleted) return failed(`Stripe customer ${customerId} is deleted`);
      const method = customer.invoice_settings.default_payment_method;
      if (!method) return failed(`Stripe customer ${customerId} has no default payment method (invoice_settings.default_payment_method)`);
      const currency = this.config.STRIPE_CURRENCY;
      const intent = await this.stripe.paymentIntents.create(
        {
          amount: chargeAmount(refill.credits, this.config.CREDIT_PRICE_USD, currency),
          currency,
          customer: customerId,
          payment_method: typeof method === 'string' ? method : method.id,
          off_session: true,
          confirm: true,
          description: `${refill.credits} credits (auto-refill ${refill.id})`,
          metadata: { team_id: refill.teamId, credits: String(refill.credits), refill_id: refill.id },
        },
        { idempotencyKey: refill.id },
      );
      if (intent.status === 'succeeded' || intent.status === 'processing') return { ok: true, paymentIntentId: intent.id };
      // Off-session, nobody can authenticate or pick another card: anything else is a failure for now (if the customer
      // later completes the payment, payment_intent.succeeded still grants the refill).
      return failed(`the payment is ${intent.status}`, intent.id);
    } catch (error) {
      // A connection error too: Stripe may have charged, and if so its webhook grants the refill after all.
      if (!(error instanceof Stripe.errors.StripeError)) throw error;
      const code = error.decline_code ?? error.code;
      return failed(`${error.message}${code ? ` (${code})` : ''}`, error.payment_intent?.id ?? null);
    }
  }
}
