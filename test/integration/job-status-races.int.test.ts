import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepExpiredJobs } from '../../src/domain/jobs/job-sweeper.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam, type TeamSetup } from '../helpers/factories.js';
import { expectLedgerConsistent } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { postStream } from '../helpers/sse.js';
import { poll } from '../helpers/wait.js';

/**
 * Races between the instances' sweepers, the calls of a job and its cancel, found by the adversarial simulation
 * (two instances, kill -9): a job is in_progress exactly while one of its calls is in flight, whatever order the
 * sweeper and a call's own record commit in; one job the sweeper cannot settle does not keep every other job open;
 * a cancel aborts a call of its job on another instance even when that call's abort handling was registered after
 * the cancel got there.
 */

const CHAT = { messages: [{ role: 'user', content: 'Say hello' }] };
const HANG = { steps: [{ type: 'hang' as const }] };

/** A client request left running (its outcome is not the test's concern); `leave` disconnects it. */
function openCall(target: TestApp, path: string, key: string, body: unknown) {
  const controller = new AbortController();
  const done = postStream(target, path, key, body, { signal: controller.signal }).then(
    (response) => response.text().catch(() => ''),
    () => '',
  );
  return { leave: () => controller.abort(), done };
}

async function createJob(target: TestApp, team: TeamSetup): Promise<string> {
  const response = await target.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'race' } });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body.job_id as string;
}

async function callsOf(target: TestApp, jobId: string): Promise<{ id: string; status: string }[]> {
  return query(target, 'SELECT id, status::text FROM llm_calls WHERE job_id = $1 ORDER BY created_at, id', [jobId]);
}

async function statusOf(target: TestApp, jobId: string): Promise<string> {
  return (await query(target, 'SELECT status::text FROM jobs WHERE id = $1', [jobId]))[0]!.status as string;
}

/** Sessions of the app's database waiting for a lock. */
async function lockWaiters(target: TestApp): Promise<number> {
  const [row] = await query<{ n: number }>(target, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
  return row!.n;
}

describe('the sweeper and the calls of a job', () => {
  let app: TestApp;
  let dead: TestApp;
  beforeAll(async () => {
    // Only the test sweeps (beyond the sweep at start-up). `dead` runs calls whose lease it never renews: its calls
    // are those of an instance that died.
    app = await createTestApp({ SWEEP_INTERVAL_SECONDS: '3600' });
    dead = await createTestApp({ DATABASE_URL: app.databaseUrl, SWEEP_INTERVAL_SECONDS: '3600' });
    dead.deps.leases.stop();
  });
  afterAll(async () => {
    await dead?.close();
    await app?.close();
  });

  it('a call abandoned while another call of its job is being recorded leaves the job pending, not in_progress with no call in flight', async () => {
    const team = await setupTeam(app, { credits: 10 });
    const jobId = await createJob(app, team);
    // The abandoned call, on the dead instance; then the live one, here.
    dead.upstream.enqueue(HANG);
    const abandoned = openCall(dead, `/api/jobs/${jobId}/llm-call-stream`, team.key, CHAT);
    await poll(async () => ((await callsOf(app, jobId)).length === 1 ? true : undefined), 5_000, 'the first call to be in flight');
    app.upstream.enqueue(HANG);
    const live = openCall(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, CHAT);
    const [stale] = await poll(async () => ((await callsOf(app, jobId)).length === 2 ? callsOf(app, jobId) : undefined), 5_000, 'the second call to be in flight');
    await query(app, `UPDATE llm_calls SET heartbeat_at = now() - interval '1 hour' WHERE id = $1`, [stale!.id]);

    // The team's balance row is held, so the sweeper (abandoning the stale call) and the live call's record (its client
    // left) both stop at it; once it is free, their writes interleave as under load.
    const locker = new pg.Client({ connectionString: app.databaseUrl });
    await locker.connect();
    let sweep: Promise<number> | undefined;
    try {
      await locker.query('BEGIN');
      await locker.query('SELECT 1 FROM credit_balances WHERE team_id = $1 FOR UPDATE', [team.teamId]);
      sweep = sweepExpiredJobs(app.deps.db, { leaseSeconds: 30 }, app.deps.log);
      await poll(async () => ((await lockWaiters(app)) >= 1 ? true : undefined), 5_000, 'the sweeper to wait for the balance row', 10);
      live.leave();
      await poll(async () => ((await lockWaiters(app)) >= 2 ? true : undefined), 5_000, "the live call's record to wait too", 10);
    } finally {
      await locker.query('COMMIT').catch(() => undefined);
      await locker.end();
    }
    await sweep;
    await live.done;
    await poll(async () => ((await callsOf(app, jobId)).every((call) => call.status !== 'in_progress') ? true : undefined), 5_000, 'both calls to be recorded');
    expect((await callsOf(app, jobId)).map((call) => call.status)).toEqual(['failed', 'cancelled']);

    expect(await statusOf(app, jobId), 'no call in flight: pending').toBe('pending');
    const completed = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status: 'completed' } });
    expect(completed.status, JSON.stringify(completed.body)).toBe(200);
    expect(completed.body).toMatchObject({ status: 'completed', costs: { total_calls: 2, credits_charged: 1 } });
    await expectLedgerConsistent(app, team.teamId, { jobs: true });
    const [counts] = await query(app, 'SELECT open_jobs, calls_in_flight FROM credit_balances WHERE team_id = $1', [team.teamId]);
    expect(counts).toEqual({ open_jobs: 0, calls_in_flight: 0 });
    abandoned.leave();
  });

  it('a job the sweeper cannot settle is skipped: the other jobs past their timeout still expire', async () => {
    const team = await setupTeam(app, { credits: 10 });
    const stuck = await createJob(app, team);
    const idle = [await createJob(app, team), await createJob(app, team)];
    // in_progress with no call in flight: no settle accepts it (what the race above used to leave behind).
    await query(app, `UPDATE jobs SET status = 'in_progress' WHERE id = $1`, [stuck]);
    await query(app, `UPDATE jobs SET updated_at = now() - interval '2 hours' WHERE id = ANY($1::text[])`, [[stuck, ...idle]]);

    expect(await sweepExpiredJobs(app.deps.db, { leaseSeconds: 30 }, app.deps.log)).toBe(2);
    for (const jobId of idle) expect(await statusOf(app, jobId)).toBe('expired');
    expect(await statusOf(app, stuck)).toBe('in_progress');
  });
});

describe('cancel', () => {
  let app: TestApp;
  let other: TestApp;
  beforeAll(async () => {
    // A cancel waits a lease and a sweep (and 5 s) at most for a call to be recorded: 9 s here.
    const env = { CALL_LEASE_SECONDS: '3', SWEEP_INTERVAL_SECONDS: '1' };
    app = await createTestApp(env);
    other = await createTestApp({ ...env, DATABASE_URL: app.databaseUrl });
  });
  afterAll(async () => {
    await other?.close();
    await app?.close();
  });

  it("aborts a call on another instance whose abort handling was registered only after the cancel's message arrived there", async () => {
    const team = await setupTeam(app, { credits: 10 });
    const jobId = await createJob(app, team);
    // A busy instance: the call's reservation is written and its upstream request sent, but its abort handler is
    // registered a moment later, after the cancel (from the other instance) got there.
    const inflight = other.deps.inflight;
    const register = inflight.register.bind(inflight);
    inflight.register = (keys, controller) => {
      let unregister: (() => void) | undefined;
      const late = setTimeout(() => (unregister = register(keys, controller)), 1_500);
      return () => {
        clearTimeout(late);
        unregister?.();
      };
    };
    other.upstream.enqueue(HANG);
    const call = other.request('POST', `/api/jobs/${jobId}/llm-call`, { token: team.key, body: CHAT });
    call.catch(() => undefined); // awaited below, unless an expectation failed first
    const [upstream] = await other.upstream.waitForRequests(1);

    const startedAt = Date.now();
    const cancelled = await app.request('POST', `/api/jobs/${jobId}/cancel`, { token: team.key });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', costs: { total_calls: 1, credits_charged: 0 } });
    expect(cancelled.body.calls).toMatchObject([{ status: 'cancelled', delivered: false }]);
    expect(Date.now() - startedAt, 'aborted once registered, not waited for until the deadline').toBeLessThan(5_000);
    expect((await other.upstream.waitForClosed(upstream!.id, 1_000)).abortedByClient).toBe(true);
    expect((await call).status).toBe(502);
    await expectLedgerConsistent(app, team.teamId, { jobs: true });
  });
});
