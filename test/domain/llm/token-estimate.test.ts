import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { countTokens as referenceCount } from 'gpt-tokenizer';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { promptTokenBound } from '../../../src/domain/billing/reservation.models.js';
import { NON_TEXT_PART_TOKENS } from '../../../src/domain/llm/prompt-parts.js';
import { countTokens, EXACT_COUNT_CHARS, estimatePromptTokens } from '../../../src/domain/llm/token-estimate.js';

/**
 * countTokens (issue 12): the tokenizer's count, taken in bounded slices so that its time is linear in the input
 * and the event loop is never held for long, exact up to EXACT_COUNT_CHARS per estimate and bounded by bytes
 * beyond; the slices are what gpt-tokenizer is given, recorded here.
 */

const sliced = vi.hoisted(() => ({ texts: [] as string[] }));
vi.mock('gpt-tokenizer', async (importOriginal) => {
  const original = await importOriginal<typeof import('gpt-tokenizer')>();
  return {
    ...original,
    countTokens: (text: string, ...rest: unknown[]) => {
      sliced.texts.push(text);
      return (original.countTokens as (...args: unknown[]) => number)(text, ...rest);
    },
  };
});

beforeEach(() => {
  sliced.texts.length = 0;
});

const PROSE =
  'Creditgate bills what a call consumed. The quick brown fox jumps over the lazy dog, twice; ' +
  'naïve café owners pay €3.50 for "smart quotes" — and tabs\tand\nnewlines count too. ';

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

describe('countTokens', () => {
  it('is 0 for empty input, without asking the tokenizer', async () => {
    expect(await countTokens('')).toBe(0);
    expect(sliced.texts).toEqual([]);
  });

  it('ordinary text: the same count as gpt-tokenizer gives for the whole text, however many slices it takes', async () => {
    for (const text of ['Hello, world!', PROSE, PROSE.repeat(40), PROSE.repeat(700)]) {
      const reference = referenceCount(text);
      sliced.texts.length = 0;
      const counted = await countTokens(text);
      expect(sliced.texts.join('')).toBe(text);
      // A cut at whitespace may cost at most one token per slice, and never makes the count smaller.
      expect(counted, `${text.length} characters in ${sliced.texts.length} slices`).toBeGreaterThanOrEqual(reference);
      expect(counted - reference).toBeLessThanOrEqual(sliced.texts.length - 1);
      expect(counted).toBeLessThanOrEqual(Math.ceil(reference * 1.01));
    }
  });

  it('a 1 MB single-character word: EXACT_COUNT_CHARS counted in 1,000-character slices, the rest bounded by its bytes', async () => {
    const sliceCount = referenceCount('a'.repeat(1_000));
    sliced.texts.length = 0;
    const counted = await countTokens('a'.repeat(1_000_000));
    const exactSlices = EXACT_COUNT_CHARS / 1_000;
    expect(sliced.texts).toHaveLength(exactSlices);
    expect(sliced.texts.every((text) => text === 'a'.repeat(1_000))).toBe(true);
    expect(counted).toBe(exactSlices * sliceCount + (1_000_000 - EXACT_COUNT_CHARS));
  });

  it('a prompt of 16 messages of 25 KB random base64: one exact budget for all, never above the byte bound, no long stall', async () => {
    const messages = Array.from({ length: 16 }, () => ({ role: 'user', content: randomBytes(18_750).toString('base64') }));
    const stalls = monitorEventLoopDelay({ resolution: 5 });
    stalls.enable();
    const estimate = await estimatePromptTokens(messages);
    stalls.disable();
    // Counted exactly until the budget is spent, then by bytes: at least the tokenizer's count, at most the bound.
    expect(sliced.texts.join('').length).toBeLessThan(EXACT_COUNT_CHARS + 1_000);
    sliced.texts.length = 0;
    expect(estimate).toBeGreaterThan(messages.reduce((sum, message) => sum + referenceCount(JSON.stringify(message)), 0));
    expect(estimate).toBeLessThanOrEqual(promptTokenBound({ messages }));
    // Counting yields every few milliseconds; one slice of base64 takes a few milliseconds more (80 ms leaves room for
    // a garbage collection on a busy machine; before, this input held the event loop for 3.4 s).
    expect(stalls.max / 1e6, 'worst event-loop stall (ms)').toBeLessThan(80);
  });

  it('an image part counts as the reservation counted it, not by its base64', async () => {
    const image = { type: 'image_url', image_url: { url: `data:image/png;base64,${randomBytes(300_000).toString('base64')}` } };
    const messages = [{ role: 'user', content: [{ type: 'text', text: 'What is in this picture?' }, image] }];
    const estimate = await estimatePromptTokens(messages);
    expect(estimate).toBeGreaterThanOrEqual(NON_TEXT_PART_TOKENS);
    expect(estimate).toBeLessThan(NON_TEXT_PART_TOKENS + 50);
    expect(estimate).toBeLessThanOrEqual(promptTokenBound({ messages }));
  });

  it('slices never split a surrogate pair: a long run of emoji, at even and odd offsets', async () => {
    for (const text of ['😀'.repeat(5_000), `x${'😀'.repeat(5_000)}`, `ab${'👍🏽'.repeat(3_000)}c`]) {
      sliced.texts.length = 0;
      const counted = await countTokens(text);
      expect(sliced.texts.length).toBeGreaterThan(5);
      expect(sliced.texts.join('')).toBe(text);
      for (const slice of sliced.texts) expect(slice, 'a slice with half a surrogate pair').not.toMatch(LONE_SURROGATE);
      expect(counted).toBe(referenceCount(text));
    }
  });
});
