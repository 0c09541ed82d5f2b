import { eq, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { CompiledStatement, type Placeholders } from '../../db/compiled-statement.js';
import { jobs, llmCalls, teams } from '../../db/schema/index.js';
import { notFound } from '../../lib/errors.js';
import { newId } from '../../lib/ids.js';
import { jobFromRow, type JobRow } from '../jobs/jobs.repository.js';
import { ledgerChangeSql } from '../ledger/ledger.repository.js';
import { MICRO_PER_CREDIT } from '../ledger/ledger.models.js';
import { outboxSql } from '../webhooks/webhook-events.js';
import { callRecordSql, callRecordValues, type CallRecord, type CallRecordValues, type NewCall } from '../llm/calls.repository.js';
import type { BudgetSettings } from './billing-settings.models.js';

/**
 * The statements that move a job's credits. Each is one autocommit statement (or runs in the caller's
 * transaction): the team's balance row is locked only while it runs (or while its group commit's batch runs, see
 * GroupCommit), and it moves the money, writes the ledger entry and changes the job together or not at all.
 */

export interface NewJob {
  id: string;
  teamId: string;
  /** The key that opens it: its concurrency counts too. */
  keyId: string | null;
  jobType: string;
  userId: string | null;
  metadata: Record<string, unknown>;
  actor: string;
  /** Fixed when the job is created: every instance's sweeper uses this idle timeout. */
  timeoutSeconds: number;
  /** Ends with its call (one-shot requests); nobody completes it. */
  autoComplete: boolean;
}

/** The concurrency limits a new job or call is checked against (null: none). */
export interface ConcurrencyLimits {
  maxJobs: number | null;
  maxCalls: number | null;
  keyMaxJobs: number | null;
  keyMaxCalls: number | null;
}

/** A hold of `upToMicro`, or of everything available if that is less, but never less than `atLeastMicro`. */
export interface HoldRange {
  atLeastMicro: number;
  upToMicro: number;
}

interface OpenJobValues extends Record<string, unknown> {
  entryId: string;
  teamId: string;
  keyId: string | null;
  maxJobs: number | null;
  maxCalls: number | null;
  keyMaxJobs: number | null;
  keyMaxCalls: number | null;
  holdAtLeast: number;
  holdUpTo: number;
  reason: string;
  actor: string;
  jobId: string;
  jobType: string;
  userId: string | null;
  metadata: string;
  timeoutSeconds: number;
  autoComplete: boolean;
  callId?: string;
  streamed?: boolean;
  modelRequested?: string;
  requestMessages?: string;
  requestParams?: string;
  promptBoundTokens?: number;
  callReservesHold?: boolean;
  callMaxTokens?: number | null;
  callMaxTokensIfWholeHold?: number | null;
}

function openJobSql(v: Placeholders<OpenJobValues>, withCall: boolean): SQL {
  const callSql = withCall
    ? sql`, call AS (
        INSERT INTO ${llmCalls} (id, job_id, team_id, key_id, streamed, model_requested, request_messages, request_params,
                                 prompt_bound_tokens, reserved_micro, max_tokens)
        SELECT ${v.callId}::text, ${v.jobId}::text, ${v.teamId}::text, ${v.keyId}::text, ${v.streamed}::boolean, ${v.modelRequested}::text,
               ${v.requestMessages}::jsonb, ${v.requestParams}::jsonb, ${v.promptBoundTokens}::int,
               CASE WHEN ${v.callReservesHold}::boolean THEN entry.held_delta_micro ELSE 0 END,
               coalesce(${v.callMaxTokens}::int, CASE WHEN entry.held_delta_micro >= ${v.holdUpTo}::bigint THEN ${v.callMaxTokensIfWholeHold}::int END)
          FROM entry
      )`
    : sql``;
  const then = sql`, job AS (
      INSERT INTO ${jobs} (id, team_id, key_id, job_type, user_id, metadata, hold_micro, status, timeout_seconds, auto_complete)
      SELECT ${v.jobId}::text, ${v.teamId}::text, ${v.keyId}::text, ${v.jobType}::text, ${v.userId}::text, ${v.metadata}::jsonb, entry.held_delta_micro,
             ${withCall ? sql`'in_progress'` : sql`'pending'`}::job_status, ${v.timeoutSeconds}::int, ${v.autoComplete}::boolean
        FROM entry
      RETURNING created_at
    )${callSql}
    SELECT job.created_at, entry.held_delta_micro AS held_micro, entry.balance_after_micro - entry.held_after_micro AS available_micro
      FROM job, entry`;
  return ledgerChangeSql(
    {
      teamId: v.teamId,
      entryType: 'hold',
      amountMicro: 0,
      holdUpToMicro: v.holdUpTo,
      holdAtLeastMicro: v.holdAtLeast,
      jobId: v.jobId,
      reason: v.reason,
      actor: v.actor,
      entryId: v.entryId,
      counters: {
        jobs: 1,
        calls: withCall ? 1 : 0,
        keyId: v.keyId,
        maxJobs: v.maxJobs,
        maxCalls: v.maxCalls,
        keyMaxJobs: v.keyMaxJobs,
        keyMaxCalls: v.keyMaxCalls,
      },
    },
    then,
  );
}

/** Group-committed (see GroupCommit) by the team whose balance row each execution locks first. */
const byTeam = { groupBy: (values: { teamId: string }) => values.teamId };

const OPEN_JOB = new CompiledStatement<OpenJobValues>('cg_open_job', (v) => openJobSql(v, false), byTeam);
const OPEN_JOB_WITH_CALL = new CompiledStatement<OpenJobValues>('cg_open_job_with_call', (v) => openJobSql(v, true), byTeam);

export interface OpenedJob {
  createdAt: Date;
  /** What the hold came to, within its range. */
  heldMicro: number;
  /** What the team had available right after. */
  availableMicro: number;
}

/** The first call of a one-shot job, written with it; its reservation is the job's whole hold in the consumption modes. */
export interface FirstCall {
  call: NewCall;
  promptBoundTokens: number;
  reservesHold: boolean;
  /** Known up front in job_based mode and for an early start; otherwise it follows from the hold. */
  maxTokens: number | null;
  /**
   * The limit the whole hold (`hold.upToMicro`) pays for, written when the hold is whole; a partial hold's smaller
   * limit is written with the call's record. A call abandoned before its record shows it as its completion tokens.
   */
  maxTokensIfWholeHold: number | null;
}

/**
 * Holds the job's credits (within `hold`), creates the job and, for a one-shot request, its first call, in one
 * statement that also counts them against the team's and the key's concurrency limits; when not even
 * `hold.atLeastMicro` is available, or a limit is reached, nothing at all is written and undefined comes back.
 */
export async function insertJobWithHold(db: DbOrTx, job: NewJob, hold: HoldRange, limits: ConcurrencyLimits, first?: FirstCall): Promise<OpenedJob | undefined> {
  const values: OpenJobValues = {
    entryId: newId('led'),
    teamId: job.teamId,
    keyId: job.keyId,
    ...limits,
    holdAtLeast: hold.atLeastMicro,
    holdUpTo: hold.upToMicro,
    reason: `hold for ${job.jobType} job`,
    actor: job.actor,
    jobId: job.id,
    jobType: job.jobType,
    userId: job.userId,
    metadata: JSON.stringify(job.metadata),
    timeoutSeconds: job.timeoutSeconds,
    autoComplete: job.autoComplete,
    ...(first && {
      callId: first.call.id,
      streamed: first.call.streamed,
      modelRequested: first.call.modelRequested,
      requestMessages: JSON.stringify(first.call.requestMessages),
      requestParams: JSON.stringify(first.call.requestParams),
      promptBoundTokens: first.promptBoundTokens,
      callReservesHold: first.reservesHold,
      callMaxTokens: first.maxTokens,
      callMaxTokensIfWholeHold: first.maxTokensIfWholeHold,
    }),
  };
  const [row] = await (first ? OPEN_JOB_WITH_CALL : OPEN_JOB).rows<Record<string, string | number | Date>>(db, values);
  return row
    ? { createdAt: new Date(row.created_at!), heldMicro: Number(row.held_micro), availableMicro: Number(row.available_micro) }
    : undefined;
}

/**
 * Grows an open job's hold by an amount within `range` from the team's available credits (ledger entry and job row
 * together). Run inside the transaction that locked the job. Returns what was added, or undefined when not even
 * `range.atLeastMicro` was available.
 */
export async function extendJobHold(tx: DbOrTx, job: Pick<JobRow, 'id' | 'teamId'>, range: HoldRange, actor: string, reason: string): Promise<number | undefined> {
  const then = sql`, grown AS (
      UPDATE ${jobs} SET hold_micro = hold_micro + (SELECT held_delta_micro FROM entry) WHERE id = ${job.id} AND EXISTS (SELECT 1 FROM entry)
    )
    SELECT held_delta_micro FROM entry`;
  const change = {
    teamId: job.teamId,
    entryType: 'hold' as const,
    amountMicro: 0,
    holdUpToMicro: range.upToMicro,
    holdAtLeastMicro: range.atLeastMicro,
    jobId: job.id,
    reason,
    actor,
  };
  const result = await tx.execute<{ held_delta_micro: string }>(ledgerChangeSql(change, then));
  const row = result.rows[0];
  return row ? Number(row.held_delta_micro) : undefined;
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
  eventId: string;
  teamId: string;
  keyId: string | null;
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
    counters: { jobs: -1, calls: withCallRecord ? -1 : 0, keyId: v.keyId },
  };
  // A job is settled only as the process saw it: open, with this hold and, unless this statement records its one
  // call, with no call in flight (status pending: a job is in_progress exactly while a call is in flight). The job
  // row is read FOR UPDATE, which waits for a call being opened on it and re-checks its newest version; a check of
  // llm_calls here would read the statement's snapshot and miss a call begun meanwhile. The call this statement
  // records must still be in flight, its row locked (after the job's, as the sweeper locks them) and re-checked the
  // same way: a call the sweeper abandoned meanwhile is billed at its reservation by the general settle, never at a
  // record this statement would not write.
  const statuses = withCallRecord ? sql`'pending', 'in_progress'` : sql`'pending'`;
  const itsCallInFlight = withCallRecord
    ? sql` JOIN ${llmCalls} ON ${llmCalls.jobId} = ${jobs.id} AND ${llmCalls.id} = ${v.callId}::text AND ${llmCalls.status} = 'in_progress'`
    : sql``;
  const settleable = sql`EXISTS (
    SELECT 1 FROM ${jobs}${itsCallInFlight}
     WHERE ${jobs.id} = ${v.jobId}::text AND ${jobs.status} IN (${statuses}) AND ${jobs.holdMicro} = ${v.holdMicro}::bigint
    FOR UPDATE)`;
  // The one call is recorded with the settlement or not at all, so the count of calls in flight follows it.
  const recorded = withCallRecord ? sql`, recorded AS (${callRecordSql(v as Placeholders<CallRecordValues>, sql`EXISTS (SELECT 1 FROM moved)`)})` : sql``;
  const then = sql`${recorded}, settled AS (
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
    ), settled_event AS (${outboxSql(
      v.eventId,
      'job.settled',
      sql`SELECT team_id, jsonb_build_object(
            'job_id', id, 'team_id', team_id, 'job_type', job_type, 'status', status,
            'credits_charged', charged_micro::numeric / ${MICRO_PER_CREDIT}, 'credits_remaining', available_after_micro::numeric / ${MICRO_PER_CREDIT},
            'completed_at', to_char(completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')) AS payload
          FROM settled`,
    )})
    SELECT * FROM settled`;
  return ledgerChangeSql(change, then, settleable);
}

const SETTLE_JOB = {
  charge: new CompiledStatement<SettleValues>('cg_settle_job_charge', (v) => settleSql(v, true, false), byTeam),
  release: new CompiledStatement<SettleValues>('cg_settle_job_release', (v) => settleSql(v, false, false), byTeam),
  chargeWithCall: new CompiledStatement<SettleValues>('cg_settle_job_charge_call', (v) => settleSql(v, true, true), byTeam),
  releaseWithCall: new CompiledStatement<SettleValues>('cg_settle_job_release_call', (v) => settleSql(v, false, true), byTeam),
};

/**
 * Closes an open job and turns its hold into its charge (or releases it) in one autocommit statement: the job
 * row must still be open with the hold the caller saw and no call in flight, and the team's balance row is locked
 * only while the statement runs. Returns undefined when the job changed meanwhile (settled by someone else, its
 * hold grew, a call began): the caller looks again. The team's available credits right after are recorded, which
 * makes the settle answer reproducible. With `call`, the statement also writes that call's record when it settles.
 */
export async function settleJobRow(
  db: DbOrTx,
  job: Pick<JobRow, 'id' | 'teamId' | 'keyId' | 'holdMicro'>,
  settlement: JobSettlement,
  call?: { id: string; record: CallRecord },
): Promise<JobRow | undefined> {
  const charges = settlement.chargeMicro > 0;
  const statement = call ? (charges ? SETTLE_JOB.chargeWithCall : SETTLE_JOB.releaseWithCall) : charges ? SETTLE_JOB.charge : SETTLE_JOB.release;
  const [row] = await statement.rows<Record<string, unknown>>(db, {
    entryId: newId('led'),
    eventId: newId('evt'),
    teamId: job.teamId,
    keyId: job.keyId,
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

/** A team's billing settings as the database has them now (a settlement does not trust a cached copy). */
export async function findBudgetSettings(db: DbOrTx, teamId: string): Promise<BudgetSettings> {
  const [row] = await db
    .select({
      budgetMode: teams.budgetMode,
      creditsPerJob: teams.creditsPerJob,
      tokensPerCredit: teams.tokensPerCredit,
      creditsPerDollar: teams.creditsPerDollar,
      waiveFailedJobs: teams.waiveFailedJobs,
      maxCallsPerJob: teams.maxCallsPerJob,
      maxTokensPerJob: teams.maxTokensPerJob,
    })
    .from(teams)
    .where(eq(teams.id, teamId));
  if (!row) throw notFound('team', 'team_id');
  return row;
}
