import type { ChatCompletion } from 'openai/resources/chat/completions';
import type { LlmCallRequest } from '../../contracts/index.js';
import { AppError } from '../../lib/errors.js';
import { newId } from '../../lib/ids.js';
import { openAiFormat, type StreamFormat } from '../../sse/formats.js';
import type { StreamSink, WatchClient } from '../../sse/sink.js';
import { UpstreamError, toUpstreamError, type UpstreamChunk, type UpstreamChunkStream } from '../../upstream/client.js';
import type { ServiceContext } from '../context.js';
import type { NewCall } from './calls.repository.js';
import type { ModelRoute } from './model-routing.js';
import { StreamAccumulator } from './stream-accumulator.js';
import { completeWithFallback, openStreamWithFallback } from './upstream-attempts.js';

/**
 * The relay of one model call: it runs the call against the upstream (fallback between the route's models before
 * the first byte, streamed chunk by chunk or whole) and reports how it went. It moves no money and writes no record:
 * its caller reserved before and records and settles after.
 */

/** Fields of a request that are creditgate's, not the upstream's. */
const OWN_FIELDS = new Set(['model', 'messages', 'stream', 'stream_options', 'team_id', 'job_type', 'user_id', 'job_metadata']);

export interface CallHandle {
  callId: string;
  jobId: string;
  teamId: string;
  route: ModelRoute;
  messages: unknown[];
  /** The upstream request's body; its completion limit is the reservation's (see limitCompletion). */
  params: Record<string, unknown>;
  /** The client asked for the usage chunk (`stream_options.include_usage`). */
  wantsUsage: boolean;
  startedAt: number;
  /** The completion limit sent upstream, once the call's reservation decided it. */
  maxTokens: number | null;
}

/** A call about to be made: the row that records it and the handle that runs it (its limit still to be decided). */
export function prepareCall(jobId: string, teamId: string, route: ModelRoute, request: LlmCallRequest, streamed: boolean) {
  const params = Object.fromEntries(Object.entries(request).filter(([key]) => !OWN_FIELDS.has(key)));
  const record: NewCall = {
    id: newId('call'),
    streamed,
    modelRequested: route.requested,
    requestMessages: request.messages,
    requestParams: params,
  };
  const handle: CallHandle = {
    callId: record.id,
    jobId,
    teamId,
    route,
    messages: request.messages,
    params: { ...params, messages: request.messages },
    wantsUsage: request.stream_options?.include_usage === true,
    startedAt: performance.now(),
    maxTokens: null,
  };
  return { record, handle };
}

const LIMIT_FIELDS = ['max_tokens', 'max_completion_tokens'] as const;

/**
 * Fixes the completion limit the reservation covers, in `field` (the one the client used, or
 * `max_completion_tokens`) and in the other one too if the client sent both: no larger limit goes upstream.
 */
export function limitCompletion(handle: CallHandle, maxTokens: number, field: (typeof LIMIT_FIELDS)[number]): void {
  handle.maxTokens = maxTokens;
  for (const name of LIMIT_FIELDS) if (name === field || name in handle.params) handle.params[name] = maxTokens;
}

export type CallStatus = 'success' | 'failed' | 'cancelled';

export interface CallOutcome {
  status: CallStatus;
  /** The model of the route that answered (the upstream may name what it served differently: see the accumulator). */
  model: string | null;
  accumulator: StreamAccumulator;
  ttftMs: number | null;
  error: UpstreamError | null;
  /** A streamed call: its response was committed (status 200 and headers sent); errors after that go in-band. */
  opened: boolean;
}

const CLIENT_GONE = () => UpstreamError.aborted('client_disconnected', 'the client disconnected');
const NOT_ADMITTED = () => UpstreamError.aborted('not_admitted', 'the job could not be opened');

/**
 * A promise that resolves once `notBefore` does (an early-started call's hold being written), or throws its
 * refusal after aborting the upstream request. Undefined without `notBefore`.
 */
function whenAdmitted(notBefore: Promise<unknown> | undefined, upstream: AbortController): Promise<void> | undefined {
  if (!notBefore) return undefined;
  const admitted = notBefore.then(
    () => undefined,
    (error: unknown) => {
      upstream.abort(NOT_ADMITTED());
      throw error;
    },
  );
  admitted.catch(() => undefined); // awaited later, after the upstream answered or failed
  return admitted;
}

const ignore = () => undefined;

const statusOf = (error: UpstreamError): CallStatus => (error.kind === 'aborted' ? 'cancelled' : 'failed');

/**
 * The upstream request's abort controller: aborted when the client goes away (`watchClient`), the job is cancelled (through the in-flight registry) or the server shuts down, with the
 * reason kept so the call is recorded for what happened.
 */
function abortableUpstream(ctx: ServiceContext, handle: CallHandle, watchClient: WatchClient) {
  const controller = new AbortController();
  const stopWatching = watchClient((reason) => controller.abort(reason instanceof UpstreamError ? reason : CLIENT_GONE()));
  const unregister = ctx.inflight.register([handle.jobId], controller);
  return {
    controller,
    failure(error: unknown, model: string): UpstreamError {
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : undefined;
      return reason instanceof UpstreamError ? reason : toUpstreamError(error, model);
    },
    release() {
      stopWatching();
      unregister();
    },
  };
}

/**
 * A non-streamed call: the upstream's whole `chat.completion`. With `notBefore` (the job's hold, still being
 * written) nothing is returned before it is, and its refusal is what this throws.
 */
export async function relayCompletion(
  ctx: ServiceContext,
  handle: CallHandle,
  watchClient: WatchClient,
  notBefore?: Promise<unknown>,
): Promise<{ outcome: CallOutcome; completion: ChatCompletion | null }> {
  const accumulator = new StreamAccumulator();
  const upstream = abortableUpstream(ctx, handle, watchClient);
  const admitted = whenAdmitted(notBefore, upstream.controller);
  try {
    const { model, completion } = await completeWithFallback(
      ctx.upstream,
      handle.route.candidates,
      handle.params,
      upstream.controller,
      ctx.config.UPSTREAM_TIMEOUT_MS,
      ctx.log,
    );
    await admitted;
    accumulator.addCompletion(completion);
    return { outcome: { status: 'success', model, accumulator, ttftMs: null, error: null, opened: false }, completion };
  } catch (error) {
    const upstreamError = upstream.failure(error, handle.route.requested);
    await admitted;
    return { outcome: { status: statusOf(upstreamError), model: null, accumulator, ttftMs: null, error: upstreamError, opened: false }, completion: null };
  } finally {
    upstream.release();
  }
}

export interface RelayStreamOptions {
  headers?: Record<string, string>;
  /** OpenAI's wire format unless said otherwise. */
  format?: StreamFormat;
  /** The job's hold, still being written: nothing reaches the client before it is, and its refusal is thrown. */
  notBefore?: Promise<unknown>;
}

/**
 * Proxies a streamed call chunk by chunk: each upstream chunk is written to the sink as soon as it arrives (the
 * sink resolves only when the socket drained, which is what pauses the upstream read for a slow client), while
 * the accumulator keeps the text, tool calls and usage for the record. The response is committed with the first
 * chunk, so a failure before it can still be a real HTTP error; a failure after it is for the caller to report
 * in-band. A client that goes away aborts the upstream request (the sink's onAbort).
 * The caller ends the stream (error event, [DONE]) after recording the call.
 */
export async function relayStream(ctx: ServiceContext, handle: CallHandle, sink: StreamSink, options: RelayStreamOptions = {}): Promise<CallOutcome> {
  const accumulator = new StreamAccumulator();
  const upstream = abortableUpstream(ctx, handle, (listener) => sink.onAbort(listener));
  const headers = { ...options.headers, 'X-Call-Id': handle.callId };
  const format = options.format ?? openAiFormat;
  const admitted = whenAdmitted(options.notBefore, upstream.controller);
  const keepalive = startKeepalive(sink, headers, format, ctx.config.STREAM_KEEPALIVE_MS, admitted);
  let model: string | null = null;
  let ttftMs: number | null = null;
  let stream: UpstreamChunkStream | undefined;
  try {
    const { config } = ctx;
    const opened = await openStreamWithFallback(
      ctx.upstream,
      handle.route.candidates,
      handle.params,
      upstream.controller,
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
    // The frames of chunks that are ready together (one read of the upstream) leave in one response write, made
    // before waiting for the next chunk: they shared one socket write anyway, and each response write costs
    // its own HTTP chunk (size line, buffers) to make and for the client to parse.
    let frames = '';
    while (item) {
      accumulator.add(item.chunk);
      if (item.chunk.choices.length > 0 || handle.wantsUsage) frames += format.chunk(item.chunk, unchangedText) ?? '';
      const next = stream.next();
      if (next instanceof Promise || next === null) {
        const pending = frames ? keepalive.write(frames) : undefined;
        frames = '';
        if (pending) {
          // The next chunk may fail while the socket drains: it is awaited just after, not left unhandled.
          next?.catch(ignore);
          await pending;
        }
      }
      item = next instanceof Promise ? await next : next;
      unchangedText = item?.data;
    }
    return { status: 'success', model, accumulator, ttftMs, error: null, opened: true };
  } catch (error) {
    const upstreamError = upstream.failure(error, model ?? handle.route.requested);
    if (!sink.opened) await admitted;
    return { status: statusOf(upstreamError), model, accumulator, ttftMs, error: upstreamError, opened: sink.opened };
  } finally {
    keepalive.stop();
    stream?.close();
    upstream.release();
  }
}

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

/** How a call's failure is answered when nothing was streamed yet. */
export function toAppError(error: UpstreamError): AppError {
  if (error.kind === 'timeout') return new AppError('upstream_timeout', error.message, { reason: 'upstream_timeout' });
  if (error.kind === 'aborted') return new AppError('upstream_error', error.message, { reason: error.code });
  if (error.upstreamStatus === 429) return new AppError('rate_limited', `${error.message} (rate limited upstream)`, { reason: 'upstream_rate_limited' });
  if (error.upstreamStatus === 400 || error.upstreamStatus === 422) {
    return new AppError('validation_failed', `the upstream rejected the request: ${error.message}`, { reason: 'upstream_rejected_request' });
  }
  return new AppError('upstream_error', error.message, { reason: 'upstream_error' });
}
