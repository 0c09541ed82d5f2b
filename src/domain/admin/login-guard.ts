import {
  ACCOUNT_BACKOFF,
  ADDRESS_BACKOFF,
  lockSeconds,
  MAX_CONCURRENT_VERIFICATIONS,
  MAX_VERIFICATIONS_PER_ADDRESS,
  type BackoffPolicy,
} from './login-throttle.models.js';

/** Why an attempt is refused before any password is hashed. */
export type LoginRefusal = { scope: 'address' | 'capacity' | 'account'; retryAfterSeconds: number };

export type LoginOutcome = 'succeeded' | 'failed' | 'not_verified';

/** An admitted attempt holds a verification slot until it is finished, whatever happened. */
export interface LoginAttempt {
  finish(outcome: LoginOutcome): void;
}

interface Failures {
  failures: number;
  lockedUntil: number;
  forgetAt: number;
}

// A failure streak is forgotten this long after its last failure (or after its lock ends, if later).
const FORGET_AFTER_MS = 60 * 60_000;
const MAX_TRACKED = 10_000;

/** Consecutive failures per key with exponential backoff, in memory, bounded in size. */
class FailureStreaks {
  private readonly entries = new Map<string, Failures>();

  constructor(private readonly policy: BackoffPolicy) {}

  retryAfterSeconds(key: string, now: number): number {
    const entry = this.current(key, now);
    return entry && entry.lockedUntil > now ? Math.ceil((entry.lockedUntil - now) / 1000) : 0;
  }

  failed(key: string, now: number): void {
    const failures = (this.current(key, now)?.failures ?? 0) + 1;
    const lockedUntil = now + lockSeconds(this.policy, failures) * 1000;
    this.entries.delete(key);
    if (this.entries.size >= MAX_TRACKED) this.prune(now);
    // Re-inserted, so the map stays ordered by last failure and pruning drops the stalest streaks first.
    this.entries.set(key, { failures, lockedUntil, forgetAt: Math.max(lockedUntil, now + FORGET_AFTER_MS) });
  }

  succeeded(key: string): void {
    this.entries.delete(key);
  }

  private current(key: string, now: number): Failures | undefined {
    const entry = this.entries.get(key);
    if (entry && entry.forgetAt <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  private prune(now: number): void {
    for (const [key, entry] of this.entries) if (entry.forgetAt <= now) this.entries.delete(key);
    for (const key of this.entries.keys()) {
      if (this.entries.size < MAX_TRACKED) break;
      this.entries.delete(key);
    }
  }
}

/**
 * This instance's share of login throttling, all decided before a password is hashed and never by waiting:
 * failure streaks per client address, a cap on verifications in flight (in total and per address), and
 * streaks for emails that match no admin user (so an unknown email is throttled like a real account and the
 * answers do not tell which emails exist). Real accounts are throttled in the database (admin-users.repository.ts),
 * which every instance shares; this state is per instance, so N instances allow N times the per-address budget.
 */
export class LoginGuard {
  private readonly addresses = new FailureStreaks(ADDRESS_BACKOFF);
  private readonly unknownAccounts = new FailureStreaks(ACCOUNT_BACKOFF);
  private readonly verifyingByAddress = new Map<string, number>();
  private verifying = 0;

  constructor(
    private readonly limits = { total: MAX_CONCURRENT_VERIFICATIONS, perAddress: MAX_VERIFICATIONS_PER_ADDRESS },
    private readonly now: () => number = Date.now,
  ) {}

  /** A slot to verify a password from `address`, or why not (a locked address, or no slot free: retry in a second). */
  admit(address: string): LoginAttempt | LoginRefusal {
    const now = this.now();
    const locked = this.addresses.retryAfterSeconds(address, now);
    if (locked > 0) return { scope: 'address', retryAfterSeconds: locked };
    const byAddress = this.verifyingByAddress.get(address) ?? 0;
    if (byAddress >= this.limits.perAddress || this.verifying >= this.limits.total) return { scope: 'capacity', retryAfterSeconds: 1 };
    this.verifying++;
    this.verifyingByAddress.set(address, byAddress + 1);
    let finished = false;
    return {
      finish: (outcome) => {
        if (finished) return;
        finished = true;
        this.verifying--;
        const left = (this.verifyingByAddress.get(address) ?? 1) - 1;
        if (left > 0) this.verifyingByAddress.set(address, left);
        else this.verifyingByAddress.delete(address);
        if (outcome === 'failed') this.addresses.failed(address, this.now());
        if (outcome === 'succeeded') this.addresses.succeeded(address);
      },
    };
  }

  /** Seconds an email that matches no admin user stays locked (0: it may be tried). */
  unknownAccountRetryAfter(email: string): number {
    return this.unknownAccounts.retryAfterSeconds(email, this.now());
  }

  unknownAccountFailed(email: string): void {
    this.unknownAccounts.failed(email, this.now());
  }
}

export function isRefusal(admitted: LoginAttempt | LoginRefusal): admitted is LoginRefusal {
  return 'retryAfterSeconds' in admitted;
}
