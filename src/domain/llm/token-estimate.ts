import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { NON_TEXT_PART_TOKENS, withoutNonTextParts } from './prompt-parts.js';

/**
 * Token counts for when the upstream reports no usage (an aborted stream, a provider without usage support), with
 * gpt-tokenizer's o200k encoding. Loading its 2 MB rank table blocks the event loop for half a second or more, so
 * the server loads it at start-up (loadTokenizer), never during a request.
 *
 * BPE is quadratic in the length of one pre-tokenized "word" (one 200 KB word took 17 s), so text is counted in
 * slices of at most SLICE_CHARS, cut at whitespace where there is some: linear in the input, and at most one extra
 * token per cut, which errs towards the caller paying slightly more, never less. Linear is still slow for text
 * the vocabulary does not know (random base64: about 3 µs per character), so one estimate counts at most
 * EXACT_COUNT_CHARS exactly and bounds the rest by its UTF-8 length (every token is at least one byte): an
 * upper bound again, and the same bound the call's reservation held. Counting yields to the event loop every
 * YIELD_AFTER_MS over the whole estimate, so no input stalls other requests for longer than one slice.
 */
let tokenizer: Promise<typeof import('gpt-tokenizer')> | undefined;

const SLICE_CHARS = 1_000;
export const EXACT_COUNT_CHARS = 200_000;
const YIELD_AFTER_MS = 4;

/** What is left of one estimate's exact counting, and when it last let the event loop run. */
interface Counting {
  exactCharsLeft: number;
  yieldedAt: number;
}

const newCounting = (): Counting => ({ exactCharsLeft: EXACT_COUNT_CHARS, yieldedAt: performance.now() });

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

async function countWithin(text: string, counting: Counting): Promise<number> {
  if (!text) return 0;
  const { countTokens: count } = await loadTokenizer();
  let total = 0;
  for (let start = 0; start < text.length; ) {
    if (counting.exactCharsLeft <= 0) return total + Buffer.byteLength(text.slice(start), 'utf8');
    if (performance.now() - counting.yieldedAt >= YIELD_AFTER_MS) {
      await yieldToEventLoop();
      counting.yieldedAt = performance.now();
    }
    const end = sliceEnd(text, start);
    total += count(text.slice(start, end));
    counting.exactCharsLeft -= end - start;
    start = end;
  }
  return total;
}

export function countTokens(text: string): Promise<number> {
  return countWithin(text, newCounting());
}

/**
 * OpenAI's documented overhead: about 3 tokens per message plus 3 to prime the reply. Non-text parts count as the
 * reservation counted them (prompt-parts.ts), not by their base64.
 */
export async function estimatePromptTokens(prompt: unknown[]): Promise<number> {
  const counting = newCounting();
  const { messages, nonTextParts } = withoutNonTextParts(prompt);
  let total = 3 + nonTextParts * NON_TEXT_PART_TOKENS;
  for (const message of messages) {
    total += 3 + (await countWithin(JSON.stringify(message), counting));
  }
  return total;
}

export async function estimateCompletionTokens(content: string, toolCalls: unknown[]): Promise<number> {
  const counting = newCounting();
  return (await countWithin(content, counting)) + (toolCalls.length > 0 ? await countWithin(JSON.stringify(toolCalls), counting) : 0);
}
