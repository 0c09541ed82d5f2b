import { expect } from 'vitest';
import { query, type Database } from './postgres.js';

/**
 * The money invariants, read from the database itself: a team's balance row against the sum of its ledger, and,
 * job by job, its settlements against its holds.
 */

export const MICRO = 1_000_000;

export interface LedgerBalance {
  balanceMicro: number;
  heldMicro: number;
}

export interface LedgerCheckOptions {
  /**
   * Also, job by job: no job settled twice, nothing charged for a job none of whose calls delivered output, no
   * charge above what the job held, and every job's hold equal to the sum of its ledger entries.
   */
  jobs?: boolean;
}

/**
 * The balance row equals the sum of the team's ledger (amount and held) and nothing is negative (balance, held,
 * available); with `jobs`, the settlements of every job are checked too. Returns the balance row.
 */
export async function expectLedgerConsistent(database: Database, teamId: string, options: LedgerCheckOptions = {}): Promise<LedgerBalance> {
  const [row] = await query(
    database,
    `SELECT b.balance_micro::bigint AS balance_micro, b.held_micro::bigint AS held_micro,
            (SELECT coalesce(sum(amount_micro), 0) FROM credit_ledger WHERE team_id = $1)::bigint AS ledger_balance,
            (SELECT coalesce(sum(held_delta_micro), 0) FROM credit_ledger WHERE team_id = $1)::bigint AS ledger_held
       FROM credit_balances b WHERE b.team_id = $1`,
    [teamId],
  );
  expect(row, `no balance row for ${teamId}`).toBeDefined();
  const balanceMicro = Number(row.balance_micro);
  const heldMicro = Number(row.held_micro);
  expect(Number(row.ledger_balance), 'SUM(amount_micro) = balance_micro').toBe(balanceMicro);
  expect(Number(row.ledger_held), 'SUM(held_delta_micro) = held_micro').toBe(heldMicro);
  expect(balanceMicro, 'balance >= 0').toBeGreaterThanOrEqual(0);
  expect(heldMicro, 'held >= 0').toBeGreaterThanOrEqual(0);
  expect(balanceMicro - heldMicro, 'available >= 0').toBeGreaterThanOrEqual(0);
  if (!options.jobs) return { balanceMicro, heldMicro };

  const twice = await query(
    database,
    `SELECT job_id, count(*)::int AS n FROM credit_ledger
      WHERE team_id = $1 AND job_id IS NOT NULL AND entry_type IN ('charge', 'release')
      GROUP BY job_id HAVING count(*) > 1`,
    [teamId],
  );
  expect(twice, 'jobs settled more than once').toEqual([]);
  const chargedWithoutOutput = await query(
    database,
    `SELECT l.job_id, j.status::text FROM credit_ledger l JOIN jobs j ON j.id = l.job_id
      WHERE l.team_id = $1 AND l.entry_type = 'charge'
        AND NOT EXISTS (SELECT 1 FROM llm_calls c WHERE c.job_id = l.job_id AND c.delivered)`,
    [teamId],
  );
  expect(chargedWithoutOutput, 'charges for jobs none of whose calls delivered output').toEqual([]);
  const chargedAboveHold = await query(
    database,
    `SELECT l.job_id, -l.amount_micro AS charged,
            (SELECT sum(held_delta_micro) FROM credit_ledger h WHERE h.job_id = l.job_id AND h.entry_type = 'hold') AS held
       FROM credit_ledger l
      WHERE l.team_id = $1 AND l.entry_type = 'charge'
        AND -l.amount_micro > (SELECT sum(held_delta_micro) FROM credit_ledger h WHERE h.job_id = l.job_id AND h.entry_type = 'hold')`,
    [teamId],
  );
  expect(chargedAboveHold, 'charges above what the job held').toEqual([]);
  // Every settled job gave back exactly its hold; every open job still holds what its hold entries say.
  const holdMismatch = await query(
    database,
    `SELECT j.id, j.status::text, j.hold_micro::bigint AS hold, coalesce(sum(l.held_delta_micro), 0)::bigint AS ledger_hold
       FROM jobs j LEFT JOIN credit_ledger l ON l.job_id = j.id
      WHERE j.team_id = $1
      GROUP BY j.id
     HAVING coalesce(sum(l.held_delta_micro), 0) <> j.hold_micro`,
    [teamId],
  );
  expect(holdMismatch, 'jobs whose hold differs from their ledger entries').toEqual([]);
  return { balanceMicro, heldMicro };
}

export interface LedgerSum {
  /** Sum of the amounts, in credits. */
  balance: number;
  /** Sum of the held changes, in credits. */
  held: number;
}

/** The sums of a team's ledger in credits; with `entries`, how many entries it has too. */
export async function ledgerSum(database: Database, teamId: string): Promise<LedgerSum>;
export async function ledgerSum(database: Database, teamId: string, options: { entries: true }): Promise<LedgerSum & { entries: number }>;
export async function ledgerSum(database: Database, teamId: string, options: { entries?: boolean } = {}): Promise<LedgerSum & { entries?: number }> {
  const [row] = await query(
    database,
    `SELECT coalesce(sum(amount_micro), 0)::bigint AS balance, coalesce(sum(held_delta_micro), 0)::bigint AS held, count(*) AS entries
       FROM credit_ledger WHERE team_id = $1`,
    [teamId],
  );
  const sum: LedgerSum = { balance: Number(row.balance) / MICRO, held: Number(row.held) / MICRO };
  return options.entries ? { ...sum, entries: Number(row.entries) } : sum;
}

/** A job's ledger entries, oldest first, in credits. */
export async function jobLedger(database: Database, jobId: string): Promise<{ type: string; amount: number; held: number }[]> {
  const rows = await query<{ entry_type: string; amount_micro: string; held_delta_micro: string }>(
    database,
    'SELECT entry_type::text, amount_micro::text, held_delta_micro::text FROM credit_ledger WHERE job_id = $1 ORDER BY id',
    [jobId],
  );
  return rows.map((row) => ({ type: row.entry_type, amount: Number(row.amount_micro) / MICRO, held: Number(row.held_delta_micro) / MICRO }));
}
