import { and, asc, eq, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { creditBalances, jobs, llmCalls } from '../../db/schema/index.js';
import { usdToPico } from '../billing/pricing.models.js';

export type JobRow = typeof jobs.$inferSelect;
export type LlmCallRow = typeof llmCalls.$inferSelect;

export const OPEN_JOB_STATUSES = ['pending', 'in_progress'] as const;

export function isOpen(job: Pick<JobRow, 'status'>): boolean {
  return (OPEN_JOB_STATUSES as readonly string[]).includes(job.status);
}

/** Locks the job row for the rest of the transaction: calls and settlement of one job never interleave. */
export async function lockJob(tx: DbOrTx, jobId: string, teamId?: string): Promise<JobRow | undefined> {
  const [job] = await tx
    .select()
    .from(jobs)
    .where(and(eq(jobs.id, jobId), teamId ? eq(jobs.teamId, teamId) : undefined))
    .for('update');
  return job;
}

export async function findJob(db: DbOrTx, jobId: string, teamId?: string): Promise<JobRow | undefined> {
  const [job] = await db
    .select()
    .from(jobs)
    .where(and(eq(jobs.id, jobId), teamId ? eq(jobs.teamId, teamId) : undefined));
  return job;
}

/** Locks the team's balance row (NO KEY UPDATE: it does not conflict with foreign-key checks elsewhere). */
export async function lockBalance(tx: DbOrTx, teamId: string) {
  const [balance] = await tx.select().from(creditBalances).where(eq(creditBalances.teamId, teamId)).for('no key update');
  return balance;
}

export async function listJobCalls(db: DbOrTx, jobId: string): Promise<LlmCallRow[]> {
  return db.select().from(llmCalls).where(eq(llmCalls.jobId, jobId)).orderBy(asc(llmCalls.createdAt), asc(llmCalls.id));
}

export interface CallTotals {
  total: number;
  successful: number;
  failed: number;
  inProgress: number;
  totalTokens: number;
  costPico: bigint;
}

export function totalsOf(calls: LlmCallRow[]): CallTotals {
  const totals: CallTotals = { total: 0, successful: 0, failed: 0, inProgress: 0, totalTokens: 0, costPico: 0n };
  for (const call of calls) {
    totals.total++;
    if (call.status === 'success') totals.successful++;
    else if (call.status === 'in_progress') totals.inProgress++;
    else totals.failed++;
    totals.totalTokens += call.totalTokens;
    totals.costPico += usdToPico(call.costUsd);
  }
  return totals;
}

export async function touchJob(tx: DbOrTx, jobId: string, status?: JobRow['status']): Promise<void> {
  await tx
    .update(jobs)
    .set({ updatedAt: sql`now()`, ...(status && { status }) })
    .where(eq(jobs.id, jobId));
}
