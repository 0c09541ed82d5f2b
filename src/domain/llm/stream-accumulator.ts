import type { ChatCompletion, ChatCompletionChunk } from 'openai/resources/chat/completions';

export interface ToolCallRecord {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface UpstreamUsage {
  prompt_tokens: number;
  completion_tokens: number;
}

/**
 * Rebuilds the whole answer from streamed chunks while they pass through: content in order, tool calls
 * reassembled by index (id and name from their first delta, arguments concatenated), the finish reason and
 * the upstream's usage when it sends one. It keeps only the text, never the chunks.
 */
export class StreamAccumulator {
  private contentParts: string[] = [];
  private readonly tools = new Map<number, ToolCallRecord>();
  finishReason: string | null = null;
  usage: UpstreamUsage | null = null;
  model: string | null = null;

  add(chunk: ChatCompletionChunk): void {
    this.model ??= chunk.model ?? null;
    if (chunk.usage) this.usage = { prompt_tokens: chunk.usage.prompt_tokens, completion_tokens: chunk.usage.completion_tokens };
    const choice = chunk.choices?.[0];
    if (!choice) return;
    const delta = choice.delta ?? {};
    if (typeof delta.content === 'string' && delta.content.length > 0) this.contentParts.push(delta.content);
    for (const toolDelta of delta.tool_calls ?? []) {
      const call = this.tools.get(toolDelta.index) ?? { id: '', type: 'function' as const, function: { name: '', arguments: '' } };
      if (toolDelta.id) call.id = toolDelta.id;
      if (toolDelta.function?.name) call.function.name += toolDelta.function.name;
      if (toolDelta.function?.arguments) call.function.arguments += toolDelta.function.arguments;
      this.tools.set(toolDelta.index, call);
    }
    if (choice.finish_reason) this.finishReason = choice.finish_reason;
  }

  /** Takes a whole (non-streamed) completion. */
  addCompletion(completion: ChatCompletion): void {
    this.model = completion.model;
    const choice = completion.choices[0];
    if (completion.usage) {
      this.usage = { prompt_tokens: completion.usage.prompt_tokens, completion_tokens: completion.usage.completion_tokens };
    }
    if (!choice) return;
    if (choice.message.content) this.contentParts.push(choice.message.content);
    (choice.message.tool_calls ?? []).forEach((call, index) => {
      if (call.type === 'function') {
        this.tools.set(index, { id: call.id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments } });
      }
    });
    this.finishReason = choice.finish_reason;
  }

  get content(): string {
    if (this.contentParts.length > 1) this.contentParts = [this.contentParts.join('')];
    return this.contentParts[0] ?? '';
  }

  get toolCalls(): ToolCallRecord[] {
    return [...this.tools.entries()].sort(([a], [b]) => a - b).map(([, call]) => call);
  }
}
