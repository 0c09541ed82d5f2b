import { ChatCompletion, ChatCompletionRequest, ModelList } from '../../contracts/index.js';
import { chatCompletion, chatCompletionStream, listTeamModels } from '../../domain/llm/openai-compat.service.js';
import { clientGone, createSseSink } from '../sse-response.js';
import { defineRoute, streamedAnswer } from '../route.js';

const tags = ['OpenAI-compatible'];

export const openAiRoutes = [
  defineRoute({
    method: 'post',
    path: '/v1/chat/completions',
    auth: 'team',
    summary: 'OpenAI Chat Completions (stream or not) with a team virtual key; each request is a billed job',
    tags,
    body: ChatCompletionRequest,
    idempotent: 'long',
    response: {
      schema: ChatCompletion,
      description: 'a chat.completion, or with `stream: true` a text/event-stream of chat.completion.chunk ending with [DONE]',
    },
    errors: [402, 429, 502, 504],
    handler: async ({ ctx, body, req, res, answered }) => {
      if (body.stream) {
        const beforeDone = answered && ((callId: string) => answered(streamedAnswer(callId)));
        return streamedAnswer((await chatCompletionStream(ctx, body, createSseSink(req, res), beforeDone)).call_id);
      }
      const { response, jobId, callId } = await chatCompletion(ctx, body, clientGone(res));
      res.setHeader('X-Job-Id', jobId);
      res.setHeader('X-Call-Id', callId);
      return response;
    },
  }),
  defineRoute({
    method: 'get',
    path: '/v1/models',
    auth: 'team',
    summary: "The models this team's key may use (its model groups and their models)",
    tags,
    response: { schema: ModelList, description: 'OpenAI model list' },
    handler: ({ ctx }) => listTeamModels(ctx),
  }),
];
