import { and, eq, gt, sql } from 'drizzle-orm';
import type { DbOrTx, Transaction } from '../../../db/client.js';
import { stripeEvents } from '../../../db/schema/index.js';

export type StripeEventRow = typeof stripeEvents.$inferSelect;
export type StripeEventEffect = Partial<Pick<StripeEventRow, 'teamId' | 'paymentIntentId' | 'creditsMicro' | 'owedMicro' | 'ledgerEntryId'>>;

export async function findStripeEvent(db: DbOrTx, eventId: string): Promise<StripeEventRow | undefined> {
  const [row] = await db.select().from(stripeEvents).where(eq(stripeEvents.id, eventId));
  return row;
}

/**
 * Claims a Stripe event for this transaction: false when it was handled already. A concurrent delivery of the same
 * event (on any instance) waits here on the primary key until this transaction ends, then finds it handled.
 */
export async function claimStripeEvent(tx: Transaction, eventId: string, type: string): Promise<boolean> {
  const claimed = await tx.insert(stripeEvents).values({ id: eventId, type }).onConflictDoNothing().returning({ id: stripeEvents.id });
  return claimed.length > 0;
}

export async function recordStripeEffect(tx: Transaction, eventId: string, effect: StripeEventEffect): Promise<StripeEventRow> {
  const [row] = await tx.update(stripeEvents).set(effect).where(eq(stripeEvents.id, eventId)).returning();
  return row!;
}

/**
 * Serialises, across instances, every event about one payment (its grants and its refunds) until the transaction
 * ends: each then reads what the ones before it did.
 */
export async function lockPayment(tx: Transaction, paymentIntentId: string): Promise<void> {
  await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtextextended(${`stripe-payment:${paymentIntentId}`}, 0))`);
}

/** The grant a payment bought (each payment buys credits once), if any. */
export async function findPaymentGrant(tx: Transaction, paymentIntentId: string): Promise<StripeEventRow | undefined> {
  const [row] = await tx
    .select()
    .from(stripeEvents)
    .where(and(eq(stripeEvents.paymentIntentId, paymentIntentId), gt(stripeEvents.creditsMicro, 0)));
  return row;
}

/** Micro-credits the refunds of a payment have taken back so far: debited and recorded as owed. */
export async function takenBackForPayment(tx: Transaction, paymentIntentId: string): Promise<number> {
  const [row] = await tx
    .select({ total: sql<string>`coalesce(sum(${stripeEvents.owedMicro} - ${stripeEvents.creditsMicro}), 0)` })
    .from(stripeEvents)
    .where(and(eq(stripeEvents.paymentIntentId, paymentIntentId), eq(stripeEvents.type, 'charge.refunded')));
  return Number(row?.total ?? 0);
}
