import { sql, type SQL } from 'drizzle-orm';
import type { Job, JobStatus, JobSummary, UpdateJobMetadataRequest } from '../../contracts/index.js';
import { decodeCursor, encodeCursor } from '../../lib/cursor.js';
import { notFound, validationFailed } from '../../lib/errors.js';
import { teamScope } from '../actor.js';
import type { ServiceContext } from '../context.js';
import { microToCredits } from '../ledger/ledger.models.js';
import { requireTeam } from '../tenancy/teams.repository.js';
import { getJob } from './jobs.service.js';

export interface JobListQuery {
  team_id?: string | undefined;
  status?: JobStatus | undefined;
  job_type?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
  limit: number;
  cursor?: string | undefined;
}

type JobListRow = {
  id: string;
  team_id: string;
  job_type: string;
  user_id: string | null;
  status: JobStatus;
  metadata: Record<string, unknown>;
  error_message: string | null;
  hold_micro: string;
  charged_micro: string | null;
  created_at: Date;
  completed_at: Date | null;
  created_text: string;
}

/**
 * Jobs newest first, filtered, a page at a time: keyset pagination on (created_at, id), which the jobs indexes
 * serve directly (by team, status or type), so a deep page costs what the first does. The calls of the page's jobs
 * are summed in one more indexed query.
 */
export async function listJobs(ctx: ServiceContext, query: JobListQuery) {
  if (query.team_id) await requireTeam(ctx.db, query.team_id);
  const filters: SQL[] = [];
  if (query.team_id) filters.push(sql`j.team_id = ${query.team_id}`);
  if (query.status) filters.push(sql`j.status = ${query.status}`);
  if (query.job_type) filters.push(sql`j.job_type = ${query.job_type}`);
  if (query.from) filters.push(sql`j.created_at >= ${query.from}::timestamptz`);
  if (query.to) filters.push(sql`j.created_at < ${query.to}::timestamptz`);
  if (query.cursor) {
    const cursor = decodeCursor(query.cursor);
    if (!cursor || cursor.length !== 2 || cursor.some((value) => value === null)) throw validationFailed('not a cursor of this list', 'cursor');
    filters.push(sql`(j.created_at, j.id) < (${cursor[0]}::timestamptz, ${cursor[1]}::text)`);
  }
  const result = await ctx.db.execute<JobListRow>(sql`
    SELECT j.id, j.team_id, j.job_type, j.user_id, j.status, j.metadata, j.error_message, j.hold_micro::text AS hold_micro,
           j.charged_micro::text AS charged_micro, j.created_at, j.completed_at, j.created_at::text AS created_text
      FROM jobs j
     ${filters.length > 0 ? sql`WHERE ${sql.join(filters, sql` AND `)}` : sql``}
     ORDER BY j.created_at DESC, j.id DESC
     LIMIT ${query.limit + 1}`);
  const rows = result.rows.slice(0, query.limit);
  const hasMore = result.rows.length > query.limit;
  const sums = await callSums(ctx, rows.map((row) => row.id));
  const last = rows.at(-1);
  return {
    data: rows.map((row) => presentJobSummary(row, sums.get(row.id))),
    has_more: hasMore,
    next_cursor: hasMore && last ? encodeCursor([last.created_text, last.id]) : null,
  };
}

async function callSums(ctx: ServiceContext, jobIds: string[]) {
  const sums = new Map<string, { calls: number; tokens: number; cost: number }>();
  if (jobIds.length === 0) return sums;
  const result = await ctx.db.execute<{ job_id: string; calls: string; tokens: string; cost: string }>(sql`
    SELECT job_id, count(*) AS calls, coalesce(sum(total_tokens), 0) AS tokens, coalesce(sum(cost_usd), 0)::text AS cost
      FROM llm_calls WHERE job_id IN (${sql.join(jobIds.map((id) => sql`${id}`), sql`, `)}) GROUP BY job_id`);
  for (const row of result.rows) sums.set(row.job_id, { calls: Number(row.calls), tokens: Number(row.tokens), cost: Number(row.cost) });
  return sums;
}

function presentJobSummary(row: JobListRow, sums: { calls: number; tokens: number; cost: number } | undefined): JobSummary {
  return {
    job_id: row.id,
    team_id: row.team_id,
    job_type: row.job_type,
    user_id: row.user_id,
    status: row.status,
    metadata: row.metadata,
    error_message: row.error_message,
    total_calls: sums?.calls ?? 0,
    total_tokens: sums?.tokens ?? 0,
    total_cost_usd: sums?.cost ?? 0,
    credits_reserved: microToCredits(Number(row.hold_micro)),
    credits_charged: microToCredits(Number(row.charged_micro ?? 0)),
    created_at: new Date(row.created_at).toISOString(),
    completed_at: row.completed_at ? new Date(row.completed_at).toISOString() : null,
  };
}

/**
 * Merges keys into a job's metadata (a key set to null is removed), open or settled. The job's updated_at is left
 * alone: it measures the job's activity, which its idle timeout is counted from.
 */
export async function updateJobMetadata(ctx: ServiceContext, jobId: string, input: UpdateJobMetadataRequest): Promise<Job> {
  const set = Object.fromEntries(Object.entries(input.metadata).filter(([, value]) => value !== null));
  const removed = Object.entries(input.metadata)
    .filter(([, value]) => value === null)
    .map(([key]) => key);
  const team = teamScope(ctx.actor);
  const updated = await ctx.db.execute(sql`
    UPDATE jobs SET metadata = (metadata || ${JSON.stringify(set)}::jsonb) - ARRAY(SELECT jsonb_array_elements_text(${JSON.stringify(removed)}::jsonb))
     WHERE id = ${jobId} ${team === undefined ? sql`` : sql`AND team_id = ${team}`} RETURNING id`);
  if (updated.rows.length === 0) throw notFound('job', 'job_id');
  return getJob(ctx, jobId);
}
