import { and, eq, gte, isNull, lte, or, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { adminUsers } from '../../db/schema/index.js';
import { ACCOUNT_BACKOFF } from './login-throttle.models.js';

export type LoginClaim =
  | { kind: 'claimed'; userId: string; passwordHash: string; failedAttempts: number }
  | { kind: 'locked'; retryAfterSeconds: number }
  | { kind: 'unknown' };

const attempts = sql`${adminUsers.failedLoginAttempts} + 1`;

/** lockSeconds(ACCOUNT_BACKOFF, failures) as an interval, in SQL, so locks are set by the statements that count. */
function lockFor(failures: SQL): SQL {
  return sql`make_interval(secs => least(${ACCOUNT_BACKOFF.maxSeconds},
    ${ACCOUNT_BACKOFF.baseSeconds} * power(2, least(${failures} - ${ACCOUNT_BACKOFF.freeFailures}, 30))))`;
}

/**
 * Counts an attempt on the account before its password is checked, in one statement that refuses a locked
 * account: concurrent attempts (on any instance) serialise on the row, so after the free failures only one
 * attempt per lock period gets to a password check. A failure restarts the lock (recordLoginFailure); a success
 * resets the count (recordLoginSuccess).
 */
export async function claimLoginAttempt(db: DbOrTx, email: string): Promise<LoginClaim> {
  const [claimed] = await db
    .update(adminUsers)
    .set({ failedLoginAttempts: attempts, loginLockedUntil: sql`CASE WHEN ${attempts} >= ${ACCOUNT_BACKOFF.freeFailures} THEN now() + ${lockFor(attempts)} END` })
    .where(and(eq(adminUsers.email, email), or(isNull(adminUsers.loginLockedUntil), lte(adminUsers.loginLockedUntil, sql`now()`))))
    .returning({ userId: adminUsers.id, passwordHash: adminUsers.passwordHash, failedAttempts: adminUsers.failedLoginAttempts });
  if (claimed) return { kind: 'claimed', ...claimed };
  const [locked] = await db
    .select({ retryAfterSeconds: sql<number>`ceil(extract(epoch from ${adminUsers.loginLockedUntil} - now()))::int` })
    .from(adminUsers)
    .where(eq(adminUsers.email, email));
  // The lock may have ended between the two statements: retrying at once is then right.
  return locked ? { kind: 'locked', retryAfterSeconds: Math.max(1, locked.retryAfterSeconds ?? 1) } : { kind: 'unknown' };
}

/**
 * The lock taken by the claim started before the password check; it runs from the failure instead, or a check
 * slower than the lock (scrypt on a busy machine) would leave the account open the moment the failure is answered.
 */
export async function recordLoginFailure(db: DbOrTx, userId: string): Promise<void> {
  await db
    .update(adminUsers)
    .set({ loginLockedUntil: sql`greatest(${adminUsers.loginLockedUntil}, now() + ${lockFor(sql`${adminUsers.failedLoginAttempts}`)})` })
    .where(and(eq(adminUsers.id, userId), gte(adminUsers.failedLoginAttempts, ACCOUNT_BACKOFF.freeFailures)));
}

export async function recordLoginSuccess(db: DbOrTx, userId: string): Promise<void> {
  await db
    .update(adminUsers)
    .set({ failedLoginAttempts: 0, loginLockedUntil: null, lastLoginAt: sql`now()` })
    .where(eq(adminUsers.id, userId));
}
