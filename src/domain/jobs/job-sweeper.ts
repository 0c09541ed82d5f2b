import { and, eq, inArray, lt, notInArray, sql } from 'drizzle-orm';
import { withTransaction, type Database } from '../../db/client.js';
import { jobs, llmCalls, queueRequests } from '../../db/schema/index.js';
import { AppError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import { settleJob } from '../billing/settlement.js';
import { purgeIdempotencyKeys } from '../idempotency/idempotency.service.js';
import { moveCounters, recountConcurrency } from '../ledger/ledger.repository.js';
import { deleteOldRateWindows } from '../limits/rate-limiter.js';
import { abandonStaleCalls, jobsWithStaleCalls } from '../llm/calls.repository.js';
import { lockJob, markJobActivity, OPEN_JOB_STATUSES } from './jobs.repository.js';

const BATCH = 100;
const SWEEPER = 'system:sweeper';

export interface SweepOptions {
  /** A call whose lease was not renewed for this long belongs to an instance that died. */
  leaseSeconds: number;
}

/**
 * Ends what nobody else will. Calls whose instance died (their lease lapsed) are abandoned and billed at their
 * reservation; a one-shot job left without its call is expired at once. Open jobs idle past their own recorded
 * timeout, with no call in flight, are expired: charged for what they delivered, the rest of their hold released.
 * A job with a live call is never expired, however long the call runs. A job that cannot be settled is logged and
 * skipped, never holding back the others. Queue items and Idempotency-Key claims left open by a dead instance are
 * ended past the timeout recorded on their job or claim, and past minutes' rate limit windows deleted. Every
 * deadline is one recorded with the work by the instance that took it, never the sweeping instance's settings: an
 * instance with a shorter JOB_TIMEOUT_SECONDS must not end another's work that is still running. Runs at start-up
 * and then periodically on every instance; SKIP LOCKED lets instances share the work without waiting on each other
 * or on live requests.
 */
export async function sweepExpiredJobs(db: Database, options: SweepOptions, log: Logger): Promise<number> {
  const abandoned = await abandonCallsOfStoppedInstances(db, options);
  let expired = 0;
  for (;;) {
    const swept = await db.transaction(async (tx) => {
      const due = await tx
        .select({ id: jobs.id })
        .from(jobs)
        .where(
          and(
            inArray(jobs.status, [...OPEN_JOB_STATUSES]),
            sql`(${jobs.updatedAt} < now() - make_interval(secs => ${jobs.timeoutSeconds})
                 OR (${jobs.autoComplete} AND ${inArray(jobs.id, abandoned.length > 0 ? abandoned : [''])}))`,
            sql`NOT EXISTS (SELECT 1 FROM ${llmCalls} WHERE ${llmCalls.jobId} = ${jobs.id} AND ${llmCalls.status} = 'in_progress')`,
          ),
        )
        .limit(BATCH)
        .for('update', { skipLocked: true });
      let settled = 0;
      for (const { id } of due) {
        const done = await settleJob(tx, { jobId: id, status: 'expired', errorMessage: 'expired: no activity before the job timeout', actor: SWEEPER }).then(
          () => true,
          (error: unknown) => {
            // A call begun on the job since it was picked keeps it alive: it is skipped (the settle refuses it).
            if (error instanceof AppError && error.reason === 'calls_in_progress') return false;
            // Any other refusal concerns this job alone: thrown, it would roll back the whole batch, in every sweep
            // on every instance, and no job would expire any more.
            if (error instanceof AppError) {
              log.error({ err: error, job_id: id }, 'could not expire a job past its timeout; skipped');
              return false;
            }
            throw error;
          },
        );
        if (done) settled++;
      }
      expired += settled;
      return { picked: due.length, settled };
    });
    // A full batch of jobs that were all skipped would be picked again and again.
    if (swept.picked < BATCH || swept.settled === 0) break;
  }
  // A queued call whose process died never reports its end: once its job is over, so is the item, when it is older
  // than its job's recorded timeout (set by the instance that created the job, the one running the item when the
  // item made its own job).
  await db
    .update(queueRequests)
    .set({ status: 'error', error: 'abandoned: the instance running it stopped', finishedAt: sql`now()` })
    .from(jobs)
    .where(
      and(
        eq(jobs.id, queueRequests.jobId),
        inArray(queueRequests.status, ['queued', 'processing']),
        notInArray(jobs.status, [...OPEN_JOB_STATUSES]),
        lt(queueRequests.createdAt, sql`now() - make_interval(secs => ${jobs.timeoutSeconds})`),
      ),
    );
  const recounted = await recountConcurrency(db);
  if (recounted.length > 0) log.warn({ teams: recounted }, 'concurrency counts had drifted from the jobs and calls; recounted');
  const purged = await purgeIdempotencyKeys(db);
  const rateWindows = await deleteOldRateWindows(db);
  if (expired > 0 || purged > 0 || abandoned.length > 0 || rateWindows > 0) {
    log.info(
      { expired_jobs: expired, abandoned_call_jobs: abandoned.length, purged_idempotency_keys: purged, deleted_rate_windows: rateWindows },
      'swept',
    );
  }
  return expired;
}

/**
 * The sweep's first step: the calls whose lease lapsed are abandoned, each job's in one transaction that locks the
 * job first, as a call's own record does, and leaves its team's and key's counts of calls in flight; the job is
 * pending again unless another call is in flight. Without the lock, the job's status would be read from a snapshot
 * that misses another call of the job being recorded meanwhile (whose transaction read this one as still in flight):
 * the job would stay in_progress with no call in flight, which no settle accepts. Returns the jobs that had one.
 */
export async function abandonCallsOfStoppedInstances(db: Database, options: SweepOptions): Promise<string[]> {
  const abandoned: string[] = [];
  for (const jobId of await jobsWithStaleCalls(db, options.leaseSeconds)) {
    const calls = await withTransaction(db, async (tx) => {
      await lockJob(tx, jobId);
      const calls = await abandonStaleCalls(tx, jobId, options.leaseSeconds);
      for (const call of calls) await moveCounters(tx, call.teamId, { jobs: 0, calls: -1, keyId: call.keyId });
      if (calls.length > 0) await markJobActivity(tx, jobId);
      return calls;
    });
    if (calls.length > 0) abandoned.push(jobId);
  }
  return abandoned;
}

/** Sweeps now and then every `intervalSeconds`; the returned function stops it. */
export function startJobSweeper(db: Database, options: SweepOptions & { intervalSeconds: number }, log: Logger): () => Promise<void> {
  let running: Promise<unknown> = Promise.resolve();
  const sweep = () => {
    running = sweepExpiredJobs(db, options, log).catch((error: unknown) => log.error({ err: error }, 'job sweep failed'));
  };
  sweep();
  const timer = setInterval(sweep, options.intervalSeconds * 1000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
