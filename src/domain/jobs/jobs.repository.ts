import { and, asc, eq, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { CompiledStatement, type Placeholders } from '../../db/compiled-statement.js';
import { creditBalances, jobs, llmCalls } from '../../db/schema/index.js';
import { newId } from '../../lib/ids.js';
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

/** What a finished call is recorded as (its row in llm_calls). */
export interface CallRecord {
  status: 'success' | 'failed' | 'cancelled';
  modelUsed: string | null;
  responseContent: string | null;
  toolCalls: unknown[] | null;
  finishReason: string | null;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  usageSource: 'upstream' | 'estimated';
  costUsd: string;
  latencyMs: number;
  ttftMs: number | null;
  error: string | null;
}

interface CallRecordValues extends Record<string, unknown> {
  callId: string;
  callStatus: CallRecord['status'];
  modelUsed: string | null;
  responseContent: string | null;
  toolCalls: string | null;
  finishReason: string | null;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  usageSource: CallRecord['usageSource'];
  costUsd: string;
  latencyMs: number;
  ttftMs: number | null;
  callError: string | null;
}

function callRecordValues(callId: string, record: CallRecord): CallRecordValues {
  return {
    callId,
    callStatus: record.status,
    modelUsed: record.modelUsed,
    responseContent: record.responseContent,
    toolCalls: record.toolCalls ? JSON.stringify(record.toolCalls) : null,
    finishReason: record.finishReason,
    promptTokens: record.promptTokens,
    completionTokens: record.completionTokens,
    totalTokens: record.totalTokens,
    usageSource: record.usageSource,
    costUsd: record.costUsd,
    latencyMs: record.latencyMs,
    ttftMs: record.ttftMs,
    callError: record.error,
  };
}

function callRecordSql(v: Placeholders<CallRecordValues>): SQL {
  return sql`UPDATE ${llmCalls}
     SET status = ${v.callStatus}::llm_call_status, model_used = ${v.modelUsed}::text, response_content = ${v.responseContent}::text,
         tool_calls = ${v.toolCalls}::jsonb, finish_reason = ${v.finishReason}::text,
         prompt_tokens = ${v.promptTokens}::int, completion_tokens = ${v.completionTokens}::int, total_tokens = ${v.totalTokens}::int,
         usage_source = ${v.usageSource}::usage_source, cost_usd = ${v.costUsd}::numeric, latency_ms = ${v.latencyMs}::int,
         ttft_ms = ${v.ttftMs}::int, error = ${v.callError}::text, completed_at = now()
   WHERE id = ${v.callId}::text`;
}

const SAVE_CALL_RECORD = new CompiledStatement<CallRecordValues>('cg_save_call_record', callRecordSql);

export async function saveCallRecordRow(db: DbOrTx, callId: string, record: CallRecord): Promise<void> {
  await SAVE_CALL_RECORD.rows(db, callRecordValues(callId, record));
}

interface OpenJobValues extends Record<string, unknown> {
  entryId: string;
  teamId: string;
  holdMicro: number;
  reason: string;
  actor: string;
  jobId: string;
  jobType: string;
  userId: string | null;
  metadata: string;
  callId?: string;
  streamed?: boolean;
  modelRequested?: string;
  requestMessages?: string;
  requestParams?: string;
}

function openJobSql(v: Placeholders<OpenJobValues>, withCall: boolean): SQL {
  const callSql = withCall
    ? sql`, call AS (
        INSERT INTO ${llmCalls} (id, job_id, team_id, streamed, model_requested, request_messages, request_params)
        SELECT ${v.callId}::text, ${v.jobId}::text, ${v.teamId}::text, ${v.streamed}::boolean, ${v.modelRequested}::text,
               ${v.requestMessages}::jsonb, ${v.requestParams}::jsonb
          FROM job
      )`
    : sql``;
  const then = sql`, job AS (
      INSERT INTO ${jobs} (id, team_id, job_type, user_id, metadata, hold_micro, status)
      SELECT ${v.jobId}::text, ${v.teamId}::text, ${v.jobType}::text, ${v.userId}::text, ${v.metadata}::jsonb, ${v.holdMicro}::bigint,
             ${withCall ? sql`'in_progress'` : sql`'pending'`}::job_status
        FROM entry
      RETURNING created_at
    )${callSql}
    SELECT job.created_at, entry.balance_after_micro - entry.held_after_micro AS available_micro FROM job, entry`;
  const hold = { teamId: v.teamId, entryType: 'hold' as const, amountMicro: 0, heldDeltaMicro: v.holdMicro, jobId: v.jobId, reason: v.reason, actor: v.actor };
  return ledgerChangeSql({ ...hold, entryId: v.entryId }, then);
}

const OPEN_JOB = new CompiledStatement<OpenJobValues>('cg_open_job', (v) => openJobSql(v, false));
const OPEN_JOB_WITH_CALL = new CompiledStatement<OpenJobValues>('cg_open_job_with_call', (v) => openJobSql(v, true));

/**
 * Holds the job's price, creates the job and, for a one-shot request, its first call, in one statement: when the
 * team cannot afford the hold nothing at all is written and undefined comes back. One round trip, and the team's
 * balance row is locked only for that statement. Also answers what the team had available right after the hold.
 */
export async function openJob(db: DbOrTx, job: NewJob, call?: NewCall): Promise<{ createdAt: Date; availableMicro: number } | undefined> {
  const values: OpenJobValues = {
    entryId: newId('led'),
    teamId: job.teamId,
    holdMicro: job.holdMicro,
    reason: `hold for ${job.jobType} job`,
    actor: job.actor,
    jobId: job.id,
    jobType: job.jobType,
    userId: job.userId,
    metadata: JSON.stringify(job.metadata),
    ...(call && {
      callId: call.id,
      streamed: call.streamed,
      modelRequested: call.modelRequested,
      requestMessages: JSON.stringify(call.requestMessages),
      requestParams: JSON.stringify(call.requestParams),
    }),
  };
  const [row] = await (call ? OPEN_JOB_WITH_CALL : OPEN_JOB).rows<{ created_at: string | Date; available_micro: string | number }>(db, values);
  return row ? { createdAt: new Date(row.created_at), availableMicro: Number(row.available_micro) } : undefined;
}

export interface JobSettlement {
  status: JobRow['status'];
  /** What the job should cost; less is charged when the team has less, its hold included. */
  chargeMicro: number;
  errorMessage?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
  actor: string;
}

interface SettleValues extends Partial<CallRecordValues> {
  entryId: string;
  teamId: string;
  jobId: string;
  holdMicro: number;
  releasedMicro: number;
  chargeUpToMicro: number;
  reason: string;
  actor: string;
  status: JobRow['status'];
  errorMessage: string | null;
  metadata: string;
}

function settleSql(v: Placeholders<SettleValues>, charges: boolean, withCallRecord: boolean): SQL {
  const change = {
    teamId: v.teamId,
    entryType: charges ? ('charge' as const) : ('release' as const),
    ...(charges ? { chargeUpToMicro: v.chargeUpToMicro } : { amountMicro: 0 }),
    heldDeltaMicro: v.releasedMicro,
    jobId: v.jobId,
    reason: v.reason,
    actor: v.actor,
    entryId: v.entryId,
  };
  const stillOpen = sql`EXISTS (
    SELECT 1 FROM ${jobs} WHERE id = ${v.jobId}::text AND status IN ('pending', 'in_progress') AND hold_micro = ${v.holdMicro}::bigint
    FOR UPDATE)`;
  const then = sql`, settled AS (
      UPDATE ${jobs}
         SET status = ${v.status}::job_status,
             hold_micro = 0,
             charged_micro = -(SELECT amount_micro FROM entry),
             available_after_micro = (SELECT balance_after_micro - held_after_micro FROM entry),
             error_message = coalesce(${v.errorMessage}::text, error_message),
             metadata = metadata || ${v.metadata}::jsonb,
             completed_at = now(),
             updated_at = now()
       WHERE id = ${v.jobId}::text AND EXISTS (SELECT 1 FROM entry)
      RETURNING *
    )
    SELECT * FROM settled`;
  return ledgerChangeSql(change, then, stillOpen, withCallRecord ? callRecordSql(v as Placeholders<CallRecordValues>) : undefined);
}

const SETTLE_JOB = {
  charge: new CompiledStatement<SettleValues>('cg_settle_job_charge', (v) => settleSql(v, true, false)),
  release: new CompiledStatement<SettleValues>('cg_settle_job_release', (v) => settleSql(v, false, false)),
  chargeWithCall: new CompiledStatement<SettleValues>('cg_settle_job_charge_call', (v) => settleSql(v, true, true)),
  releaseWithCall: new CompiledStatement<SettleValues>('cg_settle_job_release_call', (v) => settleSql(v, false, true)),
};

/**
 * Closes an open job and turns its hold into its charge (or releases it) in one autocommit statement: the job
 * row is locked by the statement itself and must still be open with the hold the caller saw, and the team's
 * balance row is locked only while the statement runs, never across a round trip to the application. Returns
 * undefined when the job changed meanwhile (settled by someone else, or its hold grew): the caller looks again.
 * The team's available credits right after are recorded, which makes the settle answer reproducible. With
 * `call`, the statement also writes that call's record, whatever the job's state.
 */
export async function settleJobRow(
  db: DbOrTx,
  job: Pick<JobRow, 'id' | 'teamId' | 'holdMicro'>,
  settlement: JobSettlement,
  call?: { id: string; record: CallRecord },
): Promise<JobRow | undefined> {
  const charges = settlement.chargeMicro > 0;
  const statement = call ? (charges ? SETTLE_JOB.chargeWithCall : SETTLE_JOB.releaseWithCall) : charges ? SETTLE_JOB.charge : SETTLE_JOB.release;
  const [row] = await statement.rows<Record<string, unknown>>(db, {
    entryId: newId('led'),
    teamId: job.teamId,
    jobId: job.id,
    holdMicro: job.holdMicro,
    releasedMicro: -job.holdMicro,
    chargeUpToMicro: settlement.chargeMicro,
    reason: `job ${settlement.status}`,
    actor: settlement.actor,
    status: settlement.status,
    errorMessage: settlement.errorMessage ?? null,
    metadata: JSON.stringify(settlement.metadata ?? {}),
    ...(call && callRecordValues(call.id, call.record)),
  });
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
