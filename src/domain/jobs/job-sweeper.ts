import { and, eq, inArray, lt, notInArray, sql } from 'drizzle-orm';
import type { Database } from '../../db/client.js';
import { jobs, llmCalls, queueRequests } from '../../db/schema/index.js';
import type { Logger } from '../../lib/logger.js';
import { purgeIdempotencyKeys } from '../idempotency/idempotency.service.js';
import { OPEN_JOB_STATUSES } from './jobs.repository.js';
import { settleJob } from './jobs.service.js';

const BATCH = 100;

/**
 * Ends jobs nobody completed (a crashed client, a crashed creditgate): open jobs with no activity for
 * `timeoutSeconds` become `expired`, their calls still marked in progress become failed, and their holds are
 * released (in the consumption modes, what they used is charged). Runs at start-up and then periodically on
 * every instance; SKIP LOCKED lets instances share the work without waiting on each other or on live requests.
 */
export async function sweepExpiredJobs(db: Database, timeoutSeconds: number, log: Logger): Promise<number> {
  let expired = 0;
  for (;;) {
    const swept = await db.transaction(async (tx) => {
      const stale = await tx
        .select({ id: jobs.id })
        .from(jobs)
        .where(and(inArray(jobs.status, [...OPEN_JOB_STATUSES]), lt(jobs.updatedAt, sql`now() - make_interval(secs => ${timeoutSeconds})`)))
        .limit(BATCH)
        .for('update', { skipLocked: true });
      for (const { id } of stale) {
        await tx
          .update(llmCalls)
          .set({ status: 'failed', error: 'abandoned: the job expired before the call ended', completedAt: sql`now()` })
          .where(and(eq(llmCalls.jobId, id), eq(llmCalls.status, 'in_progress')));
        await settleJob(tx, { jobId: id, status: 'expired', errorMessage: 'expired: no activity before the job timeout', actor: 'system:sweeper' });
      }
      return stale.length;
    });
    expired += swept;
    if (swept < BATCH) break;
  }
  // A queued call whose process died never reports its end: once its job is over, so is the item.
  await db
    .update(queueRequests)
    .set({ status: 'error', error: 'abandoned: the instance running it stopped', finishedAt: sql`now()` })
    .where(
      and(
        inArray(queueRequests.status, ['queued', 'processing']),
        lt(queueRequests.createdAt, sql`now() - make_interval(secs => ${timeoutSeconds})`),
        notInArray(queueRequests.jobId, db.select({ id: jobs.id }).from(jobs).where(inArray(jobs.status, [...OPEN_JOB_STATUSES]))),
      ),
    );
  const purged = await purgeIdempotencyKeys(db, timeoutSeconds);
  if (expired > 0 || purged > 0) log.info({ expired_jobs: expired, purged_idempotency_keys: purged }, 'swept');
  return expired;
}

/** Sweeps now and then every `intervalSeconds`; the returned function stops it. */
export function startJobSweeper(db: Database, options: { timeoutSeconds: number; intervalSeconds: number }, log: Logger): () => Promise<void> {
  let running: Promise<unknown> = Promise.resolve();
  const sweep = () => {
    running = sweepExpiredJobs(db, options.timeoutSeconds, log).catch((error: unknown) => log.error({ err: error }, 'job sweep failed'));
  };
  sweep();
  const timer = setInterval(sweep, options.intervalSeconds * 1000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
