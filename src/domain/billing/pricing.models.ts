/**
 * Pure money math on integers (BigInt), never floats. Decimal strings from NUMERIC columns are parsed exactly.
 * Costs are carried in pico-dollars (1e-12 USD): a price per million tokens with six decimals times a token
 * count is a whole number of pico-dollars.
 */
import type { BudgetSettings } from '../ledger/budget.models.js';
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
