import { sql } from 'drizzle-orm';
import { bigint, boolean, index, integer, jsonb, pgEnum, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { teams } from './teams.js';

export const jobStatus = pgEnum('job_status', ['pending', 'in_progress', 'completed', 'failed', 'cancelled', 'expired']);

export const jobs = pgTable(
  'jobs',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id),
    jobType: text('job_type').notNull(),
    /** The key that opened it (null for jobs opened before keys were recorded). */
    keyId: text('key_id'),
    userId: text('user_id'),
    status: jobStatus('status').notNull().default('pending'),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull().default({}),
    /** Credits this job holds right now (micro-credits); zero once settled. */
    holdMicro: bigint('hold_micro', { mode: 'number' }).notNull().default(0),
    chargedMicro: bigint('charged_micro', { mode: 'number' }),
    /** The team's available credits right after this job settled: with the job and its calls, the settle answer. */
    availableAfterMicro: bigint('available_after_micro', { mode: 'number' }),
    errorMessage: text('error_message'),
    /** Idle time after which the sweeper expires the job, fixed when it was created: every instance uses this one. */
    timeoutSeconds: integer('timeout_seconds').notNull().default(3600),
    /** A one-shot job (create-and-call, /v1, a queue item's own job): it ends with its call, nobody completes it. */
    autoComplete: boolean('auto_complete').notNull().default(false),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    completedAt: timestamp('completed_at', { withTimezone: true }),
  },
  (t) => [
    index('jobs_team_created_idx').on(t.teamId, t.createdAt),
    // The sweeper's walk of open jobs by idle time. Partial: a job leaves it when it settles (one index entry fewer to
    // write per settlement, and the index stays the size of the open jobs, not of the table).
    index('jobs_open_idx').on(t.updatedAt).where(sql`${t.status} IN ('pending', 'in_progress')`),
    index('jobs_team_open_idx').on(t.teamId).where(sql`${t.status} IN ('pending', 'in_progress')`),
    // Admin lists walk jobs newest first by (created_at, id), optionally by status or type (keyset pagination).
    index('jobs_created_idx').on(t.createdAt, t.id),
    index('jobs_status_created_idx').on(t.status, t.createdAt, t.id),
    index('jobs_type_created_idx').on(t.jobType, t.createdAt, t.id),
    // The usage rollups find the hours whose jobs changed since their last refresh.
    index('jobs_updated_idx').on(t.updatedAt),
  ],
);
