import { and, gte, lt, sql } from 'drizzle-orm';
import { withTransaction, type DbOrTx } from '../../db/client.js';
import { usageRollups, usageRollupState } from '../../db/schema/index.js';
import { HOUR_MS } from './time-range.js';
import { costUsdOf, rollUp, type RollupCall, type RollupJob } from './usage-rollup.models.js';

/** Serialises refreshes across instances; readers wait for a running refresh and then see its result. */
const ROLLUP_LOCK = 7_301_002_014;
/**
 * A job updated by a transaction that began before a refresh but committed after it carries an updated_at older
 * than that refresh: each refresh looks this far behind the previous one so such a job is still seen.
 */
const OVERLAP = sql`interval '2 minutes'`;
/** Hours recomputed per statement pair: bounds the memory of a first refresh over months of jobs. */
const CHUNK_HOURS = 24;

/**
 * Brings the hourly usage rollups up to date: the hours whose jobs changed since the last refresh (created, called,
 * settled, expired; every such change bumps the job's updated_at) are recomputed whole from their jobs and calls,
 * inside one transaction under an advisory lock. The first refresh summarises every job there is.
 */
export async function refreshUsageRollups(db: DbOrTx): Promise<void> {
  await withTransaction(db, async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(${ROLLUP_LOCK})`);
    const [state] = await tx.select().from(usageRollupState);
    const hours = state
      ? await tx.execute<{ hour: Date }>(sql`
          SELECT DISTINCT date_trunc('hour', created_at) AS hour FROM jobs
           WHERE updated_at >= ${state.refreshedAt}::timestamptz - ${OVERLAP} ORDER BY 1`)
      : await tx.execute<{ hour: Date }>(sql`
          SELECT generate_series(date_trunc('hour', min(created_at)), date_trunc('hour', max(created_at)), interval '1 hour') AS hour
            FROM jobs HAVING count(*) > 0`);
    for (const range of contiguousRanges(hours.rows.map((row) => new Date(row.hour).getTime()))) {
      await recompute(tx, range.from, range.to);
    }
    await tx.execute(sql`
      INSERT INTO ${usageRollupState} (id, refreshed_at) VALUES (1, now())
      ON CONFLICT (id) DO UPDATE SET refreshed_at = excluded.refreshed_at`);
  });
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

async function recompute(db: DbOrTx, fromMs: number, toMs: number): Promise<void> {
  const from = new Date(fromMs);
  const to = new Date(toMs);
  const result = await db.execute<JobCallRow>(sql`
    SELECT j.id AS job_id, (extract(epoch FROM date_trunc('hour', j.created_at)) * 1000)::bigint::text AS bucket, j.team_id, j.job_type,
           j.charged_micro::text AS charged_micro, coalesce(c.model_used, c.model_requested) AS model, c.status, c.prompt_tokens,
           c.completion_tokens, c.total_tokens, c.cost_usd::text AS cost_usd, c.latency_ms, c.ttft_ms
      FROM jobs j LEFT JOIN llm_calls c ON c.job_id = j.id
     WHERE j.created_at >= ${from} AND j.created_at < ${to}
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
  await db.delete(usageRollups).where(and(gte(usageRollups.bucket, from), lt(usageRollups.bucket, to)));
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
