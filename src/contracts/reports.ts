import { z } from 'zod';
import { Credits, Slug, Timestamp } from './common.js';
import { Period } from './jobs.js';

const Instant = z.iso.datetime({ offset: true });

/** What the reports count, over jobs created in a range (their calls included). */
export const ReportTotals = z
  .object({
    jobs: z.number().int(),
    calls: z.number().int(),
    failed_calls: z.number().int(),
    error_rate: z.number().meta({ description: 'failed calls / calls (0 when there are none)' }),
    prompt_tokens: z.number().int(),
    completion_tokens: z.number().int(),
    total_tokens: z.number().int(),
    cost_usd: z.number().meta({ description: 'what the upstream calls cost' }),
    credits_charged: Credits,
    revenue_usd: z.number().meta({ description: 'credits charged at CREDIT_PRICE_USD' }),
    margin_usd: z.number().meta({ description: 'revenue_usd - cost_usd' }),
    margin_pct: z.number().nullable().meta({ description: 'margin_usd / revenue_usd, null without revenue' }),
    avg_latency_ms: z.number().nullable(),
    avg_ttft_ms: z.number().nullable(),
  })
  .meta({ id: 'ReportTotals' });
export type ReportTotals = z.infer<typeof ReportTotals>;

const Percentiles = z.object({
  latency_p50_ms: z.number().nullable(),
  latency_p95_ms: z.number().nullable(),
  ttft_p50_ms: z.number().nullable(),
  ttft_p95_ms: z.number().nullable(),
});

export const WindowTotals = ReportTotals.extend(Percentiles.shape).extend({ from: Timestamp, to: Timestamp }).meta({ id: 'WindowTotals' });
export type WindowTotals = z.infer<typeof WindowTotals>;

export const Overview = z
  .object({
    generated_at: Timestamp,
    credit_price_usd: z.string().meta({ description: 'CREDIT_PRICE_USD' }),
    credits: z.object({
      outstanding: Credits.meta({ description: 'credits owned by all teams (archived ones excluded), held ones included' }),
      held: Credits.meta({ description: 'credits held by open jobs' }),
      available: Credits,
      teams: z.number().int().meta({ description: 'teams that are not archived' }),
      low_credit_teams: z.number().int().meta({ description: 'active teams with less available than low_credits_threshold' }),
      low_credits_threshold: Credits,
    }),
    windows: z.object({ today: WindowTotals, last_7_days: WindowTotals, last_30_days: WindowTotals }),
  })
  .meta({
    id: 'Overview',
    description:
      'Windows are whole UTC hours of job creation: today since 00:00 UTC, the others the last 7 and 30 days up to the current hour. Percentiles come from a histogram with buckets 20% apart.',
  });
export type Overview = z.infer<typeof Overview>;

export const OverviewQuery = z.strictObject({
  low_credits_threshold: z.coerce.number().int().min(0).max(1_000_000_000).default(10),
});

export const ReportRangeQuery = z
  .strictObject({
    from: Instant.optional().meta({ description: 'inclusive, rounded down to the hour; default 30 days ago' }),
    to: Instant.optional().meta({ description: 'exclusive, rounded up to the hour; default now' }),
    period: Period.optional(),
  })
  .refine((query) => !(query.period && (query.from || query.to)), { message: 'give either period or from/to', path: ['period'] });

export const TimeSeriesQuery = z
  .strictObject({
    from: Instant.optional().meta({ description: 'inclusive, rounded down to the hour; default 30 days ago' }),
    to: Instant.optional().meta({ description: 'exclusive, rounded up to the hour; default now' }),
    period: Period.optional(),
    granularity: z.enum(['hour', 'day']).default('day'),
    team_id: Slug.optional().meta({ description: 'one team only (percentiles are not kept per team)' }),
  })
  .refine((query) => !(query.period && (query.from || query.to)), { message: 'give either period or from/to', path: ['period'] });

export const TimeSeries = z
  .object({
    from: Timestamp,
    to: Timestamp,
    granularity: z.enum(['hour', 'day']),
    points: z.array(ReportTotals.extend(Percentiles.shape).extend({ bucket: Timestamp })),
  })
  .meta({ id: 'TimeSeries', description: 'one point per hour or day (UTC) of the range, empty ones included' });
export type TimeSeries = z.infer<typeof TimeSeries>;

export const BreakdownQuery = z
  .strictObject({
    by: z.enum(['team', 'model', 'job_type']).default('team'),
    from: Instant.optional(),
    to: Instant.optional(),
    period: Period.optional(),
    sort: z.enum(['credits_charged', 'cost_usd', 'margin_usd', 'calls', 'total_tokens', 'error_rate']).default('credits_charged'),
    order: z.enum(['asc', 'desc']).default('desc'),
    limit: z.coerce.number().int().min(1).max(1000).default(20),
  })
  .refine((query) => !(query.period && (query.from || query.to)), { message: 'give either period or from/to', path: ['period'] });

export const Breakdown = z
  .object({
    from: Timestamp,
    to: Timestamp,
    by: z.enum(['team', 'model', 'job_type']),
    rows: z.array(ReportTotals.extend({ key: z.string() })),
  })
  .meta({
    id: 'Breakdown',
    description: "by model, each job's charge is split over its calls in proportion to their tokens (equally when none used any)",
  });
export type Breakdown = z.infer<typeof Breakdown>;

export const LowCreditsQuery = z.strictObject({
  threshold: z.coerce.number().int().min(0).max(1_000_000_000).default(10).meta({ description: 'credits available below which a team is listed' }),
  limit: z.coerce.number().int().min(1).max(200).default(20),
});

export const LowCreditTeams = z
  .object({
    threshold: Credits,
    data: z.array(
      z.object({
        team_id: z.string(),
        organization_id: z.string(),
        team_alias: z.string().nullable(),
        balance: Credits,
        held: Credits,
        credits_remaining: Credits,
      }),
    ),
  })
  .meta({ id: 'LowCreditTeams', description: 'active teams with the least credits available first' });
export type LowCreditTeams = z.infer<typeof LowCreditTeams>;
