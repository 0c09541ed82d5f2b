import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import type { ErrorBody, page } from '../contracts/index.js';

/**
 * What a contract schema accepts (`z.input`) and what it produces (`z.output`), read from the schema's type
 * without importing zod: request types are what the server will parse, response types what it sends, so the
 * SDK cannot drift from the server's validation.
 */
export type Input<Schema extends { _zod: { input: unknown } }> = Schema['_zod']['input'];
export type Output<Schema extends { _zod: { output: unknown } }> = Schema['_zod']['output'];

/** One page of a cursor-paged list: pass `next_cursor` as `cursor` to get the next. */
export type Page<Item> = Omit<Output<ReturnType<typeof page>>, 'data'> & { data: Item[] };
export interface List<Item> {
  data: Item[];
}

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface FinalCall {
  content: string;
  toolCalls: ToolCall[];
  finishReason: ChatCompletionChunk.Choice['finish_reason'];
  /** Only when asked for with `stream_options: {include_usage: true}`. */
  usage?: NonNullable<ChatCompletionChunk['usage']>;
}

/** The events of `POST /api/llm/queue/stream`, in order: start, chunks (or an error), done. */
export type QueueEvent =
  | { event: 'start'; data: { queueId: string } }
  | {
      event: 'chunk';
      data: {
        delta: string;
        finishReason: ChatCompletionChunk.Choice['finish_reason'];
        toolCallDeltas?: ChatCompletionChunk.Choice.Delta.ToolCall[];
      };
    }
  | { event: 'error'; data: ErrorBody }
  | { event: 'done'; data: Record<string, never> };

export type { ChatCompletionChunk };
