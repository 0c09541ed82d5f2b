import { isIPv6 } from 'node:net';

/** How failed logins slow the next attempt: a few are free, then each failure doubles the wait, up to a cap. */
export interface BackoffPolicy {
  freeFailures: number;
  baseSeconds: number;
  maxSeconds: number;
}

/**
 * Per account: the fifth consecutive failure locks the account for 1 s, the sixth for 2 s ... up to 15 minutes.
 * An online guesser gets about 100 guesses a day per account, while an admin who mistyped waits seconds.
 */
export const ACCOUNT_BACKOFF: BackoffPolicy = { freeFailures: 5, baseSeconds: 1, maxSeconds: 900 };

/** Per client address: more lenient, since several admins may share an office's address. */
export const ADDRESS_BACKOFF: BackoffPolicy = { freeFailures: 10, baseSeconds: 1, maxSeconds: 900 };

/**
 * scrypt verifications one instance runs at once. Each takes one of libuv's 4 threads and 128 MiB for ~0.3 s, so
 * two leave half the thread pool (file system, DNS) free and bound the memory at 256 MiB.
 */
export const MAX_CONCURRENT_VERIFICATIONS = 2;

/** One address verifies one password at a time, so a single client can never hold every slot. */
export const MAX_VERIFICATIONS_PER_ADDRESS = 1;

/** Seconds an account or address stays locked after its `failures`-th consecutive failure (0: not locked). */
export function lockSeconds(policy: BackoffPolicy, failures: number): number {
  if (failures < policy.freeFailures) return 0;
  return Math.min(policy.maxSeconds, policy.baseSeconds * 2 ** Math.min(failures - policy.freeFailures, 30));
}

/**
 * The key an address is throttled under. IPv4 (also IPv4-mapped IPv6) as is; IPv6 by its /64, since one client
 * commonly holds a whole /64 and could otherwise take a fresh address for every attempt.
 */
export function addressKey(remoteAddress: string | undefined): string {
  if (!remoteAddress) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remoteAddress);
  if (mapped) return mapped[1]!;
  if (!isIPv6(remoteAddress)) return remoteAddress;
  const [head = '', tail = ''] = remoteAddress.toLowerCase().split('%')[0]!.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = remoteAddress.includes('::') ? [...headGroups, ...Array<string>(missing).fill('0'), ...tailGroups] : headGroups;
  return `${groups.slice(0, 4).map((group) => group.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
