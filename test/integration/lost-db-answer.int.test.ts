import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sweepExpiredJobs } from '../../src/domain/jobs/job-sweeper.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectErrorBody } from '../helpers/api.js';
import { setupTeam } from '../helpers/factories.js';
import { expectLedgerConsistent } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { postRaw } from '../helpers/sse.js';
import { poll } from '../helpers/wait.js';

/**
 * The statement that opens a one-shot job (its hold and its call) commits, and its answer is lost on the way back
 * (the connection breaks): the caller is refused and nothing is called upstream, so nothing may be charged. The
 * instance releases the job once the database answers again, before the stale-call sweep could take the never-made
 * call for a dead instance's and bill it at its reservation. The fault is injected between the pg driver and its
 * caller: PostgreSQL runs the statement for real, the driver reports a broken connection instead of its result.
 */

type Query = typeof pg.Client.prototype.query;
type QueryConfig = string | { name?: string; text?: string } | undefined;
const originalQuery: Query = pg.Client.prototype.query;
/** Which query's answer is lost next (asked of every query a client sends), once. */
let loseAnswerOf: ((client: pg.Client, config: QueryConfig) => boolean) | undefined;

const lostConnection = () => new Error('Connection terminated unexpectedly');

function loseAnswers(): void {
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const send = originalQuery as (...all: unknown[]) => unknown;
    if (!loseAnswerOf?.(this, args[0] as QueryConfig)) return send.apply(this, args);
    loseAnswerOf = undefined;
    const callback = args.at(-1);
    if (typeof callback === 'function') return send.apply(this, [...args.slice(0, -1), (error: Error | null) => (callback as (error: Error) => void)(error ?? lostConnection())]);
    return (send.apply(this, args) as Promise<unknown>).then(() => Promise.reject(lostConnection()));
  } as Query;
}

const named = (name: string) => (_: pg.Client, config: QueryConfig) => typeof config === 'object' && config?.name === name;

/** The COMMIT of the next transaction that inserts a call. */
function callReservationCommit() {
  const reserving = new WeakSet<pg.Client>();
  return (client: pg.Client, config: QueryConfig) => {
    const text = (typeof config === 'string' ? config : (config?.text ?? '')).trim();
    if (/^insert into "llm_calls"/i.test(text)) reserving.add(client);
    return reserving.has(client) && /^commit$/i.test(text);
  };
}

let app: TestApp;
beforeAll(async () => {
  loseAnswers();
  app = await createTestApp();
});
afterEach(() => {
  loseAnswerOf = undefined;
});
afterAll(async () => {
  pg.Client.prototype.query = originalQuery;
  await app?.close();
});

const chat = { messages: [{ role: 'user', content: 'hi' }] };

async function jobsOf(teamId: string) {
  return query(app, `SELECT j.id, j.status, j.hold_micro::int AS hold, j.charged_micro::int AS charged, c.status AS call_status, c.delivered
                       FROM jobs j LEFT JOIN llm_calls c ON c.job_id = j.id WHERE j.team_id = $1 ORDER BY j.created_at`, [teamId]);
}

async function balance(teamId: string) {
  const [row] = await query(app, 'SELECT balance_micro::bigint AS balance, held_micro::int AS held, open_jobs, calls_in_flight FROM credit_balances WHERE team_id = $1', [teamId]);
  return row as { balance: string; held: number; open_jobs: number; calls_in_flight: number };
}

/** Sends `body` to `path` losing the answer of the query `lose` picks: that query runs, and the caller gets a 503. */
async function refusedWithLostAnswer(path: string, key: string, body: unknown, lose: NonNullable<typeof loseAnswerOf>, ran: string) {
  loseAnswerOf = lose;
  const refused = await postRaw(app, path, key, body);
  expect(loseAnswerOf, ran).toBeUndefined();
  expectErrorBody({ status: refused.status, headers: refused.headers, body: JSON.parse(refused.text) }, 503, 'database_unavailable');
}

/** The team's newest job (with its call) once `released` holds for it. */
async function newestJobOnce(teamId: string, released: (row: Record<string, unknown>) => boolean, what: string) {
  return poll(async () => {
    const newest = (await jobsOf(teamId)).at(-1);
    return newest && released(newest) ? newest : undefined;
  }, 15_000, what);
}

describe('a one-shot job whose opening statement lost its answer', () => {
  it.each([
    ['create-and-call-stream, the call started after its hold', '/api/jobs/create-and-call-stream', false],
    ['create-and-call-stream, the call started early, beside its hold', '/api/jobs/create-and-call-stream', true],
    ['/v1/chat/completions', '/v1/chat/completions', false],
  ] as const)('is refused, released free and never billed by the sweep: %s', async (_, path, early) => {
    const team = await setupTeam(app, { credits: 1000 });
    const body = path === '/v1/chat/completions' ? { model: team.group, stream: true, ...chat } : { team_id: team.teamId, job_type: 'lost', ...chat };
    // An early start needs the team's available credits known to this instance: one ordinary job first.
    if (early) expect((await postRaw(app, path, team.key, body)).status).toBe(200);
    const before = await balance(team.teamId);
    const upstreamBefore = app.upstream.requests.length;

    await refusedWithLostAnswer(path, team.key, body, named('cg_open_job_with_call'), 'the opening statement ran');

    // The statement did commit: the job is there, then released, failed and free, its call never started.
    const lost = await newestJobOnce(team.teamId, (row) => row.status === 'failed', 'the lost job to be released');
    expect(lost).toMatchObject({ status: 'failed', hold: 0, charged: 0, call_status: 'failed', delivered: false });
    expect(await balance(team.teamId)).toEqual({ ...before, held: 0, open_jobs: 0, calls_in_flight: 0 });
    // A sweep that takes every call in flight for abandoned finds nothing to bill.
    await sweepExpiredJobs(app.deps.db, { leaseSeconds: 0 }, app.deps.log);
    expect(await balance(team.teamId)).toEqual(before);
    await expectLedgerConsistent(app, team.teamId);
    // Whatever reached the upstream was aborted before a byte went to the caller.
    expect(app.upstream.requests.length - upstreamBefore).toBeLessThanOrEqual(1);
  });
});

describe('a call of a multi-call job whose reservation lost its answer', () => {
  it('is refused, recorded as never started, and the job stays open and free', async () => {
    const team = await setupTeam(app, { credits: 1000 });
    const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'lost' } });
    expect(job.status).toBe(201);
    const jobId = job.body.job_id as string;
    const before = await balance(team.teamId);

    await refusedWithLostAnswer(`/api/jobs/${jobId}/llm-call-stream`, team.key, chat, callReservationCommit(), 'the reservation committed');

    const lost = await newestJobOnce(team.teamId, (row) => row.call_status === 'failed', 'the lost call to be released');
    expect(lost).toMatchObject({ id: jobId, status: 'pending', charged: null, call_status: 'failed', delivered: false });
    expect(await balance(team.teamId)).toEqual(before);
    await sweepExpiredJobs(app.deps.db, { leaseSeconds: 0 }, app.deps.log);
    expect(await balance(team.teamId)).toEqual(before);

    // The job goes on: a call now is served, and completing it charges the job once.
    expect((await postRaw(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, chat)).status).toBe(200);
    const completed = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status: 'completed' } });
    expect(completed.status, JSON.stringify(completed.body)).toBe(200);
    expect(completed.body.costs.credits_charged).toBe(1);
    await expectLedgerConsistent(app, team.teamId);
  });
});
