import { sql, type SQL } from 'drizzle-orm';
import type { BalanceHistory, CreditTransaction, DeductCreditsRequest, DeductCreditsResponse } from '../../contracts/index.js';
import { withTransaction } from '../../db/client.js';
import { conflict, validationFailed } from '../../lib/errors.js';
import { actorLabel } from '../actor.js';
import type { ServiceContext } from '../context.js';
import { DAY_MS, floorTo, rangeOf, type RangeQuery } from '../reports/time-range.js';
import { requireTeam } from '../tenancy/teams.repository.js';
import { creditsToMicro, microToCredits } from './ledger.models.js';
import { applyLedgerChange, findBalance, ledgerEntryFromRow, type LedgerEntryType } from './ledger.repository.js';
import { getCreditBalance, presentTransaction } from './ledger.service.js';

/**
 * Takes credits off a team with a reason (an `adjustment` entry), never into what its open jobs hold: the ledger
 * statement moves nothing when the available balance would go below zero, and the refusal says how much was there.
 */
export async function deductCredits(ctx: ServiceContext, teamId: string, input: DeductCreditsRequest): Promise<DeductCreditsResponse> {
  return withTransaction(ctx.db, async (tx) => {
    await requireTeam(tx, teamId);
    const entry = await applyLedgerChange(tx, {
      teamId,
      entryType: 'adjustment',
      amountMicro: -creditsToMicro(input.credits),
      reason: input.reason,
      actor: actorLabel(ctx.actor),
    });
    if (!entry) {
      const balance = await findBalance(tx, teamId);
      const available = microToCredits((balance?.balanceMicro ?? 0) - (balance?.heldMicro ?? 0));
      const held = microToCredits(balance?.heldMicro ?? 0);
      throw conflict(
        `cannot deduct ${input.credits} credits: team ${teamId} has ${available} available (${held} more are held by open jobs and cannot be deducted)`,
        'exceeds_available_credits',
      );
    }
    return { transaction: presentTransaction(entry), balance: await getCreditBalance({ ...ctx, db: tx }, teamId) };
  });
}

export interface LedgerFilter {
  type?: LedgerEntryType | undefined;
  from?: string | undefined;
  to?: string | undefined;
}

function ledgerFilters(teamId: string, filter: LedgerFilter): SQL[] {
  const filters = [sql`team_id = ${teamId}`];
  if (filter.type) filters.push(sql`entry_type = ${filter.type}`);
  if (filter.from) filters.push(sql`created_at >= ${filter.from}::timestamptz`);
  if (filter.to) filters.push(sql`created_at < ${filter.to}::timestamptz`);
  return filters;
}

/** A team's ledger newest first, filtered; the cursor is the last entry's id (ids sort by creation). */
export async function listLedger(ctx: ServiceContext, teamId: string, query: LedgerFilter & { limit: number; cursor?: string | undefined }) {
  await requireTeam(ctx.db, teamId);
  const filters = ledgerFilters(teamId, query);
  if (query.cursor) filters.push(sql`id < ${query.cursor}`);
  const result = await ctx.db.execute<Record<string, unknown>>(sql`
    SELECT * FROM credit_ledger WHERE ${sql.join(filters, sql` AND `)} ORDER BY id DESC LIMIT ${query.limit + 1}`);
  const rows = result.rows.slice(0, query.limit).map(ledgerEntryFromRow);
  const hasMore = result.rows.length > query.limit;
  return { data: rows.map(presentTransaction), has_more: hasMore, next_cursor: hasMore ? (rows.at(-1)?.id ?? null) : null };
}

const CSV_COLUMNS = ['transaction_id', 'created_at', 'type', 'amount', 'held_change', 'balance_after', 'held_after', 'job_id', 'reason', 'actor'] as const;

/**
 * One CSV field. Text that a spreadsheet would run as a formula (=, +, -, @, tab, CR first) is prefixed with a quote
 * mark (OWASP's advice for CSV injection); fields with separators, quotes or line breaks are quoted.
 */
export function csvField(value: string | number | null, text = true): string {
  if (value === null) return '';
  let field = String(value);
  if (text && /^[=+\-@\t\r]/.test(field)) field = `'${field}`;
  return /[",\r\n]/.test(field) ? `"${field.replace(/"/g, '""')}"` : field;
}

export function csvLine(entry: CreditTransaction): string {
  return [
    csvField(entry.transaction_id),
    csvField(entry.created_at),
    csvField(entry.type),
    csvField(entry.amount, false),
    csvField(entry.held_change, false),
    csvField(entry.balance_after, false),
    csvField(entry.held_after, false),
    csvField(entry.job_id),
    csvField(entry.reason),
    csvField(entry.actor),
  ].join(',');
}

/** The whole (filtered) ledger of a team as CSV lines, oldest first, read in pages so memory stays flat. */
export async function* exportLedgerCsv(ctx: ServiceContext, teamId: string, filter: LedgerFilter & { period?: string | undefined }): AsyncGenerator<string> {
  await requireTeam(ctx.db, teamId);
  const range = filter.period ? rangeOf({ period: filter.period }) : undefined;
  const filters = ledgerFilters(teamId, range ? { type: filter.type, from: range.from.toISOString(), to: range.to.toISOString() } : filter);
  yield `${CSV_COLUMNS.join(',')}\r\n`;
  let after: string | undefined;
  for (;;) {
    const page = await ctx.db.execute<Record<string, unknown>>(sql`
      SELECT * FROM credit_ledger WHERE ${sql.join([...filters, ...(after ? [sql`id > ${after}`] : [])], sql` AND `)}
       ORDER BY id LIMIT 1000`);
    if (page.rows.length === 0) return;
    const entries = page.rows.map(ledgerEntryFromRow);
    yield entries.map((entry) => `${csvLine(presentTransaction(entry))}\r\n`).join('');
    after = entries.at(-1)!.id;
  }
}

/** The team's balance and held credits at the end of each day of the range, with what came in and went out. */
export async function getBalanceHistory(ctx: ServiceContext, teamId: string, query: RangeQuery): Promise<BalanceHistory> {
  await requireTeam(ctx.db, teamId);
  const range = rangeOf(query);
  const from = floorTo(range.from, DAY_MS);
  if ((range.to.getTime() - from.getTime()) / DAY_MS > 1000) throw validationFailed('at most 1000 days at a time', 'from');
  const [before, days] = await Promise.all([
    ctx.db.execute<{ balance_after_micro: string; held_after_micro: string }>(sql`
      SELECT balance_after_micro::text, held_after_micro::text FROM credit_ledger
       WHERE team_id = ${teamId} AND created_at < ${from} ORDER BY id DESC LIMIT 1`),
    ctx.db.execute<{ day: Date; balance: string; held: string; credits_in: string; credits_out: string }>(sql`
      SELECT date_trunc('day', created_at, 'UTC') AS day,
             (array_agg(balance_after_micro ORDER BY id DESC))[1]::text AS balance,
             (array_agg(held_after_micro ORDER BY id DESC))[1]::text AS held,
             coalesce(sum(amount_micro) FILTER (WHERE amount_micro > 0), 0)::text AS credits_in,
             coalesce(-sum(amount_micro) FILTER (WHERE amount_micro < 0), 0)::text AS credits_out
        FROM credit_ledger
       WHERE team_id = ${teamId} AND created_at >= ${from} AND created_at < ${range.to}
       GROUP BY 1`),
  ]);
  const byDay = new Map(days.rows.map((row) => [new Date(row.day).getTime(), row]));
  let balance = Number(before.rows[0]?.balance_after_micro ?? 0);
  let held = Number(before.rows[0]?.held_after_micro ?? 0);
  const points: BalanceHistory['points'] = [];
  for (let day = from.getTime(); day < range.to.getTime(); day += DAY_MS) {
    const row = byDay.get(day);
    if (row) {
      balance = Number(row.balance);
      held = Number(row.held);
    }
    points.push({
      day: new Date(day).toISOString(),
      balance: microToCredits(balance),
      held: microToCredits(held),
      credits_in: microToCredits(Number(row?.credits_in ?? 0)),
      credits_out: microToCredits(Number(row?.credits_out ?? 0)),
    });
  }
  return { team_id: teamId, from: from.toISOString(), to: range.to.toISOString(), points };
}
