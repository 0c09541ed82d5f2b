import type { CreateAndCallRequest, CreateAndCallResponse, JobStatus } from '../../contracts/index.js';
import type { StreamSink } from '../../sse/sink.js';
import { actorLabel, assertTeamAccess, teamOf, type ServiceContext } from '../context.js';
import { callLlm, prepareCall, streamLlmCall, type CallHandle, type CallStatus } from '../llm/llm-call.service.js';
import { resolveModelRoute } from '../llm/model-routing.js';
import { loadTeamSnapshot } from '../tenancy/team-snapshot.js';
import { openPlannedJob, planJob, settleJob, settleOneShotJob } from './jobs.service.js';

/** How a job that exists for one call ends, by how that call ended. */
export const JOB_STATUS_OF_CALL: Record<CallStatus, Exclude<JobStatus, 'pending' | 'in_progress'>> = {
  success: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
};

export function settle(ctx: ServiceContext, jobId: string, status: Exclude<JobStatus, 'pending' | 'in_progress'>, errorMessage?: string) {
  return settleJob(ctx.db, { jobId, teamId: teamOf(ctx.actor), status, errorMessage, actor: actorLabel(ctx.actor) });
}

/**
 * Runs `work` on a fresh job whose first call is created with it (one statement: hold, job, call); if `work`
 * throws, the job ends failed (its hold released) before the error goes on. The model is resolved first, so a
 * request for a model the team may not use is refused without touching credits.
 *
 * When this instance has just seen the team afford many such holds, `work` starts while the statement runs and
 * gets it as `admission`: the upstream is contacted at once (its first token takes far longer than the hold), but
 * nothing reaches the client or the call record before the hold is written, and a refused hold aborts the
 * upstream request. Near the end of a team's credits the hold is written first, as always.
 */
async function withJob<T>(
  ctx: ServiceContext,
  input: CreateAndCallRequest,
  streamed: boolean,
  work: (call: CallHandle, holdMicro: number, admission?: Promise<unknown>) => Promise<T>,
): Promise<T> {
  assertTeamAccess(ctx.actor, input.team_id);
  const snapshot = await loadTeamSnapshot(ctx.db, ctx.caches, teamOf(ctx.actor));
  const route = resolveModelRoute(snapshot, input.model);
  const job = planJob(ctx, snapshot.team, {
    team_id: input.team_id,
    job_type: input.job_type,
    ...(input.user_id !== undefined && { user_id: input.user_id }),
    ...(input.job_metadata !== undefined && { metadata: input.job_metadata }),
  });
  const { record, handle } = prepareCall(job.id, job.teamId, route, input, streamed);
  const minHolds = ctx.config.EARLY_UPSTREAM_MIN_HOLDS;
  const early = minHolds > 0 && (ctx.caches.availableCredits.get(job.teamId) ?? 0) >= job.holdMicro * minHolds;
  // Early, the hold statement is sent a tick later: the upstream request, made in `work`'s first synchronous
  // steps, reaches its socket in that tick, so the database write does not delay it.
  const opening = early
    ? new Promise((resolve) => process.nextTick(resolve)).then(() => openPlannedJob(ctx, job, record))
    : openPlannedJob(ctx, job, record);
  if (early) opening.catch(() => undefined); // rejections are handled by `work`, which may not await it yet
  else await opening;
  try {
    return await work(handle, job.holdMicro, early ? opening : undefined);
  } catch (error) {
    // A refused early hold wrote nothing: there is no job to end, only an upstream request that was wasted.
    if (early && !(await opening.then(() => true, () => false))) {
      ctx.log.warn({ team_id: job.teamId, err: error }, 'a call started before its hold was written, and the hold failed; its upstream request was aborted');
      throw error;
    }
    await settle(ctx, job.id, 'failed', error instanceof Error ? error.message : 'failed').catch((settleError: unknown) =>
      ctx.log.error({ err: settleError, job_id: job.id }, 'could not end the job of a failed call; the sweeper will'),
    );
    throw error;
  }
}

/** Create, call and complete in one request; nothing is charged when the upstream fails. */
export async function createAndCall(ctx: ServiceContext, input: CreateAndCallRequest, signal: AbortSignal): Promise<CreateAndCallResponse> {
  return withJob(ctx, input, false, async (call, _holdMicro, admission) => {
    const result = await callLlm(ctx, call, signal, admission);
    const completion = await settle(ctx, call.jobId, 'completed');
    return { ...result, job_id: call.jobId, status: completion.status, costs: completion.costs };
  });
}

/**
 * The streamed variant: the job is settled after the last chunk and before [DONE], so a client that saw [DONE]
 * sees the charge. A call that failed ends the job failed (nothing charged); a client that left ends it
 * cancelled (charged only in the consumption modes, for what was used).
 */
export async function createAndCallStream(
  ctx: ServiceContext,
  input: CreateAndCallRequest,
  sink: StreamSink,
  beforeDone?: (callId: string) => Promise<void>,
): Promise<{ job_id: string; call_id: string }> {
  return withJob(ctx, input, true, async (call, holdMicro, admission) => {
    await streamLlmCall(ctx, call, sink, {
      headers: { 'X-Job-Id': call.jobId },
      ...(admission && { admission }),
      recordAndSettle: (outcome, record) =>
        settleOneShotJob(ctx, { id: call.jobId, teamId: call.teamId, holdMicro }, call, record, JOB_STATUS_OF_CALL[outcome.status], outcome.error?.message),
      ...(beforeDone && { beforeDone: () => beforeDone(call.callId) }),
    });
    return { job_id: call.jobId, call_id: call.callId };
  });
}
