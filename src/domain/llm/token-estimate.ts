import { setImmediate as yieldToEventLoop } from 'node:timers/promises';

/**
 * Token counts for when the upstream reports no usage (an aborted stream, a provider without usage support), with
 * gpt-tokenizer's o200k encoding. Loading its 2 MB rank table blocks the event loop for half a second or more, so
 * the server loads it at start-up (loadTokenizer), never during a request.
 *
 * BPE is quadratic in the length of one pre-tokenized "word" (one 200 KB word took 17 s), so text is counted in
 * slices of at most SLICE_CHARS, cut at whitespace where there is some: linear in the input, and at most one extra
 * token per cut, which errs towards the caller paying slightly more, never less. Long texts yield to the event
 * loop between groups of slices, so no input stalls other requests for more than a few milliseconds.
 */
let tokenizer: Promise<typeof import('gpt-tokenizer')> | undefined;

const SLICE_CHARS = 1_000;
const CHARS_BETWEEN_YIELDS = 32_000;

/** The end of the slice starting at `start`: at whitespace in its second half if any, never inside a surrogate pair. */
function sliceEnd(text: string, start: number): number {
  const hardEnd = start + SLICE_CHARS;
  if (hardEnd >= text.length) return text.length;
  for (let i = hardEnd; i > start + SLICE_CHARS / 2; i--) {
    if (/\s/.test(text[i]!)) return i;
  }
  const code = text.charCodeAt(hardEnd);
  return code >= 0xdc00 && code <= 0xdfff ? hardEnd - 1 : hardEnd;
}

export function loadTokenizer(): Promise<typeof import('gpt-tokenizer')> {
  tokenizer ??= import('gpt-tokenizer');
  return tokenizer;
}

export async function countTokens(text: string): Promise<number> {
  if (!text) return 0;
  const { countTokens: count } = await loadTokenizer();
  let total = 0;
  let sinceYield = 0;
  for (let start = 0; start < text.length; ) {
    const end = sliceEnd(text, start);
    total += count(text.slice(start, end));
    sinceYield += end - start;
    start = end;
    if (sinceYield >= CHARS_BETWEEN_YIELDS && start < text.length) {
      sinceYield = 0;
      await yieldToEventLoop();
    }
  }
  return total;
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
