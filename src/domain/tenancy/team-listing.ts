import { sql, type SQL } from 'drizzle-orm';
import type { TeamSummary } from '../../contracts/index.js';
import { validationFailed } from '../../lib/errors.js';
import type { ServiceContext } from '../context.js';
import { microToCredits } from '../ledger/ledger.models.js';
import { decodeCursor, encodeCursor } from '../../lib/cursor.js';

type TeamSort = 'team_id' | 'created_at' | 'balance' | 'credits_remaining' | 'last_activity_at';

export interface TeamListQuery {
  organization_id?: string | undefined;
  status?: 'active' | 'suspended' | 'archived' | undefined;
  q?: string | undefined;
  sort: TeamSort;
  order: 'asc' | 'desc';
  limit: number;
  cursor?: string | undefined;
}

/** Each sort as an expression over the team (t), its balance (b) and its latest job (la), and its SQL type. */
const SORT_KEYS: Record<TeamSort, { expression: SQL; type: SQL }> = {
  team_id: { expression: sql`t.id`, type: sql`text` },
  created_at: { expression: sql`t.created_at`, type: sql`timestamptz` },
  balance: { expression: sql`b.balance_micro`, type: sql`bigint` },
  credits_remaining: { expression: sql`(b.balance_micro - b.held_micro)`, type: sql`bigint` },
  last_activity_at: { expression: sql`coalesce(la.created_at, '-infinity'::timestamptz)`, type: sql`timestamptz` },
};

const likePattern = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

type TeamListRow = {
  id: string;
  organization_id: string;
  team_alias: string | null;
  status: TeamSummary['status'];
  budget_mode: TeamSummary['budget_mode'];
  balance_micro: string;
  held_micro: string;
  last_activity_at: Date | null;
  created_at: Date;
  sort_value: string;
}

/**
 * Teams, a page at a time, in keyset order of the chosen sort (ties broken by team id): the cursor carries the last
 * row's sort value and id, so a page costs the same however deep it is. Archived teams appear only when asked for.
 */
export async function listTeams(ctx: ServiceContext, query: TeamListQuery) {
  const sort = SORT_KEYS[query.sort];
  const descending = query.order === 'desc';
  const filters: SQL[] = [query.status ? sql`t.status = ${query.status}` : sql`t.status <> 'archived'`];
  if (query.organization_id) filters.push(sql`t.organization_id = ${query.organization_id}`);
  if (query.q) filters.push(sql`(t.id ILIKE ${likePattern(query.q)} OR t.team_alias ILIKE ${likePattern(query.q)})`);
  if (query.cursor) {
    const cursor = decodeCursor(query.cursor);
    if (!cursor || cursor.length !== 3 || cursor[0] !== query.sort) throw validationFailed('cursor does not belong to this list', 'cursor');
    const [, value, id] = cursor;
    const position = sql`(${sort.expression}, t.id)`;
    const after = sql`(${value}::${sort.type}, ${id}::text)`;
    filters.push(descending ? sql`${position} < ${after}` : sql`${position} > ${after}`);
  }
  const direction = descending ? sql`DESC` : sql`ASC`;
  const result = await ctx.db.execute<TeamListRow>(sql`
    SELECT t.id, t.organization_id, t.team_alias, t.status, t.budget_mode, b.balance_micro::text AS balance_micro,
           b.held_micro::text AS held_micro, la.created_at AS last_activity_at, t.created_at, (${sort.expression})::text AS sort_value
      FROM teams t
      JOIN credit_balances b ON b.team_id = t.id
      LEFT JOIN LATERAL (SELECT j.created_at FROM jobs j WHERE j.team_id = t.id ORDER BY j.created_at DESC LIMIT 1) la ON true
     WHERE ${sql.join(filters, sql` AND `)}
     ORDER BY ${sort.expression} ${direction}, t.id ${direction}
     LIMIT ${query.limit + 1}`);
  const rows = result.rows.slice(0, query.limit);
  const hasMore = result.rows.length > query.limit;
  const last = rows.at(-1);
  return {
    data: rows.map(presentTeamSummary),
    has_more: hasMore,
    next_cursor: hasMore && last ? encodeCursor([query.sort, last.sort_value, last.id]) : null,
  };
}

function presentTeamSummary(row: TeamListRow): TeamSummary {
  const balance = Number(row.balance_micro);
  const held = Number(row.held_micro);
  return {
    team_id: row.id,
    organization_id: row.organization_id,
    team_alias: row.team_alias,
    status: row.status,
    budget_mode: row.budget_mode,
    balance: microToCredits(balance),
    held: microToCredits(held),
    credits_remaining: microToCredits(balance - held),
    last_activity_at: row.last_activity_at ? new Date(row.last_activity_at).toISOString() : null,
    created_at: new Date(row.created_at).toISOString(),
  };
}
