import type { CompleteJobResponse, CreateAndCallResponse, ErrorBody, JobCosts, PageInfo, WebhookDelivery } from './contracts.js';

/** One page of a cursor-paged list: pass `next_cursor` as `cursor` to get the next. */
export type Page<Item> = PageInfo & { data: Item[] };
export interface List<Item> {
  data: Item[];
}
/** A page of an endpoint's deliveries, newest first: pass `next_cursor` as `cursor` to get the next (null: none). */
export type WebhookDeliveryPage = List<WebhookDelivery> & Pick<PageInfo, 'next_cursor'>;

/**
 * A settled job: the server's answer, with every field of `costs` (`credits_remaining`, `total_calls`,
 * `credits_charged`, ...) also at the top level.
 */
export type CompletedJob = CompleteJobResponse & JobCosts;
export type CreateAndCallResult = CreateAndCallResponse & JobCosts;

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'function_call';

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number; audio_tokens?: number };
  completion_tokens_details?: { reasoning_tokens?: number; audio_tokens?: number; accepted_prediction_tokens?: number; rejected_prediction_tokens?: number };
}

export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

/**
 * An OpenAI `chat.completion.chunk` as the server relays it. Declared here rather than imported from the openai
 * package so this client has no dependency on it; the repository's type check keeps it assignable from openai's.
 */
export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: {
    index: number;
    delta: {
      role?: 'developer' | 'system' | 'user' | 'assistant' | 'tool';
      content?: string | null;
      refusal?: string | null;
      tool_calls?: ToolCallDelta[];
      function_call?: { name?: string; arguments?: string };
    };
    finish_reason: FinishReason | null;
    logprobs?: unknown;
  }[];
  usage?: CompletionUsage | null;
  system_fingerprint?: string;
}

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface FinalCall {
  content: string;
  toolCalls: ToolCall[];
  finishReason: FinishReason | null;
  /** Only when asked for with `stream_options: {include_usage: true}`. */
  usage?: CompletionUsage;
}

/** The events of `POST /api/llm/queue/stream`, in order: start, chunks (or an error), done. */
export type QueueEvent =
  | { event: 'start'; data: { queueId: string } }
  | { event: 'chunk'; data: { delta: string; finishReason: FinishReason | null; toolCallDeltas?: ToolCallDelta[] } }
  | { event: 'error'; data: ErrorBody }
  | { event: 'done'; data: Record<string, never> };
