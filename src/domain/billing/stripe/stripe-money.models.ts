import { parseDecimal } from '../pricing.models.js';

/** Pure money rules of selling credits through Stripe; integer arithmetic only (BigInt where products grow). */

// Stripe counts these currencies in whole units, and these three-decimal ones in thousandths that must be a
// multiple of ten (https://docs.stripe.com/currencies#special-cases).
const ZERO_DECIMAL = new Set(['bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga', 'pyg', 'rwf', 'ugx', 'vnd', 'vuv', 'xaf', 'xof', 'xpf']);
const THREE_DECIMAL = new Set(['bhd', 'jod', 'kwd', 'omr', 'tnd']);

/** CREDIT_PRICE_USD has at most nine decimals. */
const PRICE_SCALE = 9;

/**
 * What `credits` cost at `unitPrice` (a decimal string, e.g. CREDIT_PRICE_USD) each, in the smallest unit of
 * `currency` that Stripe takes, rounded half up.
 */
export function chargeAmount(credits: number, unitPrice: string, currency: string): number {
  const scale = 10n ** BigInt(PRICE_SCALE);
  const digits = ZERO_DECIMAL.has(currency) ? 0n : 2n;
  const total = BigInt(credits) * parseDecimal(unitPrice, PRICE_SCALE) * 10n ** digits;
  const rounded = (total * 2n + scale) / (2n * scale);
  return Number(THREE_DECIMAL.has(currency) ? rounded * 10n : rounded);
}

/**
 * The micro-credits a refund takes back, in all, after `amountRefunded` of a payment of `amount` that bought
 * `grantedMicro`: the same share, rounded down (a full refund takes back exactly what was granted).
 */
export function refundedShareMicro(grantedMicro: number, amountRefunded: number, amount: number): number {
  if (amount <= 0) return 0;
  return Number((BigInt(grantedMicro) * BigInt(Math.min(amountRefunded, amount))) / BigInt(amount));
}

export interface PricedLine {
  priceId: string | null;
  quantity: number | null;
}

/** Credits bought by a payment's lines through the price → credits mapping; a price it does not name buys none. */
export function creditsOfLines(lines: PricedLine[], priceCredits: Readonly<Record<string, number>>): number {
  let credits = 0;
  for (const line of lines) {
    // Own keys only: a price id such as "constructor" must not find Object's.
    const perUnit = line.priceId !== null && Object.hasOwn(priceCredits, line.priceId) ? priceCredits[line.priceId] : undefined;
    if (perUnit !== undefined) credits += perUnit * (line.quantity ?? 1);
  }
  return credits;
}
