import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedDemo } from '../../scripts/seed-demo.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { query } from '../helpers/postgres.js';

/**
 * `npm run seed:demo` at a small size (CI's): the data set is made through the domain code, spread over the days it
 * covers, and stays consistent (every balance is the sum of its ledger, each day's ledger in order), and the console's
 * reports and lists read it.
 */

let app: TestApp;
let result: Awaited<ReturnType<typeof seedDemo>>;
beforeAll(async () => {
  app = await createTestApp();
  result = await seedDemo(app.deps, (responder) => app.upstream.setResponder(responder), { teams: 12, jobs: 160, days: 9, concurrency: 8 });
}, 120_000);
afterAll(() => app?.close());

describe('seed:demo', () => {
  it('makes organizations, teams and jobs spread over the days, with calls of several models', async () => {
    expect(result).toMatchObject({ organizations: 2, teams: 12, jobs: 160 });
    const [jobs] = await query(app, 'SELECT count(*)::int AS n, count(DISTINCT date_trunc($1, created_at))::int AS days FROM jobs', ['day']);
    expect(jobs.n).toBeGreaterThan(130);
    expect(jobs.days).toBeGreaterThanOrEqual(7);
    const models = await query(app, 'SELECT DISTINCT coalesce(model_used, model_requested) AS model FROM llm_calls');
    expect(models.length).toBeGreaterThanOrEqual(2);
    const statuses = (await query(app, 'SELECT DISTINCT status FROM jobs')).map((row) => row.status);
    expect(statuses).toContain('completed');
    // Calls happened within their job's lifetime, after the move back in time.
    const [outside] = await query(app, 'SELECT count(*)::int AS n FROM llm_calls c JOIN jobs j ON j.id = c.job_id WHERE c.created_at < j.created_at');
    expect(outside.n).toBe(0);
  });

  it('keeps the money consistent: each balance is its ledger summed, nothing held', async () => {
    const drift = await query(app, `
      SELECT b.team_id FROM credit_balances b
       WHERE b.balance_micro <> (SELECT coalesce(sum(amount_micro), 0) FROM credit_ledger l WHERE l.team_id = b.team_id) OR b.held_micro <> 0`);
    expect(drift).toEqual([]);
    const team = (await app.request('GET', '/api/teams?sort=last_activity_at&order=desc&limit=1')).body.data[0];
    const history = await app.request('GET', `/api/credits/teams/${team.team_id}/balance-history?from=${new Date(Date.now() - 9 * 86_400_000).toISOString()}`);
    expect(history.body.points.at(-1).balance).toBe(team.balance);
  });

  it('feeds the overview, the time series and the lists', async () => {
    const [jobs] = await query(app, 'SELECT count(*)::int AS n FROM jobs');
    const overview = (await app.request('GET', '/api/reports/overview')).body;
    expect(overview.windows.last_30_days.jobs).toBe(jobs.n);
    // Nine days of data: the oldest day ends (23:00 UTC at the latest) before the 7-day window opens, whatever the hour.
    expect(overview.windows.last_7_days.jobs).toBeGreaterThan(0);
    expect(overview.windows.last_7_days.jobs).toBeLessThan(jobs.n);
    expect(overview.windows.last_30_days.cost_usd).toBeGreaterThan(0);
    const series = (await app.request('GET', '/api/reports/timeseries?granularity=day')).body;
    expect(series.points.filter((point: { jobs: number }) => point.jobs > 0).length).toBeGreaterThanOrEqual(7);
    expect((await app.request('GET', '/api/teams?limit=200')).body.data).toHaveLength(12);
    expect((await app.request('GET', '/api/jobs?limit=200')).body.data.length).toBe(Math.min(200, jobs.n));
  });
});
