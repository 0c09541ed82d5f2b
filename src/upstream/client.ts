import OpenAI from 'openai';

export type UpstreamClient = OpenAI;

export function createUpstreamClient(options: { baseURL: string; apiKey: string; timeoutMs: number }): UpstreamClient {
  // Retries are ours to decide (the next model of the group, and only before the first byte).
  return new OpenAI({ baseURL: options.baseURL, apiKey: options.apiKey, maxRetries: 0, timeout: options.timeoutMs });
}

/**
 * An upstream failure as creditgate reports it. The message never carries the upstream's own error text, which
 * can echo URLs or provider credentials; that stays in the server log.
 */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly kind: 'timeout' | 'http' | 'connection' | 'protocol' | 'aborted',
    readonly upstreamStatus?: number,
  ) {
    super(message);
    this.name = 'UpstreamError';
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
