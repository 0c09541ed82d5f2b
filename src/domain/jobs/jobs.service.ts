import type {
  CompleteJobRequest,
  CompleteJobResponse,
  CreateJobRequest,
  CreateJobResponse,
  Job,
  JobCosts,
  LlmCallSummary,
} from '../../contracts/index.js';
import type { DbOrTx } from '../../db/client.js';
import { AppError, notFound } from '../../lib/errors.js';
import { newId } from '../../lib/ids.js';
import { callsInProgress } from '../billing/billing.errors.js';
import { picoToUsd, usdToPico } from '../billing/pricing.models.js';
import { callsInFlight, openJob, settleJob, type NewJob, type Settlement, type SettledJob } from '../billing/settlement.js';
import { type ServiceContext } from '../context.js';
import { actorLabel, assertTeamAccess, teamScope } from '../actor.js';
import { microToCredits } from '../ledger/ledger.models.js';
import { findBalance } from '../ledger/ledger.repository.js';
import { listJobCalls, type LlmCallRow } from '../llm/calls.repository.js';
import { loadTeamSnapshot } from '../tenancy/team-snapshot.js';
import type { TeamRow } from '../tenancy/teams.repository.js';
import { findJob, isOpen, type JobRow } from './jobs.repository.js';

/**
 * Creates a job and holds its opening amount in the same statement, so N concurrent jobs of a team that can
 * afford K of them leave exactly K open and N-K refused with 402 before any upstream call.
 */
export async function createJob(
  ctx: ServiceContext,
  input: CreateJobRequest,
  options: {
    autoComplete?: boolean;
    /** The row of `input.team_id`, read before the caller's transaction (see loadTeamSnapshot). */
    team?: TeamRow;
  } = {},
): Promise<CreateJobResponse> {
  assertTeamAccess(ctx.actor, input.team_id);
  const team = options.team ?? (await loadTeamSnapshot(ctx.db, ctx.caches.teams, input.team_id)).team;
  const job = planJob(ctx, team, input, options.autoComplete ?? false);
  const opened = await openJob(ctx, team, job);
  return { job_id: job.id, status: 'pending', created_at: opened.createdAt.toISOString(), credits_reserved: microToCredits(opened.heldMicro) };
}

/** A new job as it will be written. */
export function planJob(ctx: ServiceContext, team: TeamRow, input: CreateJobRequest, autoComplete: boolean): NewJob {
  return {
    id: newId('job'),
    teamId: team.id,
    keyId: ctx.actor.kind === 'team' ? ctx.actor.keyId : null,
    jobType: input.job_type,
    userId: input.user_id ?? null,
    metadata: input.metadata ?? {},
    actor: actorLabel(ctx.actor),
    timeoutSeconds: ctx.config.JOB_TIMEOUT_SECONDS,
    autoComplete,
  };
}

export async function getJob(ctx: ServiceContext, jobId: string): Promise<Job> {
  const job = await findJob(ctx.db, jobId, teamScope(ctx.actor));
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
  const job = await findJob(ctx.db, jobId, teamScope(ctx.actor));
  if (!job) throw notFound('job', 'job_id');
  return presentCosts(ctx.db, job, await listJobCalls(ctx.db, jobId));
}

/**
 * The caller's report ends the job; what it is charged is what its calls delivered (see the billing policy), so
 * `failed` after output is charged like `completed` unless the operator waives failed jobs for the team.
 */
export async function completeJob(ctx: ServiceContext, jobId: string, input: CompleteJobRequest): Promise<CompleteJobResponse> {
  return settle(ctx, jobId, input.status, { metadata: input.metadata, errorMessage: input.error_message });
}

/** Ends a job as the team's key asks or as its one call ended; the answer is the settled job. */
export async function settle(
  ctx: ServiceContext,
  jobId: string,
  status: Settlement['status'],
  details: Pick<Settlement, 'metadata' | 'errorMessage'> = {},
): Promise<CompleteJobResponse> {
  return completionOf(await settleJob(ctx.db, { jobId, teamId: teamScope(ctx.actor), status, ...details, actor: actorLabel(ctx.actor) }));
}

const CANCEL_POLL_MS = 25;
const CANCEL_ROUNDS = 10;

/**
 * Cancels a job: its in-flight upstream requests are aborted wherever they run (this instance directly, others
 * through NOTIFY), then, once every call is recorded, the job ends `cancelled` and pays for what it delivered. A call
 * begun while the cancel ran is aborted in a next round (the settle refuses a job with a call in flight). A call on
 * an instance that died is recorded by the sweeper when its lease lapses, so a round waits up to a lease.
 * Cancelling twice answers the same.
 */
export async function cancelJob(ctx: ServiceContext, jobId: string): Promise<CompleteJobResponse> {
  const job = await findJob(ctx.db, jobId, teamScope(ctx.actor));
  if (!job) throw notFound('job', 'job_id');
  for (let round = 1; ; round++) {
    if (isOpen(job)) await abortCalls(ctx, jobId);
    try {
      return await settle(ctx, jobId, 'cancelled');
    } catch (error) {
      if (!(error instanceof AppError && error.reason === 'calls_in_progress') || round >= CANCEL_ROUNDS) throw error;
    }
  }
}

async function abortCalls(ctx: ServiceContext, jobId: string): Promise<void> {
  await ctx.inflight.cancel(jobId);
  const deadline = Date.now() + (ctx.leases.leaseSeconds + ctx.config.SWEEP_INTERVAL_SECONDS + 5) * 1000;
  while ((await callsInFlight(ctx.db, jobId)) > 0) {
    if (Date.now() > deadline) throw callsInProgress(jobId);
    await new Promise((resolve) => setTimeout(resolve, CANCEL_POLL_MS));
  }
}

export function completionOf({ job, calls }: SettledJob): CompleteJobResponse {
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
  let successful = 0;
  let failed = 0;
  let totalTokens = 0;
  let costPico = 0n;
  for (const call of calls) {
    if (call.status === 'success') successful++;
    else if (call.status !== 'in_progress') failed++;
    totalTokens += call.totalTokens;
    costPico += usdToPico(call.costUsd);
  }
  return {
    total_calls: calls.length,
    successful_calls: successful,
    failed_calls: failed,
    total_tokens: totalTokens,
    total_cost_usd: Number(picoToUsd(costPico)),
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
    delivered: call.delivered,
    max_tokens: call.maxTokens,
    latency_ms: call.latencyMs,
    ttft_ms: call.ttftMs,
    error: call.error,
    created_at: call.createdAt.toISOString(),
    completed_at: call.completedAt?.toISOString() ?? null,
  };
}
