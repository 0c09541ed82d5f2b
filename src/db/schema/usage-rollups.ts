import { bigint, index, integer, numeric, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * Usage per hour, derived from jobs and their calls (domain/reports): what the console's overview reads instead of
 * scanning every call of the last 30 days. `dimension` is `all` (key ''), `team`, `model` or `job_type`, per hour,
 * or `team_day`, a team's hours summed per UTC day (bucket at midnight). Rows are recomputed whole for the hours whose
 * jobs changed (and their days), so they never drift from the jobs they summarise.
 */
export const usageRollups = pgTable(
  'usage_rollups',
  {
    dimension: text('dimension').notNull(),
    key: text('key').notNull(),
    /** The hour (UTC) in which the jobs were created; the day for `team_day`. */
    bucket: timestamp('bucket', { withTimezone: true }).notNull(),
    jobs: integer('jobs').notNull(),
    calls: integer('calls').notNull(),
    failedCalls: integer('failed_calls').notNull(),
    promptTokens: bigint('prompt_tokens', { mode: 'number' }).notNull(),
    completionTokens: bigint('completion_tokens', { mode: 'number' }).notNull(),
    totalTokens: bigint('total_tokens', { mode: 'number' }).notNull(),
    costUsd: numeric('cost_usd', { precision: 24, scale: 12 }).notNull(),
    /** Credits charged; per model, each job's charge split over its calls by tokens. */
    creditsMicro: bigint('credits_micro', { mode: 'number' }).notNull(),
    latencySumMs: bigint('latency_sum_ms', { mode: 'number' }).notNull(),
    latencyCount: integer('latency_count').notNull(),
    ttftSumMs: bigint('ttft_sum_ms', { mode: 'number' }).notNull(),
    ttftCount: integer('ttft_count').notNull(),
    /** Counts per latency bucket (see reports/usage-rollup.models.ts), for percentiles; `all` and `model` rows only. */
    latencyHistogram: integer('latency_histogram').array(),
    ttftHistogram: integer('ttft_histogram').array(),
  },
  // By dimension and hour for the overview and breakdowns; by key for one team's time series.
  (t) => [primaryKey({ columns: [t.dimension, t.bucket, t.key] }), index('usage_rollups_key_idx').on(t.dimension, t.key, t.bucket)],
);

/** One row: up to when the rollups are known to be current (jobs updated before it are summarised). */
export const usageRollupState = pgTable('usage_rollup_state', {
  id: integer('id').primaryKey(),
  refreshedAt: timestamp('refreshed_at', { withTimezone: true }).notNull(),
});
