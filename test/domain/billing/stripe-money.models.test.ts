import { describe, expect, it } from 'vitest';
import { chargeAmount, creditsOfLines, refundedShareMicro } from '../../../src/domain/billing/stripe/stripe-money.models.js';

describe('chargeAmount: credits × the price of one, in the smallest unit Stripe takes', () => {
  it.each([
    [1000, '0.01', 'usd', 1000],
    [1, '0.01', 'usd', 1],
    [500, '0.002', 'usd', 100],
    // 0.5 cent rounds half up, 0.4 down
    [1, '0.005', 'usd', 1],
    [1, '0.004', 'usd', 0],
    [3, '0.333333333', 'eur', 100],
    [1_000_000_000, '0.01', 'usd', 1_000_000_000],
    [2, '12.5', 'usd', 2500],
    // whole units
    [1000, '1', 'jpy', 1000],
    [3, '0.5', 'jpy', 2],
    // thousandths, a multiple of ten
    [1000, '0.01', 'kwd', 10_000],
    [1, '0.0015', 'bhd', 0],
  ])('%i credits at %s %s → %i', (credits, price, currency, amount) => {
    expect(chargeAmount(credits, price, currency)).toBe(amount);
  });
});

describe('refundedShareMicro: the share of the credits a refund takes back, in all', () => {
  it.each([
    [100_000_000, 1000, 1000, 100_000_000],
    [100_000_000, 250, 1000, 25_000_000],
    [100_000_000, 0, 1000, 0],
    // rounded down: never more than the refunded share
    [1_000_000, 1, 3, 333_333],
    [1_000_000, 2, 3, 666_666],
    [1_000_000, 3, 3, 1_000_000],
    // more refunded than paid (it cannot be) is a full refund
    [5_000_000, 2000, 1000, 5_000_000],
    [5_000_000, 10, 0, 0],
    // no overflow where a float product would lose digits
    [1_000_000_000 * 1_000_000, 99_999_999, 100_000_000, 999_999_990_000_000],
  ])('%i granted, %i of %i refunded → %i', (granted, refunded, amount, share) => {
    expect(refundedShareMicro(granted, refunded, amount)).toBe(share);
  });
});

describe('creditsOfLines: credits bought through the price → credits mapping', () => {
  const mapping = { price_small: 100, price_large: 1000 };

  it('sums each mapped price times its quantity', () => {
    expect(creditsOfLines([{ priceId: 'price_small', quantity: 3 }, { priceId: 'price_large', quantity: 1 }], mapping)).toBe(1300);
    expect(creditsOfLines([{ priceId: 'price_large', quantity: null }], mapping)).toBe(1000);
  });

  it('gives nothing for prices it does not name, including the names of Object properties', () => {
    expect(creditsOfLines([{ priceId: 'price_other', quantity: 2 }, { priceId: null, quantity: 1 }], mapping)).toBe(0);
    expect(creditsOfLines([{ priceId: 'constructor', quantity: 1 }, { priceId: '__proto__', quantity: 1 }, { priceId: 'toString', quantity: 1 }], mapping)).toBe(0);
  });
});
