import { sql } from 'drizzle-orm';
import type { Breakdown, LowCreditTeams, Overview, ReportTotals, TimeSeries, WindowTotals } from '../../contracts/index.js';
import type { DbOrTx } from '../../db/client.js';
import { validationFailed } from '../../lib/errors.js';
import { creditsToMicro, microToCredits } from '../ledger/ledger.models.js';
import { requireTeam } from '../tenancy/teams.repository.js';
import type { ServiceContext } from '../context.js';
import { ceilTo, DAY_MS, floorTo, HOUR_MS, rangeOf, splitByDay, type RangeQuery, type TimeRange } from './time-range.js';
import { addHistograms, costUsdOf, HISTOGRAM_BUCKETS, histogramQuantile, type Dimension, type RollupRow } from './usage-rollup.models.js';
import { TEAM_DAY, unrolledHours } from './usage-rollups.js';

/** Sums of rollup rows, as read from the database (numeric and bigint columns arrive as text). */
interface Sums {
  jobs: number;
  calls: number;
  failedCalls: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  costUsd: number;
  creditsMicro: number;
  latencySumMs: number;
  latencyCount: number;
  ttftSumMs: number;
  ttftCount: number;
  latencyHistogram: number[];
  ttftHistogram: number[];
}

const emptySums = (): Sums => ({
  jobs: 0,
  calls: 0,
  failedCalls: 0,
  promptTokens: 0,
  completionTokens: 0,
  totalTokens: 0,
  costUsd: 0,
  creditsMicro: 0,
  latencySumMs: 0,
  latencyCount: 0,
  ttftSumMs: 0,
  ttftCount: 0,
  latencyHistogram: new Array<number>(HISTOGRAM_BUCKETS).fill(0),
  ttftHistogram: new Array<number>(HISTOGRAM_BUCKETS).fill(0),
});

/** A rollup row as read from the database (numeric and bigint columns arrive as text) or summed by a read. */
type RollupRecord = {
  key: string;
  bucket: Date;
  jobs: number;
  calls: number;
  failed_calls: number;
  prompt_tokens: string | number;
  completion_tokens: string | number;
  total_tokens: string | number;
  cost_usd: string;
  credits_micro: string | number;
  latency_sum_ms: string | number;
  latency_count: number;
  ttft_sum_ms: string | number;
  ttft_count: number;
  latency_histogram: number[] | null;
  ttft_histogram: number[] | null;
}

const recordOf = (row: RollupRow): RollupRecord => ({
  key: row.key,
  bucket: new Date(row.bucket),
  jobs: row.jobs,
  calls: row.calls,
  failed_calls: row.failedCalls,
  prompt_tokens: row.promptTokens,
  completion_tokens: row.completionTokens,
  total_tokens: row.totalTokens,
  cost_usd: costUsdOf(row.costPico),
  credits_micro: row.creditsMicro,
  latency_sum_ms: row.latencySumMs,
  latency_count: row.latencyCount,
  ttft_sum_ms: row.ttftSumMs,
  ttft_count: row.ttftCount,
  latency_histogram: row.latencyHistogram,
  ttft_histogram: row.ttftHistogram,
});

function addRecord(sums: Sums, row: Omit<RollupRecord, 'key' | 'bucket'>): Sums {
  sums.jobs += Number(row.jobs);
  sums.calls += Number(row.calls);
  sums.failedCalls += Number(row.failed_calls);
  sums.promptTokens += Number(row.prompt_tokens);
  sums.completionTokens += Number(row.completion_tokens);
  sums.totalTokens += Number(row.total_tokens);
  sums.costUsd += Number(row.cost_usd);
  sums.creditsMicro += Number(row.credits_micro);
  sums.latencySumMs += Number(row.latency_sum_ms);
  sums.latencyCount += Number(row.latency_count);
  sums.ttftSumMs += Number(row.ttft_sum_ms);
  sums.ttftCount += Number(row.ttft_count);
  addHistograms(sums.latencyHistogram, row.latency_histogram);
  addHistograms(sums.ttftHistogram, row.ttft_histogram);
  return sums;
}

const round = (value: number, places: number) => Math.round(value * 10 ** places) / 10 ** places;

/** What the sums mean: rates, averages and the margin at the configured credit price. */
function present(sums: Sums, creditPriceUsd: number): ReportTotals {
  const credits = microToCredits(sums.creditsMicro);
  const revenue = round(credits * creditPriceUsd, 6);
  const cost = round(sums.costUsd, 6);
  return {
    jobs: sums.jobs,
    calls: sums.calls,
    failed_calls: sums.failedCalls,
    error_rate: sums.calls === 0 ? 0 : round(sums.failedCalls / sums.calls, 4),
    prompt_tokens: sums.promptTokens,
    completion_tokens: sums.completionTokens,
    total_tokens: sums.totalTokens,
    cost_usd: cost,
    credits_charged: credits,
    revenue_usd: revenue,
    margin_usd: round(revenue - cost, 6),
    margin_pct: revenue === 0 ? null : round((revenue - cost) / revenue, 4),
    avg_latency_ms: sums.latencyCount === 0 ? null : Math.round(sums.latencySumMs / sums.latencyCount),
    avg_ttft_ms: sums.ttftCount === 0 ? null : Math.round(sums.ttftSumMs / sums.ttftCount),
  };
}

const percentiles = (sums: Sums) => ({
  latency_p50_ms: histogramQuantile(sums.latencyHistogram, 0.5),
  latency_p95_ms: histogramQuantile(sums.latencyHistogram, 0.95),
  ttft_p50_ms: histogramQuantile(sums.ttftHistogram, 0.5),
  ttft_p95_ms: histogramQuantile(sums.ttftHistogram, 0.95),
});

/** A range widened to whole hours, the rollups' resolution. */
function hourRange(query: RangeQuery): TimeRange {
  const range = rangeOf(query);
  return { from: floorTo(range.from, HOUR_MS), to: ceilTo(range.to, HOUR_MS) };
}

/** The hourly rows of one dimension (and key) in the range, exact as of now (see unrolledHours). */
async function rollupRows(ctx: ServiceContext, dimension: Dimension, range: TimeRange, key?: string): Promise<RollupRecord[]> {
  const unrolled = await unrolledHours(ctx.db, ctx.log, dimension, range, key);
  const stored = await storedRows(ctx.db, dimension, range, key);
  return [...stored.filter((row) => !unrolled.hours.has(row.bucket.getTime())), ...unrolled.rows.map(recordOf)];
}

async function storedRows(db: DbOrTx, dimension: Dimension, range: TimeRange, key?: string): Promise<RollupRecord[]> {
  const result = await db.execute<RollupRecord>(sql`
    SELECT key, bucket, jobs, calls, failed_calls, prompt_tokens, completion_tokens, total_tokens, cost_usd, credits_micro,
           latency_sum_ms, latency_count, ttft_sum_ms, ttft_count, latency_histogram, ttft_histogram
      FROM usage_rollups
     WHERE dimension = ${dimension} AND bucket >= ${range.from} AND bucket < ${range.to}
       ${key === undefined ? sql`` : sql`AND key = ${key}`}
     ORDER BY bucket`);
  return result.rows.map((row) => ({ ...row, bucket: new Date(row.bucket) }));
}

const creditPrice = (ctx: ServiceContext) => Number(ctx.config.CREDIT_PRICE_USD);

/** Credits outstanding and held now, and the usage of today, the last 7 and the last 30 days. */
export async function getOverview(ctx: ServiceContext, query: { low_credits_threshold: number }): Promise<Overview> {
  const now = new Date();
  const end = ceilTo(now, HOUR_MS);
  const windows = {
    today: { from: floorTo(now, DAY_MS), to: end },
    last_7_days: { from: new Date(end.getTime() - 7 * DAY_MS), to: end },
    last_30_days: { from: new Date(end.getTime() - 30 * DAY_MS), to: end },
  };
  const thresholdMicro = creditsToMicro(query.low_credits_threshold);
  const [rows, balances] = await Promise.all([
    rollupRows(ctx, 'all', windows.last_30_days),
    ctx.db.execute<{ balance: string; held: string; teams: string; low: string }>(sql`
      SELECT coalesce(sum(b.balance_micro), 0)::text AS balance, coalesce(sum(b.held_micro), 0)::text AS held, count(*) AS teams,
             count(*) FILTER (WHERE t.status = 'active' AND b.balance_micro - b.held_micro < ${thresholdMicro}) AS low
        FROM credit_balances b JOIN teams t ON t.id = b.team_id
       WHERE t.status <> 'archived'`),
  ]);
  const price = creditPrice(ctx);
  const windowTotals = (range: TimeRange): WindowTotals => {
    const sums = rows.filter((row) => row.bucket >= range.from && row.bucket < range.to).reduce(addRecord, emptySums());
    return { ...present(sums, price), ...percentiles(sums), from: range.from.toISOString(), to: range.to.toISOString() };
  };
  const totals = balances.rows[0]!;
  return {
    generated_at: now.toISOString(),
    credit_price_usd: ctx.config.CREDIT_PRICE_USD,
    credits: {
      outstanding: microToCredits(Number(totals.balance)),
      held: microToCredits(Number(totals.held)),
      available: microToCredits(Number(totals.balance) - Number(totals.held)),
      teams: Number(totals.teams),
      low_credit_teams: Number(totals.low),
      low_credits_threshold: query.low_credits_threshold,
    },
    windows: {
      today: windowTotals(windows.today),
      last_7_days: windowTotals(windows.last_7_days),
      last_30_days: windowTotals(windows.last_30_days),
    },
  };
}

/** Usage per hour or day of the range, every bucket present (empty ones are zeros). */
export async function getTimeSeries(
  ctx: ServiceContext,
  query: RangeQuery & { granularity: 'hour' | 'day'; team_id?: string | undefined },
): Promise<TimeSeries> {
  const unit = query.granularity === 'day' ? DAY_MS : HOUR_MS;
  const hours = hourRange(query);
  const range = { from: floorTo(hours.from, unit), to: ceilTo(hours.to, unit) };
  if (query.team_id) await requireTeam(ctx.db, query.team_id);
  if (Math.round((range.to.getTime() - range.from.getTime()) / unit) > 2000) {
    throw validationFailed(`a time series has at most 2000 points: shorten the range or use granularity=day`, 'from');
  }
  const rows = query.team_id ? await rollupRows(ctx, 'team', range, query.team_id) : await rollupRows(ctx, 'all', range);
  const byBucket = new Map<number, Sums>();
  for (let at = range.from.getTime(); at < range.to.getTime(); at += unit) byBucket.set(at, emptySums());
  for (const row of rows) addRecord(byBucket.get(floorTo(row.bucket, unit).getTime())!, row);
  const price = creditPrice(ctx);
  return {
    from: range.from.toISOString(),
    to: range.to.toISOString(),
    granularity: query.granularity,
    points: [...byBucket.entries()].map(([bucket, sums]) => ({ bucket: new Date(bucket).toISOString(), ...present(sums, price), ...percentiles(sums) })),
  };
}

type BreakdownSort = 'credits_charged' | 'cost_usd' | 'margin_usd' | 'calls' | 'total_tokens' | 'error_rate';

/**
 * Usage by team, model or job type over the range, sorted (e.g. the top teams by spend, margins per model). Teams
 * are read per day for the whole days of the range and per hour for the rest; hours changed since the last refresh
 * are summed from their jobs.
 */
export async function getBreakdown(
  ctx: ServiceContext,
  query: RangeQuery & { by: 'team' | 'model' | 'job_type'; sort: BreakdownSort; order: 'asc' | 'desc'; limit: number },
): Promise<Breakdown> {
  const range = hourRange(query);
  const unrolled = await unrolledHours(ctx.db, ctx.log, query.by, range);
  const { days, hours } = query.by === 'team' ? splitByDay(range, unrolled.hours) : { days: [], hours: [range] };
  const within = (ranges: TimeRange[]) => sql.join(ranges.map((part) => sql`(bucket >= ${part.from} AND bucket < ${part.to})`), sql` OR `);
  const changed = [...unrolled.hours].map((hour) => sql`${new Date(hour)}::timestamptz`);
  const hourly = hours.length === 0 ? sql`false` : sql`dimension = ${query.by} AND (${within(hours)})
       ${changed.length === 0 ? sql`` : sql`AND bucket NOT IN (${sql.join(changed, sql`, `)})`}`;
  const daily = days.length === 0 ? sql`false` : sql`dimension = ${TEAM_DAY} AND (${within(days)})`;
  const result = await ctx.db.execute<Omit<RollupRecord, 'bucket' | 'latency_histogram' | 'ttft_histogram'>>(sql`
    SELECT key, sum(jobs) AS jobs, sum(calls) AS calls, sum(failed_calls) AS failed_calls, sum(prompt_tokens)::text AS prompt_tokens,
           sum(completion_tokens)::text AS completion_tokens, sum(total_tokens)::text AS total_tokens, sum(cost_usd)::text AS cost_usd,
           sum(credits_micro)::text AS credits_micro, sum(latency_sum_ms)::text AS latency_sum_ms, sum(latency_count) AS latency_count,
           sum(ttft_sum_ms)::text AS ttft_sum_ms, sum(ttft_count) AS ttft_count
      FROM usage_rollups
     WHERE (${hourly}) OR (${daily})
     GROUP BY key`);
  const byKey = new Map<string, Sums>();
  const add = (row: Omit<RollupRecord, 'bucket'>) => {
    let sums = byKey.get(row.key);
    if (!sums) byKey.set(row.key, (sums = emptySums()));
    addRecord(sums, row);
  };
  for (const row of result.rows) add({ ...row, latency_histogram: null, ttft_histogram: null });
  for (const row of unrolled.rows) add(recordOf(row));
  const price = creditPrice(ctx);
  const rows = [...byKey].map(([key, sums]) => ({ key, ...present(sums, price) }));
  const direction = query.order === 'asc' ? 1 : -1;
  rows.sort((a, b) => direction * (a[query.sort] - b[query.sort]) || a.key.localeCompare(b.key));
  return { from: range.from.toISOString(), to: range.to.toISOString(), by: query.by, rows: rows.slice(0, query.limit) };
}

/** Active teams with less than `threshold` credits available, the lowest first. */
export async function getLowCreditTeams(ctx: ServiceContext, query: { threshold: number; limit: number }): Promise<LowCreditTeams> {
  const result = await ctx.db.execute<{ team_id: string; organization_id: string; team_alias: string | null; balance: string; held: string }>(sql`
    SELECT t.id AS team_id, t.organization_id, t.team_alias, b.balance_micro::text AS balance, b.held_micro::text AS held
      FROM credit_balances b JOIN teams t ON t.id = b.team_id
     WHERE t.status = 'active' AND b.balance_micro - b.held_micro < ${creditsToMicro(query.threshold)}
     ORDER BY b.balance_micro - b.held_micro, t.id
     LIMIT ${query.limit}`);
  return {
    threshold: query.threshold,
    data: result.rows.map((row) => ({
      team_id: row.team_id,
      organization_id: row.organization_id,
      team_alias: row.team_alias,
      balance: microToCredits(Number(row.balance)),
      held: microToCredits(Number(row.held)),
      credits_remaining: microToCredits(Number(row.balance) - Number(row.held)),
    })),
  };
}
