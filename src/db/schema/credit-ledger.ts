import { sql } from 'drizzle-orm';
import { bigint, check, index, pgEnum, pgTable, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';
import { teams } from './teams.js';

export const ledgerEntryType = pgEnum('ledger_entry_type', [
  'grant',
  'adjustment',
  'hold',
  'release',
  'charge',
  'refund',
]);

/**
 * Append-only (a trigger rejects UPDATE and DELETE). Each row records its effect on the balance and on the
 * held amount and what both were afterwards, so the team's balance always equals the sum of its entries.
 */
export const creditLedger = pgTable(
  'credit_ledger',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id),
    entryType: ledgerEntryType('entry_type').notNull(),
    amountMicro: bigint('amount_micro', { mode: 'number' }).notNull(),
    heldDeltaMicro: bigint('held_delta_micro', { mode: 'number' }).notNull().default(0),
    balanceAfterMicro: bigint('balance_after_micro', { mode: 'number' }).notNull(),
    heldAfterMicro: bigint('held_after_micro', { mode: 'number' }).notNull(),
    jobId: text('job_id'),
    reason: text('reason'),
    actor: text('actor').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('credit_ledger_team_idx').on(t.teamId, t.id),
    // A team's last grant, found at once however many charges came after it (low-balance thresholds in percent).
    index('credit_ledger_team_grants_idx').on(t.teamId, t.id).where(sql`${t.entryType} = 'grant'`),
    // A job is settled (charged or released) at most once, whatever retries or races happen.
    uniqueIndex('credit_ledger_job_settled_once_idx')
      .on(t.jobId)
      .where(sql`${t.jobId} IS NOT NULL AND ${t.entryType} IN ('release', 'charge')`),
    check('credit_ledger_balance_after_non_negative', sql`${t.balanceAfterMicro} >= 0`),
    check('credit_ledger_held_after_non_negative', sql`${t.heldAfterMicro} >= 0`),
  ],
);
