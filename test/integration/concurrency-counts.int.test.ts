import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepExpiredJobs } from '../../src/domain/jobs/job-sweeper.js';
import { recountConcurrency } from '../../src/domain/ledger/ledger.repository.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectErrorBody } from '../helpers/api.js';
import { setupTeam } from '../helpers/factories.js';
import { query } from '../helpers/postgres.js';
import { postRaw } from '../helpers/sse.js';

/**
 * The counts of open jobs and calls in flight on a team's balance row (what its concurrency limits are checked
 * against) follow its jobs and calls through every way they open and end, and the sweeper repairs them should they
 * ever drift.
 */

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app?.close());

async function counts(teamId: string) {
  const [row] = await query(app, 'SELECT open_jobs, calls_in_flight, key_open_jobs, key_calls_in_flight FROM credit_balances WHERE team_id = $1', [teamId]);
  return row as { open_jobs: number; calls_in_flight: number; key_open_jobs: Record<string, number>; key_calls_in_flight: Record<string, number> };
}

describe('concurrency counts', () => {
  it('follow jobs and calls through one-shot calls, multi-call jobs, failures, cancels and completes, back to zero', async () => {
    const team = await setupTeam(app, { credits: 50 });
    const chat = { messages: [{ role: 'user', content: 'hi' }] };
    expect((await postRaw(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'a', ...chat })).status).toBe(200);
    app.upstream.enqueue({ status: 500 });
    expect((await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body: { team_id: team.teamId, job_type: 'b', ...chat } })).status).toBe(502);
    const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'c' } });
    const keyId = (await query(app, 'SELECT key_id FROM jobs WHERE id = $1', [job.body.job_id]))[0].key_id as string;
    expect(await counts(team.teamId)).toMatchObject({ open_jobs: 1, calls_in_flight: 0, key_open_jobs: { [keyId]: 1 }, key_calls_in_flight: {} });
    expect((await app.request('POST', `/api/jobs/${job.body.job_id}/llm-call`, { token: team.key, body: chat })).status).toBe(200);
    expect((await postRaw(app, `/api/jobs/${job.body.job_id}/llm-call-stream`, team.key, chat)).status).toBe(200);
    expect((await app.request('POST', `/api/jobs/${job.body.job_id}/cancel`, { token: team.key })).status).toBe(200);
    expect(await counts(team.teamId)).toEqual({ open_jobs: 0, calls_in_flight: 0, key_open_jobs: {}, key_calls_in_flight: {} });
  });

  it('a count that drifted (a bug, a manual edit) is recounted by the sweeper, and the team is let in again', async () => {
    const team = await setupTeam(app, { credits: 10, team: { limits: { max_concurrent_calls: 1 } } });
    await query(app, `UPDATE credit_balances SET calls_in_flight = 3, key_calls_in_flight = '{"key_x": 2}' WHERE team_id = $1`, [team.teamId]);
    const refused = await app.request('POST', '/v1/chat/completions', { token: team.key, body: { model: team.group, messages: [{ role: 'user', content: 'hi' }] } });
    expectErrorBody(refused, 429, 'concurrent_calls_limit');
    await sweepExpiredJobs(app.deps.db, { leaseSeconds: 30 }, app.deps.log);
    expect(await counts(team.teamId)).toEqual({ open_jobs: 0, calls_in_flight: 0, key_open_jobs: {}, key_calls_in_flight: {} });
    const served = await app.request('POST', '/v1/chat/completions', { token: team.key, body: { model: team.group, messages: [{ role: 'user', content: 'hi' }] } });
    expect(served.status, JSON.stringify(served.body)).toBe(200);
  });

  it('a count that fell below the open jobs is recounted up, and a team whose counts agree is left alone', async () => {
    const drifted = await setupTeam(app, { credits: 10 });
    const steady = await setupTeam(app, { credits: 10 });
    const open = async (team: typeof drifted) =>
      (await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'open' } })).body.job_id as string;
    const jobId = await open(drifted);
    await open(steady);
    const keyId = (await query(app, 'SELECT key_id FROM jobs WHERE id = $1', [jobId]))[0].key_id as string;
    await query(app, `UPDATE credit_balances SET open_jobs = 0, key_open_jobs = '{}' WHERE team_id = $1`, [drifted.teamId]);
    const recounted = await recountConcurrency(app.deps.db);
    expect(recounted).toContain(drifted.teamId);
    expect(recounted).not.toContain(steady.teamId);
    expect(await counts(drifted.teamId)).toEqual({ open_jobs: 1, calls_in_flight: 0, key_open_jobs: { [keyId]: 1 }, key_calls_in_flight: {} });
    expect(await counts(steady.teamId)).toMatchObject({ open_jobs: 1, calls_in_flight: 0 });
    expect(await recountConcurrency(app.deps.db)).not.toContain(drifted.teamId);
  });
});
