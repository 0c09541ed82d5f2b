import { describe, expect, it } from 'vitest';
import { callCostPico, formatDecimal, jobChargeMicro, parseDecimal, picoToUsd } from '../../../src/domain/billing/pricing.models.js';
import { DEFAULT_BUDGET } from '../../../src/domain/billing/billing-settings.models.js';

describe('decimals', () => {
  it('parses and formats exactly', () => {
    expect(parseDecimal('2.5', 6)).toBe(2_500_000n);
    expect(parseDecimal('0.000001', 6)).toBe(1n);
    expect(parseDecimal('10', 2)).toBe(1000n);
    expect(parseDecimal('1.230000', 2)).toBe(123n);
    expect(formatDecimal(2_500_000n, 6)).toBe('2.5');
    expect(formatDecimal(1n, 12)).toBe('0.000000000001');
    expect(formatDecimal(0n, 6)).toBe('0');
    expect(formatDecimal(-1500n, 3)).toBe('-1.5');
  });

  it('refuses what is not a plain decimal or would lose digits', () => {
    expect(() => parseDecimal('1e3', 6)).toThrow(RangeError);
    expect(() => parseDecimal('-1', 6)).toThrow(RangeError);
    expect(() => parseDecimal('0.0000001', 6)).toThrow(RangeError);
  });
});

describe('call cost', () => {
  it('is tokens times the price per million, in pico-dollars', () => {
    const price = { inputUsdPerMillion: '2.5', outputUsdPerMillion: '10' };
    // 1000 × 2.5 / 1e6 + 500 × 10 / 1e6 = 0.0025 + 0.005 USD
    expect(picoToUsd(callCostPico(price, 1000, 500))).toBe('0.0075');
    expect(callCostPico(undefined, 1000, 500)).toBe(0n);
    // sums of tiny costs stay exact where floats would drift
    const tiny = { inputUsdPerMillion: '0.1', outputUsdPerMillion: '0.2' };
    let total = 0n;
    for (let i = 0; i < 10; i++) total += callCostPico(tiny, 1, 1);
    expect(picoToUsd(total)).toBe('0.000003');
  });
});

describe('job charge by budget mode', () => {
  const usage = { totalTokens: 250, costPico: parseDecimal('0.0075', 12) };

  it('job_based charges credits_per_job whatever was used', () => {
    expect(jobChargeMicro({ ...DEFAULT_BUDGET, creditsPerJob: 3 }, usage)).toBe(3_000_000);
    expect(jobChargeMicro({ ...DEFAULT_BUDGET, creditsPerJob: 3 }, { totalTokens: 0, costPico: 0n })).toBe(3_000_000);
  });

  it('consumption_tokens charges tokens / tokens_per_credit, rounded up to the micro-credit', () => {
    const budget = { ...DEFAULT_BUDGET, budgetMode: 'consumption_tokens' as const, tokensPerCredit: 100 };
    expect(jobChargeMicro(budget, usage)).toBe(2_500_000);
    expect(jobChargeMicro({ ...budget, tokensPerCredit: 3 }, { totalTokens: 1, costPico: 0n })).toBe(333_334);
    expect(jobChargeMicro(budget, { totalTokens: 0, costPico: 0n })).toBe(0);
  });

  it('consumption_usd charges cost × credits_per_dollar, rounded up to the micro-credit', () => {
    const budget = { ...DEFAULT_BUDGET, budgetMode: 'consumption_usd' as const, creditsPerDollar: '1000' };
    expect(jobChargeMicro(budget, usage)).toBe(7_500_000);
    expect(jobChargeMicro({ ...budget, creditsPerDollar: '0.5' }, { totalTokens: 0, costPico: 1n })).toBe(1);
  });
});
