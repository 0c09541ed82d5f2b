import { eq, sql, type SQL } from 'drizzle-orm';
import type { Usage } from '../../contracts/index.js';
import type { DbOrTx } from '../../db/client.js';
import { organizations } from '../../db/schema/index.js';
import { notFound } from '../../lib/errors.js';
import { rangeOf as timeRange, type RangeQuery } from '../reports/time-range.js';
import { type ServiceContext } from '../context.js';
import { assertTeamAccess } from '../actor.js';
import { microToCredits } from '../ledger/ledger.models.js';
import { requireTeam } from '../tenancy/teams.repository.js';

interface Range {
  from: Date;
  to: Date;
}

/** [from, to): a month (`period`), or from/to with the last 30 days as default (see reports/time-range.ts). */
const rangeOf = (query: RangeQuery): Range => timeRange(query);

interface JobSums {
  jobs: number;
  credits_charged: number;
}
interface CallSums {
  calls: number;
  total_tokens: number;
  cost_usd: number;
}

const scoped = (scope: SQL, range: Range) => sql`${scope} AND j.created_at >= ${range.from} AND j.created_at < ${range.to}`;

/** Jobs created in the range, grouped by an expression over `j` (jobs). */
async function sumJobs(db: DbOrTx, where: SQL, groupBy: SQL): Promise<Map<string, JobSums>> {
  const result = await db.execute<{ key: string; jobs: string; credits: string }>(sql`
    SELECT ${groupBy} AS key, count(*) AS jobs, coalesce(sum(j.charged_micro), 0) AS credits
      FROM jobs j WHERE ${where} GROUP BY 1`);
  return new Map(result.rows.map((row) => [row.key, { jobs: Number(row.jobs), credits_charged: microToCredits(Number(row.credits)) }]));
}

/** Calls of the jobs created in the range, grouped by an expression over `j` (jobs) and `c` (calls). */
async function sumCalls(db: DbOrTx, where: SQL, groupBy: SQL): Promise<Map<string, CallSums>> {
  const result = await db.execute<{ key: string; calls: string; tokens: string; cost: string }>(sql`
    SELECT ${groupBy} AS key, count(*) AS calls, coalesce(sum(c.total_tokens), 0) AS tokens, coalesce(sum(c.cost_usd), 0)::text AS cost
      FROM jobs j JOIN llm_calls c ON c.job_id = j.id WHERE ${where} GROUP BY 1`);
  return new Map(
    result.rows.map((row) => [row.key, { calls: Number(row.calls), total_tokens: Number(row.tokens), cost_usd: Number(row.cost) }]),
  );
}

async function grouped(db: DbOrTx, where: SQL, groupBy: SQL) {
  const [jobs, calls] = await Promise.all([sumJobs(db, where, groupBy), sumCalls(db, where, groupBy)]);
  return [...jobs.keys()].sort().map((key) => ({
    key,
    ...jobs.get(key)!,
    ...(calls.get(key) ?? { calls: 0, total_tokens: 0, cost_usd: 0 }),
  }));
}

async function usageOf(db: DbOrTx, scope: SQL, range: Range, withTeams: boolean): Promise<Usage> {
  const where = scoped(scope, range);
  const [total, byType, byModel, byTeam] = await Promise.all([
    grouped(db, where, sql`'all'`),
    grouped(db, where, sql`j.job_type`),
    sumCalls(db, where, sql`coalesce(c.model_used, c.model_requested)`),
    withTeams ? grouped(db, where, sql`j.team_id`) : Promise.resolve([]),
  ]);
  const { key: _all, ...totals } = total[0] ?? { key: 'all', jobs: 0, credits_charged: 0, calls: 0, total_tokens: 0, cost_usd: 0 };
  return {
    from: range.from.toISOString(),
    to: range.to.toISOString(),
    totals,
    by_job_type: byType.map(({ key, ...sums }) => ({ job_type: key, ...sums })),
    by_model: [...byModel.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([model, sums]) => ({ model, ...sums })),
    ...(withTeams && { by_team: byTeam.map(({ key, ...sums }) => ({ team_id: key, ...sums })) }),
  };
}

export async function getTeamUsage(ctx: ServiceContext, teamId: string, query: RangeQuery): Promise<Usage> {
  assertTeamAccess(ctx.actor, teamId);
  await requireTeam(ctx.db, teamId);
  return usageOf(ctx.db, sql`j.team_id = ${teamId}`, rangeOf(query), false);
}

export async function getOrganizationUsage(
  ctx: ServiceContext,
  organizationId: string,
  query: RangeQuery,
): Promise<Usage> {
  const [organization] = await ctx.db.select({ id: organizations.id }).from(organizations).where(eq(organizations.id, organizationId));
  if (!organization) throw notFound('organization', 'organization_id');
  return usageOf(ctx.db, sql`j.team_id IN (SELECT id FROM teams WHERE organization_id = ${organizationId})`, rangeOf(query), true);
}
