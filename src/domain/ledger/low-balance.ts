import { sql } from 'drizzle-orm';
import { withTransaction, type Database, type Transaction } from '../../db/client.js';
import { newId } from '../../lib/ids.js';
import type { Logger } from '../../lib/logger.js';
import { recordEvent } from '../webhooks/webhook-events.js';
import { MICRO_PER_CREDIT } from './ledger.models.js';

const LOW_BALANCE_LOCK = 0x6c6f7762;
const AVAILABLE = sql.raw('(b.balance_micro - b.held_micro)');

/** The higher of a team's low-balance thresholds, in micro-credits: its credits, or its percentage of its last grant. */
const LOW_THRESHOLD = sql`GREATEST(
  coalesce(t.low_balance_threshold::bigint * ${MICRO_PER_CREDIT}, 0),
  coalesce((SELECT l.amount_micro FROM credit_ledger l WHERE l.team_id = t.id AND l.entry_type = 'grant' ORDER BY l.id DESC LIMIT 1)
           * t.low_balance_percent / 100, 0))`;

/** What the team's next job needs at least: its price (job_based), or anything at all (consumption modes). */
const CANNOT_PAY = sql`(CASE WHEN t.budget_mode = 'job_based' THEN ${AVAILABLE} < t.credits_per_job::bigint * ${MICRO_PER_CREDIT} ELSE ${AVAILABLE} <= 0 END)`;

interface Crossing {
  team_id: string;
  available: string;
  threshold?: string;
  credits?: number;
}

const credits = (micro: string | number) => Number(micro) / MICRO_PER_CREDIT;

/**
 * Tells when a team's available credits cross a line downward, once per crossing: a flag on the balance row is set
 * in the transaction that writes the event, and cleared once the credits are back above, ready for the next crossing.
 * Runs on every instance; the flags (a row updated by one instance is skipped by the others) make one of them tell.
 * - credits.low: below the team's low-balance threshold;
 * - credits.depleted: the team cannot pay for a job any more (and it once had credits);
 * - credits.refill_requested: below its auto-refill line; a refill is recorded for the Stripe charger (or the
 *   operator's own consumer), unless a charge for an earlier one is still running. A refill that fails is not
 *   requested again before the next crossing (a declined card is not charged every few seconds).
 * One instance checks at a time (the others skip the round), so their updates of many balance rows never deadlock.
 */
export async function noticeLowBalances(db: Database): Promise<void> {
  await withTransaction(db, async (tx) => {
    const locked = await tx.execute<{ locked: boolean }>(sql`SELECT pg_try_advisory_xact_lock(${LOW_BALANCE_LOCK}) AS locked`);
    if (!locked.rows[0]?.locked) return;
    for (const row of await crossings(tx, 'low_notified', sql`(t.low_balance_threshold IS NOT NULL OR t.low_balance_percent IS NOT NULL) AND ${AVAILABLE} < ${LOW_THRESHOLD}`, sql`${LOW_THRESHOLD}`)) {
      await recordEvent(tx, 'credits.low', row.team_id, { team_id: row.team_id, credits_remaining: credits(row.available), threshold: credits(row.threshold!) });
    }
    await rearm(tx, 'low_notified', sql`(t.low_balance_threshold IS NULL AND t.low_balance_percent IS NULL) OR ${AVAILABLE} >= ${LOW_THRESHOLD}`);

    const depleted = sql`${CANNOT_PAY} AND EXISTS (SELECT 1 FROM credit_ledger l WHERE l.team_id = t.id AND l.entry_type = 'grant')`;
    for (const row of await crossings(tx, 'depleted_notified', depleted, sql`0`)) {
      await recordEvent(tx, 'credits.depleted', row.team_id, { team_id: row.team_id, credits_remaining: credits(row.available) });
    }
    await rearm(tx, 'depleted_notified', sql`NOT ${CANNOT_PAY}`);

    const refill = sql`t.auto_refill_below IS NOT NULL AND ${AVAILABLE} < t.auto_refill_below::bigint * ${MICRO_PER_CREDIT}`;
    for (const row of await crossings(tx, 'refill_requested', refill, sql`t.auto_refill_below::bigint * ${MICRO_PER_CREDIT}`, sql`t.auto_refill_credits`)) {
      // A new crossing while an earlier refill is still being charged (credits granted meanwhile, then spent) would
      // charge twice for one need: it is noted (the flag) but not requested.
      const charging = await tx.execute(sql`SELECT 1 FROM credit_refills WHERE team_id = ${row.team_id} AND status = 'charging' LIMIT 1`);
      if (charging.rows.length > 0) continue;
      const refillId = newId('rfl');
      await tx.execute(sql`INSERT INTO credit_refills (id, team_id, credits) VALUES (${refillId}, ${row.team_id}, ${row.credits})`);
      await recordEvent(tx, 'credits.refill_requested', row.team_id, {
        team_id: row.team_id,
        refill_id: refillId,
        credits: row.credits,
        credits_remaining: credits(row.available),
        below: credits(row.threshold!),
      });
    }
    await rearm(tx, 'refill_requested', sql`t.auto_refill_below IS NULL OR ${AVAILABLE} >= t.auto_refill_below::bigint * ${MICRO_PER_CREDIT}`);
  });
}

/** Sets `flag` on the balances that newly meet `crossed`, answering them with their available credits. */
async function crossings(tx: Transaction, flag: string, crossed: ReturnType<typeof sql>, threshold: ReturnType<typeof sql>, refillCredits = sql`NULL::int`): Promise<Crossing[]> {
  const column = sql.raw(flag);
  const result = await tx.execute<Record<string, unknown>>(sql`
    UPDATE credit_balances b SET ${column} = true FROM teams t
     WHERE t.id = b.team_id AND NOT b.${column} AND t.status = 'active' AND ${crossed}
    RETURNING b.team_id, ${AVAILABLE}::text AS available, (${threshold})::text AS threshold, ${refillCredits} AS credits`);
  return result.rows as unknown as Crossing[];
}

/** Clears `flag` where the credits are back above the line (or the line was removed). */
async function rearm(tx: Transaction, flag: string, above: ReturnType<typeof sql>): Promise<void> {
  const column = sql.raw(flag);
  await tx.execute(sql`UPDATE credit_balances b SET ${column} = false FROM teams t WHERE t.id = b.team_id AND b.${column} AND (${above})`);
}

/** Checks every `intervalMs`; the returned function stops it. */
export function startLowBalanceMonitor(db: Database, intervalMs: number, log: Logger): () => Promise<void> {
  let running: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(() => noticeLowBalances(db)).catch((error: unknown) => log.warn({ err: error }, 'low balance check failed'));
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
