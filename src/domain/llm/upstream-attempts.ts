import type { ChatCompletion, ChatCompletionChunk } from 'openai/resources/chat/completions';
import type { Logger } from '../../lib/logger.js';
import { toUpstreamError, UpstreamError, type UpstreamClient } from '../../upstream/client.js';

export interface OpenedStream {
  model: string;
  iterator: AsyncIterator<ChatCompletionChunk>;
  first: IteratorResult<ChatCompletionChunk>;
}

/**
 * Tries each candidate model until one answers. For a stream, "answers" means its first chunk arrived: until
 * then nothing was sent to the client, so falling back (or answering with a real HTTP status) is still possible.
 */
export async function openStreamWithFallback(
  client: UpstreamClient,
  candidates: string[],
  params: Record<string, unknown>,
  signal: AbortSignal,
  log: Logger,
): Promise<OpenedStream> {
  return withFallback(candidates, signal, log, async (model) => {
    const stream = await client.chat.completions.create(
      { ...params, model, stream: true, stream_options: { include_usage: true } } as never,
      { signal },
    );
    const iterator = (stream as unknown as AsyncIterable<ChatCompletionChunk>)[Symbol.asyncIterator]();
    return { model, iterator, first: await iterator.next() };
  });
}

export async function completeWithFallback(
  client: UpstreamClient,
  candidates: string[],
  params: Record<string, unknown>,
  signal: AbortSignal,
  log: Logger,
): Promise<{ model: string; completion: ChatCompletion }> {
  return withFallback(candidates, signal, log, async (model) => {
    const completion = (await client.chat.completions.create({ ...params, model, stream: false } as never, { signal })) as ChatCompletion;
    return { model, completion };
  });
}

async function withFallback<T>(candidates: string[], signal: AbortSignal, log: Logger, attempt: (model: string) => Promise<T>): Promise<T> {
  let lastError: UpstreamError | undefined;
  for (const model of candidates) {
    try {
      return await attempt(model);
    } catch (error) {
      lastError = toUpstreamError(error, model);
      if (signal.aborted || lastError.kind === 'aborted') throw new UpstreamError('request aborted', 'aborted');
      log.warn({ model, err: error }, 'upstream model failed before its first byte; trying the next one');
    }
  }
  throw lastError ?? new UpstreamError('no model to call', 'connection');
}
