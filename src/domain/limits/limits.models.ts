import type { LimitsInput } from '../../contracts/index.js';
import { AppError } from '../../lib/errors.js';
import type { ConcurrencyLimits } from '../billing/settlement.repository.js';
import type { RateSubject } from './rate-limiter.js';

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

/** The per-minute windows a call of this team (and key) counts in. */
export function rateSubjects(teamId: string, team: Limits, key: { keyId: string; keyLimits: Limits } | undefined): RateSubject[] {
  const subjects: RateSubject[] = [{ name: `team:${teamId}`, requestsPerMinute: team.requestsPerMinute, tokensPerMinute: team.tokensPerMinute }];
  if (key) subjects.push({ name: `key:${key.keyId}`, requestsPerMinute: key.keyLimits.requestsPerMinute, tokensPerMinute: key.keyLimits.tokensPerMinute });
  return subjects;
}

export function presentLimits(limits: Limits) {
  return {
    requests_per_minute: limits.requestsPerMinute,
    tokens_per_minute: limits.tokensPerMinute,
    max_concurrent_jobs: limits.maxConcurrentJobs,
    max_concurrent_calls: limits.maxConcurrentCalls,
  };
}

/** Applies an admin's change: a given value (or null, to remove the limit) replaces, an omitted one stays. */
export function changedLimits(current: Limits, change: LimitsInput | undefined): Limits {
  return {
    requestsPerMinute: change?.requests_per_minute === undefined ? current.requestsPerMinute : change.requests_per_minute,
    tokensPerMinute: change?.tokens_per_minute === undefined ? current.tokensPerMinute : change.tokens_per_minute,
    maxConcurrentJobs: change?.max_concurrent_jobs === undefined ? current.maxConcurrentJobs : change.max_concurrent_jobs,
    maxConcurrentCalls: change?.max_concurrent_calls === undefined ? current.maxConcurrentCalls : change.max_concurrent_calls,
  };
}
