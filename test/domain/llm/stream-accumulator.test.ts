import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { describe, expect, it } from 'vitest';
import { StreamAccumulator } from '../../../src/domain/llm/stream-accumulator.js';

const chunk = (delta: Record<string, unknown>, finish: string | null = null, extra: Partial<ChatCompletionChunk> = {}) =>
  ({
    id: 'c',
    object: 'chat.completion.chunk',
    created: 0,
    model: 'm',
    choices: [{ index: 0, delta, finish_reason: finish }],
    ...extra,
  }) as ChatCompletionChunk;

describe('StreamAccumulator', () => {
  it('concatenates content in order and keeps the finish reason and usage', () => {
    const acc = new StreamAccumulator();
    acc.add(chunk({ role: 'assistant', content: '' }));
    acc.add(chunk({ content: 'Hel' }));
    acc.add(chunk({ content: 'lo' }));
    acc.add(chunk({}, 'stop'));
    acc.add({ ...chunk({}), choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } });
    expect(acc.content).toBe('Hello');
    expect(acc.finishReason).toBe('stop');
    expect(acc.usage).toEqual({ prompt_tokens: 3, completion_tokens: 2 });
    expect(acc.model).toBe('m');
  });

  it('reassembles interleaved tool calls by index', () => {
    const acc = new StreamAccumulator();
    acc.add(chunk({ tool_calls: [{ index: 1, id: 'b', type: 'function', function: { name: 'two', arguments: '' } }] }));
    acc.add(chunk({ tool_calls: [{ index: 0, id: 'a', type: 'function', function: { name: 'one', arguments: '{"x"' } }] }));
    acc.add(chunk({ tool_calls: [{ index: 1, function: { arguments: '{}' } }] }));
    acc.add(chunk({ tool_calls: [{ index: 0, function: { arguments: ':1}' } }] }));
    acc.add(chunk({}, 'tool_calls'));
    expect(acc.toolCalls).toEqual([
      { id: 'a', type: 'function', function: { name: 'one', arguments: '{"x":1}' } },
      { id: 'b', type: 'function', function: { name: 'two', arguments: '{}' } },
    ]);
    expect(acc.content).toBe('');
    expect(acc.finishReason).toBe('tool_calls');
  });

  it('reads a whole completion the same way', () => {
    const acc = new StreamAccumulator();
    acc.addCompletion({
      id: 'x',
      object: 'chat.completion',
      created: 0,
      model: 'gpt',
      choices: [
        {
          index: 0,
          logprobs: null,
          finish_reason: 'tool_calls',
          message: {
            role: 'assistant',
            content: null,
            refusal: null,
            tool_calls: [{ id: 't', type: 'function', function: { name: 'f', arguments: '{}' } }],
          },
        },
      ],
      usage: { prompt_tokens: 4, completion_tokens: 6, total_tokens: 10 },
    });
    expect(acc.toolCalls).toEqual([{ id: 't', type: 'function', function: { name: 'f', arguments: '{}' } }]);
    expect(acc.usage).toEqual({ prompt_tokens: 4, completion_tokens: 6 });
  });

  it('keeps no usage until the upstream sends one', () => {
    const acc = new StreamAccumulator();
    acc.add(chunk({ role: 'assistant', content: '' }));
    expect(acc.content).toBe('');
    expect(acc.usage).toBeNull();
  });
});
