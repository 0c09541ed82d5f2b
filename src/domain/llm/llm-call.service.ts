import type { LlmCallResponse, LlmCallRequest } from '../../contracts/index.js';
import { withTransaction } from '../../db/client.js';
import { llmCalls } from '../../db/schema/index.js';
import { AppError, conflict, notFound } from '../../lib/errors.js';
import { newId } from '../../lib/ids.js';
import { retryInBackground } from '../../lib/retry.js';
import { errorFrameBody, openAiFormat, type ErrorFrameBody, type StreamFormat } from '../../sse/formats.js';
import type { StreamSink } from '../../sse/sink.js';
import { UpstreamError, toUpstreamError, type UpstreamChunk, type UpstreamChunkStream } from '../../upstream/client.js';
import { jobChargeMicro } from '../billing/pricing.models.js';
import type { ServiceContext } from '../context.js';
import { isOpen, listJobCalls, lockJob, totalsOf, touchJob, type CallRecord, type NewCall } from '../jobs/jobs.repository.js';
import { loadTeamSnapshot } from '../tenancy/team-snapshot.js';
import { requireTeam } from '../tenancy/teams.repository.js';
import { callRecordOf, finishLlmCall, saveCallRecord } from './call-record.js';
import { resolveModelRoute, type ModelRoute } from './model-routing.js';
import { StreamAccumulator } from './stream-accumulator.js';
import { completeWithFallback, openStreamWithFallback } from './upstream-attempts.js';

/** Fields of a request that are creditgate's, not the upstream's. */
const OWN_FIELDS = new Set(['model', 'messages', 'stream', 'stream_options', 'team_id', 'job_type', 'user_id', 'job_metadata']);

export interface CallHandle {
  callId: string;
  jobId: string;
  teamId: string;
  route: ModelRoute;
  messages: unknown[];
  params: Record<string, unknown>;
  /** The client asked for the usage chunk (`stream_options.include_usage`). */
  wantsUsage: boolean;
  startedAt: number;
}

export type CallStatus = 'success' | 'failed' | 'cancelled';

export interface CallOutcome {
  status: CallStatus;
  model: string | null;
  accumulator: StreamAccumulator;
  ttftMs: number | null;
  error: UpstreamError | null;
}

/** A call about to be made: the row that records it and the handle that runs it. */
export function prepareCall(jobId: string, teamId: string, route: ModelRoute, request: LlmCallRequest, streamed: boolean) {
  const params = Object.fromEntries(Object.entries(request).filter(([key]) => !OWN_FIELDS.has(key)));
  const record: NewCall = { id: newId('call'), streamed, modelRequested: route.requested, requestMessages: request.messages, requestParams: params };
  const handle: CallHandle = {
    callId: record.id,
    jobId,
    teamId,
    route,
    messages: request.messages,
    params: { ...params, messages: request.messages },
    wantsUsage: request.stream_options?.include_usage === true,
    startedAt: performance.now(),
  };
  return { record, handle };
}

/**
 * Opens a call on a job: the job must be open and belong to the caller's team, the model must be one the team
 * may use, and in the consumption modes the job must still be covered by its hold. The call is recorded as
 * in progress before the upstream is contacted, so a crash leaves a trace and a settle waits for it.
 */
export async function beginLlmCall(ctx: ServiceContext, jobId: string, teamId: string, request: LlmCallRequest, streamed: boolean): Promise<CallHandle> {
  const snapshot = await loadTeamSnapshot(ctx.db, ctx.caches, teamId);
  const route = resolveModelRoute(snapshot, request.model);
  return withTransaction(ctx.db, async (tx) => {
    const job = await lockJob(tx, jobId, teamId);
    if (!job) throw notFound('job', 'job_id');
    if (!isOpen(job)) throw conflict(`job ${jobId} is ${job.status}; create a new job`, 'job_not_open');
    if (snapshot.team.budgetMode !== 'job_based') {
      const team = await requireTeam(tx, teamId);
      if (jobChargeMicro(team, totalsOf(await listJobCalls(tx, jobId))) > job.holdMicro) {
        throw new AppError('insufficient_credits', 'this job has used all the credits the team could reserve for it', {
          reason: 'insufficient_credits',
        });
      }
    }
    const { record, handle } = prepareCall(jobId, teamId, route, request, streamed);
    await touchJob(tx, jobId, 'in_progress');
    await tx.insert(llmCalls).values({ ...record, jobId, teamId });
    return handle;
  });
}

/**
 * A non-streamed call: the upstream's `chat.completion`, recorded and returned with creditgate's metadata. With
 * `admission` (the job's hold, still being written) nothing is recorded or returned before it is written.
 */
export async function callLlm(ctx: ServiceContext, handle: CallHandle, clientSignal: AbortSignal, admission?: Promise<unknown>): Promise<LlmCallResponse> {
  const accumulator = new StreamAccumulator();
  const upstream = abortableUpstream(ctx, handle, clientSignal);
  const admitted = whenAdmitted(admission, upstream.controller);
  try {
    const { model, completion } = await completeWithFallback(
      ctx.upstream,
      handle.route.candidates,
      handle.params,
      upstream.signal,
      ctx.config.UPSTREAM_TIMEOUT_MS,
      ctx.log,
    );
    await admitted;
    accumulator.addCompletion(completion);
    const recorded = await finishLlmCall(ctx, handle, { status: 'success', model, accumulator, ttftMs: null, error: null });
    return {
      call_id: handle.callId,
      response: completion as unknown as LlmCallResponse['response'],
      metadata: {
        job_id: handle.jobId,
        model_requested: handle.route.requested,
        model_used: model,
        prompt_tokens: recorded.promptTokens,
        completion_tokens: recorded.completionTokens,
        total_tokens: recorded.promptTokens + recorded.completionTokens,
        cost_usd: Number(recorded.costUsd),
        latency_ms: recorded.latencyMs,
      },
    };
  } catch (error) {
    const upstreamError = upstream.failure(error, handle.route.requested);
    await admitted;
    await finishLlmCall(ctx, handle, { status: statusOf(upstreamError), model: null, accumulator, ttftMs: null, error: upstreamError });
    throw toAppError(upstreamError);
  } finally {
    upstream.release();
  }
}

const CLIENT_GONE = () => new UpstreamError('client disconnected', 'aborted');
const NOT_ADMITTED = () => new UpstreamError('the job could not be opened', 'aborted');

/**
 * The hold of a call that started early (see withJob): a refusal aborts the upstream request at once and is what
 * awaiting the result throws, so a refused call is neither answered nor recorded. Undefined without `admission`.
 */
function whenAdmitted(admission: Promise<unknown> | undefined, upstream: AbortController): Promise<void> | undefined {
  if (!admission) return undefined;
  const admitted = admission.then(
    () => undefined,
    (error: unknown) => {
      upstream.abort(NOT_ADMITTED());
      throw error;
    },
  );
  admitted.catch(() => undefined); // awaited later, after the upstream answered or failed
  return admitted;
}

const statusOf = (error: UpstreamError): CallStatus => (error.kind === 'aborted' ? 'cancelled' : 'failed');

/**
 * The upstream request's abort controller: aborted when the client goes away or the job is cancelled (through
 * the in-flight registry), with the reason kept so the call is recorded for what really happened.
 */
function abortableUpstream(ctx: ServiceContext, handle: CallHandle, clientSignal: AbortSignal) {
  const controller = new AbortController();
  const onClientGone = () => controller.abort(clientSignal.reason instanceof UpstreamError ? clientSignal.reason : CLIENT_GONE());
  if (clientSignal.aborted) onClientGone();
  clientSignal.addEventListener('abort', onClientGone, { once: true });
  const unregister = ctx.inflight.register([handle.jobId], controller);
  return {
    controller,
    signal: controller.signal,
    failure(error: unknown, model: string): UpstreamError {
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : undefined;
      return reason instanceof UpstreamError ? reason : toUpstreamError(error, model);
    },
    release() {
      clientSignal.removeEventListener('abort', onClientGone);
      unregister();
    },
  };
}

export interface StreamOptions {
  headers?: Record<string, string>;
  /** OpenAI's wire format unless said otherwise. */
  format?: StreamFormat;
  /**
   * Replaces the plain write of the call's record, before [DONE]: a stream whose job ends with the call writes the
   * record and settles the job here (create-and-call-stream in one statement).
   */
  recordAndSettle?: (outcome: CallOutcome, record: CallRecord) => Promise<void>;
  /** Runs once the call is recorded, just before [DONE]. */
  beforeDone?: () => Promise<void>;
  /** The job's hold, still being written: nothing reaches the client before it is (see withJob). */
  admission?: Promise<unknown>;
}

/**
 * Proxies a streamed call chunk by chunk: each upstream chunk is written to the sink as soon as it arrives (the
 * sink resolves only when the socket drained, which is what pauses the upstream read for a slow client), while
 * the accumulator keeps the text, tool calls and usage for the record. Before the first chunk a failure is a
 * real HTTP error (thrown, after recording the failed call); after it, an in-band error event and [DONE].
 * A client that goes away aborts the upstream request through the sink's signal.
 */
export async function streamLlmCall(ctx: ServiceContext, handle: CallHandle, sink: StreamSink, options: StreamOptions = {}): Promise<CallOutcome> {
  const accumulator = new StreamAccumulator();
  const upstream = abortableUpstream(ctx, handle, sink.signal);
  const headers = { ...options.headers, 'X-Call-Id': handle.callId };
  const format = options.format ?? openAiFormat;
  const admitted = whenAdmitted(options.admission, upstream.controller);
  const keepalive = startKeepalive(sink, headers, format, ctx.config.STREAM_KEEPALIVE_MS, admitted);
  let model: string | null = null;
  let ttftMs: number | null = null;
  let stream: UpstreamChunkStream | undefined;
  let outcome: CallOutcome;
  try {
    const { config } = ctx;
    const opened = await openStreamWithFallback(
      ctx.upstream,
      handle.route.candidates,
      handle.params,
      upstream.signal,
      { firstTokenMs: config.UPSTREAM_FIRST_TOKEN_TIMEOUT_MS, chunkMs: config.UPSTREAM_CHUNK_TIMEOUT_MS },
      ctx.log,
    );
    model = opened.model;
    stream = opened.stream;
    await admitted;
    sink.open(headers);
    ttftMs = Math.round(performance.now() - handle.startedAt);
    let item: UpstreamChunk | null = opened.first;
    // Clients rely on the first chunk naming the role, as OpenAI's does; a few providers omit it.
    const firstDelta = item.chunk.choices[0]?.delta as { role?: string } | undefined;
    const addRole = firstDelta !== undefined && !firstDelta.role;
    if (addRole) firstDelta.role = 'assistant';
    let unchangedText: string | undefined = addRole ? undefined : item.data;
    // The per-chunk path: a ready chunk comes back without a promise, and a write waits only for backpressure.
    while (item) {
      accumulator.add(item.chunk);
      if (item.chunk.choices.length > 0 || handle.wantsUsage) {
        const frame = format.chunk(item.chunk, unchangedText);
        const pending = frame ? keepalive.write(frame) : undefined;
        if (pending) await pending;
      }
      const next = stream.next();
      item = next instanceof Promise ? await next : next;
      unchangedText = item?.data;
    }
    outcome = { status: 'success', model, accumulator, ttftMs, error: null };
  } catch (error) {
    const upstreamError = upstream.failure(error, model ?? handle.route.requested);
    outcome = { status: statusOf(upstreamError), model, accumulator, ttftMs, error: upstreamError };
    if (!sink.opened) {
      keepalive.stop();
      stream?.close();
      upstream.release();
      await admitted;
      await finishLlmCall(ctx, handle, outcome);
      throw toAppError(upstreamError);
    }
    if (!sink.closed) await keepalive.write(format.error(errorBody(upstreamError)))?.catch(() => undefined);
  }
  stream?.close();
  upstream.release();
  const record = async () => {
    const recorded = await callRecordOf(ctx, handle, outcome);
    if (options.recordAndSettle) await options.recordAndSettle(outcome, recorded);
    else await saveCallRecord(ctx, handle, recorded);
    await options.beforeDone?.();
  };
  try {
    await record();
  } catch (error) {
    // The client has its answer but the call is not recorded (or its job not settled): say so in-band rather
    // than end as if all were well, and record it once the database is back.
    ctx.log.error({ err: error, call_id: handle.callId }, 'could not record a streamed call; retrying in the background');
    if (!sink.closed) await keepalive.write(format.error(RECORDING_DEFERRED))?.catch(() => undefined);
    retryInBackground(record, ctx.log, `record call ${handle.callId}`);
  } finally {
    keepalive.stop();
    if (!sink.closed) await sink.write(format.done())?.catch(() => undefined);
    sink.end();
  }
  return outcome;
}

const RECORDING_DEFERRED = errorFrameBody(
  'recording_deferred',
  'the call could not be recorded yet; it will be once the database answers',
  'api_error',
);

/**
 * While the upstream is silent (a slow first token, a long tool step) an SSE comment goes out every
 * `intervalMs`, committing the response headers if needed, so proxies and load balancers keep the connection;
 * not before `admitted` resolves. Frames go through `write`, which keeps the clock of the last byte sent.
 */
function startKeepalive(sink: StreamSink, headers: Record<string, string>, format: StreamFormat, intervalMs: number, admitted?: Promise<void>) {
  let lastWrite = performance.now();
  let draining = false;
  const drained = () => {
    draining = false;
    lastWrite = performance.now();
  };
  /** Undefined when the frame was taken at once; a promise while the socket is full. */
  const write = (frame: string): Promise<void> | undefined => {
    lastWrite = performance.now();
    const pending = sink.write(frame);
    if (!pending) return undefined;
    draining = true;
    return pending.finally(drained);
  };
  const frame = format.keepalive();
  let mayOpen = !admitted;
  admitted?.then(() => (mayOpen = true), () => undefined);
  const timer = setInterval(() => {
    if (!frame || !mayOpen || draining || sink.closed || performance.now() - lastWrite < intervalMs) return;
    sink.open(headers);
    void write(frame)?.catch(() => undefined);
  }, Math.max(10, Math.floor(intervalMs / 4)));
  return { write, stop: () => clearInterval(timer) };
}

function errorBody(error: UpstreamError): ErrorFrameBody {
  return errorFrameBody(error.kind === 'timeout' ? 'upstream_timeout' : 'upstream_error', error.message);
}

export function toAppError(error: UpstreamError): AppError {
  if (error.kind === 'timeout') return new AppError('upstream_timeout', error.message, { reason: 'upstream_timeout' });
  if (error.kind === 'aborted') return new AppError('upstream_error', error.message, { reason: 'aborted' });
  if (error.upstreamStatus === 429) return new AppError('rate_limited', `${error.message} (rate limited upstream)`, { reason: 'upstream_rate_limited' });
  if (error.upstreamStatus === 400 || error.upstreamStatus === 422) {
    return new AppError('validation_failed', `the upstream rejected the request: ${error.message}`, { reason: 'upstream_rejected_request' });
  }
  return new AppError('upstream_error', error.message, { reason: 'upstream_error' });
}
