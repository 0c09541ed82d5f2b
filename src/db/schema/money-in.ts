import { sql } from 'drizzle-orm';
import { bigint, check, index, integer, pgEnum, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { teams } from './teams.js';

export const creditRefillStatus = pgEnum('credit_refill_status', ['requested', 'charging', 'succeeded', 'failed']);

/**
 * An auto-refill: requested (with credits.refill_requested) when a team's available credits cross its
 * `auto_refill_below` downward. With Stripe configured and a saved payment method, creditgate charges it and the
 * credits are granted when Stripe confirms the payment; otherwise the operator's webhook consumer grants them.
 */
export const creditRefills = pgTable(
  'credit_refills',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id),
    credits: integer('credits').notNull(),
    status: creditRefillStatus('status').notNull().default('requested'),
    stripePaymentIntentId: text('stripe_payment_intent_id'),
    /** Why the refill failed (a declined card, no saved payment method, a Stripe error). */
    error: text('error'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('credit_refills_team_idx').on(t.teamId, t.id),
    index('credit_refills_open_idx').on(t.id).where(sql`${t.status} IN ('requested', 'charging')`),
    check('credit_refills_credits_positive', sql`${t.credits} > 0`),
  ],
);

/**
 * Every Stripe event that moved credits, by Stripe's event id: the primary key is what makes a retried, replayed
 * or concurrently delivered event grant (or refund) once. Written in the ledger change's transaction.
 */
export const stripeEvents = pgTable(
  'stripe_events',
  {
    id: text('id').primaryKey(),
    type: text('type').notNull(),
    teamId: text('team_id').references(() => teams.id),
    /** The payment the credits were bought with: a refund of it takes back a share of its credits. */
    paymentIntentId: text('payment_intent_id'),
    /** Credits granted (positive) or taken back (negative), in micro-credits. */
    creditsMicro: bigint('credits_micro', { mode: 'number' }).notNull().default(0),
    /** The part of a refund that had already been spent, recorded as owed. */
    owedMicro: bigint('owed_micro', { mode: 'number' }).notNull().default(0),
    ledgerEntryId: text('ledger_entry_id'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('stripe_events_payment_intent_idx').on(t.paymentIntentId)],
);
