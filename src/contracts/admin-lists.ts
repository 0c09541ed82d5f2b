import { z } from 'zod';
import { Credits, Limit, Metadata, Slug, Timestamp } from './common.js';
import { BudgetMode, CreditBalance, CreditTransaction, LedgerEntryType } from './credits.js';
import { JobStatus, Period } from './jobs.js';
import { TeamStatus } from './teams.js';

/** An opaque keyset cursor: the `next_cursor` of the previous page. */
const Cursor = z.string().max(512).optional().meta({ description: 'the `next_cursor` of the previous page' });
const Instant = z.iso.datetime({ offset: true });

export const TeamSort = z.enum(['team_id', 'created_at', 'balance', 'credits_remaining', 'last_activity_at']);

export const TeamListQuery = z.strictObject({
  organization_id: Slug.optional(),
  status: TeamStatus.optional().meta({ description: 'default: every team but archived ones' }),
  q: z.string().trim().min(1).max(100).optional().meta({ description: 'part of the team id or alias (case-insensitive)' }),
  sort: TeamSort.default('team_id'),
  order: z.enum(['asc', 'desc']).default('asc'),
  limit: Limit,
  cursor: Cursor,
});

export const OrganizationTeamsQuery = TeamListQuery.omit({ organization_id: true });

export const TeamSummary = z
  .object({
    team_id: z.string(),
    organization_id: z.string(),
    team_alias: z.string().nullable(),
    status: TeamStatus,
    budget_mode: BudgetMode,
    balance: Credits,
    held: Credits,
    credits_remaining: Credits,
    last_activity_at: Timestamp.nullable().meta({ description: 'when its latest job was created' }),
    created_at: Timestamp,
  })
  .meta({ id: 'TeamSummary' });
export type TeamSummary = z.infer<typeof TeamSummary>;

export const JobListQuery = z
  .strictObject({
    team_id: Slug.optional(),
    status: JobStatus.optional(),
    job_type: z.string().trim().min(1).max(100).optional(),
    from: Instant.optional().meta({ description: 'created at or after (inclusive)' }),
    to: Instant.optional().meta({ description: 'created before (exclusive)' }),
    limit: Limit,
    cursor: Cursor,
  })
  .refine((query) => !(query.from && query.to) || Date.parse(query.from) < Date.parse(query.to), { message: 'from must be before to', path: ['from'] });

export const TeamJobsQuery = z.strictObject({
  status: JobStatus.optional(),
  job_type: z.string().trim().min(1).max(100).optional(),
  from: Instant.optional(),
  to: Instant.optional(),
  limit: Limit,
  cursor: Cursor,
});

export const JobSummary = z
  .object({
    job_id: z.string(),
    team_id: z.string(),
    job_type: z.string(),
    user_id: z.string().nullable(),
    status: JobStatus,
    metadata: Metadata,
    error_message: z.string().nullable(),
    total_calls: z.number().int(),
    total_tokens: z.number().int(),
    total_cost_usd: z.number(),
    credits_reserved: Credits,
    credits_charged: Credits,
    created_at: Timestamp,
    completed_at: Timestamp.nullable(),
  })
  .meta({ id: 'JobSummary' });
export type JobSummary = z.infer<typeof JobSummary>;

export const UpdateJobMetadataRequest = z
  .strictObject({
    metadata: Metadata.meta({ description: 'merged into the job\'s metadata: each key replaces the same key, a key set to null is removed' }),
  })
  .meta({ id: 'UpdateJobMetadataRequest', example: { metadata: { reviewed_by: 'ops@acme.test', ticket: null } } });
export type UpdateJobMetadataRequest = z.infer<typeof UpdateJobMetadataRequest>;

export const DeductCreditsRequest = z
  .strictObject({
    credits: z.number().int().min(1).max(1_000_000_000).meta({ description: 'whole credits to take off; never more than the team has available (balance - held)' }),
    reason: z.string().trim().min(1).max(500),
  })
  .meta({ id: 'DeductCreditsRequest', example: { credits: 20, reason: 'refund of invoice 2026-001' } });
export type DeductCreditsRequest = z.infer<typeof DeductCreditsRequest>;

export const DeductCreditsResponse = z
  .object({ transaction: CreditTransaction, balance: CreditBalance })
  .meta({ id: 'DeductCreditsResponse' });
export type DeductCreditsResponse = z.infer<typeof DeductCreditsResponse>;

export const LedgerQuery = z.strictObject({
  type: LedgerEntryType.optional(),
  from: Instant.optional().meta({ description: 'entries at or after (inclusive)' }),
  to: Instant.optional().meta({ description: 'entries before (exclusive)' }),
  limit: Limit,
  cursor: z.string().max(128).optional().meta({ description: 'the `next_cursor` of the previous page' }),
});

export const LedgerExportQuery = LedgerQuery.omit({ limit: true, cursor: true }).extend({ period: Period.optional() });

export const BalanceHistoryQuery = z.strictObject({
  from: Instant.optional().meta({ description: 'default 30 days ago' }),
  to: Instant.optional().meta({ description: 'default now' }),
  period: Period.optional(),
});

export const BalanceHistory = z
  .object({
    team_id: z.string(),
    from: Timestamp,
    to: Timestamp,
    points: z.array(
      z.object({
        day: Timestamp.meta({ description: 'the day (UTC)' }),
        balance: Credits.meta({ description: 'at the end of the day' }),
        held: Credits,
        credits_in: Credits.meta({ description: 'granted or adjusted upwards during the day' }),
        credits_out: Credits.meta({ description: 'charged or deducted during the day' }),
      }),
    ),
  })
  .meta({ id: 'BalanceHistory' });
export type BalanceHistory = z.infer<typeof BalanceHistory>;

export const AdminSetupStatus = z
  .object({ admin_users_exist: z.boolean().meta({ description: 'false until the first admin user is created' }) })
  .meta({ id: 'AdminSetupStatus' });
export type AdminSetupStatus = z.infer<typeof AdminSetupStatus>;
