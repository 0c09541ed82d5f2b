import { eq } from 'drizzle-orm';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import type { DbOrTx } from '../../db/client.js';
import { llmCalls } from '../../db/schema/index.js';
import { notFound } from '../../lib/errors.js';
import { errorFrameBody, openAiFormat, type StreamFormat } from '../../sse/formats.js';

/**
 * The SSE frames of a recorded call, rebuilt from its record: the same content, tool calls and finish reason,
 * without calling the upstream again. Used to replay a stream to a retry with the same Idempotency-Key and to a
 * queue client attaching after the call ended.
 */
export async function replayCallFrames(db: DbOrTx, callId: string, format: StreamFormat = openAiFormat): Promise<{ jobId: string; frames: string[] }> {
  const [call] = await db.select().from(llmCalls).where(eq(llmCalls.id, callId));
  if (!call) throw notFound('call');
  const chunk = (delta: ChatCompletionChunk.Choice.Delta, finishReason: ChatCompletionChunk.Choice['finish_reason'] = null): ChatCompletionChunk => ({
    id: `chatcmpl-${call.id}`,
    object: 'chat.completion.chunk',
    created: Math.floor(call.createdAt.getTime() / 1000),
    model: call.modelUsed ?? call.modelRequested,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  });
  const chunks = [chunk({ role: 'assistant', content: call.responseContent ?? '' })];
  const toolCalls = (call.toolCalls as { id: string; type: 'function'; function: { name: string; arguments: string } }[] | null) ?? [];
  if (toolCalls.length > 0) chunks.push(chunk({ tool_calls: toolCalls.map((tool, index) => ({ index, ...tool })) }));
  if (call.finishReason) chunks.push(chunk({}, call.finishReason as ChatCompletionChunk.Choice['finish_reason']));
  const frames = chunks.map((c) => format.chunk(c)).filter((frame): frame is string => frame !== null);
  if (call.status === 'failed' || call.status === 'cancelled') {
    frames.push(format.error(errorFrameBody('upstream_error', call.error ?? 'the call did not finish')));
  }
  frames.push(format.done());
  return { jobId: call.jobId, frames };
}
