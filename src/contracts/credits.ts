import { z } from 'zod';
import { Credits, Timestamp } from './common.js';

export const BudgetMode = z.enum(['job_based', 'consumption_tokens', 'consumption_usd']).meta({
  description:
    'How a job is charged once any of its calls delivered output (whatever status it ends with): job_based: credits_per_job; consumption_tokens: the tokens its calls used / tokens_per_credit; consumption_usd: their cost in USD x credits_per_dollar. A job none of whose calls delivered anything is free.',
});
export type BudgetMode = z.infer<typeof BudgetMode>;

/** Whole or fractional credits given as a decimal with at most six places, e.g. 2.5 */
const DecimalRate = z
  .union([z.number(), z.string()])
  .transform((value) => String(value))
  .pipe(z.string().regex(/^\d{1,12}(\.\d{1,6})?$/, 'must be a positive decimal with at most 6 decimals'))
  .refine((value) => Number(value) > 0, 'must be greater than 0');

export const BudgetSettings = z.object({
  budget_mode: BudgetMode,
  credits_per_job: z.number().int(),
  tokens_per_credit: z.number().int().nullable(),
  credits_per_dollar: z.string().nullable().meta({ description: 'decimal string, exact' }),
  waive_failed_jobs: z.boolean().meta({
    description: 'the operator trusts this team\'s `failed` reports: jobs it completes as failed are free even after output (never cancelled, disconnected or expired ones)',
  }),
  max_calls_per_job: z.number().int().meta({ description: 'job_based: how many calls one job may make' }),
  max_tokens_per_job: z.number().int().meta({ description: 'job_based: how many tokens one job may use (calls in flight count their worst case)' }),
});

/** The billing settings an admin may set, at team creation or later. */
export const BillingSettingsInput = {
  credits_per_job: z.number().int().min(1).max(1_000_000).optional(),
  tokens_per_credit: z.number().int().min(1).max(1_000_000_000).optional(),
  credits_per_dollar: DecimalRate.optional(),
  waive_failed_jobs: z.boolean().optional().meta({ description: 'default false' }),
  max_calls_per_job: z.number().int().min(1).max(1_000_000).optional().meta({ description: 'default 50' }),
  max_tokens_per_job: z.number().int().min(1).max(1_000_000_000).optional().meta({ description: 'default 200000' }),
};

export const SetBudgetModeRequest = z
  .strictObject({
    budget_mode: BudgetMode,
    ...BillingSettingsInput,
  })
  .meta({ id: 'SetBudgetModeRequest', example: { budget_mode: 'consumption_tokens', tokens_per_credit: 1000 } });
export type SetBudgetModeRequest = z.infer<typeof SetBudgetModeRequest>;

export const AddCreditsRequest = z
  .strictObject({
    credits: z.number().int().min(1).max(1_000_000_000).meta({ description: 'whole credits to add' }),
    reason: z.string().trim().min(1).max(500),
  })
  .meta({ id: 'AddCreditsRequest', example: { credits: 50, reason: 'invoice 2026-001' } });
export type AddCreditsRequest = z.infer<typeof AddCreditsRequest>;

export const CreditBalance = z
  .object({
    team_id: z.string(),
    balance: Credits.meta({ description: 'credits owned, including those held by running jobs' }),
    held: Credits.meta({ description: 'credits reserved by jobs that have not completed' }),
    credits_remaining: Credits.meta({ description: 'balance - held: what new jobs can use' }),
    credits_allocated: Credits.meta({ description: 'all credits ever granted' }),
    credits_used: Credits.meta({ description: 'all credits charged, net of refunds' }),
    credits_owed: Credits.meta({ description: 'credits a Stripe refund took back after they had been spent: owed by the team, never taken from held credits' }),
    ...BudgetSettings.shape,
    updated_at: Timestamp,
  })
  .meta({ id: 'CreditBalance' });
export type CreditBalance = z.infer<typeof CreditBalance>;

export const LedgerEntryType = z.enum(['grant', 'adjustment', 'hold', 'release', 'charge', 'refund']);

export const CreditTransaction = z
  .object({
    transaction_id: z.string(),
    team_id: z.string(),
    type: LedgerEntryType,
    amount: Credits.meta({ description: 'change of the balance (negative for charges)' }),
    held_change: Credits.meta({ description: 'change of the held amount' }),
    balance_after: Credits,
    held_after: Credits,
    job_id: z.string().nullable(),
    reason: z.string().nullable(),
    actor: z.string(),
    created_at: Timestamp,
  })
  .meta({ id: 'CreditTransaction' });
export type CreditTransaction = z.infer<typeof CreditTransaction>;

export const AddCreditsResponse = z
  .object({ transaction: CreditTransaction, balance: CreditBalance })
  .meta({ id: 'AddCreditsResponse' });
export type AddCreditsResponse = z.infer<typeof AddCreditsResponse>;
