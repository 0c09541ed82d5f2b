import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectErrorBody } from '../helpers/api.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam, type TeamSetup } from '../helpers/factories.js';
import { query } from '../helpers/postgres.js';
import { refreshUsageRollups } from '../../src/domain/reports/usage-rollups.js';

/**
 * The reports the console's overview draws, over HTTP, against a database this file alone fills: every number is
 * known. Jobs are backdated in the database to place them in earlier hours and days. Costs use the seeded prices
 * (sim-small: $0.5 / $1.5, sim-large: $5 / $15 per million input / output tokens); a credit sells for $0.02 here.
 */

let app: TestApp;
let a: TeamSetup;
let b: TeamSetup;
const DAY = 86_400_000;

beforeAll(async () => {
  app = await createTestApp({ CREDIT_PRICE_USD: '0.02' });
  a = await setupTeam(app, { credits: 100, models: ['sim-small', 'sim-large'] });
  b = await setupTeam(app, { credits: 3, team: { credits_per_job: 2 } });
});
afterAll(() => app?.close());

async function oneShot(setup: TeamSetup, usage: { prompt_tokens: number; completion_tokens: number }, jobType = 'chat', model?: string) {
  app.upstream.enqueue({ steps: [{ type: 'content', text: 'ok' }], usage });
  const response = await app.request('POST', '/api/jobs/create-and-call', {
    token: setup.key,
    body: { team_id: setup.teamId, job_type: jobType, messages: [{ role: 'user', content: 'hi' }], ...(model && { model }) },
  });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body.job_id as string;
}

const backdate = (jobId: string, at: Date) => query(app, 'UPDATE jobs SET created_at = $1, updated_at = now() WHERE id = $2', [at, jobId]);

describe('reports', () => {
  it('sums usage, cost, credits and margin today, over 7 and 30 days; breaks it down; follows new jobs', async () => {
    // Today: two jobs of team A (1000 + 2000 and 3000 + 0 tokens on sim-small), one of team B (2 credits).
    await oneShot(a, { prompt_tokens: 1000, completion_tokens: 2000 });
    await oneShot(a, { prompt_tokens: 3000, completion_tokens: 0 }, 'summary');
    await oneShot(b, { prompt_tokens: 10, completion_tokens: 10 });
    // Three days ago, team A: a job with two calls, sim-small (100 tokens) then sim-large (300 tokens).
    const job = await app.request('POST', '/api/jobs/create', { token: a.key, body: { team_id: a.teamId, job_type: 'chat' } });
    for (const [model, usage] of [['sim-small', { prompt_tokens: 50, completion_tokens: 50 }], ['sim-large', { prompt_tokens: 100, completion_tokens: 200 }]] as const) {
      app.upstream.enqueue({ steps: [{ type: 'content', text: 'x' }], usage });
      const call = await app.request('POST', `/api/jobs/${job.body.job_id}/llm-call`, { token: a.key, body: { model, messages: [{ role: 'user', content: 'hi' }] } });
      expect(call.status, JSON.stringify(call.body)).toBe(200);
    }
    await app.request('POST', `/api/jobs/${job.body.job_id}/complete`, { token: a.key, body: { status: 'completed' } });
    await backdate(job.body.job_id, new Date(Date.now() - 3 * DAY));
    // Twenty days ago, team A: a call that failed upstream (free).
    // (Both models of its group fail: no fallback succeeds.)
    app.upstream.enqueue({ status: 500, errorMessage: 'boom' }, { status: 500, errorMessage: 'boom' });
    const failed = await app.request('POST', '/api/jobs/create-and-call', { token: a.key, body: { team_id: a.teamId, job_type: 'chat', messages: [{ role: 'user', content: 'hi' }] } });
    expect(failed.status).toBe(502);
    const [failedJob] = await query(app, 'SELECT id FROM jobs WHERE team_id = $1 ORDER BY created_at DESC LIMIT 1', [a.teamId]);
    await backdate(failedJob.id, new Date(Date.now() - 20 * DAY));

    const overview = await app.request('GET', '/api/reports/overview');
    expect(overview.status, JSON.stringify(overview.body)).toBe(200);
    const { credits, windows, credit_price_usd } = overview.body;
    expect(credit_price_usd).toBe('0.02');
    expect(credits).toEqual({ outstanding: 97 + 1, held: 0, available: 98, teams: 2, low_credit_teams: 1, low_credits_threshold: 10 });
    const todayCost = 0.0005 + 0.003 + 0.0015 + 0.00002;
    expect(windows.today).toMatchObject({ jobs: 3, calls: 3, failed_calls: 0, error_rate: 0, total_tokens: 6020, credits_charged: 4, revenue_usd: 0.08 });
    expect(windows.today.cost_usd).toBeCloseTo(todayCost, 9);
    expect(windows.today.margin_usd).toBeCloseTo(0.08 - todayCost, 9);
    expect(windows.today.latency_p50_ms).not.toBeNull();
    expect(windows.today.latency_p95_ms).toBeGreaterThanOrEqual(windows.today.latency_p50_ms);
    expect(windows.today.ttft_p50_ms).toBeNull();
    const weekCost = todayCost + 0.000025 + 0.000075 + 0.0005 + 0.003;
    expect(windows.last_7_days).toMatchObject({ jobs: 4, calls: 5, credits_charged: 5, total_tokens: 6420 });
    expect(windows.last_7_days.cost_usd).toBeCloseTo(weekCost, 9);
    expect(windows.last_30_days).toMatchObject({ jobs: 5, calls: 6, failed_calls: 1, error_rate: 0.1667, credits_charged: 5 });

    const days = await app.request('GET', `/api/reports/timeseries?granularity=day&from=${new Date(Date.now() - 6 * DAY).toISOString()}`);
    expect(days.status, JSON.stringify(days.body)).toBe(200);
    expect(days.body.points).toHaveLength(7);
    expect(days.body.points.map((point: { jobs: number }) => point.jobs)).toEqual([0, 0, 0, 1, 0, 0, 3]);
    const hours = await app.request('GET', `/api/reports/timeseries?granularity=hour&team_id=${b.teamId}&from=${new Date(Date.now() - 3_600_000).toISOString()}`);
    expect(hours.body.points.reduce((sum: number, point: { credits_charged: number }) => sum + point.credits_charged, 0)).toBe(2);

    const byTeam = await app.request('GET', '/api/reports/breakdown?by=team');
    expect(byTeam.body.rows.map((row: { key: string; credits_charged: number }) => [row.key, row.credits_charged])).toEqual([
      [a.teamId, 3],
      [b.teamId, 2],
    ]);
    const byMargin = await app.request('GET', '/api/reports/breakdown?by=team&sort=margin_usd&order=asc&limit=1');
    expect(byMargin.body.rows.map((row: { key: string }) => row.key)).toEqual([b.teamId]);
    // The backdated job's 1 credit is split 100 : 300 between its two models.
    const byModel = await app.request('GET', `/api/reports/breakdown?by=model&from=${new Date(Date.now() - 4 * DAY).toISOString()}&to=${new Date(Date.now() - 2 * DAY).toISOString()}`);
    expect(byModel.body.rows.map((row: { key: string; credits_charged: number; jobs: number }) => [row.key, row.credits_charged, row.jobs])).toEqual([
      ['sim-large', 0.75, 1],
      ['sim-small', 0.25, 1],
    ]);
    const byType = await app.request('GET', '/api/reports/breakdown?by=job_type&sort=calls');
    expect(byType.body.rows.map((row: { key: string; calls: number }) => [row.key, row.calls])).toEqual([
      ['chat', 5],
      ['summary', 1],
    ]);

    const low = await app.request('GET', '/api/reports/low-credits?threshold=5');
    expect(low.body).toEqual({ threshold: 5, data: [{ team_id: b.teamId, organization_id: b.organizationId, team_alias: null, balance: 1, held: 0, credits_remaining: 1 }] });

    // A new job shows at once.
    await oneShot(a, { prompt_tokens: 1, completion_tokens: 1 });
    const after = await app.request('GET', '/api/reports/overview');
    expect(after.body.windows.today).toMatchObject({ jobs: 4, calls: 4, credits_charged: 5 });
    expect(after.body.credits.outstanding).toBe(97);
  });

  it('reads never wait for a refresh: one runs behind them, whole days of teams are then read from their daily sums, and a job settled since still shows', async () => {
    // The reads above found changed hours and started a refresh in the background.
    await expect.poll(async () => (await query(app, 'SELECT count(*)::int AS n FROM usage_rollup_state'))[0].n, { timeout: 10_000 }).toBe(1);
    await refreshUsageRollups(app.deps.db);
    // At rest: the last refresh moved forward by its look-back, so no job counts as changed since it.
    await query(app, "UPDATE usage_rollup_state SET refreshed_at = now() + interval '2 minutes'");
    const days = await query(app, "SELECT key, sum(credits_micro)::text AS micro FROM usage_rollups WHERE dimension = 'team_day' GROUP BY key ORDER BY key");
    expect(days.map((row) => [row.key, Number(row.micro) / 1_000_000])).toEqual([[a.teamId, 4], [b.teamId, 2]].sort());
    const credits = async () => (await app.request('GET', '/api/reports/breakdown?by=team')).body.rows.map((row: { key: string; credits_charged: number }) => [row.key, row.credits_charged]);
    expect(await credits()).toEqual([[a.teamId, 4], [b.teamId, 2]]);

    await oneShot(a, { prompt_tokens: 1, completion_tokens: 1 });
    expect(await credits()).toEqual([[a.teamId, 5], [b.teamId, 2]]);
    const overview = await app.request('GET', '/api/reports/overview');
    expect(overview.body.windows.today).toMatchObject({ jobs: 5, calls: 5, credits_charged: 6 });
    expect(overview.body.windows.last_30_days).toMatchObject({ jobs: 7, calls: 8, credits_charged: 7 });
  });

  it('refuses bad ranges and unknown teams', async () => {
    expectErrorBody(await app.request('GET', '/api/reports/breakdown?by=planet'), 400);
    expectErrorBody(await app.request('GET', '/api/reports/timeseries?granularity=hour&from=2020-01-01T00:00:00Z'), 400);
    expectErrorBody(await app.request('GET', '/api/reports/timeseries?period=2026-01&from=2026-01-01T00:00:00Z'), 400);
    expectErrorBody(await app.request('GET', '/api/reports/timeseries?team_id=ghost-team-404'), 404);
    const month = await app.request('GET', '/api/reports/timeseries?period=2026-02');
    expect(month.body.points).toHaveLength(28);
  });
});
