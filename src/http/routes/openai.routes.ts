import { ChatCompletion, ChatCompletionRequest, ModelList } from '../../contracts/index.js';
import { chatCompletion, chatCompletionStream, listTeamModels } from '../../domain/jobs/openai-compat.service.js';
import { finishStream, SseSink } from '../sse-response.js';
import { defineRoute } from '../route.js';

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
        const sink = new SseSink(req, res, { writeTimeoutMs: ctx.config.STREAM_WRITE_TIMEOUT_MS });
        return finishStream(sink, await chatCompletionStream(ctx, body, sink), answered);
      }
      const { response, jobId, callId } = await chatCompletion(ctx, body, (listener) => req.clientWatch.onGone(listener));
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
