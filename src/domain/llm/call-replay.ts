import { eq } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { llmCalls } from '../../db/schema/index.js';
import { notFound } from '../../lib/errors.js';
import { SSE_DONE, sseData } from '../../sse/encode.js';

/**
 * The SSE frames of a recorded streamed call, for replaying it to a retry with the same Idempotency-Key:
 * the same content, tool calls and finish reason, without calling the upstream again.
 */
export async function replayCallFrames(db: DbOrTx, callId: string): Promise<string[]> {
  const [call] = await db.select().from(llmCalls).where(eq(llmCalls.id, callId));
  if (!call) throw notFound('call');
  const base = {
    id: `chatcmpl-${call.id}`,
    object: 'chat.completion.chunk',
    created: Math.floor(call.createdAt.getTime() / 1000),
    model: call.modelUsed ?? call.modelRequested,
  };
  const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) =>
    sseData({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }] });
  const frames = [chunk({ role: 'assistant', content: call.responseContent ?? '' })];
  const toolCalls = (call.toolCalls as { id: string; type: string; function: unknown }[] | null) ?? [];
  if (toolCalls.length > 0) frames.push(chunk({ tool_calls: toolCalls.map((tool, index) => ({ index, ...tool })) }));
  if (call.finishReason) frames.push(chunk({}, call.finishReason));
  if (call.status === 'failed') {
    frames.push(sseData({ error: { type: 'upstream_error', code: 'upstream_error', message: call.error ?? 'upstream failed', param: null } }));
  }
  frames.push(SSE_DONE);
  return frames;
}
