import { z } from 'zod';
import { Metadata, Slug, Timestamp } from './common.js';
import { BillingSettingsInput, BudgetMode, BudgetSettings, CreditBalance } from './credits.js';
import { CreatedApiKey } from './api-keys.js';
import { Limits, LimitsInput } from './limits.js';

/** archived: deleted by an admin (DELETE /api/teams/{team_id}); kept with its ledger, jobs and calls, never usable again. */
export const TeamStatus = z.enum(['active', 'suspended', 'archived']);
export type TeamStatus = z.infer<typeof TeamStatus>;

const credits = (description: string) => z.number().int().min(0).max(1_000_000_000).meta({ description });

/** When to tell the operator that a team runs low, and when to refill it (see README "Webhooks"). */
export const BalanceAlertsInput = z
  .strictObject({
    low_balance_credits: credits('credits.low is sent when the available credits fall below this many').nullable().optional(),
    low_balance_percent: z
      .number()
      .int()
      .min(1)
      .max(100)
      .nullable()
      .optional()
      .meta({ description: "or below this percentage of the team's last grant (the higher of the two thresholds counts)" }),
    auto_refill: z
      .strictObject({
        below_credits: credits('when the available credits fall below this many…'),
        refill_credits: credits('…this many are requested (credits.refill_requested; charged through Stripe when configured)').min(1),
      })
      .nullable()
      .optional(),
  })
  .meta({ id: 'BalanceAlertsInput', example: { low_balance_credits: 100, auto_refill: { below_credits: 50, refill_credits: 1000 } } });
export type BalanceAlertsInput = z.infer<typeof BalanceAlertsInput>;

export const BalanceAlerts = z
  .object({
    low_balance_credits: z.number().int().nullable(),
    low_balance_percent: z.number().int().nullable(),
    auto_refill: z.object({ below_credits: z.number().int(), refill_credits: z.number().int() }).nullable(),
  })
  .meta({ id: 'BalanceAlerts', description: 'null: not set. Each alert is sent once per crossing, again only after the credits were back above.' });
export type BalanceAlerts = z.infer<typeof BalanceAlerts>;

const StripeCustomerId = z
  .string()
  .regex(/^cus_[A-Za-z0-9]{1,250}$/, 'a Stripe customer id (cus_…)')
  .meta({ description: 'the Stripe customer whose saved payment method pays auto-refills' });

export const CreateTeamRequest = z
  .strictObject({
    organization_id: Slug,
    team_id: Slug,
    team_alias: z.string().trim().min(1).max(200).optional(),
    model_groups: z
      .array(Slug)
      .max(50)
      .refine((groups) => new Set(groups).size === groups.length, 'model_groups must not repeat')
      .optional()
      .meta({ description: 'allowed model groups; the first is the default' }),
    credits_allocated: z.number().int().min(0).max(1_000_000_000).optional().meta({ description: 'initial whole credits' }),
    budget_mode: BudgetMode.optional(),
    ...BillingSettingsInput,
    limits: LimitsInput.optional(),
    balance_alerts: BalanceAlertsInput.optional(),
    stripe_customer_id: StripeCustomerId.optional(),
    metadata: Metadata.optional(),
  })
  .meta({ id: 'CreateTeamRequest', example: { organization_id: 'acme', team_id: 'acme-support', team_alias: 'Support', model_groups: ['fast'], credits_allocated: 100 } });
export type CreateTeamRequest = z.infer<typeof CreateTeamRequest>;

export const Team = z
  .object({
    team_id: z.string(),
    organization_id: z.string(),
    team_alias: z.string().nullable(),
    status: TeamStatus,
    model_groups: z.array(z.string()),
    ...BudgetSettings.shape,
    credits: CreditBalance.pick({ balance: true, held: true, credits_remaining: true }),
    limits: Limits,
    balance_alerts: BalanceAlerts,
    stripe_customer_id: z.string().nullable(),
    metadata: Metadata,
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .meta({ id: 'Team' });
export type Team = z.infer<typeof Team>;

export const CreateTeamResponse = Team.extend({
  virtual_key: z.string().meta({ description: 'the secret key, shown only in this response' }),
  key: CreatedApiKey.omit({ virtual_key: true }),
}).meta({ id: 'CreateTeamResponse' });
export type CreateTeamResponse = z.infer<typeof CreateTeamResponse>;

export const TeamParams = z.strictObject({ team_id: Slug });

/** Every field optional: what is given changes, what is omitted stays. */
export const UpdateTeamRequest = z
  .strictObject({
    team_alias: z.string().trim().min(1).max(200).nullable().optional(),
    model_groups: z
      .array(Slug)
      .max(50)
      .refine((groups) => new Set(groups).size === groups.length, 'model_groups must not repeat')
      .optional()
      .meta({ description: 'replaces the allowed model groups; the first is the default' }),
    budget_mode: BudgetMode.optional(),
    ...BillingSettingsInput,
    limits: LimitsInput.optional(),
    balance_alerts: BalanceAlertsInput.optional(),
    stripe_customer_id: StripeCustomerId.nullable().optional(),
    metadata: Metadata.optional().meta({ description: 'replaces the metadata' }),
  })
  .meta({ id: 'UpdateTeamRequest', example: { team_alias: 'Support (EU)', limits: { requests_per_minute: 600, max_concurrent_calls: 20 } } });
export type UpdateTeamRequest = z.infer<typeof UpdateTeamRequest>;
