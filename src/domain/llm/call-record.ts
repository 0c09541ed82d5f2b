import { storableText } from '../../lib/text.js';
import type { CallHandle, CallOutcome } from './call-relay.js';
import type { CallUsage } from './calls.repository.js';
import { estimateCompletionTokens, estimatePromptTokens } from './token-estimate.js';

/**
 * What a finished call consumed and produced, as it will be recorded (its cost is added by the settlement, which
 * prices it): content, tool calls, finish reason, tokens (the upstream's usage, else counted here), latency, time
 * to first token, the model the upstream says it served, and whether it delivered output (what makes it billable).
 * Counted completion tokens never exceed the limit the call was sent with.
 */
export async function callUsageOf(handle: CallHandle, outcome: CallOutcome): Promise<CallUsage> {
  const { accumulator } = outcome;
  const producedOutput = accumulator.content.length > 0 || accumulator.toolCalls.length > 0 || (accumulator.usage?.completion_tokens ?? 0) > 0;
  const delivered = outcome.status === 'success' || producedOutput;
  const maxTokens = handle.maxTokens ?? Number.MAX_SAFE_INTEGER;
  const usage = accumulator.usage ?? (delivered ? await estimatedUsage(handle.messages, accumulator, maxTokens) : { prompt_tokens: 0, completion_tokens: 0 });
  const served = accumulator.model ?? outcome.model;
  // Whatever the model produced is stored, even characters PostgreSQL refuses (they become U+FFFD).
  const toolCalls = accumulator.toolCalls.map((call) => ({
    ...call,
    id: storableText(call.id),
    function: { name: storableText(call.function.name), arguments: storableText(call.function.arguments) },
  }));
  return {
    status: outcome.status,
    modelUsed: served ? storableText(served) : null,
    routedModel: outcome.model,
    responseContent: storableText(accumulator.content) || null,
    toolCalls: toolCalls.length > 0 ? toolCalls : null,
    finishReason: accumulator.finishReason ? storableText(accumulator.finishReason) : null,
    promptTokens: usage.prompt_tokens,
    completionTokens: usage.completion_tokens,
    totalTokens: usage.prompt_tokens + usage.completion_tokens,
    usageSource: accumulator.usage ? 'upstream' : 'estimated',
    latencyMs: Math.round(performance.now() - handle.startedAt),
    ttftMs: outcome.ttftMs,
    error: outcome.error?.message ?? null,
    delivered,
    maxTokens: handle.maxTokens ?? 0,
  };
}

/** For a call the upstream reported no usage for (an aborted stream, a provider without usage). */
async function estimatedUsage(messages: unknown[], accumulator: CallOutcome['accumulator'], maxTokens: number) {
  const completion = await estimateCompletionTokens(accumulator.content, accumulator.toolCalls);
  return { prompt_tokens: await estimatePromptTokens(messages), completion_tokens: Math.min(completion, maxTokens) };
}
