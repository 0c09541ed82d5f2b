import { monitorEventLoopDelay } from 'node:perf_hooks';
import { countTokens as referenceCount } from 'gpt-tokenizer';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { countTokens } from '../../../src/domain/llm/token-estimate.js';

/**
 * countTokens (issue 12): the tokenizer's count, taken in bounded slices so that its time is linear in the input
 * and the event loop is never held for long; the slices are what gpt-tokenizer is given, recorded here.
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

  it('a 1 MB single-character word: counted in 1,000-character slices, linearly, yielding to the event loop', async () => {
    const sliceCount = referenceCount('a'.repeat(1_000));
    sliced.texts.length = 0;
    const stalls = monitorEventLoopDelay({ resolution: 10 });
    stalls.enable();
    const startedAt = performance.now();
    const counted = await countTokens('a'.repeat(1_000_000));
    const elapsedMs = performance.now() - startedAt;
    stalls.disable();

    expect(sliced.texts).toHaveLength(1_000);
    expect(sliced.texts.every((text) => text === 'a'.repeat(1_000))).toBe(true);
    expect(counted).toBe(1_000 * sliceCount);
    // The quadratic count took 39 s for 300 KB; sliced, a megabyte takes well under 10 s even on a busy machine.
    expect(elapsedMs).toBeLessThan(10_000);
    expect(stalls.max / 1e6, 'worst event-loop stall (ms)').toBeLessThan(250);
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
