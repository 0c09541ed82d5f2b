import { and, asc, eq, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { creditBalances, jobs, llmCalls } from '../../db/schema/index.js';
import { usdToPico } from '../billing/pricing.models.js';
import { ledgerChangeSql } from '../ledger/ledger.repository.js';

export type JobRow = typeof jobs.$inferSelect;
export type LlmCallRow = typeof llmCalls.$inferSelect;

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

/** Locks the team's balance row (NO KEY UPDATE: it does not conflict with foreign-key checks elsewhere). */
export async function lockBalance(tx: DbOrTx, teamId: string) {
  const [balance] = await tx.select().from(creditBalances).where(eq(creditBalances.teamId, teamId)).for('no key update');
  return balance;
}

export async function listJobCalls(db: DbOrTx, jobId: string): Promise<LlmCallRow[]> {
  return db.select().from(llmCalls).where(eq(llmCalls.jobId, jobId)).orderBy(asc(llmCalls.createdAt), asc(llmCalls.id));
}

export interface CallTotals {
  total: number;
  successful: number;
  failed: number;
  inProgress: number;
  totalTokens: number;
  costPico: bigint;
}

export function totalsOf(calls: LlmCallRow[]): CallTotals {
  const totals: CallTotals = { total: 0, successful: 0, failed: 0, inProgress: 0, totalTokens: 0, costPico: 0n };
  for (const call of calls) {
    totals.total++;
    if (call.status === 'success') totals.successful++;
    else if (call.status === 'in_progress') totals.inProgress++;
    else totals.failed++;
    totals.totalTokens += call.totalTokens;
    totals.costPico += usdToPico(call.costUsd);
  }
  return totals;
}

export async function touchJob(tx: DbOrTx, jobId: string, status?: JobRow['status']): Promise<void> {
  await tx
    .update(jobs)
    .set({ updatedAt: sql`now()`, ...(status && { status }) })
    .where(eq(jobs.id, jobId));
}

export interface NewJob {
  id: string;
  teamId: string;
  jobType: string;
  userId: string | null;
  metadata: Record<string, unknown>;
  holdMicro: number;
  actor: string;
}

export interface NewCall {
  id: string;
  streamed: boolean;
  modelRequested: string;
  requestMessages: unknown[];
  requestParams: Record<string, unknown>;
}

/**
 * Holds the job's price, creates the job and, for a one-shot request, its first call, in one statement: when the
 * team cannot afford the hold nothing at all is written and undefined comes back. One round trip, and the team's
 * balance row is locked only for that statement.
 */
export async function openJob(db: DbOrTx, job: NewJob, call?: NewCall): Promise<{ createdAt: Date } | undefined> {
  const callSql = call
    ? sql`, call AS (
        INSERT INTO ${llmCalls} (id, job_id, team_id, streamed, model_requested, request_messages, request_params)
        SELECT ${call.id}, ${job.id}, ${job.teamId}, ${call.streamed}, ${call.modelRequested},
               ${JSON.stringify(call.requestMessages)}::jsonb, ${JSON.stringify(call.requestParams)}::jsonb
          FROM job
      )`
    : sql``;
  const then = sql`, job AS (
      INSERT INTO ${jobs} (id, team_id, job_type, user_id, metadata, hold_micro, status)
      SELECT ${job.id}, ${job.teamId}, ${job.jobType}, ${job.userId}, ${JSON.stringify(job.metadata)}::jsonb, ${job.holdMicro}::bigint,
             ${call ? 'in_progress' : 'pending'}::job_status
        FROM entry
      RETURNING created_at
    )${callSql}
    SELECT created_at FROM job`;
  const result = await db.execute<{ created_at: string | Date }>(
    ledgerChangeSql(
      { teamId: job.teamId, entryType: 'hold', amountMicro: 0, heldDeltaMicro: job.holdMicro, jobId: job.id, reason: `hold for ${job.jobType} job`, actor: job.actor },
      then,
    ),
  );
  const row = result.rows[0];
  return row ? { createdAt: new Date(row.created_at) } : undefined;
}

export interface JobSettlement {
  status: JobRow['status'];
  /** What the job should cost; less is charged when the team has less, its hold included. */
  chargeMicro: number;
  errorMessage?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
  actor: string;
}

/**
 * Closes an open job and turns its hold into its charge (or releases it) in one autocommit statement: the job
 * row is locked by the statement itself and must still be open with the hold the caller saw, and the team's
 * balance row is locked only while the statement runs, never across a round trip to the application. Returns
 * undefined when the job changed meanwhile (settled by someone else, or its hold grew): the caller looks again.
 * The team's available credits right after are recorded, which makes the settle answer reproducible.
 */
export async function settleJobRow(
  db: DbOrTx,
  job: Pick<JobRow, 'id' | 'teamId' | 'holdMicro'>,
  settlement: JobSettlement,
  alsoRun?: SQL,
): Promise<JobRow | undefined> {
  const change = {
    teamId: job.teamId,
    entryType: settlement.chargeMicro > 0 ? ('charge' as const) : ('release' as const),
    ...(settlement.chargeMicro > 0 ? { chargeUpToMicro: settlement.chargeMicro } : { amountMicro: 0 }),
    heldDeltaMicro: -job.holdMicro,
    jobId: job.id,
    reason: `job ${settlement.status}`,
    actor: settlement.actor,
  };
  const stillOpen = sql`EXISTS (
    SELECT 1 FROM ${jobs} WHERE id = ${job.id} AND status IN ('pending', 'in_progress') AND hold_micro = ${job.holdMicro}::bigint
    FOR UPDATE)`;
  const then = sql`, settled AS (
      UPDATE ${jobs}
         SET status = ${settlement.status}::job_status,
             hold_micro = 0,
             charged_micro = -(SELECT amount_micro FROM entry),
             available_after_micro = (SELECT balance_after_micro - held_after_micro FROM entry),
             error_message = coalesce(${settlement.errorMessage ?? null}, error_message),
             metadata = metadata || ${JSON.stringify(settlement.metadata ?? {})}::jsonb,
             completed_at = now(),
             updated_at = now()
       WHERE id = ${job.id} AND EXISTS (SELECT 1 FROM entry)
      RETURNING *
    )
    SELECT * FROM settled`;
  const result = await db.execute<Record<string, unknown>>(ledgerChangeSql(change, then, stillOpen, alsoRun));
  const row = result.rows[0];
  return row ? jobFromRow(row) : undefined;
}

const date = (value: unknown) => (value === null || value === undefined ? null : new Date(value as string | Date));

function jobFromRow(row: Record<string, unknown>): JobRow {
  return {
    id: row.id as string,
    teamId: row.team_id as string,
    jobType: row.job_type as string,
    userId: row.user_id as string | null,
    status: row.status as JobRow['status'],
    metadata: row.metadata as Record<string, unknown>,
    holdMicro: Number(row.hold_micro),
    chargedMicro: row.charged_micro === null ? null : Number(row.charged_micro),
    availableAfterMicro: row.available_after_micro === null ? null : Number(row.available_after_micro),
    errorMessage: row.error_message as string | null,
    createdAt: date(row.created_at)!,
    updatedAt: date(row.updated_at)!,
    completedAt: date(row.completed_at),
  };
}
