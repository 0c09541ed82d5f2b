import { and, gte, lt, ne, sql } from 'drizzle-orm';
import { withTransaction, type DbOrTx } from '../../db/client.js';
import { usageRollups, usageRollupState } from '../../db/schema/index.js';
import type { Logger } from '../../lib/logger.js';
import { DAY_MS, HOUR_MS, type TimeRange } from './time-range.js';
import { costUsdOf, rollUp, type Dimension, type RollupCall, type RollupJob, type RollupRow } from './usage-rollup.models.js';

/** Serialises refreshes across instances: a refresh that finds another running skips its turn. */
const ROLLUP_LOCK = 7_301_002_014;
/**
 * A job updated by a transaction that began before a refresh but committed after it carries an updated_at older
 * than that refresh: each refresh, and each read's look for changes, goes this far behind the previous refresh so
 * such a job is still seen.
 */
const OVERLAP = sql`interval '2 minutes'`;
/** Hours recomputed per statement pair: bounds the memory of a first refresh over months of jobs. */
const CHUNK_HOURS = 24;
/** A read that finds changed hours starts a refresh in the background when the last one is older than this. */
const REFRESH_BEHIND_MS = 5_000;
/**
 * Teams are also summed per day (dimension `team_day`), so a breakdown by team over 30 days reads one row per team
 * and day instead of one per team and active hour.
 */
export const TEAM_DAY = 'team_day';

/**
 * Brings the hourly usage rollups up to date: the hours whose jobs changed since the last refresh (created, called,
 * settled, expired; every such change bumps the job's updated_at) are recomputed whole from their jobs and calls,
 * and the days holding them are summed again per team, inside one transaction under an advisory lock. The first
 * refresh summarises every job there is. `wait: false` returns at once (false) when another refresh holds the lock.
 */
export async function refreshUsageRollups(db: DbOrTx, options: { wait: boolean } = { wait: true }): Promise<boolean> {
  return withTransaction(db, async (tx) => {
    if (options.wait) await tx.execute(sql`SELECT pg_advisory_xact_lock(${ROLLUP_LOCK})`);
    else {
      const locked = await tx.execute<{ locked: boolean }>(sql`SELECT pg_try_advisory_xact_lock(${ROLLUP_LOCK}) AS locked`);
      if (!locked.rows[0]!.locked) return false;
    }
    const [state] = await tx.select().from(usageRollupState);
    const hours = state
      ? await tx.execute<{ hour: Date }>(sql`
          SELECT DISTINCT date_trunc('hour', created_at) AS hour FROM jobs
           WHERE updated_at >= ${state.refreshedAt}::timestamptz - ${OVERLAP} ORDER BY 1`)
      : await tx.execute<{ hour: Date }>(sql`
          SELECT generate_series(date_trunc('hour', min(created_at)), date_trunc('hour', max(created_at)), interval '1 hour') AS hour
            FROM jobs HAVING count(*) > 0`);
    const ranges = contiguousRanges(hours.rows.map((row) => new Date(row.hour).getTime()));
    for (const range of ranges) await recompute(tx, range.from, range.to);
    for (const day of new Set(ranges.flatMap((range) => daysOf(range)))) await sumTeamDay(tx, day);
    await tx.execute(sql`
      INSERT INTO ${usageRollupState} (id, refreshed_at) VALUES (1, now())
      ON CONFLICT (id) DO UPDATE SET refreshed_at = excluded.refreshed_at`);
    return true;
  });
}

const refreshing = new WeakMap<object, Promise<unknown>>();

/**
 * Starts a refresh without waiting for it, unless this instance runs one already or the last one is recent: reads
 * never wait for aggregation (they sum what changed since themselves), and the refresh keeps that part small.
 */
function refreshBehind(db: DbOrTx, log: Logger, refreshedAt: Date | null): void {
  if (refreshing.has(db) || (refreshedAt && Date.now() - refreshedAt.getTime() < REFRESH_BEHIND_MS)) return;
  const refresh = refreshUsageRollups(db, { wait: false })
    .catch((error: unknown) => log.warn({ err: error }, 'usage rollup refresh failed; the next report read retries'))
    .finally(() => refreshing.delete(db));
  refreshing.set(db, refresh);
}

/**
 * What a report reads, exact as of now: the hours of `range` holding a job changed since the last refresh (every
 * hour with jobs when there was none yet), summed afresh from their jobs for one dimension (and key), without
 * writing; the other hours are read from the rollups as they are. Starts a refresh behind when anything changed.
 */
export async function unrolledHours(
  db: DbOrTx,
  log: Logger,
  dimension: Dimension,
  range: TimeRange,
  key?: string,
): Promise<{ hours: Set<number>; rows: RollupRow[] }> {
  const [state] = await db.select().from(usageRollupState);
  // Two statements, so the planner sees the cutoff and reads the few changed jobs by jobs_updated_idx.
  const found = await db.execute<{ hour: Date }>(sql`
    SELECT DISTINCT date_trunc('hour', created_at) AS hour FROM jobs
     WHERE created_at >= ${range.from} AND created_at < ${range.to}
       ${state ? sql`AND updated_at >= ${state.refreshedAt}::timestamptz - ${OVERLAP}` : sql``}
       ${dimension === 'team' && key !== undefined ? sql`AND team_id = ${key}` : sql``}`);
  const refreshedAt = state?.refreshedAt ?? null;
  const hours = found.rows.map((row) => new Date(row.hour).getTime());
  if (hours.length === 0) return { hours: new Set(), rows: [] };
  refreshBehind(db, log, refreshedAt);
  const rows: RollupRow[] = [];
  for (const part of contiguousRanges(hours.sort((a, b) => a - b))) {
    const jobs = await jobsOf(db, part.from, part.to, dimension === 'team' ? key : undefined);
    rows.push(...rollUp(jobs).filter((row) => row.dimension === dimension && (key === undefined || row.key === key)));
  }
  return { hours: new Set(hours), rows };
}

/** Consecutive hours grouped into [from, to) ranges of at most CHUNK_HOURS hours. */
export function contiguousRanges(hours: number[]): { from: number; to: number }[] {
  const ranges: { from: number; to: number }[] = [];
  for (const hour of hours) {
    const last = ranges.at(-1);
    if (last && last.to === hour && (last.to - last.from) / HOUR_MS < CHUNK_HOURS) last.to = hour + HOUR_MS;
    else ranges.push({ from: hour, to: hour + HOUR_MS });
  }
  return ranges;
}

/** The starts (ms) of the UTC days a range of hours touches. */
function daysOf(range: { from: number; to: number }): number[] {
  const days: number[] = [];
  for (let day = Math.floor(range.from / DAY_MS) * DAY_MS; day < range.to; day += DAY_MS) days.push(day);
  return days;
}

/** The team_day rows of one UTC day, summed again from that day's team rows. */
async function sumTeamDay(db: DbOrTx, dayMs: number): Promise<void> {
  const from = new Date(dayMs);
  const to = new Date(dayMs + DAY_MS);
  await db.execute(sql`DELETE FROM usage_rollups WHERE dimension = ${TEAM_DAY} AND bucket >= ${from} AND bucket < ${to}`);
  await db.execute(sql`
    INSERT INTO usage_rollups (dimension, key, bucket, jobs, calls, failed_calls, prompt_tokens, completion_tokens, total_tokens, cost_usd,
                               credits_micro, latency_sum_ms, latency_count, ttft_sum_ms, ttft_count)
    SELECT ${TEAM_DAY}, key, ${from}::timestamptz, sum(jobs), sum(calls), sum(failed_calls), sum(prompt_tokens), sum(completion_tokens),
           sum(total_tokens), sum(cost_usd), sum(credits_micro), sum(latency_sum_ms), sum(latency_count), sum(ttft_sum_ms), sum(ttft_count)
      FROM usage_rollups
     WHERE dimension = 'team' AND bucket >= ${from} AND bucket < ${to}
     GROUP BY key`);
}

type JobCallRow = {
  job_id: string;
  bucket: string;
  team_id: string;
  job_type: string;
  charged_micro: string | null;
  model: string | null;
  status: RollupCall['status'] | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  total_tokens: number | null;
  cost_usd: string | null;
  latency_ms: number | null;
  ttft_ms: number | null;
}

/**
 * The jobs created in [from, to) with their calls in order (of one team when given), as the rollups sum them: the
 * cost follows the jobs of those hours, not the size of the tables.
 */
async function jobsOf(db: DbOrTx, fromMs: number, toMs: number, teamId?: string): Promise<RollupJob[]> {
  const result = await db.execute<JobCallRow>(sql`
    SELECT j.id AS job_id, (extract(epoch FROM date_trunc('hour', j.created_at)) * 1000)::bigint::text AS bucket, j.team_id, j.job_type,
           j.charged_micro::text AS charged_micro, coalesce(c.model_used, c.model_requested) AS model, c.status, c.prompt_tokens,
           c.completion_tokens, c.total_tokens, c.cost_usd::text AS cost_usd, c.latency_ms, c.ttft_ms
      FROM jobs j
      -- OFFSET 0 keeps the calls a per-job index lookup (llm_calls_job_idx): a hash join would scan every call there is.
      LEFT JOIN LATERAL (
        SELECT id, created_at, model_used, model_requested, status, prompt_tokens, completion_tokens, total_tokens, cost_usd, latency_ms, ttft_ms
          FROM llm_calls WHERE job_id = j.id OFFSET 0) c ON true
     WHERE j.created_at >= ${new Date(fromMs)} AND j.created_at < ${new Date(toMs)}
       ${teamId === undefined ? sql`` : sql`AND j.team_id = ${teamId}`}
     ORDER BY j.id, c.created_at, c.id`);
  const jobs: RollupJob[] = [];
  let current: (RollupJob & { id: string }) | undefined;
  for (const row of result.rows) {
    if (current?.id !== row.job_id) {
      current = { id: row.job_id, bucket: Number(row.bucket), teamId: row.team_id, jobType: row.job_type, chargedMicro: Number(row.charged_micro ?? 0), calls: [] };
      jobs.push(current);
    }
    if (row.status === null) continue;
    current.calls.push({
      model: row.model ?? '',
      status: row.status,
      promptTokens: row.prompt_tokens ?? 0,
      completionTokens: row.completion_tokens ?? 0,
      totalTokens: row.total_tokens ?? 0,
      costUsd: row.cost_usd ?? '0',
      latencyMs: row.latency_ms,
      ttftMs: row.ttft_ms,
    });
  }
  return jobs;
}

async function recompute(db: DbOrTx, fromMs: number, toMs: number): Promise<void> {
  const from = new Date(fromMs);
  const to = new Date(toMs);
  const jobs = await jobsOf(db, fromMs, toMs);
  await db.delete(usageRollups).where(and(ne(usageRollups.dimension, TEAM_DAY), gte(usageRollups.bucket, from), lt(usageRollups.bucket, to)));
  const rows = rollUp(jobs).map((row) => ({
    dimension: row.dimension,
    key: row.key,
    bucket: new Date(row.bucket),
    jobs: row.jobs,
    calls: row.calls,
    failedCalls: row.failedCalls,
    promptTokens: row.promptTokens,
    completionTokens: row.completionTokens,
    totalTokens: row.totalTokens,
    costUsd: costUsdOf(row.costPico),
    creditsMicro: row.creditsMicro,
    latencySumMs: row.latencySumMs,
    latencyCount: row.latencyCount,
    ttftSumMs: row.ttftSumMs,
    ttftCount: row.ttftCount,
    latencyHistogram: row.latencyHistogram,
    ttftHistogram: row.ttftHistogram,
  }));
  for (let start = 0; start < rows.length; start += 1000) await db.insert(usageRollups).values(rows.slice(start, start + 1000));
}
