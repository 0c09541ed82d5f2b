import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promptTokenBound } from '../../src/domain/billing/reservation.models.js';
import { sweepExpiredJobs } from '../../src/domain/jobs/job-sweeper.js';
import type { UpstreamScript } from '../../src/upstream/simulated-server.js';
import { balanceOf, expectErrorBody, getJob, waitForJobStatus } from '../helpers/api.js';
import { createTestApp, type ApiResponse, type TestApp } from '../helpers/app.js';
import { setupTeam, uniqueId, type TeamSetup } from '../helpers/factories.js';
import { expectLedgerConsistent, jobLedger, MICRO } from '../helpers/ledger.js';
import { poolOf, query } from '../helpers/postgres.js';
import { frameReader, postRaw, postStream, type FrameReader } from '../helpers/sse.js';
import { poll } from '../helpers/wait.js';

/**
 * Issue 12, "billing follows consumption": what a job pays depends on what its calls delivered, never on the
 * status its caller reports or on how the caller leaves. Each test drives the real app over HTTP against the
 * scripted upstream and checks the charge to the micro-credit, through the API and the ledger.
 */

const CHAT = { messages: [{ role: 'user', content: 'Say hello' }] };
const CHAT_PROMPT_BOUND = promptTokenBound(CHAT);
const SWEEP = { leaseSeconds: 30 };

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app?.close());

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

async function createJob(team: TeamSetup): Promise<string> {
  const response = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'policy' } });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body.job_id;
}

async function callOk(team: TeamSetup, jobId: string, body: object = CHAT): Promise<ApiResponse> {
  const response = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: team.key, body });
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response;
}

async function complete(team: TeamSetup, jobId: string, status: 'completed' | 'failed'): Promise<ApiResponse> {
  const response = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status } });
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response;
}

/** Balance and held in credits, as the ledger sums them (checked against the balance row, nothing negative) and as the API reports them. */
async function books(teamId: string): Promise<{ balance: number; held: number }> {
  const { balanceMicro, heldMicro } = await expectLedgerConsistent(app, teamId);
  const api = await balanceOf(app, teamId);
  expect(api).toMatchObject({ balance: balanceMicro / MICRO, held: heldMicro / MICRO });
  return { balance: api.balance, held: api.held };
}

/** Reads frames until one carries content; returns that content. */
async function firstContent(reader: FrameReader): Promise<string> {
  for (;;) {
    const frame = await reader.next();
    expect(frame, 'the stream ended before any content').toBeDefined();
    if (frame!.data === null || frame!.data === '[DONE]') continue;
    const content = JSON.parse(frame!.data).choices?.[0]?.delta?.content;
    if (content) return content;
  }
}

/** A reply that sends one piece of content and then stays open until it is aborted. */
const PARTIAL_THEN_HANG: UpstreamScript = { steps: [{ type: 'content', text: 'Partial answer ' }, { type: 'hang' }] };

async function setBudget(teamId: string, body: Record<string, unknown>): Promise<ApiResponse> {
  const response = await app.request('PATCH', `/api/credits/teams/${teamId}/budget-mode`, { body: { budget_mode: 'job_based', ...body } });
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response;
}

// ---------------------------------------------------------------------------------------------------------------

describe('the status a caller reports does not decide what it pays', () => {
  it('consumption_tokens: 3 calls (81 tokens) completed as failed are charged 81 / 7 credits, rounded up to the micro-credit', async () => {
    const team = await setupTeam(app, { credits: 100, team: { budget_mode: 'consumption_tokens', tokens_per_credit: 7 } });
    const jobId = await createJob(team);
    const usages = [
      { prompt_tokens: 20, completion_tokens: 7 },
      { prompt_tokens: 13, completion_tokens: 5 },
      { prompt_tokens: 9, completion_tokens: 27 },
    ];
    for (const usage of usages) {
      app.upstream.enqueue({ steps: [{ type: 'content', text: 'Sure.' }], usage });
      const call = await callOk(team, jobId, { ...CHAT, max_tokens: 50 });
      expect(call.body.metadata.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
    }

    const failed = await complete(team, jobId, 'failed');
    // ceil(81 × 1,000,000 / 7) = 11,571,429 micro-credits.
    expect(failed.body).toMatchObject({
      status: 'failed',
      costs: { total_calls: 3, successful_calls: 3, total_tokens: 81, credits_charged: 11.571429, credit_applied: true, credits_remaining: 88.428571 },
    });
    const ledger = await jobLedger(app, jobId);
    const held = ledger.filter((entry) => entry.type === 'hold').reduce((sum, entry) => sum + entry.held * MICRO, 0);
    expect(ledger.filter((entry) => entry.type !== 'hold')).toEqual([{ type: 'charge', amount: -11.571429, held: -Math.round(held) / MICRO }]);
    expect(await books(team.teamId)).toEqual({ balance: 88.428571, held: 0 });
  });

  it('job_based with 1 credit: a job of successful calls completed as failed is charged 1; the next job is refused with 402 and the balance stays at 0', async () => {
    const team = await setupTeam(app, { credits: 1 });
    const jobId = await createJob(team);
    for (let i = 0; i < 3; i++) await callOk(team, jobId);

    const failed = await complete(team, jobId, 'failed');
    expect(failed.body).toMatchObject({
      status: 'failed',
      costs: { total_calls: 3, successful_calls: 3, credits_charged: 1, credit_applied: true, credits_remaining: 0 },
    });
    expect(await jobLedger(app, jobId)).toEqual([
      { type: 'hold', amount: 0, held: 1 },
      { type: 'charge', amount: -1, held: -1 },
    ]);

    const upstreamBefore = app.upstream.requests.length;
    expectErrorBody(await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'policy' } }), 402, 'insufficient_credits');
    expectErrorBody(
      await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body: { team_id: team.teamId, job_type: 'policy', ...CHAT } }),
      402,
      'insufficient_credits',
    );
    expect(app.upstream.requests.length).toBe(upstreamBefore);
    expect(await books(team.teamId)).toEqual({ balance: 0, held: 0 });
  });

  it('a job whose calls all failed before the first byte, completed as completed, is free; so is a job with no calls', async () => {
    const team = await setupTeam(app, { credits: 5 });
    const failing = await createJob(team);
    app.upstream.enqueue({ status: 500 }, { status: 500 });
    expectErrorBody(await app.request('POST', `/api/jobs/${failing}/llm-call`, { token: team.key, body: CHAT }), 502, 'upstream_error');
    const streamed = await postRaw(app, `/api/jobs/${failing}/llm-call-stream`, team.key, CHAT);
    expect(streamed.status, streamed.text).toBe(502);
    expect(JSON.parse(streamed.text).error.code).toBe('upstream_error');

    const completed = await complete(team, failing, 'completed');
    expect(completed.body).toMatchObject({
      status: 'completed',
      costs: { total_calls: 2, successful_calls: 0, failed_calls: 2, credits_charged: 0, credit_applied: false, credits_remaining: 5 },
    });
    expect(completed.body.calls.map((call: { delivered: boolean; status: string }) => [call.status, call.delivered])).toEqual([
      ['failed', false],
      ['failed', false],
    ]);
    expect(await jobLedger(app, failing)).toEqual([
      { type: 'hold', amount: 0, held: 1 },
      { type: 'release', amount: 0, held: -1 },
    ]);

    const empty = await createJob(team);
    const emptyCompleted = await complete(team, empty, 'completed');
    expect(emptyCompleted.body).toMatchObject({ status: 'completed', costs: { total_calls: 0, credits_charged: 0, credit_applied: false } });
    expect(await jobLedger(app, empty)).toEqual([
      { type: 'hold', amount: 0, held: 1 },
      { type: 'release', amount: 0, held: -1 },
    ]);
    expect(await books(team.teamId)).toEqual({ balance: 5, held: 0 });
  });
});

describe('waive_failed_jobs: the operator trusts failed reports, and only those', () => {
  /** A job_based team with 10 credits whose failed jobs are waived, set through the admin API. */
  async function waivingTeam(): Promise<TeamSetup> {
    const team = await setupTeam(app, { credits: 10 });
    const patched = await setBudget(team.teamId, { waive_failed_jobs: true });
    expect(patched.body).toMatchObject({ team_id: team.teamId, budget_mode: 'job_based', waive_failed_jobs: true, max_calls_per_job: 50, max_tokens_per_job: 200_000 });
    return team;
  }

  it('is off by default, set by PATCH budget-mode and shown by the team and balance responses; a failed job after output is then free, a completed one still pays', async () => {
    const plain = await setupTeam(app, { credits: 1 });
    expect((await app.request('GET', `/api/teams/${plain.teamId}`)).body).toMatchObject({ waive_failed_jobs: false, max_calls_per_job: 50, max_tokens_per_job: 200_000 });

    const team = await waivingTeam();
    expect((await app.request('GET', `/api/teams/${team.teamId}`)).body).toMatchObject({ budget_mode: 'job_based', waive_failed_jobs: true });
    expect(await balanceOf(app, team.teamId)).toMatchObject({ balance: 10, waive_failed_jobs: true });

    const failedJob = await createJob(team);
    await callOk(team, failedJob);
    await callOk(team, failedJob);
    const failed = await complete(team, failedJob, 'failed');
    expect(failed.body).toMatchObject({ status: 'failed', costs: { successful_calls: 2, credits_charged: 0, credit_applied: false } });
    expect(await jobLedger(app, failedJob)).toEqual([
      { type: 'hold', amount: 0, held: 1 },
      { type: 'release', amount: 0, held: -1 },
    ]);

    const completedJob = await createJob(team);
    await callOk(team, completedJob);
    expect((await complete(team, completedJob, 'completed')).body.costs).toMatchObject({ credits_charged: 1, credit_applied: true });
    expect(await books(team.teamId)).toEqual({ balance: 9, held: 0 });
  });

  it('a job cancelled (POST /cancel) while its stream was delivering output is charged', async () => {
    const team = await waivingTeam();
    const jobId = await createJob(team);
    app.upstream.enqueue(PARTIAL_THEN_HANG);
    const response = await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, CHAT);
    expect(response.status).toBe(200);
    const reader = frameReader(response);
    expect(await firstContent(reader)).toBe('Partial answer ');

    const cancelled = await app.request('POST', `/api/jobs/${jobId}/cancel`, { token: team.key });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', costs: { total_calls: 1, credits_charged: 1, credit_applied: true } });
    expect(cancelled.body.calls).toMatchObject([{ status: 'cancelled', delivered: true, response_content: 'Partial answer ' }]);
    expect((await reader.rest()).at(-1)?.data).toBe('[DONE]');
    expect(await books(team.teamId)).toEqual({ balance: 9, held: 0 });
  });

  it('a one-shot stream whose client disconnected after output is charged', async () => {
    const team = await waivingTeam();
    app.upstream.enqueue(PARTIAL_THEN_HANG);
    const upstreamBefore = app.upstream.requests.length;
    const controller = new AbortController();
    const response = await postStream(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'policy', ...CHAT }, { signal: controller.signal });
    expect(response.status).toBe(200);
    const jobId = response.headers.get('x-job-id')!;
    expect(await firstContent(frameReader(response))).toBe('Partial answer ');
    controller.abort();

    const job = await waitForJobStatus(app, team, jobId, 'cancelled');
    expect(job).toMatchObject({ credits_reserved: 0, costs: { credits_charged: 1, credit_applied: true } });
    expect(job.calls).toMatchObject([{ status: 'cancelled', delivered: true, usage_source: 'estimated' }]);
    expect((await app.upstream.waitForClosed(app.upstream.requests[upstreamBefore]!.id)).abortedByClient).toBe(true);
    expect(await jobLedger(app, jobId)).toEqual([
      { type: 'hold', amount: 0, held: 1 },
      { type: 'charge', amount: -1, held: -1 },
    ]);
    expect(await books(team.teamId)).toEqual({ balance: 9, held: 0 });
  });

  it('a job that delivered output and then expired is charged by the sweeper', async () => {
    const team = await waivingTeam();
    const jobId = await createJob(team);
    await callOk(team, jobId);
    await query(app, `UPDATE jobs SET updated_at = now() - interval '2 hours' WHERE id = $1`, [jobId]);

    expect(await sweepExpiredJobs(app.deps.db, SWEEP, app.deps.log)).toBe(1);
    expect(await getJob(app, team, jobId)).toMatchObject({ status: 'expired', credits_reserved: 0, costs: { credits_charged: 1, credit_applied: true } });
    expect(await jobLedger(app, jobId)).toEqual([
      { type: 'hold', amount: 0, held: 1 },
      { type: 'charge', amount: -1, held: -1 },
    ]);
    expect(await books(team.teamId)).toEqual({ balance: 9, held: 0 });
  });
});

describe('job_based: one job price buys bounded use', () => {
  it('max_calls_per_job = 3 (set at team creation): the 4th call is 409 job_limit_reached and nothing is sent upstream', async () => {
    const team = await setupTeam(app, { credits: 5, team: { max_calls_per_job: 3 } });
    expect(await balanceOf(app, team.teamId)).toMatchObject({ max_calls_per_job: 3 });
    const jobId = await createJob(team);
    for (let i = 0; i < 3; i++) await callOk(team, jobId);

    const upstreamBefore = app.upstream.requests.length;
    const refused = expectErrorBody(await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: team.key, body: CHAT }), 409, 'job_limit_reached');
    expect(refused.message).toMatch(/max_calls_per_job/);
    const streamed = await postRaw(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, CHAT);
    expect(streamed.status, streamed.text).toBe(409);
    expect(JSON.parse(streamed.text).error.code).toBe('job_limit_reached');
    expect(app.upstream.requests.length).toBe(upstreamBefore);

    const completed = await complete(team, jobId, 'completed');
    expect(completed.body.costs).toMatchObject({ total_calls: 3, credits_charged: 1 });
    expect(await books(team.teamId)).toEqual({ balance: 4, held: 0 });
  });

  it('max_tokens_per_job (set by PATCH): each call\'s completion limit is lowered to what the cap leaves, and once it is used up the call is 409', async () => {
    const team = await setupTeam(app, { credits: 5 });
    const cap = CHAT_PROMPT_BOUND + 60;
    expect((await setBudget(team.teamId, { max_tokens_per_job: cap })).body).toMatchObject({ max_tokens_per_job: cap });
    const jobId = await createJob(team);

    // No limit asked: the default is lowered to cap − prompt bound = 60, sent as max_completion_tokens.
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'One' }], usage: { prompt_tokens: 10, completion_tokens: 20 } });
    const first = await callOk(team, jobId);
    expect(first.body.metadata.max_tokens).toBe(60);
    const firstSent = app.upstream.requests.at(-1)!.body;
    expect(firstSent.max_completion_tokens).toBe(60);
    expect(firstSent).not.toHaveProperty('max_tokens');

    // 30 tokens used: max_tokens 1000 is lowered to cap − 30 − prompt bound = 30, in the field the client used.
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'Two' }], usage: { prompt_tokens: 10, completion_tokens: 25 } });
    const second = await callOk(team, jobId, { ...CHAT, max_tokens: 1000 });
    expect(second.body.metadata.max_tokens).toBe(30);
    const secondSent = app.upstream.requests.at(-1)!.body;
    expect(secondSent.max_tokens).toBe(30);
    expect(secondSent).not.toHaveProperty('max_completion_tokens');

    // 65 tokens used: not even the prompt fits any more.
    const upstreamBefore = app.upstream.requests.length;
    const refused = expectErrorBody(await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: team.key, body: CHAT }), 409, 'job_limit_reached');
    expect(refused.message).toMatch(/max_tokens_per_job/);
    expect(app.upstream.requests.length).toBe(upstreamBefore);

    const completed = await complete(team, jobId, 'completed');
    expect(completed.body.costs).toMatchObject({ total_calls: 2, total_tokens: 65, credits_charged: 1 });
    expect(completed.body.calls.map((call: { max_tokens: number }) => call.max_tokens)).toEqual([60, 30]);
    expect(await books(team.teamId)).toEqual({ balance: 4, held: 0 });
  });
});

describe('consumption_usd: prices are explicit', () => {
  const usdTeam = (models?: string[]) =>
    setupTeam(app, { credits: 100, ...(models && { models }), team: { budget_mode: 'consumption_usd', credits_per_dollar: '100' } });

  it('a group with an unpriced model: 400 model_unpriced on every call route, nothing sent upstream or held; the group lists it', async () => {
    const unpriced = uniqueId('made-up-model');
    const team = await usdTeam(['sim-small', unpriced]);
    const jobId = await createJob(team);
    const before = await books(team.teamId);
    expect(before).toEqual({ balance: 100, held: 1 });
    const upstreamBefore = app.upstream.requests.length;
    const oneShot = { team_id: team.teamId, job_type: 'policy', model: team.group, ...CHAT };
    const attempts: [string, object][] = [
      [`/api/jobs/${jobId}/llm-call`, { model: team.group, ...CHAT }],
      [`/api/jobs/${jobId}/llm-call-stream`, { model: team.group, ...CHAT }],
      ['/api/jobs/create-and-call', oneShot],
      ['/api/jobs/create-and-call-stream', oneShot],
      ['/v1/chat/completions', { model: team.group, ...CHAT }],
      ['/v1/chat/completions', { model: team.group, stream: true, ...CHAT }],
    ];
    for (const [path, body] of attempts) {
      const error = expectErrorBody(await app.request('POST', path, { token: team.key, body }), 400, 'model_unpriced');
      expect(error, path).toMatchObject({ type: 'invalid_request_error', param: 'model' });
      expect(error.message).toContain(unpriced);
    }
    expect(app.upstream.requests.length).toBe(upstreamBefore);
    expect(await query(app, 'SELECT id FROM jobs WHERE team_id = $1', [team.teamId])).toEqual([{ id: jobId }]);
    expect(await query(app, 'SELECT id FROM llm_calls WHERE team_id = $1', [team.teamId])).toEqual([]);
    expect(await books(team.teamId)).toEqual(before);

    const group = await app.request('GET', `/api/model-groups/${team.group}`);
    expect(group.status).toBe(200);
    expect(group.body).toMatchObject({ models: [{ model_name: 'sim-small' }, { model_name: unpriced }], unpriced_models: [unpriced] });
  });

  it('a call is priced by the model the upstream says it served, falling back to the routed model when that one has no price', async () => {
    const team = await usdTeam();
    const body = { team_id: team.teamId, job_type: 'policy', ...CHAT, max_tokens: 2000 };
    const usage = { prompt_tokens: 1000, completion_tokens: 2000 };

    // sim-large: 1000 × $5/M + 2000 × $15/M = $0.035 → 3.5 credits at 100 per dollar.
    app.upstream.enqueue({ model: 'sim-large', usage });
    const served = await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body });
    expect(served.status, JSON.stringify(served.body)).toBe(201);
    expect(app.upstream.requests.at(-1)!.body.model).toBe('sim-small');
    expect(served.body.metadata).toMatchObject({ model_used: 'sim-large', prompt_tokens: 1000, completion_tokens: 2000, cost_usd: 0.035 });
    expect(served.body.costs).toMatchObject({ total_cost_usd: 0.035, credits_charged: 3.5 });

    // A served name without a price: sim-small's, 1000 × $0.5/M + 2000 × $1.5/M = $0.0035 → 0.35 credits.
    const unknownServed = uniqueId('sim-small-snapshot');
    app.upstream.enqueue({ model: unknownServed, usage });
    const fallback = await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body });
    expect(fallback.status, JSON.stringify(fallback.body)).toBe(201);
    expect(fallback.body.metadata).toMatchObject({ model_used: unknownServed, cost_usd: 0.0035 });
    expect(fallback.body.costs).toMatchObject({ total_cost_usd: 0.0035, credits_charged: 0.35 });

    // Streamed within a job: the chunks name sim-large, and so does the bill.
    const jobId = await createJob(team);
    app.upstream.enqueue({ model: 'sim-large', steps: [{ type: 'content', text: 'Big ' }, { type: 'content', text: 'answer' }], usage });
    const streamed = await postRaw(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, { ...CHAT, max_tokens: 2000 });
    expect(streamed.status, streamed.text).toBe(200);
    const completed = await complete(team, jobId, 'completed');
    expect(completed.body.calls).toMatchObject([{ model_used: 'sim-large', cost_usd: 0.035, usage_source: 'upstream' }]);
    expect(completed.body.costs).toMatchObject({ credits_charged: 3.5 });
    expect(await books(team.teamId)).toEqual({ balance: 92.65, held: 0 });
  });
});

describe('a client that leaves does not decide what it pays', () => {
  it('a non-streamed create-and-call whose client disconnected after the upstream answered is charged', async () => {
    const team = await setupTeam(app, { credits: 5 });
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'The answer', delayMs: 300 }], usage: { prompt_tokens: 10, completion_tokens: 5 } });
    const upstreamBefore = app.upstream.requests.length;
    const controller = new AbortController();
    const body = { team_id: team.teamId, job_type: 'policy', ...CHAT };
    const outcome = postStream(app, '/api/jobs/create-and-call', team.key, body, { signal: controller.signal }).then(() => 'answered', (error: Error) => error.name);
    const [upstream] = (await app.upstream.waitForRequests(upstreamBefore + 1)).slice(upstreamBefore);

    // The team's balance row is locked while the upstream answers, so the settlement waits; the client leaves meanwhile.
    const locker = await poolOf(app).connect();
    try {
      await locker.query('BEGIN');
      await locker.query('SELECT 1 FROM credit_balances WHERE team_id = $1 FOR UPDATE', [team.teamId]);
      await poll(async () => upstream!.finishedAt, 5_000, 'the upstream to answer', 10);
      const waitingForLock = `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`;
      await poll(async () => ((await locker.query(waitingForLock)).rowCount ? true : undefined), 5_000, 'the settlement to wait for the balance row', 10);
      controller.abort();
      expect(await outcome).toBe('AbortError');
    } finally {
      await locker.query('COMMIT');
      locker.release();
    }

    const [job] = await query(app, 'SELECT id FROM jobs WHERE team_id = $1', [team.teamId]);
    const settled = await waitForJobStatus(app, team, job.id, 'completed');
    expect(settled).toMatchObject({ credits_reserved: 0, costs: { credits_charged: 1, credit_applied: true } });
    expect(settled.calls).toMatchObject([{ status: 'success', delivered: true, response_content: 'The answer', total_tokens: 15 }]);
    expect(await books(team.teamId)).toEqual({ balance: 4, held: 0 });
  });
});
