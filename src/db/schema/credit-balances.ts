import { sql } from 'drizzle-orm';
import { bigint, boolean, check, integer, jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { teams } from './teams.js';

/**
 * One row per team: the running totals of its ledger, in micro-credits (1 credit = 1,000,000).
 * Only the ledger repository writes it, in the same transaction as the ledger entry that explains the change;
 * the CHECKs turn any bug that would overspend into a failed transaction instead of a loss.
 */
export const creditBalances = pgTable(
  'credit_balances',
  {
    // The foreign key is DEFERRABLE INITIALLY DEFERRED (migration 0020; drizzle cannot declare it): checked once per
    // transaction, not again at each of a batch's updates of the row.
    teamId: text('team_id')
      .primaryKey()
      .references(() => teams.id),
    balanceMicro: bigint('balance_micro', { mode: 'number' }).notNull().default(0),
    heldMicro: bigint('held_micro', { mode: 'number' }).notNull().default(0),
    /** The balance change of the latest entry: lets one statement both move the money and write its entry. */
    lastAmountMicro: bigint('last_amount_micro', { mode: 'number' }).notNull().default(0),
    /** The held change of the latest entry, for the same reason (a hold of "up to" an amount is decided in SQL). */
    lastHeldDeltaMicro: bigint('last_held_delta_micro', { mode: 'number' }).notNull().default(0),
    /** credits.low / credits.depleted were sent for the current crossing; cleared when the balance is back above. */
    lowNotified: boolean('low_notified').notNull().default(false),
    depletedNotified: boolean('depleted_notified').notNull().default(false),
    /** An auto-refill was requested for the current crossing; cleared when the balance is back above. */
    refillRequested: boolean('refill_requested').notNull().default(false),
    /** Credits taken back (a Stripe refund) that had already been spent: reported, never taken from held credits. */
    owedMicro: bigint('owed_micro', { mode: 'number' }).notNull().default(0),
    /**
     * The team's open jobs and calls in flight, and each key's (`{"<key_id>": n}`): every statement that opens or
     * ends a job or a call already locks this row, so its concurrency limits are checked there, exactly, at no cost.
     */
    openJobs: integer('open_jobs').notNull().default(0),
    callsInFlight: integer('calls_in_flight').notNull().default(0),
    keyOpenJobs: jsonb('key_open_jobs').$type<Record<string, number>>().notNull().default({}),
    keyCallsInFlight: jsonb('key_calls_in_flight').$type<Record<string, number>>().notNull().default({}),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    check('credit_balances_held_non_negative', sql`${t.heldMicro} >= 0`),
    check('credit_balances_available_non_negative', sql`${t.balanceMicro} - ${t.heldMicro} >= 0`),
  ],
);
