import type { LlmCallRequest, LlmCallResponse } from '../../contracts/index.js';
import type { StreamSink, WatchClient } from '../../sse/sink.js';
import { recordCall, reserveCall, type PreparedCall } from '../billing/settlement.js';
import type { RateAdmission } from '../limits/rate-limiter.js';
import { type ServiceContext } from '../context.js';
import { actorLabel, teamOf } from '../actor.js';
import { callUsageOf } from '../llm/call-record.js';
import { prepareCall, relayCompletion, relayStream, toAppError } from '../llm/call-relay.js';
import { resolveModelRoute } from '../llm/model-routing.js';
import type { StreamedCall } from '../llm/stream-end.js';
import { loadTeamSnapshot } from '../tenancy/team-snapshot.js';
import type { TeamRow } from '../tenancy/teams.repository.js';
import { callAnswer } from './create-and-call.service.js';

/**
 * Calls within a job the team's app completes itself: reserve (the job's hold grows to the call's worst case,
 * or its caps bound it) → relay → record. The job is charged when it ends, for what its calls delivered.
 */

async function reserve(
  ctx: ServiceContext,
  jobId: string,
  request: LlmCallRequest,
  streamed: boolean,
): Promise<{ team: TeamRow; call: PreparedCall; admission: RateAdmission }> {
  const teamId = teamOf(ctx.actor);
  const snapshot = await loadTeamSnapshot(ctx.db, ctx.caches.teams, teamId);
  const call = prepareCall(jobId, teamId, resolveModelRoute(snapshot, request.model), request, streamed);
  const admission = await reserveCall(ctx, snapshot.team, call, actorLabel(ctx.actor));
  return { team: snapshot.team, call, admission };
}

export async function callInJob(ctx: ServiceContext, jobId: string, request: LlmCallRequest, watchClient: WatchClient): Promise<LlmCallResponse> {
  const { team, call, admission } = await reserve(ctx, jobId, request, false);
  const { outcome, completion } = await relayCompletion(ctx, call.handle, watchClient);
  const { record } = await recordCall(ctx, team, call.handle, admission, await callUsageOf(call.handle, outcome), actorLabel(ctx.actor));
  if (!completion) throw toAppError(outcome.error!);
  return callAnswer(call.handle, completion, record);
}

/** The streamed variant; the caller ends the stream once this returns (the call is recorded by then). */
export async function streamInJob(ctx: ServiceContext, jobId: string, request: LlmCallRequest, sink: StreamSink): Promise<StreamedCall> {
  const { team, call, admission } = await reserve(ctx, jobId, request, true);
  const outcome = await relayStream(ctx, call.handle, sink, { headers: { 'X-Job-Id': jobId } });
  const { recorded } = await recordCall(ctx, team, call.handle, admission, await callUsageOf(call.handle, outcome), actorLabel(ctx.actor));
  if (!outcome.opened) throw toAppError(outcome.error!);
  return { jobId, callId: call.handle.callId, error: outcome.error, recorded };
}
