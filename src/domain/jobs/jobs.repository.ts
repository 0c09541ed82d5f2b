import { and, eq, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { jobs, llmCalls } from '../../db/schema/index.js';

export type JobRow = typeof jobs.$inferSelect;

export const OPEN_JOB_STATUSES = ['pending', 'in_progress'] as const;

export function isOpen(job: Pick<JobRow, 'status'>): boolean {
  return (OPEN_JOB_STATUSES as readonly string[]).includes(job.status);
}

/** Locks the job row for the rest of the transaction: calls and settlement of one job never interleave. */
export async function lockJob(tx: DbOrTx, jobId: string, teamId?: string): Promise<JobRow | undefined> {
  const [job] = await tx
    .select()
    .from(jobs)
    .where(and(eq(jobs.id, jobId), teamId ? eq(jobs.teamId, teamId) : undefined))
    .for('update');
  return job;
}

export async function findJob(db: DbOrTx, jobId: string, teamId?: string): Promise<JobRow | undefined> {
  const [job] = await db
    .select()
    .from(jobs)
    .where(and(eq(jobs.id, jobId), teamId ? eq(jobs.teamId, teamId) : undefined));
  return job;
}

/** A job is in_progress exactly while one of its calls is in flight; when the last one ends it is pending again. */
export async function markJobActivity(tx: DbOrTx, jobId: string): Promise<void> {
  await tx
    .update(jobs)
    .set({
      updatedAt: sql`now()`,
      status: sql`CASE WHEN EXISTS (SELECT 1 FROM ${llmCalls} WHERE job_id = ${jobId} AND status = 'in_progress')
                       THEN 'in_progress' ELSE 'pending' END::job_status`,
    })
    .where(and(eq(jobs.id, jobId), sql`${jobs.status} IN ('pending', 'in_progress')`));
}

const date = (value: unknown) => (value === null || value === undefined ? null : new Date(value as string | Date));

/** A job row from a raw statement's result (snake_case columns). */
export function jobFromRow(row: Record<string, unknown>): JobRow {
  return {
    id: row.id as string,
    teamId: row.team_id as string,
    jobType: row.job_type as string,
    keyId: row.key_id as string | null,
    userId: row.user_id as string | null,
    status: row.status as JobRow['status'],
    metadata: row.metadata as Record<string, unknown>,
    holdMicro: Number(row.hold_micro),
    chargedMicro: row.charged_micro === null ? null : Number(row.charged_micro),
    availableAfterMicro: row.available_after_micro === null ? null : Number(row.available_after_micro),
    errorMessage: row.error_message as string | null,
    timeoutSeconds: Number(row.timeout_seconds),
    autoComplete: row.auto_complete as boolean,
    createdAt: date(row.created_at)!,
    updatedAt: date(row.updated_at)!,
    completedAt: date(row.completed_at),
  };
}
