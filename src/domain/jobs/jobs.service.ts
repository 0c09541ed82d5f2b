import { and, count, eq } from 'drizzle-orm';
import type {
  CompleteJobRequest,
  CompleteJobResponse,
  CreateJobRequest,
  CreateJobResponse,
  Job,
  JobCosts,
  JobStatus,
  LlmCallSummary,
} from '../../contracts/index.js';
import { sqlState, UNIQUE_VIOLATION, type DbOrTx } from '../../db/client.js';
import { llmCalls } from '../../db/schema/index.js';
import { AppError, conflict, notFound } from '../../lib/errors.js';
import { newId } from '../../lib/ids.js';
import { jobChargeMicro, picoToUsd, usdToPico, type JobUsage } from '../billing/pricing.models.js';
import { actorLabel, assertTeamAccess, teamOf, type ServiceContext } from '../context.js';
import { creditsToMicro, microToCredits } from '../ledger/ledger.models.js';
import { findBalance } from '../ledger/ledger.repository.js';
import { saveCallRecord } from '../llm/call-record.js';
import type { CallHandle } from '../llm/llm-call.service.js';
import { loadTeamSnapshot } from '../tenancy/team-snapshot.js';
import { requireTeam, type TeamRow } from '../tenancy/teams.repository.js';
import {
  findJob,
  isOpen,
  listJobCalls,
  openJob,
  settleJobRow,
  totalsOf,
  type CallRecord,
  type JobRow,
  type JobSettlement,
  type LlmCallRow,
  type NewCall,
  type NewJob,
} from './jobs.repository.js';

const insufficientCredits = (message: string) => new AppError('insufficient_credits', message, { reason: 'insufficient_credits' });

/** What a new job reserves: its price in job_based mode, a configured estimate in the consumption modes. */
export function holdForNewJob(team: TeamRow, consumptionHoldCredits: number): number {
  return team.budgetMode === 'job_based' ? creditsToMicro(team.creditsPerJob) : creditsToMicro(consumptionHoldCredits);
}

/**
 * Creates a job and holds its price in the same statement, so N concurrent jobs of a team that can afford K
 * of them leave exactly K running and N-K refused with 402 before any upstream call.
 */
export async function createJob(ctx: ServiceContext, input: CreateJobRequest): Promise<CreateJobResponse> {
  assertTeamAccess(ctx.actor, input.team_id);
  const { team } = await loadTeamSnapshot(ctx.db, ctx.caches, input.team_id);
  return openPlannedJob(ctx, planJob(ctx, team, input));
}

/** A new job as it will be written: its id and hold are known before the statement that opens it runs. */
export function planJob(ctx: ServiceContext, team: TeamRow, input: CreateJobRequest): NewJob {
  return {
    id: newId('job'),
    teamId: team.id,
    jobType: input.job_type,
    userId: input.user_id ?? null,
    metadata: input.metadata ?? {},
    holdMicro: holdForNewJob(team, ctx.config.CONSUMPTION_HOLD_CREDITS),
    actor: actorLabel(ctx.actor),
  };
}

/**
 * Writes a planned job with its hold (402 when the team cannot afford it), and with its first call for a one-shot
 * request, and notes what the team has left.
 */
export async function openPlannedJob(ctx: ServiceContext, job: NewJob, firstCall?: NewCall): Promise<CreateJobResponse> {
  const opened = await openJob(ctx.db, job, firstCall);
  if (!opened) {
    ctx.caches.availableCredits.delete(job.teamId);
    throw insufficientCredits(`team ${job.teamId} has fewer than the ${microToCredits(job.holdMicro)} credits a new job reserves`);
  }
  ctx.caches.availableCredits.set(job.teamId, opened.availableMicro);
  return { job_id: job.id, status: 'pending', created_at: opened.createdAt.toISOString(), credits_reserved: microToCredits(job.holdMicro) };
}

export async function getJob(ctx: ServiceContext, jobId: string): Promise<Job> {
  const job = await findJob(ctx.db, jobId, teamOf(ctx.actor));
  if (!job) throw notFound('job', 'job_id');
  const calls = await listJobCalls(ctx.db, jobId);
  return {
    job_id: job.id,
    team_id: job.teamId,
    job_type: job.jobType,
    user_id: job.userId,
    status: job.status,
    metadata: job.metadata,
    error_message: job.errorMessage,
    credits_reserved: microToCredits(job.holdMicro),
    created_at: job.createdAt.toISOString(),
    updated_at: job.updatedAt.toISOString(),
    completed_at: job.completedAt?.toISOString() ?? null,
    costs: await presentCosts(ctx.db, job, calls),
    calls: calls.map(presentCall),
  };
}

export async function getJobCosts(ctx: ServiceContext, jobId: string): Promise<JobCosts> {
  const job = await findJob(ctx.db, jobId, teamOf(ctx.actor));
  if (!job) throw notFound('job', 'job_id');
  return presentCosts(ctx.db, job, await listJobCalls(ctx.db, jobId));
}

export async function completeJob(ctx: ServiceContext, jobId: string, input: CompleteJobRequest): Promise<CompleteJobResponse> {
  return settleJob(ctx.db, {
    jobId,
    teamId: teamOf(ctx.actor),
    status: input.status,
    metadata: input.metadata,
    errorMessage: input.error_message,
    actor: actorLabel(ctx.actor),
  });
}

const CANCEL_WAIT_MS = 5_000;

/**
 * Cancels a job: its in-flight upstream requests are aborted wherever they run (this instance directly, others
 * through NOTIFY), their partial results are given a moment to be recorded, then the job ends `cancelled`
 * (in the consumption modes it pays for what it used). Cancelling twice answers the same.
 */
export async function cancelJob(ctx: ServiceContext, jobId: string): Promise<CompleteJobResponse> {
  const teamId = teamOf(ctx.actor);
  const job = await findJob(ctx.db, jobId, teamId);
  if (!job) throw notFound('job', 'job_id');
  if (isOpen(job)) {
    await ctx.inflight.cancel(jobId);
    await waitForCallsToEnd(ctx.db, jobId, CANCEL_WAIT_MS);
  }
  return settleJob(ctx.db, { jobId, teamId, status: 'cancelled', actor: actorLabel(ctx.actor) });
}

async function waitForCallsToEnd(db: DbOrTx, jobId: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const [open] = await db
      .select({ n: count() })
      .from(llmCalls)
      .where(and(eq(llmCalls.jobId, jobId), eq(llmCalls.status, 'in_progress')));
    if (!open?.n) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export interface Settlement {
  jobId: string;
  /** Restricts the job to this team (a team key's request); omitted by the server's own sweeper. */
  teamId?: string | undefined;
  status: Exclude<JobStatus, 'pending' | 'in_progress'>;
  metadata?: Record<string, unknown> | undefined;
  errorMessage?: string | undefined;
  actor: string;
}

/**
 * Ends a job exactly once: its hold is turned into a charge (completed; or, in the consumption modes, cancelled
 * and expired jobs pay for what they used) or released, and the job is closed, in one statement that also checks
 * the job is still as it was read (see settleJobRow). Every later settle with the same status answers the same
 * (the answer is rebuilt from the closed job); a different status is a conflict. The charge never exceeds what
 * the team has, the hold included.
 */
export async function settleJob(db: DbOrTx, settlement: Settlement): Promise<CompleteJobResponse> {
  for (let attempt = 0; attempt < SETTLE_ATTEMPTS; attempt++) {
    const job = await findJob(db, settlement.jobId, settlement.teamId);
    if (!job) throw notFound('job', 'job_id');
    const calls = await listJobCalls(db, job.id);
    if (!isOpen(job)) {
      if (job.status === settlement.status) return completionOf(job, calls);
      throw conflict(`job ${job.id} is already ${job.status}`, 'job_already_settled');
    }
    const totals = totalsOf(calls);
    if (totals.inProgress > 0 && (settlement.status === 'completed' || settlement.status === 'failed')) {
      throw conflict(`job ${job.id} has a call in progress; complete it after the call ends`, 'calls_in_progress');
    }
    const team = await requireTeam(db, job.teamId);
    const settled = await trySettle(db, job, {
      status: settlement.status,
      chargeMicro: chargeFor(team, settlement.status, totals),
      errorMessage: settlement.errorMessage,
      metadata: settlement.metadata,
      actor: settlement.actor,
    });
    if (settled) return completionOf(settled, calls);
  }
  throw conflict(`job ${settlement.jobId} kept changing while it was being settled; retry`, 'job_busy');
}

const SETTLE_ATTEMPTS = 5;

/** Completed jobs pay by their budget mode; in the consumption modes cancelled and expired ones pay for use too. */
function chargeFor(team: Pick<TeamRow, 'budgetMode' | 'creditsPerJob' | 'tokensPerCredit' | 'creditsPerDollar'>, status: Settlement['status'], totals: JobUsage): number {
  const billsUsage = status === 'completed' || (team.budgetMode !== 'job_based' && status !== 'failed');
  return billsUsage ? jobChargeMicro(team, totals) : 0;
}

function trySettle(db: DbOrTx, job: Pick<JobRow, 'id' | 'teamId' | 'holdMicro'>, settlement: JobSettlement, call?: { id: string; record: CallRecord }) {
  return settleJobRow(db, job, settlement, call).catch((error: unknown) => {
    // Another settle of the same job won the race: the ledger allows one settlement per job.
    if (sqlState(error) === UNIQUE_VIOLATION) return undefined;
    throw error;
  });
}

/**
 * Records the one call of a one-shot job and settles the job in a single statement, without reading back what
 * this process knows (the job's hold, its one call, the team's budget). If the job changed meanwhile (a cancel
 * got there first), the record is written alone and the general settle decides.
 */
export async function settleOneShotJob(
  ctx: ServiceContext,
  job: Pick<JobRow, 'id' | 'teamId' | 'holdMicro'>,
  call: CallHandle,
  record: CallRecord,
  status: Settlement['status'],
  errorMessage?: string,
): Promise<void> {
  const { team } = await loadTeamSnapshot(ctx.db, ctx.caches, job.teamId);
  const usage = { totalTokens: record.totalTokens, costPico: usdToPico(record.costUsd) };
  const actor = actorLabel(ctx.actor);
  const settlement = { status, chargeMicro: chargeFor(team, status, usage), errorMessage, actor };
  const settled = await trySettle(ctx.db, job, settlement, { id: call.callId, record });
  if (settled) return;
  await saveCallRecord(ctx, call, record);
  await settleJob(ctx.db, { jobId: job.id, teamId: job.teamId, status, errorMessage, actor });
}

function completionOf(job: JobRow, calls: LlmCallRow[]): CompleteJobResponse {
  return {
    job_id: job.id,
    status: job.status,
    completed_at: (job.completedAt ?? job.updatedAt).toISOString(),
    costs: costsOf(job, calls, job.availableAfterMicro ?? 0),
    calls: calls.map(presentCall),
  };
}

async function presentCosts(db: DbOrTx, job: JobRow, calls: LlmCallRow[]): Promise<JobCosts> {
  const balance = await findBalance(db, job.teamId);
  return costsOf(job, calls, balance ? balance.balanceMicro - balance.heldMicro : 0);
}

function costsOf(job: JobRow, calls: LlmCallRow[], availableMicro: number): JobCosts {
  const totals = totalsOf(calls);
  return {
    total_calls: totals.total,
    successful_calls: totals.successful,
    failed_calls: totals.failed,
    total_tokens: totals.totalTokens,
    total_cost_usd: Number(picoToUsd(totals.costPico)),
    credits_charged: microToCredits(job.chargedMicro ?? 0),
    credit_applied: (job.chargedMicro ?? 0) > 0,
    credits_remaining: microToCredits(availableMicro),
  };
}

export function presentCall(call: LlmCallRow): LlmCallSummary {
  return {
    call_id: call.id,
    status: call.status,
    streamed: call.streamed,
    model_requested: call.modelRequested,
    model_used: call.modelUsed,
    response_content: call.responseContent,
    tool_calls: (call.toolCalls as unknown[] | null) ?? null,
    finish_reason: call.finishReason,
    prompt_tokens: call.promptTokens,
    completion_tokens: call.completionTokens,
    total_tokens: call.totalTokens,
    usage_source: call.usageSource,
    cost_usd: Number(call.costUsd),
    latency_ms: call.latencyMs,
    ttft_ms: call.ttftMs,
    error: call.error,
    created_at: call.createdAt.toISOString(),
    completed_at: call.completedAt?.toISOString() ?? null,
  };
}
