/** Pure credit arithmetic. Credits are kept as integer micro-credits so no amount is ever a float. */
export const MICRO_PER_CREDIT = 1_000_000;

export function creditsToMicro(credits: number): number {
  if (!Number.isSafeInteger(credits)) throw new RangeError(`credits must be a whole number, got ${credits}`);
  return credits * MICRO_PER_CREDIT;
}

/** For display: at most six decimals, exact for every integer micro amount below 2^53. */
export function microToCredits(micro: number): number {
  return micro / MICRO_PER_CREDIT;
}
