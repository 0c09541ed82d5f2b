import type { CreateAndCallRequest, CreateAndCallResponse, LlmCallResponse } from '../../contracts/index.js';
import type { StreamSink, WatchClient } from '../../sse/sink.js';
import type { FinalJobStatus } from '../billing/billing-policy.models.js';
import { openOneShot, settleOneShot, settleJob, type OpenedOneShot, type RecordedCall } from '../billing/settlement.js';
import { type ServiceContext } from '../context.js';
import { actorLabel, assertTeamAccess, teamOf } from '../actor.js';
import { callUsageOf } from '../llm/call-record.js';
import { prepareCall, relayCompletion, relayStream, toAppError, type CallHandle, type CallOutcome, type CallStatus } from '../llm/call-relay.js';
import type { CallRecord } from '../llm/calls.repository.js';
import { resolveModelRoute } from '../llm/model-routing.js';
import type { StreamedCall } from '../llm/stream-end.js';
import { loadTeamSnapshot } from '../tenancy/team-snapshot.js';
import type { TeamRow } from '../tenancy/teams.repository.js';
import { completionOf, planJob } from './jobs.service.js';

/** How a job that exists for one call ends, by how that call ended; what it pays follows from what it delivered. */
export const JOB_STATUS_OF_CALL: Record<CallStatus, FinalJobStatus> = {
  success: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
};

interface OneShot extends OpenedOneShot {
  team: TeamRow;
  call: CallHandle;
  keyId: string | null;
}

/**
 * The job of a one-shot request with its hold and its call, written in one statement (see openOneShot); the
 * model is resolved first, so a model the team may not use is refused without touching credits.
 */
async function openOneShotJob(ctx: ServiceContext, input: CreateAndCallRequest, streamed: boolean): Promise<OneShot> {
  assertTeamAccess(ctx.actor, input.team_id);
  const { team, ...snapshot } = await loadTeamSnapshot(ctx.db, ctx.caches.teams, teamOf(ctx.actor));
  const route = resolveModelRoute({ team, ...snapshot }, input.model);
  const job = planJob(
    ctx,
    team,
    {
      team_id: input.team_id,
      job_type: input.job_type,
      ...(input.user_id !== undefined && { user_id: input.user_id }),
      ...(input.job_metadata !== undefined && { metadata: input.job_metadata }),
    },
    true,
  );
  const prepared = prepareCall(job.id, job.teamId, route, input, streamed);
  return { team, call: prepared.handle, keyId: job.keyId, ...(await openOneShot(ctx, team, job, prepared)) };
}

/** An early-started call whose hold was refused: nothing was written, only an upstream request wasted (and aborted). */
function logRefusedEarlyHold(ctx: ServiceContext, shot: OneShot, error: unknown): never {
  ctx.log.warn({ team_id: shot.call.teamId, err: error }, 'a call started before its hold was written, and the hold failed; its upstream request was aborted');
  throw error;
}

/** Records the call and settles its job by how the call ended. */
async function recordAndSettle(ctx: ServiceContext, shot: OneShot, outcome: CallOutcome): Promise<RecordedCall> {
  const usage = await callUsageOf(shot.call, outcome);
  const job = { id: shot.call.jobId, teamId: shot.call.teamId, keyId: shot.keyId, holdMicro: await shot.held };
  return settleOneShot(ctx, shot.team, job, shot.call.callId, shot.admission, usage, JOB_STATUS_OF_CALL[outcome.status], actorLabel(ctx.actor));
}

/**
 * Create, call and complete in one request. A failed call ends its job `failed`, free unless the upstream produced
 * output for it; a client that left after the answer was made still pays for it.
 */
export async function createAndCall(ctx: ServiceContext, input: CreateAndCallRequest, watchClient: WatchClient): Promise<CreateAndCallResponse> {
  const shot = await openOneShotJob(ctx, input, false);
  const { outcome, completion } = await relayCompletion(ctx, shot.call, watchClient, shot.early ? shot.held : undefined).catch((error: unknown) =>
    logRefusedEarlyHold(ctx, shot, error),
  );
  const { record } = await recordAndSettle(ctx, shot, outcome);
  if (!completion) throw toAppError(outcome.error!);
  const settled = completionOf(await settleJob(ctx.db, { jobId: shot.call.jobId, teamId: shot.call.teamId, status: 'completed', actor: actorLabel(ctx.actor) }));
  return { ...callAnswer(shot.call, completion, record), job_id: shot.call.jobId, status: settled.status, costs: settled.costs };
}

/** The call part of a non-streamed answer: the upstream's completion and creditgate's record of it. */
export function callAnswer(call: CallHandle, completion: unknown, record: CallRecord): LlmCallResponse {
  return {
    call_id: call.callId,
    response: completion as LlmCallResponse['response'],
    metadata: {
      job_id: call.jobId,
      model_requested: call.route.requested,
      model_used: record.modelUsed ?? call.route.requested,
      prompt_tokens: record.promptTokens,
      completion_tokens: record.completionTokens,
      total_tokens: record.totalTokens,
      cost_usd: Number(record.costUsd),
      max_tokens: record.maxTokens,
      latency_ms: record.latencyMs,
    },
  };
}

/**
 * The streamed variant: open → relay → record and settle; the caller then ends the stream, so a client that saw
 * [DONE] sees the charge. A failure before the first chunk is a real HTTP error (thrown once the job is settled).
 */
export async function createAndCallStream(ctx: ServiceContext, input: CreateAndCallRequest, sink: StreamSink): Promise<StreamedCall> {
  const shot = await openOneShotJob(ctx, input, true);
  const outcome = await relayStream(ctx, shot.call, sink, {
    headers: { 'X-Job-Id': shot.call.jobId },
    ...(shot.early && { notBefore: shot.held }),
  }).catch((error: unknown) => logRefusedEarlyHold(ctx, shot, error));
  const { recorded } = await recordAndSettle(ctx, shot, outcome);
  if (!outcome.opened) throw toAppError(outcome.error!);
  return { jobId: shot.call.jobId, callId: shot.call.callId, error: outcome.error, recorded };
}
