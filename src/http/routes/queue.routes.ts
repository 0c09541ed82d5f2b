import { QueueIdRequest, QueueItem, QueueParams, QueueSubmitRequest, QueueSubmitResponse } from '../../contracts/index.js';
import { cancelQueued, getQueued, streamQueued, submitQueued } from '../../domain/queue/queue.service.js';
import { SseSink } from '../sse-response.js';
import { defineRoute } from '../route.js';

const tags = ['Queue'];

export const queueRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/llm/complete',
    auth: 'team',
    summary: 'Submit a call to run server-side now; stream or cancel it later by its queueId',
    tags,
    body: QueueSubmitRequest,
    idempotent: 'long',
    response: { status: 202, schema: QueueSubmitResponse, description: 'accepted; the call is already running' },
    errors: [402, 404, 409, 429],
    handler: ({ ctx, body }) => submitQueued(ctx, body),
  }),
  defineRoute({
    method: 'post',
    path: '/api/llm/queue/stream',
    auth: 'team',
    summary: 'Attach to a queued call: `start`, every `chunk` from the beginning then live, and `done`',
    tags,
    body: QueueIdRequest,
    response: {
      description:
        'text/event-stream of `event: start` {queueId}, `event: chunk` {delta, finishReason, toolCallDeltas?}, `event: error` {error} and `event: done` {}',
      contentType: 'text/event-stream',
    },
    errors: [404],
    handler: async ({ ctx, body, req, res }) => {
      await streamQueued(ctx, body.queueId, new SseSink(req, res, { writeTimeoutMs: ctx.config.STREAM_WRITE_TIMEOUT_MS }));
      return undefined;
    },
  }),
  defineRoute({
    method: 'post',
    path: '/api/llm/queue/cancel',
    auth: 'team',
    summary: "Cancel a queued call: its upstream request is aborted on whichever instance runs it",
    tags,
    body: QueueIdRequest,
    response: { schema: QueueSubmitResponse, description: 'the status after the cancel (unchanged when it had already ended)' },
    errors: [404],
    handler: ({ ctx, body }) => cancelQueued(ctx, body.queueId),
  }),
  defineRoute({
    method: 'get',
    path: '/api/llm/queue/{queueId}',
    auth: 'team',
    summary: 'Status and result of a queued call',
    tags,
    params: QueueParams,
    response: { schema: QueueItem, description: 'the queued call' },
    errors: [404],
    handler: ({ ctx, params }) => getQueued(ctx, params.queueId),
  }),
];
