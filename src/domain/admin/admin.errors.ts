import { AppError } from '../../lib/errors.js';

/** The refusals of admin logins, each with the code clients match on. */

export const invalidCredentials = () => new AppError('unauthenticated', 'invalid email or password', { reason: 'invalid_credentials' });

const THROTTLED_MESSAGES = {
  // The same words for a real account and for an email that matches none, so the answer does not tell which exists.
  account: 'too many failed logins for this account',
  address: 'too many failed logins from this address',
  capacity: 'too many logins are being checked right now',
} as const;

export const loginThrottled = (scope: keyof typeof THROTTLED_MESSAGES, retryAfterSeconds: number) =>
  new AppError('rate_limited', `${THROTTLED_MESSAGES[scope]}; retry after ${retryAfterSeconds} s`, { retryAfterSeconds });
