import { and, asc, eq, inArray, lt, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { CompiledStatement, type Placeholders } from '../../db/compiled-statement.js';
import { llmCalls } from '../../db/schema/index.js';

/** The llm_calls table: a call is inserted in flight (with its reservation), renewed while it runs, then recorded. */

export type LlmCallRow = typeof llmCalls.$inferSelect;

/** A call about to leave, as its row is first written. */
export interface NewCall {
  id: string;
  streamed: boolean;
  modelRequested: string;
  requestMessages: unknown[];
  requestParams: Record<string, unknown>;
}

/** What a call reserved before it left: its prompt's token bound, its completion limit, and credits (consumption modes). */
export interface CallReservation {
  promptBoundTokens: number;
  maxTokens: number | null;
  reservedMicro: number;
}

/** What a finished call is recorded as (its row in llm_calls). */
export interface CallRecord extends CallUsage {
  costUsd: string;
}

/** What a finished call consumed and produced, before it is priced. */
export interface CallUsage {
  status: 'success' | 'failed' | 'cancelled';
  modelUsed: string | null;
  responseContent: string | null;
  toolCalls: unknown[] | null;
  finishReason: string | null;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  usageSource: 'upstream' | 'estimated';
  latencyMs: number;
  ttftMs: number | null;
  error: string | null;
  /** The upstream produced output for it: what makes the call billable. */
  delivered: boolean;
  /** The completion limit sent upstream. */
  maxTokens: number;
  /** The route's model that answered: the price to fall back on when the model the upstream names has none. */
  routedModel: string | null;
}

export interface CallRecordValues extends Record<string, unknown> {
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
  delivered: boolean;
  maxTokens: number;
}

export function callRecordValues(callId: string, record: CallRecord): CallRecordValues {
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
    delivered: record.delivered,
    maxTokens: record.maxTokens,
  };
}

/**
 * Records a call that is still in flight (and, with `onlyIf`, only if that holds too); a call the sweeper
 * abandoned meanwhile keeps its record. Returns the call's team and key, whose counts of calls in flight go down.
 */
export function callRecordSql(v: Placeholders<CallRecordValues>, onlyIf: SQL = sql`true`): SQL {
  return sql`UPDATE ${llmCalls}
     SET status = ${v.callStatus}::llm_call_status, model_used = ${v.modelUsed}::text, response_content = ${v.responseContent}::text,
         tool_calls = ${v.toolCalls}::jsonb, finish_reason = ${v.finishReason}::text,
         prompt_tokens = ${v.promptTokens}::int, completion_tokens = ${v.completionTokens}::int, total_tokens = ${v.totalTokens}::int,
         usage_source = ${v.usageSource}::usage_source, cost_usd = ${v.costUsd}::numeric, latency_ms = ${v.latencyMs}::int,
         ttft_ms = ${v.ttftMs}::int, error = ${v.callError}::text, delivered = ${v.delivered}::boolean, max_tokens = ${v.maxTokens}::int,
         completed_at = now()
   WHERE id = ${v.callId}::text AND status = 'in_progress' AND ${onlyIf}
   RETURNING team_id, key_id`;
}

const SAVE_CALL_RECORD = new CompiledStatement<CallRecordValues>('cg_save_call_record', callRecordSql);

/** The call's team and key when it was still in flight and is now recorded; undefined when it was not in flight. */
export async function saveCallRecordRow(db: DbOrTx, callId: string, record: CallRecord): Promise<{ teamId: string; keyId: string | null } | undefined> {
  const [row] = await SAVE_CALL_RECORD.rows<{ team_id: string; key_id: string | null }>(db, callRecordValues(callId, record));
  return row ? { teamId: row.team_id, keyId: row.key_id } : undefined;
}

export async function insertCall(db: DbOrTx, job: { id: string; teamId: string; keyId: string | null }, call: NewCall, reservation: CallReservation): Promise<void> {
  await db.insert(llmCalls).values({ ...call, ...reservation, jobId: job.id, teamId: job.teamId, keyId: job.keyId });
}

export async function listJobCalls(db: DbOrTx, jobId: string): Promise<LlmCallRow[]> {
  return db.select().from(llmCalls).where(eq(llmCalls.jobId, jobId)).orderBy(asc(llmCalls.createdAt), asc(llmCalls.id));
}

/** The columns of a job's calls that its reservations, caps and charge depend on (never their content). */
export type CallBilling = Pick<
  LlmCallRow,
  'status' | 'delivered' | 'totalTokens' | 'costUsd' | 'usageSource' | 'reservedMicro' | 'promptBoundTokens' | 'maxTokens'
>;

export async function listCallBilling(db: DbOrTx, jobId: string): Promise<CallBilling[]> {
  return db
    .select({
      status: llmCalls.status,
      delivered: llmCalls.delivered,
      totalTokens: llmCalls.totalTokens,
      costUsd: llmCalls.costUsd,
      usageSource: llmCalls.usageSource,
      reservedMicro: llmCalls.reservedMicro,
      promptBoundTokens: llmCalls.promptBoundTokens,
      maxTokens: llmCalls.maxTokens,
    })
    .from(llmCalls)
    .where(eq(llmCalls.jobId, jobId));
}

/**
 * One statement per instance and interval, whatever the number of calls: renews the lease of each call still running
 * here (`callIds`), skipping the rows another transaction has locked: those calls are being recorded right now (a
 * lapse needs `leaseSeconds` without a renewal, and the next one comes long before). Waiting for them would tie this
 * many-row update into the lock order of the group-commit batches that record calls one after the other: each
 * holding a row the other wanted, PostgreSQL resolves that only after deadlock_timeout (1 s), with every job of the
 * batch, and every one queued behind it, waiting meanwhile.
 */
export async function renewCallLeases(db: DbOrTx, callIds: string[]): Promise<void> {
  if (callIds.length === 0) return;
  const free = db
    .select({ id: llmCalls.id })
    .from(llmCalls)
    .where(and(inArray(llmCalls.id, callIds), eq(llmCalls.status, 'in_progress')))
    .for('no key update', { skipLocked: true });
  await db.update(llmCalls).set({ heartbeatAt: sql`now()` }).where(inArray(llmCalls.id, free));
}

/** The jobs that have a call whose instance stopped renewing its lease (it died). */
export async function jobsWithStaleCalls(db: DbOrTx, leaseSeconds: number): Promise<string[]> {
  const rows = await db
    .selectDistinct({ jobId: llmCalls.jobId })
    .from(llmCalls)
    .where(and(eq(llmCalls.status, 'in_progress'), lt(llmCalls.heartbeatAt, sql`now() - make_interval(secs => ${leaseSeconds})`)));
  return rows.map((row) => row.jobId);
}

/**
 * A job's calls whose instance stopped renewing their lease (it died): nobody can say what they consumed, so they
 * count as having delivered their worst case (usage_source `reserved`); the operator may refund. Run in the
 * transaction that locked the job. Returns their teams and keys.
 */
export async function abandonStaleCalls(tx: DbOrTx, jobId: string, leaseSeconds: number): Promise<{ teamId: string; keyId: string | null }[]> {
  const rows = await tx
    .update(llmCalls)
    .set({
      status: 'failed',
      error: 'abandoned: the instance running the call stopped; billed at its reservation',
      delivered: true,
      usageSource: 'reserved',
      promptTokens: sql`${llmCalls.promptBoundTokens}`,
      completionTokens: sql`coalesce(${llmCalls.maxTokens}, 0)`,
      totalTokens: sql`${llmCalls.promptBoundTokens} + coalesce(${llmCalls.maxTokens}, 0)`,
      completedAt: sql`now()`,
    })
    .where(
      and(
        eq(llmCalls.jobId, jobId),
        eq(llmCalls.status, 'in_progress'),
        lt(llmCalls.heartbeatAt, sql`now() - make_interval(secs => ${leaseSeconds})`),
      ),
    )
    .returning({ teamId: llmCalls.teamId, keyId: llmCalls.keyId });
  return rows;
}
