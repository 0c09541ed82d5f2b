import {
  CompleteJobRequest,
  CompleteJobResponse,
  CreateAndCallRequest,
  CreateAndCallResponse,
  CreateJobRequest,
  CreateJobResponse,
  Job,
  JobCosts,
  JobParams,
  LlmCallRequest,
  LlmCallResponse,
} from '../../contracts/index.js';
import { createAndCall, createAndCallStream } from '../../domain/jobs/create-and-call.service.js';
import { callInJob, streamInJob } from '../../domain/jobs/job-calls.service.js';
import { cancelJob, completeJob, createJob, getJob, getJobCosts } from '../../domain/jobs/jobs.service.js';
import { finishStream, SseSink } from '../sse-response.js';
import { defineRoute } from '../route.js';

const tags = ['Jobs'];
const SSE = 'text/event-stream';
const streamDescription =
  'text/event-stream of OpenAI chat.completion.chunk objects (`data: {...}`), ending with `data: [DONE]`; an upstream failure after the first chunk arrives as `data: {"error": {...}}` before [DONE]';

export const jobRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/jobs/create',
    auth: 'team',
    summary: "Create a job and hold its opening amount from the team's credits (job_based: its price)",
    tags,
    body: CreateJobRequest,
    idempotent: 'transaction',
    response: { status: 201, schema: CreateJobResponse, description: 'the pending job' },
    errors: [402, 404, 429],
    handler: ({ ctx, body }) => createJob(ctx, body),
  }),
  defineRoute({
    method: 'get',
    path: '/api/jobs/{job_id}',
    auth: 'team_or_admin',
    summary: 'A job with its status, calls and costs (a team key sees only its own jobs)',
    tags,
    params: JobParams,
    response: { schema: Job, description: 'the job' },
    errors: [404],
    handler: ({ ctx, params }) => getJob(ctx, params.job_id),
  }),
  defineRoute({
    method: 'get',
    path: '/api/jobs/{job_id}/costs',
    auth: 'team_or_admin',
    summary: "A job's costs",
    tags,
    params: JobParams,
    response: { schema: JobCosts, description: 'the costs' },
    errors: [404],
    handler: ({ ctx, params }) => getJobCosts(ctx, params.job_id),
  }),
  defineRoute({
    method: 'post',
    path: '/api/jobs/{job_id}/llm-call',
    auth: 'team',
    summary: "Call a model within a job (non-streamed); its worst case is reserved in the job's hold first",
    tags,
    params: JobParams,
    body: LlmCallRequest,
    idempotent: 'long',
    response: { schema: LlmCallResponse, description: 'the upstream chat.completion and the call record' },
    errors: [402, 404, 409, 429, 502, 504],
    handler: ({ ctx, params, body, req }) => callInJob(ctx, params.job_id, body, (listener) => req.clientWatch.onGone(listener)),
  }),
  defineRoute({
    method: 'post',
    path: '/api/jobs/{job_id}/llm-call-stream',
    auth: 'team',
    summary: "Call a model within a job, streamed chunk by chunk; its worst case is reserved in the job's hold first",
    tags,
    params: JobParams,
    body: LlmCallRequest,
    idempotent: 'long',
    response: { description: streamDescription, contentType: SSE },
    errors: [402, 404, 409, 429, 502, 504],
    handler: async ({ ctx, params, body, req, res, answered }) => {
      const sink = new SseSink(req, res, { writeTimeoutMs: ctx.config.STREAM_WRITE_TIMEOUT_MS });
      return finishStream(sink, await streamInJob(ctx, params.job_id, body, sink), answered);
    },
  }),
  defineRoute({
    method: 'post',
    path: '/api/jobs/{job_id}/complete',
    auth: 'team',
    summary:
      'Complete a job: it is charged for what its calls delivered, reported `completed` or `failed` alike (unless the team waives failed jobs); a job that delivered nothing is free',
    tags,
    params: JobParams,
    body: CompleteJobRequest,
    idempotent: 'transaction',
    response: { schema: CompleteJobResponse, description: 'the settled job; completing again with the same status replays this' },
    errors: [404, 409],
    handler: ({ ctx, params, body }) => completeJob(ctx, params.job_id, body),
  }),
  defineRoute({
    method: 'post',
    path: '/api/jobs/{job_id}/cancel',
    auth: 'team_or_admin',
    summary: "Cancel a job: abort its in-flight model calls (on any instance) and end it `cancelled` (admins may cancel any team's job)",
    tags,
    params: JobParams,
    response: { schema: CompleteJobResponse, description: 'the cancelled job; cancelling again answers the same' },
    errors: [404, 409],
    handler: ({ ctx, params }) => cancelJob(ctx, params.job_id),
  }),
  defineRoute({
    method: 'post',
    path: '/api/jobs/create-and-call',
    auth: 'team',
    summary: 'Create a job, call a model and complete the job in one request',
    tags,
    body: CreateAndCallRequest,
    idempotent: 'long',
    response: { status: 201, schema: CreateAndCallResponse, description: 'the call and the settled job' },
    errors: [402, 404, 429, 502, 504],
    handler: ({ ctx, body, req }) => createAndCall(ctx, body, (listener) => req.clientWatch.onGone(listener)),
  }),
  defineRoute({
    method: 'post',
    path: '/api/jobs/create-and-call-stream',
    auth: 'team',
    summary: 'Create a job and stream a model call; the job is settled after the last chunk, before [DONE], and charged for what was delivered',
    tags,
    body: CreateAndCallRequest,
    idempotent: 'long',
    response: {
      description: `${streamDescription}. Headers X-Job-Id and X-Call-Id name the job and the call.`,
      contentType: SSE,
    },
    errors: [402, 404, 429, 502, 504],
    handler: async ({ ctx, body, req, res, answered }) => {
      const sink = new SseSink(req, res, { writeTimeoutMs: ctx.config.STREAM_WRITE_TIMEOUT_MS });
      return finishStream(sink, await createAndCallStream(ctx, body, sink), answered);
    },
  }),
];

