/**
 * `npm run bench:console`: how long each list and overview query of the operator console takes on the database it
 * is pointed at (the same configuration as `npm start`; fill it first with `npm run seed:demo`). Each console read
 * is run through its domain function, as the HTTP route runs it: warmed up once, then timed (median of 5); the SQL
 * it sends is captured and each SELECT is run again under EXPLAIN (ANALYZE, BUFFERS). Prints a table and writes
 * bench/results/console-queries.md with every plan.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { sql } from 'drizzle-orm';
import { loadConfig } from '../src/config.js';
import { createDeps, serviceContext, type Deps } from '../src/deps.js';
import type { ServiceContext } from '../src/domain/context.js';
import { getJob } from '../src/domain/jobs/jobs.service.js';
import { listJobs } from '../src/domain/jobs/job-listing.js';
import { getBalanceHistory, listLedger } from '../src/domain/ledger/ledger-reports.js';
import { getBreakdown, getLowCreditTeams, getOverview, getTimeSeries } from '../src/domain/reports/reports.service.js';
import { listTeams } from '../src/domain/tenancy/team-listing.js';
import { listOrganizations } from '../src/domain/tenancy/organizations.service.js';
import { createLogger } from '../src/lib/logger.js';
import { startSimulatedUpstream } from '../src/upstream/simulated-server.js';

interface Captured {
  text: string;
  values: unknown[];
}

let capturing: Captured[] | undefined;
const originalQuery = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  if (capturing) {
    const [first, second] = args as [string | { text: string; values?: unknown[] }, unknown[] | undefined];
    if (typeof first === 'string') capturing.push({ text: first, values: Array.isArray(second) ? second : [] });
    else if (first && typeof first === 'object' && 'text' in first) capturing.push({ text: first.text, values: first.values ?? (Array.isArray(second) ? second : []) });
  }
  return (originalQuery as (...a: unknown[]) => unknown).apply(this, args);
} as typeof pg.Client.prototype.query;

function context(deps: Deps): ServiceContext {
  return serviceContext(deps, { kind: 'admin', adminUserId: null }, 'bench');
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  const upstream = await startSimulatedUpstream();
  const config = loadConfig({ ...process.env, LLM_BASE_URL: upstream.baseURL, LOG_LEVEL: 'error' });
  const deps = await createDeps(config, createLogger('error'));
  const ctx = context(deps);
  const scalar = async (statement: ReturnType<typeof sql>) => Object.values((await deps.db.execute(statement)).rows[0] ?? {})[0] as string;
  const counts = {
    teams: await scalar(sql`SELECT count(*) FROM teams`),
    jobs: await scalar(sql`SELECT count(*) FROM jobs`),
    calls: await scalar(sql`SELECT count(*) FROM llm_calls`),
    ledger: await scalar(sql`SELECT count(*) FROM credit_ledger`),
    rollups: await scalar(sql`SELECT count(*) FROM usage_rollups`),
  };
  const busyTeam = await scalar(sql`SELECT team_id FROM jobs GROUP BY team_id ORDER BY count(*) DESC LIMIT 1`);
  const someOrganization = await scalar(sql`SELECT organization_id FROM teams WHERE id = ${busyTeam}`);
  const someJob = await scalar(sql`SELECT id FROM jobs WHERE team_id = ${busyTeam} ORDER BY created_at DESC LIMIT 1`);
  const deepJobCursor = (await listJobs(ctx, { limit: 200 })).next_cursor ?? undefined;
  const deepTeamCursor = (await listTeams(ctx, { sort: 'balance', order: 'desc', limit: 200 })).next_cursor ?? undefined;
  const weekAgo = new Date(Date.now() - 7 * 86_400_000).toISOString();

  const reads: [string, () => Promise<unknown>][] = [
    ['teams: first page (by id)', () => listTeams(ctx, { sort: 'team_id', order: 'asc', limit: 50 })],
    ['teams: by balance, page 5', () => listTeams(ctx, { sort: 'balance', order: 'desc', limit: 50, cursor: deepTeamCursor })],
    ['teams: by last activity', () => listTeams(ctx, { sort: 'last_activity_at', order: 'desc', limit: 50 })],
    ['teams: search "support"', () => listTeams(ctx, { q: 'support', sort: 'team_id', order: 'asc', limit: 50 })],
    ["teams: an organization's", () => listTeams(ctx, { organization_id: someOrganization, sort: 'team_id', order: 'asc', limit: 50 })],
    ['organizations: first page', () => listOrganizations(ctx, { limit: 50 })],
    ['jobs: first page', () => listJobs(ctx, { limit: 50 })],
    ['jobs: page after 200', () => listJobs(ctx, { limit: 50, cursor: deepJobCursor })],
    ['jobs: status failed', () => listJobs(ctx, { status: 'failed', limit: 50 })],
    ['jobs: job type summarize, last 7 days', () => listJobs(ctx, { job_type: 'summarize', from: weekAgo, limit: 50 })],
    ["jobs: the busiest team's", () => listJobs(ctx, { team_id: busyTeam, limit: 50 })],
    ['job: one with its calls', () => getJob(ctx, someJob)],
    ["ledger: the busiest team's first page", () => listLedger(ctx, busyTeam, { limit: 50 })],
    ["balance history: the busiest team, 30 days", () => getBalanceHistory(ctx, busyTeam, {})],
    ['overview', () => getOverview(ctx, { low_credits_threshold: 10 })],
    ['time series: 30 days by day', () => getTimeSeries(ctx, { granularity: 'day' })],
    ['time series: 3 days by hour', () => getTimeSeries(ctx, { granularity: 'hour', from: new Date(Date.now() - 3 * 86_400_000).toISOString() })],
    ['time series: one team, 30 days by day', () => getTimeSeries(ctx, { granularity: 'day', team_id: busyTeam })],
    ['breakdown: top teams by credits, 30 days', () => getBreakdown(ctx, { by: 'team', sort: 'credits_charged', order: 'desc', limit: 10 })],
    ['breakdown: models by margin, 30 days', () => getBreakdown(ctx, { by: 'model', sort: 'margin_usd', order: 'desc', limit: 20 })],
    ['breakdown: job types, 30 days', () => getBreakdown(ctx, { by: 'job_type', sort: 'calls', order: 'desc', limit: 20 })],
    ['low credits', () => getLowCreditTeams(ctx, { threshold: 10, limit: 10 })],
  ];

  const rows: { name: string; medianMs: number; maxStatementMs: number; statements: number }[] = [];
  const plans: string[] = [];
  for (const [name, read] of reads) {
    await read();
    const timings: number[] = [];
    for (let run = 0; run < 5; run++) {
      const started = performance.now();
      await read();
      timings.push(performance.now() - started);
    }
    capturing = [];
    await read();
    const statements = capturing.filter((statement) => /^\s*(WITH|SELECT|select)\b/.test(statement.text) && !/pg_advisory/.test(statement.text));
    capturing = undefined;
    let maxStatementMs = 0;
    plans.push(`### ${name}\n`);
    for (const statement of statements) {
      const result = await deps.pool.query({ text: `EXPLAIN (ANALYZE, BUFFERS) ${statement.text}`, values: statement.values });
      const plan = result.rows.map((row: Record<string, string>) => row['QUERY PLAN']).join('\n');
      const execution = Number(plan.match(/Execution Time: ([\d.]+) ms/)?.[1] ?? 0);
      maxStatementMs = Math.max(maxStatementMs, execution);
      plans.push('```sql', statement.text.replace(/\s+/g, ' ').trim(), '```', '```', plan, '```', '');
    }
    rows.push({ name, medianMs: median(timings), maxStatementMs, statements: statements.length });
  }

  const table = [
    '| read | median ms (5 runs, whole read) | slowest statement (EXPLAIN ANALYZE) ms | SELECTs |',
    '|---|---:|---:|---:|',
    ...rows.map((row) => `| ${row.name} | ${row.medianMs.toFixed(1)} | ${row.maxStatementMs.toFixed(2)} | ${row.statements} |`),
  ].join('\n');
  const header = `Data: ${counts.teams} teams, ${counts.jobs} jobs, ${counts.calls} calls, ${counts.ledger} ledger entries, ${counts.rollups} rollup rows. ${new Date().toISOString()}.`;
  console.log(header);
  console.log(table);
  const out = path.resolve('bench/results');
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'console-queries.md'), `# Console queries\n\n${header}\n\n${table}\n\n## Plans\n\n${plans.join('\n')}\n`);
  console.log(`plans written to ${path.join(out, 'console-queries.md')}`);
  await deps.close();
  await upstream.close();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
