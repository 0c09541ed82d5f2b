import { and, inArray, lt, notInArray, sql } from 'drizzle-orm';
import type { Database } from '../../db/client.js';
import { jobs, llmCalls, queueRequests } from '../../db/schema/index.js';
import { AppError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import { settleJob } from '../billing/settlement.js';
import { purgeIdempotencyKeys } from '../idempotency/idempotency.service.js';
import { moveCounters, recountConcurrency } from '../ledger/ledger.repository.js';
import { abandonStaleCalls } from '../llm/calls.repository.js';
import { markJobActivity, OPEN_JOB_STATUSES } from './jobs.repository.js';

const BATCH = 100;
const SWEEPER = 'system:sweeper';

export interface SweepOptions {
  /** A call whose lease was not renewed for this long belongs to an instance that died. */
  leaseSeconds: number;
  /** How long a queue item may stay open without its job. */
  queueTimeoutSeconds: number;
}

/**
 * Ends what nobody else will. Calls whose instance died (their lease lapsed) are abandoned and billed at their
 * reservation; a one-shot job left without its call is expired at once. Open jobs idle past their own recorded
 * timeout, with no call in flight, are expired: charged for what they delivered, the rest of their hold released.
 * A job with a live call is never expired, however long the call runs. Runs at start-up and then periodically
 * on every instance; SKIP LOCKED lets instances share the work without waiting on each other or on live requests.
 */
export async function sweepExpiredJobs(db: Database, options: SweepOptions, log: Logger): Promise<number> {
  // An abandoned call leaves its job (pending again) and its team's and key's counts of calls in flight.
  const abandonedCalls = await abandonStaleCalls(db, options.leaseSeconds);
  for (const call of abandonedCalls) await moveCounters(db, call.teamId, { jobs: 0, calls: -1, keyId: call.keyId });
  const abandoned = [...new Set(abandonedCalls.map((call) => call.jobId))];
  for (const jobId of abandoned) await markJobActivity(db, jobId);
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
        // A call begun on the job since it was picked keeps it alive: it is skipped (the settle refuses it).
        const done = await settleJob(tx, { jobId: id, status: 'expired', errorMessage: 'expired: no activity before the job timeout', actor: SWEEPER }).then(
          () => true,
          (error: unknown) => {
            if (error instanceof AppError && error.reason === 'calls_in_progress') return false;
            throw error;
          },
        );
        if (done) settled++;
      }
      expired += settled;
      return due.length;
    });
    if (swept < BATCH) break;
  }
  // A queued call whose process died never reports its end: once its job is over, so is the item.
  await db
    .update(queueRequests)
    .set({ status: 'error', error: 'abandoned: the instance running it stopped', finishedAt: sql`now()` })
    .where(
      and(
        inArray(queueRequests.status, ['queued', 'processing']),
        lt(queueRequests.createdAt, sql`now() - make_interval(secs => ${options.queueTimeoutSeconds})`),
        notInArray(queueRequests.jobId, db.select({ id: jobs.id }).from(jobs).where(inArray(jobs.status, [...OPEN_JOB_STATUSES]))),
      ),
    );
  const recounted = await recountConcurrency(db);
  if (recounted.length > 0) log.warn({ teams: recounted }, 'concurrency counts had drifted from the jobs and calls; recounted');
  const purged = await purgeIdempotencyKeys(db, options.queueTimeoutSeconds);
  if (expired > 0 || purged > 0 || abandoned.length > 0) {
    log.info({ expired_jobs: expired, abandoned_call_jobs: abandoned.length, purged_idempotency_keys: purged }, 'swept');
  }
  return expired;
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
