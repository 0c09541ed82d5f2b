import type { ChatCompletion } from 'openai/resources/chat/completions';
import type { Logger } from '../../lib/logger.js';
import { toUpstreamError, UpstreamError, type UpstreamChunk, type UpstreamChunkStream, type UpstreamClient } from '../../upstream/client.js';

export interface OpenedStream {
  model: string;
  stream: UpstreamChunkStream;
  first: UpstreamChunk;
}

export interface StreamTimeouts {
  /** A model that sends no chunk this long is abandoned for the next one. */
  firstTokenMs: number;
  /** Once chunks flow, the longest silence allowed. */
  chunkMs: number;
}

/**
 * Tries each candidate model until one answers within the first-token timeout. For a stream, "answers" means its
 * first chunk arrived: until then no chunk reached the client, so falling back is still possible. `call` aborts
 * the call (the client left, a cancel); the last candidate's timeout aborts it too.
 */
export async function openStreamWithFallback(
  client: UpstreamClient,
  candidates: string[],
  params: Record<string, unknown>,
  call: AbortController,
  timeouts: StreamTimeouts,
  log: Logger,
): Promise<OpenedStream> {
  return withFallback(candidates, call, timeouts.firstTokenMs, log, async (model, attemptSignal) => {
    const stream = await client.stream({ body: { ...params, model }, model, signal: attemptSignal, idleTimeoutMs: timeouts.chunkMs });
    try {
      const first = await stream.next();
      if (!first) throw new UpstreamError(`model ${model} sent an empty stream`, 'protocol');
      return { model, stream, first };
    } catch (error) {
      stream.close();
      throw error;
    }
  });
}

export async function completeWithFallback(
  client: UpstreamClient,
  candidates: string[],
  params: Record<string, unknown>,
  call: AbortController,
  timeoutMs: number,
  log: Logger,
): Promise<{ model: string; completion: ChatCompletion }> {
  return withFallback(candidates, call, timeoutMs, log, async (model, attemptSignal) => ({
    model,
    completion: await client.complete({ ...params, model }, attemptSignal),
  }));
}

async function withFallback<T>(
  candidates: string[],
  call: AbortController,
  timeoutMs: number,
  log: Logger,
  attempt: (model: string, signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const { signal } = call;
  let lastError: UpstreamError | undefined;
  for (const [index, model] of candidates.entries()) {
    if (signal.aborted) break;
    // An attempt with a model after it can be abandoned alone (its first-token timeout): it gets a controller of
    // its own, which the call's aborts for as long as the attempt's stream lives (the link is only removed from
    // failed attempts). The last one's timeout ends the call, so it runs on the call's controller: one AbortSignal
    // less per call, each costing Node microseconds and hidden classes of its own.
    const last = index === candidates.length - 1;
    const attemptController = last ? call : new AbortController();
    const abortAttempt = () => attemptController.abort(signal.reason);
    if (!last) signal.addEventListener('abort', abortAttempt, { once: true });
    try {
      return await withTimeout(attempt(model, attemptController.signal), timeoutMs, attemptController, model);
    } catch (error) {
      signal.removeEventListener('abort', abortAttempt);
      lastError = toUpstreamError(error, model);
      if (signal.aborted) break;
      log.warn({ model, err: error }, 'upstream model failed before its first byte; trying the next one');
    }
  }
  if (signal.aborted) throw UpstreamError.ofAbort(signal);
  throw lastError ?? new UpstreamError('no model to call', 'connection');
}

/** Resolves as `work` does, unless `ms` pass first: then the controller aborts the upstream request. */
async function withTimeout<T>(work: Promise<T>, ms: number, controller: AbortController, model: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new UpstreamError(`model ${model} sent nothing for ${ms} ms`, 'timeout');
      controller.abort(error);
      reject(error);
    }, ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
