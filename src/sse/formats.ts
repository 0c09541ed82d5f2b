import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { SSE_DONE, sseComment, sseData, sseEvent } from './encode.js';

export interface ErrorFrameBody {
  error: { type: string; code: string; message: string; param: null };
}

/** The body of an in-band error event (the contract's error shape, sent after the stream began). */
export function errorFrameBody(code: string, message: string, type = 'upstream_error'): ErrorFrameBody {
  return { error: { type, code, message, param: null } };
}

/** How a stream of chat chunks is written as SSE frames for one kind of client. */
export interface StreamFormat {
  /** `data` is the chunk's JSON exactly as the upstream sent it, when the chunk is passed on unchanged. */
  chunk(chunk: ChatCompletionChunk, data?: string): string | null;
  error(body: ErrorFrameBody): string;
  done(): string;
  /** null: this format sends no keepalive of its own (its reader does). */
  keepalive(): string | null;
}

/** OpenAI's wire format: `data: <chunk>` frames, in-band `data: {"error"}`, then `data: [DONE]`. */
export const openAiFormat: StreamFormat = {
  // The upstream's own text needs no second serialisation, unless it spans lines (one SSE frame per data line).
  // Checked with includes, not a regex: this runs for every chunk, and includes is several times cheaper.
  chunk: (chunk, data) => (data !== undefined && !data.includes('\n') && !data.includes('\r') ? `data: ${data}\n\n` : sseData(chunk)),
  error: (body) => sseData(body),
  done: () => SSE_DONE,
  keepalive: () => sseComment('keepalive'),
};

/** The queue API's events: `chunk` {delta, finishReason, toolCallDeltas?}, `error`, then `done`. */
export const queueFormat: StreamFormat = {
  chunk(chunk) {
    const choice = chunk.choices[0];
    if (!choice) return null;
    const toolCallDeltas = choice.delta?.tool_calls;
    return sseEvent('chunk', {
      delta: choice.delta?.content ?? '',
      finishReason: choice.finish_reason ?? null,
      ...(toolCallDeltas && toolCallDeltas.length > 0 && { toolCallDeltas }),
    });
  },
  error: (body) => sseEvent('error', body),
  done: () => sseEvent('done', {}),
  keepalive: () => null,
};
