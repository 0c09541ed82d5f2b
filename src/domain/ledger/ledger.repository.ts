import { and, desc, eq, lt, sql, type SQL } from 'drizzle-orm';
import type { Database, DbOrTx } from '../../db/client.js';
import type { Bound } from '../../db/compiled-statement.js';
import { creditBalances, creditLedger } from '../../db/schema/index.js';
import { newId } from '../../lib/ids.js';

export type LedgerEntry = typeof creditLedger.$inferSelect;
export type LedgerEntryType = LedgerEntry['entryType'];

/** A change of a team's credits; each value may be a compiled statement's placeholder. */
export interface LedgerChange {
  teamId: Bound<string>;
  entryType: Bound<LedgerEntryType>;
  /** Change of the balance, in micro-credits; or, with `chargeUpToMicro`, decided in the statement. */
  amountMicro?: Bound<number>;
  /** A debit of this much, or of everything available (the held change included) if that is less. */
  chargeUpToMicro?: Bound<number>;
  /** Change of the held amount, in micro-credits. */
  heldDeltaMicro?: Bound<number>;
  /**
   * Instead of `heldDeltaMicro`: hold this much, or everything available if that is less; nothing moves unless at
   * least `holdAtLeastMicro` is available. What was held is the entry's `held_delta_micro`.
   */
  holdUpToMicro?: Bound<number>;
  holdAtLeastMicro?: Bound<number>;
  jobId?: Bound<string | null>;
  reason?: Bound<string | null>;
  actor: Bound<string>;
  /** The ledger entry's id; a new one by default. */
  entryId?: Bound<string>;
  /** Open jobs and calls in flight moved along, with their limits checked (see CounterChange). */
  counters?: CounterChange;
}

/**
 * A change of a team's open jobs and calls in flight, and of its key's. Each limit (null: none) is checked only
 * when its count grows, on the locked balance row, so concurrent requests on any instance are counted exactly.
 */
export interface CounterChange {
  jobs: Bound<number>;
  calls: Bound<number>;
  keyId: Bound<string | null>;
  maxJobs?: Bound<number | null>;
  maxCalls?: Bound<number | null>;
  keyMaxJobs?: Bound<number | null>;
  keyMaxCalls?: Bound<number | null>;
}

function countersSetSql(c: CounterChange | undefined): SQL {
  if (!c) return sql``;
  return sql`, open_jobs = open_jobs + ${c.jobs}::int, calls_in_flight = calls_in_flight + ${c.calls}::int,
             key_open_jobs = cg_bump(key_open_jobs, ${c.keyId}::text, ${c.jobs}::int),
             key_calls_in_flight = cg_bump(key_calls_in_flight, ${c.keyId}::text, ${c.calls}::int)`;
}

function countersWithinLimitsSql(c: CounterChange | undefined): SQL {
  if (!c) return sql`true`;
  const fits = (delta: Bound<number>, count: SQL, limit: Bound<number | null> | undefined) =>
    limit === undefined ? sql`true` : sql`(${limit}::int IS NULL OR ${delta}::int <= 0 OR ${count} + ${delta}::int <= ${limit}::int)`;
  const keyCount = (column: SQL) => sql`coalesce((${column} ->> ${c.keyId}::text)::int, 0)`;
  return sql`${fits(c.jobs, sql`open_jobs`, c.maxJobs)} AND ${fits(c.calls, sql`calls_in_flight`, c.maxCalls)}
    AND ${fits(c.jobs, keyCount(sql`key_open_jobs`), c.keyMaxJobs)} AND ${fits(c.calls, keyCount(sql`key_calls_in_flight`), c.keyMaxCalls)}`;
}

/** Moves a team's counters alone (a call of a multi-call job begins or ends); false when a limit refused it. */
export async function moveCounters(db: DbOrTx, teamId: string, change: CounterChange): Promise<boolean> {
  const result = await db.execute(sql`
    UPDATE ${creditBalances} SET updated_at = updated_at${countersSetSql(change)}
     WHERE team_id = ${teamId} AND ${countersWithinLimitsSql(change)}
    RETURNING 1`);
  return result.rows.length > 0;
}

/** The held change of a ledger change, as SQL over the balance row being updated (its values before it). */
function heldSql(change: LedgerChange): SQL {
  if (change.holdUpToMicro === undefined) return sql`${change.heldDeltaMicro ?? 0}::bigint`;
  return sql`LEAST(${change.holdUpToMicro}::bigint, balance_micro - held_micro)`;
}

/** The balance change of a ledger change, as SQL over the balance row being updated (its values before it). */
export function amountSql(change: LedgerChange): SQL {
  if (change.chargeUpToMicro === undefined) return sql`${change.amountMicro ?? 0}::bigint`;
  return sql`(-LEAST(${change.chargeUpToMicro}::bigint, balance_micro - (held_micro + ${heldSql(change)})))`;
}

/**
 * The statement that moves credits: the balance row is updated only if the result keeps both the held amount
 * and the available balance non-negative (and the counters within their limits), and the ledger entry is written
 * from the row it produced (its `last_amount_micro` carries the amount when the statement decided it). Concurrent
 * callers serialise on the balance row lock and each re-checks the condition against the committed balance, so no
 * update is lost and none overspends. `then` may add CTEs that read `moved` and `entry`; `onlyIf` is a further
 * condition for moving anything.
 */
export function ledgerChangeSql(change: LedgerChange, then: SQL = sql``, onlyIf: SQL = sql`true`): SQL {
  const held = heldSql(change);
  const amount = amountSql(change);
  const enoughToHold = change.holdAtLeastMicro === undefined ? sql`true` : sql`balance_micro - held_micro >= ${change.holdAtLeastMicro}::bigint`;
  return sql`
    WITH moved AS (
      UPDATE ${creditBalances}
         SET balance_micro = balance_micro + ${amount},
             held_micro = held_micro + ${held},
             last_amount_micro = ${amount},
             last_held_delta_micro = ${held},
             updated_at = now()${countersSetSql(change.counters)}
       WHERE team_id = ${change.teamId}
         AND ${onlyIf}
         AND ${countersWithinLimitsSql(change.counters)}
         AND ${enoughToHold}
         AND held_micro + ${held} >= 0
         AND (balance_micro + ${amount}) - (held_micro + ${held}) >= 0
       RETURNING balance_micro, held_micro, last_amount_micro, last_held_delta_micro
    ), entry AS (
      INSERT INTO ${creditLedger}
        (id, team_id, entry_type, amount_micro, held_delta_micro, balance_after_micro, held_after_micro, job_id, reason, actor)
      SELECT ${change.entryId ?? newId('led')}, ${change.teamId}, ${change.entryType}, moved.last_amount_micro, moved.last_held_delta_micro,
             moved.balance_micro, moved.held_micro, ${change.jobId ?? null}, ${change.reason ?? null}, ${change.actor}
        FROM moved
      RETURNING *
    )${then}`;
}

/** Moves credits (see ledgerChangeSql); undefined when the condition fails or the team has no balance. */
export async function applyLedgerChange(db: DbOrTx, change: LedgerChange): Promise<LedgerEntry | undefined> {
  const result = await db.execute<Record<string, unknown>>(sql`${ledgerChangeSql(change)} SELECT * FROM entry`);
  const row = result.rows[0];
  return row ? ledgerEntryFromRow(row) : undefined;
}

export function ledgerEntryFromRow(row: Record<string, unknown>): LedgerEntry {
  return {
    id: row.id as string,
    teamId: row.team_id as string,
    entryType: row.entry_type as LedgerEntryType,
    amountMicro: Number(row.amount_micro),
    heldDeltaMicro: Number(row.held_delta_micro),
    balanceAfterMicro: Number(row.balance_after_micro),
    heldAfterMicro: Number(row.held_after_micro),
    jobId: row.job_id as string | null,
    reason: row.reason as string | null,
    actor: row.actor as string,
    createdAt: new Date(row.created_at as string | Date),
  };
}

export async function openBalance(db: DbOrTx, teamId: string): Promise<void> {
  await db.insert(creditBalances).values({ teamId }).onConflictDoNothing();
}

export async function findBalance(db: DbOrTx, teamId: string) {
  const [row] = await db.select().from(creditBalances).where(eq(creditBalances.teamId, teamId));
  return row;
}

/** Adds to what a team owes: credits a refund took back after they had been spent (see stripe-credits.ts). */
export async function addOwed(db: DbOrTx, teamId: string, micro: number): Promise<void> {
  await db
    .update(creditBalances)
    .set({ owedMicro: sql`${creditBalances.owedMicro} + ${micro}::bigint`, updatedAt: sql`now()` })
    .where(eq(creditBalances.teamId, teamId));
}

/** Lifetime totals by kind of entry, for reports; the balance itself never depends on them. */
export async function sumLedgerByType(db: DbOrTx, teamId: string): Promise<Map<LedgerEntryType, number>> {
  const rows = await db
    .select({ type: creditLedger.entryType, total: sql<string>`sum(${creditLedger.amountMicro})` })
    .from(creditLedger)
    .where(eq(creditLedger.teamId, teamId))
    .groupBy(creditLedger.entryType);
  return new Map(rows.map((row) => [row.type, Number(row.total)]));
}

/** Newest first; the cursor is the id of the last entry of the previous page (ids sort by creation). */
export async function listLedgerEntries(db: DbOrTx, teamId: string, limit: number, cursor?: string) {
  const rows = await db
    .select()
    .from(creditLedger)
    .where(and(eq(creditLedger.teamId, teamId), cursor ? lt(creditLedger.id, cursor) : undefined))
    .orderBy(desc(creditLedger.id))
    .limit(limit + 1);
  return { rows: rows.slice(0, limit), hasMore: rows.length > limit };
}

/**
 * Recounts the open jobs and calls in flight of every team whose counts disagree with its jobs and calls, and
 * returns those teams. No code path should let them drift; this is the safety net that keeps a leak from locking a
 * team out for good. The balance row is locked first, then counted in a new statement (a fresh snapshot): every
 * change that moves the counts holds that lock, so the recount is exact.
 */
export async function recountConcurrency(db: Database): Promise<string[]> {
  // The open jobs and live calls are counted once, grouped by team, and compared with the balance rows: the work
  // follows what is open, not how many teams there are (40,000 teams, 400,000 jobs: 5.7 ms, where two counts per
  // team took 44 ms, every sweep).
  const drifting = await db.execute<{ team_id: string }>(sql`
    WITH counted AS (
      SELECT team_id, sum(jobs) AS jobs, sum(calls) AS calls FROM (
        SELECT team_id, count(*) AS jobs, 0 AS calls FROM jobs WHERE status IN ('pending', 'in_progress') GROUP BY team_id
        UNION ALL
        SELECT team_id, 0, count(*) FROM llm_calls WHERE status = 'in_progress' GROUP BY team_id
      ) open GROUP BY team_id
    )
    SELECT b.team_id FROM ${creditBalances} b LEFT JOIN counted c ON c.team_id = b.team_id
     WHERE b.open_jobs <> coalesce(c.jobs, 0) OR b.calls_in_flight <> coalesce(c.calls, 0)`);
  for (const { team_id: teamId } of drifting.rows) {
    await db.transaction(async (tx) => {
      await tx.execute(sql`SELECT 1 FROM ${creditBalances} WHERE team_id = ${teamId} FOR UPDATE`);
      const perKey = (table: SQL, open: SQL) => sql`coalesce((
        SELECT jsonb_object_agg(key_id, n) FROM (SELECT key_id, count(*) AS n FROM ${table} WHERE team_id = ${teamId} AND ${open} AND key_id IS NOT NULL GROUP BY key_id) k
      ), '{}'::jsonb)`;
      const openJobs = sql`status IN ('pending', 'in_progress')`;
      const liveCalls = sql`status = 'in_progress'`;
      await tx.execute(sql`
        UPDATE ${creditBalances}
           SET open_jobs = (SELECT count(*) FROM jobs WHERE team_id = ${teamId} AND ${openJobs}),
               calls_in_flight = (SELECT count(*) FROM llm_calls WHERE team_id = ${teamId} AND ${liveCalls}),
               key_open_jobs = ${perKey(sql`jobs`, openJobs)},
               key_calls_in_flight = ${perKey(sql`llm_calls`, liveCalls)}
         WHERE team_id = ${teamId}`);
    });
  }
  return drifting.rows.map((row) => row.team_id);
}
