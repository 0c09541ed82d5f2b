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
 * first chunk arrived: until then no chunk reached the client, so falling back is still possible.
 */
export async function openStreamWithFallback(
  client: UpstreamClient,
  candidates: string[],
  params: Record<string, unknown>,
  signal: AbortSignal,
  timeouts: StreamTimeouts,
  log: Logger,
): Promise<OpenedStream> {
  return withFallback(candidates, signal, timeouts.firstTokenMs, log, async (model, attemptSignal) => {
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
  signal: AbortSignal,
  timeoutMs: number,
  log: Logger,
): Promise<{ model: string; completion: ChatCompletion }> {
  return withFallback(candidates, signal, timeoutMs, log, async (model, attemptSignal) => ({
    model,
    completion: await client.complete({ ...params, model }, attemptSignal),
  }));
}

async function withFallback<T>(
  candidates: string[],
  signal: AbortSignal,
  timeoutMs: number,
  log: Logger,
  attempt: (model: string, signal: AbortSignal) => Promise<T>,
): Promise<T> {
  let lastError: UpstreamError | undefined;
  for (const model of candidates) {
    if (signal.aborted) break;
    // Each attempt can be abandoned alone (its first-token timeout); the caller's signal aborts whichever
    // attempt succeeds for as long as its stream lives, so the link is only removed from failed attempts.
    const attemptController = new AbortController();
    const abortAttempt = () => attemptController.abort(signal.reason);
    signal.addEventListener('abort', abortAttempt, { once: true });
    try {
      return await withTimeout(attempt(model, attemptController.signal), timeoutMs, attemptController, model);
    } catch (error) {
      signal.removeEventListener('abort', abortAttempt);
      lastError = toUpstreamError(error, model);
      if (signal.aborted) break;
      log.warn({ model, err: error }, 'upstream model failed before its first byte; trying the next one');
    }
  }
  if (signal.aborted) throw new UpstreamError('request aborted', 'aborted');
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
