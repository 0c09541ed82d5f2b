import { describe, expect, it } from 'vitest';
import { isRefusal, LoginGuard, type LoginAttempt, type LoginRefusal } from '../../../src/domain/admin/login-guard.js';
import { ACCOUNT_BACKOFF, ADDRESS_BACKOFF, addressKey, lockSeconds } from '../../../src/domain/admin/login-throttle.models.js';

describe('lockSeconds: a few free failures, then a doubling wait up to a cap', () => {
  it.each([
    [0, 0],
    [4, 0],
    [5, 1],
    [6, 2],
    [7, 4],
    [14, 512],
    [15, 900],
    [1_000, 900],
  ])('account, after %i consecutive failures: %i s', (failures, seconds) => {
    expect(lockSeconds(ACCOUNT_BACKOFF, failures)).toBe(seconds);
  });

  it('an address gets twice as many free failures as an account', () => {
    expect(lockSeconds(ADDRESS_BACKOFF, 9)).toBe(0);
    expect(lockSeconds(ADDRESS_BACKOFF, 10)).toBe(1);
    expect(lockSeconds(ADDRESS_BACKOFF, 1_000)).toBe(ADDRESS_BACKOFF.maxSeconds);
  });
});

describe('addressKey', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::99', '2001:db8:1:2::/64'],
    ['2001:0db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    [undefined, 'unknown'],
  ])('%s is throttled as %s', (remote, key) => {
    expect(addressKey(remote)).toBe(key);
  });
});

function admitted(result: LoginAttempt | LoginRefusal): LoginAttempt {
  if (isRefusal(result)) throw new Error(`refused: ${JSON.stringify(result)}`);
  return result;
}

describe('LoginGuard', () => {
  it('refuses at once, never queues, beyond the verification slots in total and per address', () => {
    const guard = new LoginGuard({ total: 2, perAddress: 1 });
    const first = admitted(guard.admit('10.0.0.1'));
    expect(guard.admit('10.0.0.1')).toEqual({ scope: 'capacity', retryAfterSeconds: 1 });
    const second = admitted(guard.admit('10.0.0.2'));
    expect(guard.admit('10.0.0.3')).toEqual({ scope: 'capacity', retryAfterSeconds: 1 });
    first.finish('failed');
    first.finish('failed'); // finishing twice frees one slot once
    admitted(guard.admit('10.0.0.3'));
    expect(guard.admit('10.0.0.4')).toEqual({ scope: 'capacity', retryAfterSeconds: 1 });
    second.finish('succeeded');
    admitted(guard.admit('10.0.0.4'));
  });

  it('locks an address after its free failures, doubling, and forgets the streak on a success', () => {
    let now = 1_000_000;
    const guard = new LoginGuard({ total: 2, perAddress: 1 }, () => now);
    for (let i = 0; i < ADDRESS_BACKOFF.freeFailures; i++) admitted(guard.admit('10.0.0.1')).finish('failed');
    expect(guard.admit('10.0.0.1')).toEqual({ scope: 'address', retryAfterSeconds: 1 });
    admitted(guard.admit('10.0.0.2')).finish('not_verified');
    now += 1_000;
    admitted(guard.admit('10.0.0.1')).finish('failed');
    expect(guard.admit('10.0.0.1')).toEqual({ scope: 'address', retryAfterSeconds: 2 });
    now += 2_000;
    admitted(guard.admit('10.0.0.1')).finish('succeeded');
    admitted(guard.admit('10.0.0.1')).finish('failed');
    admitted(guard.admit('10.0.0.1')).finish('not_verified');
  });

  it('throttles an email that matches no admin user like an account', () => {
    let now = 0;
    const guard = new LoginGuard(undefined, () => now);
    for (let i = 0; i < ACCOUNT_BACKOFF.freeFailures; i++) {
      expect(guard.unknownAccountRetryAfter('nobody@example.com')).toBe(0);
      guard.unknownAccountFailed('nobody@example.com');
    }
    expect(guard.unknownAccountRetryAfter('nobody@example.com')).toBe(1);
    expect(guard.unknownAccountRetryAfter('someone-else@example.com')).toBe(0);
    now += 60 * 60_000;
    expect(guard.unknownAccountRetryAfter('nobody@example.com')).toBe(0);
  });
});
