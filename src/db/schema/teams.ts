import { sql } from 'drizzle-orm';
import { boolean, check, index, integer, jsonb, numeric, pgEnum, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { limitColumns } from './limits.js';
import { organizations } from './organizations.js';

/** archived: deleted by an admin; kept (with its ledger, jobs and calls) but out of lists and never usable again. */
export const teamStatus = pgEnum('team_status', ['active', 'suspended', 'archived']);
export const budgetMode = pgEnum('budget_mode', ['job_based', 'consumption_tokens', 'consumption_usd']);

export const teams = pgTable(
  'teams',
  {
    id: text('id').primaryKey(),
    organizationId: text('organization_id')
      .notNull()
      .references(() => organizations.id),
    alias: text('team_alias'),
    status: teamStatus('status').notNull().default('active'),
    budgetMode: budgetMode('budget_mode').notNull().default('job_based'),
    creditsPerJob: integer('credits_per_job').notNull().default(1),
    tokensPerCredit: integer('tokens_per_credit'),
    // Credits per US dollar may be fractional; kept exact as NUMERIC, never a float.
    creditsPerDollar: numeric('credits_per_dollar', { precision: 18, scale: 6 }),
    /** The operator trusts the team's `failed` reports: failed jobs are free (never disconnects or sweeps). */
    waiveFailedJobs: boolean('waive_failed_jobs').notNull().default(false),
    /** job_based: one job's price buys at most this many calls and tokens (reservations in flight included). */
    maxCallsPerJob: integer('max_calls_per_job').notNull().default(50),
    maxTokensPerJob: integer('max_tokens_per_job').notNull().default(200_000),
    ...limitColumns(),
    /** Below this many available credits, credits.low is sent (once per crossing). */
    lowBalanceThreshold: integer('low_balance_threshold'),
    /** Or below this percentage of the last grant (whichever threshold is higher). */
    lowBalancePercent: integer('low_balance_percent'),
    /** Auto-refill: below this many available credits, `autoRefillCredits` are requested (once per crossing). */
    autoRefillBelow: integer('auto_refill_below'),
    autoRefillCredits: integer('auto_refill_credits'),
    /** The Stripe customer whose saved payment method pays auto-refills (when Stripe is configured). */
    stripeCustomerId: text('stripe_customer_id'),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('teams_organization_idx').on(t.organizationId),
    check('teams_credits_per_job_positive', sql`${t.creditsPerJob} > 0`),
    check('teams_tokens_per_credit_positive', sql`${t.tokensPerCredit} IS NULL OR ${t.tokensPerCredit} > 0`),
    check('teams_credits_per_dollar_positive', sql`${t.creditsPerDollar} IS NULL OR ${t.creditsPerDollar} > 0`),
    check('teams_max_calls_per_job_positive', sql`${t.maxCallsPerJob} > 0`),
    check('teams_max_tokens_per_job_positive', sql`${t.maxTokensPerJob} > 0`),
    check('teams_low_balance_percent_range', sql`${t.lowBalancePercent} IS NULL OR ${t.lowBalancePercent} BETWEEN 1 AND 100`),
    check('teams_auto_refill_complete', sql`(${t.autoRefillBelow} IS NULL) = (${t.autoRefillCredits} IS NULL)`),
  ],
);
