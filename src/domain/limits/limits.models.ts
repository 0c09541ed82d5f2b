import { AppError } from '../../lib/errors.js';
import type { ConcurrencyLimits } from '../billing/settlement.repository.js';

/** The limits of a team or of one of its keys; null is no limit. */
export interface Limits {
  requestsPerMinute: number | null;
  tokensPerMinute: number | null;
  maxConcurrentJobs: number | null;
  maxConcurrentCalls: number | null;
}

export const NO_LIMITS: Limits = { requestsPerMinute: null, tokensPerMinute: null, maxConcurrentJobs: null, maxConcurrentCalls: null };

/** The concurrency limits a new job or call is counted against: the team's and the calling key's. */
export function concurrencyLimits(team: Limits, key: Limits | undefined): ConcurrencyLimits {
  return {
    maxJobs: team.maxConcurrentJobs,
    maxCalls: team.maxConcurrentCalls,
    keyMaxJobs: key?.maxConcurrentJobs ?? null,
    keyMaxCalls: key?.maxConcurrentCalls ?? null,
  };
}

export type LimitedSubject = 'team' | 'key';

/** 429 for a concurrency limit: a slot frees when one of the subject's jobs or calls ends, so retry soon. */
export const concurrencyLimitReached = (subject: LimitedSubject, what: 'jobs' | 'calls', limit: number) =>
  new AppError('rate_limited', `this ${subject} already has ${limit} ${what === 'jobs' ? 'open jobs' : 'calls in flight'} (max_concurrent_${what}); retry when one ends`, {
    reason: `concurrent_${what}_limit`,
    retryAfterSeconds: 1,
  });
