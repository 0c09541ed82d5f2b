/**
 * Token counts for when the upstream reports no usage (an aborted stream, a provider without usage support).
 * gpt-tokenizer's o200k encoding is loaded on first use only: most calls never need it.
 */
let tokenizer: Promise<typeof import('gpt-tokenizer')> | undefined;

async function countTokens(text: string): Promise<number> {
  if (!text) return 0;
  tokenizer ??= import('gpt-tokenizer');
  return (await tokenizer).countTokens(text);
}

/** OpenAI's documented overhead: about 3 tokens per message plus 3 to prime the reply. */
export async function estimatePromptTokens(messages: unknown[]): Promise<number> {
  let total = 3;
  for (const message of messages) {
    total += 3 + (await countTokens(JSON.stringify(message)));
  }
  return total;
}

export async function estimateCompletionTokens(content: string, toolCalls: unknown[]): Promise<number> {
  return (await countTokens(content)) + (toolCalls.length > 0 ? await countTokens(JSON.stringify(toolCalls)) : 0);
}
