import { storableText } from '../../lib/text.js';
import { findModelPrice } from '../billing/model-prices.service.js';
import { callCostPico, picoToUsd } from '../billing/pricing.models.js';
import type { ServiceContext } from '../context.js';
import type { CallHandle, CallOutcome } from './call-relay.js';
import type { CallRecord } from './calls.repository.js';
import { estimateCompletionTokens, estimatePromptTokens } from './token-estimate.js';

/**
 * What a finished call is recorded as: content, tool calls, finish reason, tokens (the upstream's usage, else
 * counted here), cost, latency, time to first token, and whether it delivered output (what makes it billable).
 *
 * The cost uses the price of the model the upstream says it served (a fallback, a dated snapshot), else the routed
 * model's. Counted completion tokens never exceed the limit the call was sent with.
 */
export async function callRecordOf(ctx: ServiceContext, handle: CallHandle, outcome: CallOutcome): Promise<CallRecord> {
  const { accumulator } = outcome;
  const producedOutput = accumulator.content.length > 0 || accumulator.toolCalls.length > 0 || (accumulator.usage?.completion_tokens ?? 0) > 0;
  const delivered = outcome.status === 'success' || producedOutput;
  const usage = accumulator.usage ?? (delivered ? await estimatedUsage(handle, outcome) : { prompt_tokens: 0, completion_tokens: 0 });
  const served = accumulator.model ?? outcome.model;
  const price =
    (served ? await findModelPrice(ctx.db, ctx.caches, served) : undefined) ??
    (outcome.model ? await findModelPrice(ctx.db, ctx.caches, outcome.model) : undefined);
  const costPico = callCostPico(price, usage.prompt_tokens, usage.completion_tokens);
  // Whatever the model produced is stored, even characters PostgreSQL refuses (they become U+FFFD).
  const toolCalls = accumulator.toolCalls.map((call) => ({
    ...call,
    id: storableText(call.id),
    function: { name: storableText(call.function.name), arguments: storableText(call.function.arguments) },
  }));
  return {
    status: outcome.status,
    modelUsed: served ? storableText(served) : null,
    responseContent: storableText(accumulator.content) || null,
    toolCalls: toolCalls.length > 0 ? toolCalls : null,
    finishReason: accumulator.finishReason ? storableText(accumulator.finishReason) : null,
    promptTokens: usage.prompt_tokens,
    completionTokens: usage.completion_tokens,
    totalTokens: usage.prompt_tokens + usage.completion_tokens,
    usageSource: accumulator.usage ? 'upstream' : 'estimated',
    costUsd: picoToUsd(costPico),
    latencyMs: Math.round(performance.now() - handle.startedAt),
    ttftMs: outcome.ttftMs,
    error: outcome.error?.message ?? null,
    delivered,
    maxTokens: handle.maxTokens,
  };
}

/** For a call the upstream reported no usage for (an aborted stream, a provider without usage). */
async function estimatedUsage(handle: CallHandle, outcome: CallOutcome) {
  const { accumulator } = outcome;
  const completion = await estimateCompletionTokens(accumulator.content, accumulator.toolCalls);
  return { prompt_tokens: await estimatePromptTokens(handle.messages), completion_tokens: Math.min(completion, handle.maxTokens) };
}
