import { and, asc, desc, eq, inArray, lt, ne, sql } from 'drizzle-orm';
import type { CreditRefill } from '../../../contracts/index.js';
import type { DbOrTx, Transaction } from '../../../db/client.js';
import { creditRefills } from '../../../db/schema/index.js';
import type { ServiceContext } from '../../context.js';
import { requireTeam } from '../../tenancy/teams.repository.js';
import { recordEvent } from '../../webhooks/webhook-events.js';

/**
 * An auto-refill's life after it was requested (by the low-balance monitor): charged by the refill charger
 * (`charging`), then `succeeded` when Stripe confirms the payment (its credits granted in that transaction) or
 * `failed` with the reason. A failed refill still succeeds if Stripe later reports its payment as made.
 */

export type RefillRow = typeof creditRefills.$inferSelect;

export function presentRefill(row: RefillRow): CreditRefill {
  return {
    refill_id: row.id,
    team_id: row.teamId,
    credits: row.credits,
    status: row.status,
    stripe_payment_intent_id: row.stripePaymentIntentId,
    error: row.error,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

/** A team's refills, newest first; the cursor is the id of the last refill of the previous page (ids sort by creation). */
export async function listRefills(ctx: ServiceContext, teamId: string, query: { limit: number; cursor?: string | undefined }) {
  await requireTeam(ctx.db, teamId);
  const rows = await ctx.db
    .select()
    .from(creditRefills)
    .where(and(eq(creditRefills.teamId, teamId), query.cursor ? lt(creditRefills.id, query.cursor) : undefined))
    .orderBy(desc(creditRefills.id))
    .limit(query.limit + 1);
  const page = rows.slice(0, query.limit);
  const hasMore = rows.length > query.limit;
  return { data: page.map(presentRefill), has_more: hasMore, next_cursor: hasMore ? (page.at(-1)?.id ?? null) : null };
}

export async function findRefill(db: DbOrTx, refillId: string): Promise<RefillRow | undefined> {
  const [row] = await db.select().from(creditRefills).where(eq(creditRefills.id, refillId));
  return row;
}

/**
 * The oldest refill waiting to be charged, locked for this transaction; instances skip each other's, so each
 * refill is charged by one of them.
 */
export async function claimRequestedRefill(tx: Transaction): Promise<RefillRow | undefined> {
  const [row] = await tx
    .select()
    .from(creditRefills)
    .where(eq(creditRefills.status, 'requested'))
    .orderBy(asc(creditRefills.id))
    .limit(1)
    .for('update', { skipLocked: true });
  return row;
}

export async function markRefillCharging(tx: Transaction, refillId: string, paymentIntentId: string): Promise<void> {
  await tx
    .update(creditRefills)
    .set({ status: 'charging', stripePaymentIntentId: paymentIntentId, updatedAt: sql`now()` })
    .where(eq(creditRefills.id, refillId));
}

/**
 * Fails an open refill with the reason and tells (credits.refill_failed), in the caller's transaction; nothing when
 * it had already ended (a declined charge is reported both by the charger and by Stripe's webhook: told once).
 */
export async function failRefill(tx: Transaction, refillId: string, reason: string, paymentIntentId: string | null): Promise<RefillRow | undefined> {
  const [row] = await tx
    .update(creditRefills)
    .set({ status: 'failed', error: reason, updatedAt: sql`now()`, ...(paymentIntentId && { stripePaymentIntentId: paymentIntentId }) })
    .where(and(eq(creditRefills.id, refillId), inArray(creditRefills.status, ['requested', 'charging'])))
    .returning();
  if (row) await recordEvent(tx, 'credits.refill_failed', row.teamId, { team_id: row.teamId, refill_id: row.id, credits: row.credits, reason });
  return row;
}

/** Marks a refill paid; undefined when it already was (its credits were granted then). */
export async function succeedRefill(tx: Transaction, refillId: string, paymentIntentId: string | null): Promise<RefillRow | undefined> {
  const [row] = await tx
    .update(creditRefills)
    .set({ status: 'succeeded', error: null, updatedAt: sql`now()`, ...(paymentIntentId && { stripePaymentIntentId: paymentIntentId }) })
    .where(and(eq(creditRefills.id, refillId), ne(creditRefills.status, 'succeeded')))
    .returning();
  return row;
}
