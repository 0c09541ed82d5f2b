/**
 * What a call may consume, decided before it leaves: bounded use is reserved before the call. A call's worst case
 * is its prompt's token bound plus its completion limit; in the consumption modes its job's hold is extended to
 * cover that worst case (or the limit is lowered to what the credits cover), in job_based mode the job's caps bound
 * it. Settlement then charges what was actually consumed.
 */
import { NON_TEXT_PART_TOKENS, withoutNonTextParts } from '../llm/prompt-parts.js';
import { affordableCompletionTokens, tokensCostMicro, type TokenRate } from './pricing.models.js';

/** An answer shorter than this is not worth making: below it a call is refused rather than cut. */
export const MIN_COMPLETION_TOKENS = 16;

export interface PromptParts {
  messages: unknown[];
  tools?: unknown;
  functions?: unknown;
  response_format?: unknown;
}

/**
 * An upper bound of the prompt's tokens, in time linear in its size: byte-level BPE tokenizers (OpenAI's, Llama's,
 * Mistral's...) never make more tokens than UTF-8 bytes, and the JSON's quotes and braces outnumber the tokens
 * a chat template adds per message. Non-text parts count NON_TEXT_PART_TOKENS each instead of their bytes.
 */
export function promptTokenBound(prompt: PromptParts): number {
  const { messages, nonTextParts } = withoutNonTextParts(prompt.messages);
  const text = JSON.stringify({ messages, tools: prompt.tools, functions: prompt.functions, response_format: prompt.response_format });
  return Buffer.byteLength(text) + nonTextParts * NON_TEXT_PART_TOKENS;
}

export type CompletionLimitField = 'max_tokens' | 'max_completion_tokens';

/** The completion limit a request asks for (or the default), and the field it goes upstream in. */
export function requestedCompletionLimit(
  request: { max_tokens?: number | undefined; max_completion_tokens?: number | undefined },
  defaultMaxTokens: number,
): { limit: number; field: CompletionLimitField } {
  if (request.max_completion_tokens !== undefined) return { limit: request.max_completion_tokens, field: 'max_completion_tokens' };
  if (request.max_tokens !== undefined) return { limit: request.max_tokens, field: 'max_tokens' };
  return { limit: defaultMaxTokens, field: 'max_completion_tokens' };
}

/** The smallest answer a call may be cut to: MIN_COMPLETION_TOKENS, or less if that is all the caller asked for. */
export const minimalCompletion = (limit: number) => Math.min(limit, MIN_COMPLETION_TOKENS);

/** The hold a consumption-mode call needs: at least `minMicro` (a minimal answer), ideally `fullMicro` (its limit). */
export interface CallHoldRange {
  minMicro: number;
  fullMicro: number;
}

export function callHoldRange(rate: TokenRate, promptBound: number, limit: number): CallHoldRange {
  return { minMicro: tokensCostMicro(rate, promptBound, minimalCompletion(limit)), fullMicro: tokensCostMicro(rate, promptBound, limit) };
}

/** The completion limit a reservation of `reservedMicro` pays for, never above what was asked. */
export function completionLimitWithin(rate: TokenRate, promptBound: number, limit: number, reservedMicro: number): number {
  return Math.max(0, Math.min(limit, affordableCompletionTokens(rate, promptBound, reservedMicro)));
}

/**
 * job_based: the completion limit left under the job's token cap, given the tokens its finished calls used and the
 * worst cases of its calls in flight; below a minimal answer the job is full.
 */
export function completionLimitUnderCap(maxTokensPerJob: number, committedTokens: number, promptBound: number, limit: number): number {
  return Math.max(0, Math.min(limit, maxTokensPerJob - committedTokens - promptBound));
}
