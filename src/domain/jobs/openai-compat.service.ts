import type { ChatCompletionRequest, CreateAndCallRequest, ModelList } from '../../contracts/index.js';
import type { StreamSink, WatchClient } from '../../sse/sink.js';
import { type ServiceContext } from '../context.js';
import { teamOf } from '../actor.js';
import { createAndCall, createAndCallStream } from './create-and-call.service.js';
import { modelsOf } from '../tenancy/model-groups.repository.js';
import { listTeamModelGroups } from '../tenancy/teams.repository.js';

export const CHAT_COMPLETION_JOB_TYPE = 'chat_completion';

/** An OpenAI request is a job of its own, billed like create-and-call. */
function asJobRequest(ctx: ServiceContext, request: ChatCompletionRequest): CreateAndCallRequest {
  const { stream: _stream, ...params } = request;
  return { ...params, team_id: teamOf(ctx.actor), job_type: CHAT_COMPLETION_JOB_TYPE };
}

export async function chatCompletion(ctx: ServiceContext, request: ChatCompletionRequest, watchClient: WatchClient) {
  const result = await createAndCall(ctx, asJobRequest(ctx, request), watchClient);
  return { response: result.response, jobId: result.job_id, callId: result.call_id };
}

export async function chatCompletionStream(ctx: ServiceContext, request: ChatCompletionRequest, sink: StreamSink) {
  return createAndCallStream(ctx, asJobRequest(ctx, request), sink);
}

/** The team's model groups and the models inside them: every name `model` may take. */
export async function listTeamModels(ctx: ServiceContext): Promise<ModelList> {
  const groups = await listTeamModelGroups(ctx.db, teamOf(ctx.actor));
  const models = await modelsOf(ctx.db, groups);
  const ids = new Set<string>(groups);
  for (const group of groups) for (const model of models.get(group) ?? []) ids.add(model.model_name);
  return { object: 'list', data: [...ids].map((id) => ({ id, object: 'model', created: 0, owned_by: 'creditgate' })) };
}
