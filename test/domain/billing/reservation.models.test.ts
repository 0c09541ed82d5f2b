import fc from 'fast-check';
import { countTokens as bpeTokens } from 'gpt-tokenizer';
import { describe, expect, it } from 'vitest';
import { DEFAULT_BUDGET } from '../../../src/domain/billing/billing-settings.models.js';
import { affordableCompletionTokens, tokenRate, tokensCostMicro } from '../../../src/domain/billing/pricing.models.js';
import { NON_TEXT_PART_TOKENS } from '../../../src/domain/llm/prompt-parts.js';
import {
  MIN_COMPLETION_TOKENS,
  callHoldRange,
  completionLimitUnderCap,
  completionLimitWithin,
  promptTokenBound,
  requestedCompletionLimit,
} from '../../../src/domain/billing/reservation.models.js';

const tokensRate = (tokensPerCredit: number) => tokenRate({ ...DEFAULT_BUDGET, budgetMode: 'consumption_tokens', tokensPerCredit }, undefined)!;
const usdRate = (input: string, output: string, creditsPerDollar: string) =>
  tokenRate({ ...DEFAULT_BUDGET, budgetMode: 'consumption_usd', creditsPerDollar }, { inputUsdPerMillion: input, outputUsdPerMillion: output })!;

const price = fc.tuple(fc.integer({ min: 0, max: 100_000_000 }), fc.integer({ min: 0, max: 999_999 })).map(([whole, frac]) => `${whole % 200}.${String(frac).padStart(6, '0')}`);
const rates = fc.oneof(
  fc.integer({ min: 1, max: 1_000_000 }).map(tokensRate),
  fc.tuple(price, price, fc.integer({ min: 1, max: 100_000 })).map(([input, output, perDollar]) => usdRate(input, output, String(perDollar))),
);

describe('the prompt bound', () => {
  it('is never below what a BPE tokenizer counts for the messages, whatever their text', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'grapheme', maxLength: 400 }), { minLength: 1, maxLength: 8 }), (texts) => {
        const messages = texts.map((content) => ({ role: 'user', content }));
        // OpenAI's count of a chat prompt: each message's text, about 3 tokens of template per message, 3 to prime.
        const counted = texts.reduce((sum, text) => sum + bpeTokens(text) + 3, 3);
        expect(promptTokenBound({ messages })).toBeGreaterThanOrEqual(counted);
      }),
      { numRuns: 300 },
    );
  });

  it('counts tools and response formats, and a fixed amount per image instead of its bytes', () => {
    const text = { messages: [{ role: 'user', content: 'hi' }] };
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }];
    expect(promptTokenBound({ ...text, tools })).toBeGreaterThan(promptTokenBound(text) + JSON.stringify(tools).length - 1);
    const image = { type: 'image_url', image_url: { url: `data:image/png;base64,${'A'.repeat(100_000)}` } };
    const withImage = promptTokenBound({ messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, image] }] });
    expect(withImage).toBeGreaterThanOrEqual(NON_TEXT_PART_TOKENS);
    expect(withImage).toBeLessThan(NON_TEXT_PART_TOKENS + 200);
  });
});

describe('the completion limit', () => {
  it('takes the field the client used, else max_completion_tokens with the default', () => {
    expect(requestedCompletionLimit({ max_tokens: 30 }, 4096)).toEqual({ limit: 30, field: 'max_tokens' });
    expect(requestedCompletionLimit({ max_completion_tokens: 40, max_tokens: 30 }, 4096)).toEqual({ limit: 40, field: 'max_completion_tokens' });
    expect(requestedCompletionLimit({}, 4096)).toEqual({ limit: 4096, field: 'max_completion_tokens' });
  });

  it('within a reservation: its cost never exceeds the reservation, and one more token would (unless it is what was asked)', () => {
    fc.assert(
      fc.property(rates, fc.integer({ min: 0, max: 50_000 }), fc.integer({ min: 1, max: 100_000 }), fc.integer({ min: 0, max: 10_000_000_000 }), (rate, prompt, asked, reserved) => {
        const limit = completionLimitWithin(rate, prompt, asked, reserved);
        expect(limit).toBeGreaterThanOrEqual(0);
        expect(limit).toBeLessThanOrEqual(asked);
        if (limit > 0) expect(tokensCostMicro(rate, prompt, limit)).toBeLessThanOrEqual(reserved);
        if (limit < asked && rate.output > 0n && limit > 0) expect(tokensCostMicro(rate, prompt, limit + 1)).toBeGreaterThan(reserved);
      }),
      { numRuns: 2_000 },
    );
  });

  it('a hold within its range always pays for at least a minimal answer, at most what was asked', () => {
    fc.assert(
      fc.property(rates, fc.integer({ min: 0, max: 50_000 }), fc.integer({ min: 1, max: 100_000 }), fc.double({ min: 0, max: 1, noNaN: true }), (rate, prompt, asked, share) => {
        const { minMicro, fullMicro } = callHoldRange(rate, prompt, asked);
        expect(minMicro).toBeLessThanOrEqual(fullMicro);
        const held = minMicro + Math.floor((fullMicro - minMicro) * share);
        const limit = completionLimitWithin(rate, prompt, asked, held);
        expect(limit).toBeGreaterThanOrEqual(Math.min(asked, MIN_COMPLETION_TOKENS));
        expect(tokensCostMicro(rate, prompt, limit)).toBeLessThanOrEqual(held);
      }),
      { numRuns: 2_000 },
    );
  });

  it('affordable tokens are negative when not even the prompt fits, infinite when output is free and the prompt fits', () => {
    expect(affordableCompletionTokens(tokensRate(10), 100, 5 * 1_000_000)).toBe(-50);
    // $1 per million input tokens at 1,000 credits per dollar: 1,000 micro-credits a prompt token.
    expect(affordableCompletionTokens(usdRate('1', '0', '1000'), 100, 100_000)).toBe(Number.POSITIVE_INFINITY);
    expect(affordableCompletionTokens(usdRate('1', '0', '1000'), 100, 99_999)).toBe(Number.NEGATIVE_INFINITY);
    // The property test's counterexample: free output, a prompt that costs 1 micro-credit, nothing reserved.
    expect(completionLimitWithin(usdRate('1', '0', '1'), 1, 1, 0)).toBe(0);
  });

  it('under a job_based cap: what is left after used tokens, calls in flight and the prompt', () => {
    expect(completionLimitUnderCap(1000, 300, 100, 4096)).toBe(600);
    expect(completionLimitUnderCap(1000, 300, 100, 50)).toBe(50);
    expect(completionLimitUnderCap(1000, 950, 100, 50)).toBe(0);
  });
});
