/**
 * Pure money math on integers (BigInt), never floats. Decimal strings from NUMERIC columns are parsed exactly.
 * Costs are carried in pico-dollars (1e-12 USD): a price per million tokens with six decimals times a token
 * count is a whole number of pico-dollars.
 */
import type { BudgetSettings } from './billing-settings.models.js';
import { MICRO_PER_CREDIT } from '../ledger/ledger.models.js';

const PICO_PER_USD = 10n ** 12n;

/** "2.5" with `scale` 6 → 2_500_000n. Throws on anything that is not a plain non-negative decimal. */
export function parseDecimal(value: string, scale: number): bigint {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(value.trim());
  if (!match) throw new RangeError(`not a decimal: ${value}`);
  const fraction = (match[2] ?? '').padEnd(scale, '0');
  if (fraction.length > scale && /[1-9]/.test(fraction.slice(scale))) throw new RangeError(`more than ${scale} decimals: ${value}`);
  return BigInt(match[1]!) * 10n ** BigInt(scale) + BigInt(fraction.slice(0, scale) || '0');
}

export function formatDecimal(value: bigint, scale: number): string {
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(scale + 1, '0');
  const whole = digits.slice(0, digits.length - scale);
  const fraction = digits.slice(digits.length - scale).replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`;
}

export interface ModelPrice {
  inputUsdPerMillion: string;
  outputUsdPerMillion: string;
}

/** Cost of one call in pico-dollars: tokens × (USD per million tokens, 6 decimals = 1e-12 USD per token). */
export function callCostPico(price: ModelPrice | undefined, promptTokens: number, completionTokens: number): bigint {
  if (!price) return 0n;
  return BigInt(promptTokens) * parseDecimal(price.inputUsdPerMillion, 6) + BigInt(completionTokens) * parseDecimal(price.outputUsdPerMillion, 6);
}

export const picoToUsd = (pico: bigint) => formatDecimal(pico, 12);
export const usdToPico = (usd: string) => parseDecimal(usd, 12);

const ceilDiv = (a: bigint, b: bigint) => (a + b - 1n) / b;

export interface JobUsage {
  totalTokens: number;
  costPico: bigint;
}

/**
 * What a completed job costs in micro-credits under the team's budget mode, rounded up to the micro-credit so
 * consumption is never under-billed by rounding.
 */
export function jobChargeMicro(budget: BudgetSettings, usage: JobUsage): number {
  switch (budget.budgetMode) {
    case 'job_based':
      return budget.creditsPerJob * MICRO_PER_CREDIT;
    case 'consumption_tokens':
      return Number(ceilDiv(BigInt(usage.totalTokens) * BigInt(MICRO_PER_CREDIT), BigInt(budget.tokensPerCredit ?? 1)));
    case 'consumption_usd': {
      const creditsPerDollarMicro = parseDecimal(budget.creditsPerDollar ?? '0', 6);
      // pico-USD × micro-credits-per-USD / 1e12 = micro-credits
      return Number(ceilDiv(usage.costPico * creditsPerDollarMicro, PICO_PER_USD));
    }
  }
}

/**
 * What tokens cost under a consumption mode, as an exact fraction: micro-credits =
 * ceil((promptTokens × input + completionTokens × output) / per). Undefined for job_based, where a job has one price.
 */
export interface TokenRate {
  input: bigint;
  output: bigint;
  per: bigint;
}

export function tokenRate(budget: BudgetSettings, price: ModelPrice | undefined): TokenRate | undefined {
  switch (budget.budgetMode) {
    case 'job_based':
      return undefined;
    case 'consumption_tokens': {
      const micro = BigInt(MICRO_PER_CREDIT);
      return { input: micro, output: micro, per: BigInt(budget.tokensPerCredit ?? 1) };
    }
    case 'consumption_usd': {
      // pico-USD per token (a price per million with 6 decimals) × micro-credits per USD / 1e12
      const creditsPerDollarMicro = parseDecimal(budget.creditsPerDollar ?? '0', 6);
      return {
        input: parseDecimal(price?.inputUsdPerMillion ?? '0', 6) * creditsPerDollarMicro,
        output: parseDecimal(price?.outputUsdPerMillion ?? '0', 6) * creditsPerDollarMicro,
        per: PICO_PER_USD,
      };
    }
  }
}

/** What a call of this size costs, rounded up to the micro-credit. */
export function tokensCostMicro(rate: TokenRate, promptTokens: number, completionTokens: number): number {
  return Number(ceilDiv(BigInt(promptTokens) * rate.input + BigInt(completionTokens) * rate.output, rate.per));
}

/**
 * The most completion tokens a budget of `budgetMicro` pays for after a prompt of `promptTokens`: negative when not
 * even the prompt fits (-Infinity if output is free), Infinity when output is free and the prompt fits.
 */
export function affordableCompletionTokens(rate: TokenRate, promptTokens: number, budgetMicro: number): number {
  const spendable = BigInt(budgetMicro) * rate.per - BigInt(promptTokens) * rate.input;
  if (rate.output === 0n) return spendable >= 0n ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
  // Floor division that stays correct for a negative dividend.
  const tokens = spendable >= 0n ? spendable / rate.output : -ceilDiv(-spendable, rate.output);
  return Number(tokens);
}

/** The dearest of several models, input and output apart: what a call that may fall back between them can cost. */
export function highestPrice(prices: ModelPrice[]): ModelPrice | undefined {
  let highest: ModelPrice | undefined;
  for (const price of prices) {
    if (!highest) {
      highest = price;
      continue;
    }
    const dearer = (a: string, b: string) => (parseDecimal(a, 6) >= parseDecimal(b, 6) ? a : b);
    highest = {
      inputUsdPerMillion: dearer(highest.inputUsdPerMillion, price.inputUsdPerMillion),
      outputUsdPerMillion: dearer(highest.outputUsdPerMillion, price.outputUsdPerMillion),
    };
  }
  return highest;
}
