import OpenAI from 'openai';
import type { ChatCompletion } from 'openai/resources/chat/completions';
import { ChatStreamTransport, type ChatStreamRequest, type UpstreamChunkStream } from './chat-stream.js';
import { UpstreamError } from './errors.js';

export { UpstreamError } from './errors.js';
export type { UpstreamChunk, UpstreamChunkStream } from './chat-stream.js';

export interface UpstreamClientOptions {
  baseURL: string;
  apiKey: string;
  timeoutMs: number;
}

/**
 * The OpenAI-compatible upstream: whole completions through the openai SDK, streams through creditgate's own
 * lean transport (the hot path). Retries are ours to decide (the next model of the group, and only before the
 * first byte), so the SDK makes none.
 */
export class UpstreamClient {
  private readonly sdk: OpenAI;
  private readonly streams: ChatStreamTransport;

  constructor(options: UpstreamClientOptions) {
    this.sdk = new OpenAI({ baseURL: options.baseURL, apiKey: options.apiKey, maxRetries: 0, timeout: options.timeoutMs });
    this.streams = new ChatStreamTransport(options.baseURL, options.apiKey);
  }

  async complete(body: Record<string, unknown>, signal: AbortSignal): Promise<ChatCompletion> {
    return (await this.sdk.chat.completions.create({ ...body, stream: false } as never, { signal })) as ChatCompletion;
  }

  /** A streamed completion with the usage chunk requested (the record needs it whatever the client asked). */
  stream(request: ChatStreamRequest): Promise<UpstreamChunkStream> {
    return this.streams.open({ ...request, body: { ...request.body, stream: true, stream_options: { include_usage: true } } });
  }

  close(): void {
    this.streams.close();
  }
}

export function toUpstreamError(error: unknown, model: string): UpstreamError {
  if (error instanceof UpstreamError) return error;
  if (error instanceof OpenAI.APIUserAbortError) return new UpstreamError('request aborted', 'aborted');
  if (error instanceof OpenAI.APIConnectionTimeoutError) return new UpstreamError(`model ${model} timed out`, 'timeout');
  if (error instanceof OpenAI.APIConnectionError) return new UpstreamError(`model ${model} is unreachable`, 'connection');
  if (error instanceof OpenAI.APIError) {
    return error.status
      ? new UpstreamError(`model ${model} failed with HTTP ${error.status}`, 'http', error.status)
      : new UpstreamError(`model ${model} reported an error in its stream`, 'protocol');
  }
  if (error instanceof SyntaxError) return new UpstreamError(`model ${model} sent a malformed stream`, 'protocol');
  if ((error as { name?: string })?.name === 'AbortError') return new UpstreamError('request aborted', 'aborted');
  return new UpstreamError(`model ${model} failed`, 'connection');
}
