import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { promptTokenBound } from '../../src/domain/billing/reservation.models.js';
import { sweepExpiredJobs } from '../../src/domain/jobs/job-sweeper.js';
import type { UpstreamScript } from '../../src/upstream/simulated-server.js';
import { createTestApp, type ApiResponse, type TestApp } from '../helpers/app.js';
import { setupTeam } from '../helpers/factories.js';
import { MICRO, expectLedgerConsistent } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { parseSse, postRaw, safeJson, type RawResponse } from '../helpers/sse.js';
import { maxOverlap } from '../helpers/upstream.js';
import { poll } from '../helpers/wait.js';

/**
 * Money invariants of the job API under concurrency, retries and timeouts: nothing is lost, nothing is charged
 * twice, and the balance row always equals the sum of the team's ledger.
 */

const CHAT = { messages: [{ role: 'user', content: 'Say hello' }] };

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

/**
 * The balance row equals the sum of the ledger and nothing is negative (test/helpers/ledger.ts), and the API reports
 * the same. Returns the balance, held and available amounts in credits.
 */
async function expectBooksConsistent(app: TestApp, teamId: string): Promise<{ balance: number; held: number; available: number }> {
  const { balanceMicro, heldMicro } = await expectLedgerConsistent(app, teamId);
  const api = await app.request('GET', `/api/credits/teams/${teamId}/balance`);
  expect(api.status, JSON.stringify(api.body)).toBe(200);
  expect(api.body).toMatchObject({
    balance: balanceMicro / MICRO,
    held: heldMicro / MICRO,
    credits_remaining: (balanceMicro - heldMicro) / MICRO,
  });
  return { balance: balanceMicro / MICRO, held: heldMicro / MICRO, available: (balanceMicro - heldMicro) / MICRO };
}

interface LedgerRow {
  entry_type: string;
  amount_micro: string;
  held_delta_micro: string;
  job_id: string | null;
  reason: string | null;
  actor: string;
}

async function ledgerEntries(app: TestApp, teamId: string, filter: { type?: string; jobId?: string } = {}): Promise<LedgerRow[]> {
  return query<LedgerRow>(
    app,
    `SELECT entry_type, amount_micro::text, held_delta_micro::text, job_id, reason, actor
       FROM credit_ledger
      WHERE team_id = $1 AND ($2::text IS NULL OR entry_type::text = $2) AND ($3::text IS NULL OR job_id = $3)
      ORDER BY id`,
    [teamId, filter.type ?? null, filter.jobId ?? null],
  );
}

async function jobsOf(app: TestApp, teamId: string): Promise<{ id: string; status: string; hold_micro: string; charged_micro: string | null }[]> {
  return query(app, `SELECT id, status::text, hold_micro::text, charged_micro::text FROM jobs WHERE team_id = $1 ORDER BY created_at, id`, [teamId]);
}

function expectJsonError(response: RawResponse | ApiResponse, status: number, code: string): void {
  const body: any = 'text' in response ? (safeJson(response.text) ?? response.text) : response.body;
  expect(response.status, JSON.stringify(body)).toBe(status);
  if ('contentType' in response) expect(response.contentType).toContain('application/json');
  expect(body?.error?.code, JSON.stringify(body)).toBe(code);
}

const slowWords = (delayMs: number): UpstreamScript => ({
  steps: [
    { type: 'content', text: 'Hello ', delayMs },
    { type: 'content', text: 'from ', delayMs },
    { type: 'content', text: 'creditgate', delayMs },
    { type: 'finish', reason: 'stop' },
  ],
});

// ---------------------------------------------------------------------------------------------------------------
// Shared app for everything except the sweeper
// ---------------------------------------------------------------------------------------------------------------

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app?.close());
afterEach(() => {
  app.upstream.setResponder(undefined);
});

describe('concurrent job creation never oversells credits', () => {
  it('50 concurrent create-and-call-stream with 20 credits: exactly 20 streams, 30 refused before any upstream call', async () => {
    const team = await setupTeam(app, { credits: 20 });
    app.upstream.setResponder(() => slowWords(25));
    const upstreamBefore = app.upstream.requests.length;

    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        postRaw(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'race', user_id: `u${i}`, ...CHAT }),
      ),
    );

    const ok = responses.filter((r) => r.status === 200);
    const refused = responses.filter((r) => r.status !== 200);
    expect(ok).toHaveLength(20);
    expect(refused).toHaveLength(30);
    for (const response of ok) {
      expect(response.contentType).toContain('text/event-stream');
      const stream = parseSse(response.text, { strict: true });
      expect(stream.endsWithDone, response.text).toBe(true);
      expect(stream.errors).toEqual([]);
      expect(stream.content).toBe('Hello from creditgate');
      expect(stream.finishReasons).toEqual(['stop']);
      expect(response.headers.get('x-job-id')).toMatch(/^job_/);
    }
    for (const response of refused) {
      expectJsonError(response, 402, 'insufficient_credits');
      expect(response.text).not.toContain('[DONE]');
    }

    // Only the 20 funded jobs reached the upstream, and they really ran side by side.
    const upstreamRequests = app.upstream.requests.slice(upstreamBefore);
    expect(upstreamRequests).toHaveLength(20);
    expect(maxOverlap(upstreamRequests)).toBeGreaterThan(1);

    const jobs = await jobsOf(app, team.teamId);
    expect(jobs).toHaveLength(20);
    expect(jobs.every((job) => job.status === 'completed')).toBe(true);
    expect(new Set(ok.map((r) => r.headers.get('x-job-id')))).toEqual(new Set(jobs.map((job) => job.id)));
    expect(jobs.every((job) => job.hold_micro === '0' && job.charged_micro === String(MICRO))).toBe(true);

    const charges = await ledgerEntries(app, team.teamId, { type: 'charge' });
    expect(charges).toHaveLength(20);
    expect(new Set(charges.map((c) => c.job_id)).size).toBe(20);
    expect(charges.every((c) => c.amount_micro === String(-MICRO))).toBe(true);
    expect(await ledgerEntries(app, team.teamId, { type: 'release' })).toHaveLength(0);
    expect(await ledgerEntries(app, team.teamId, { type: 'hold' })).toHaveLength(20);

    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 0, held: 0, available: 0 });
  });

  it('30 concurrent POST /api/jobs/create with 10 credits: exactly 10 jobs; completed without a call, each is free and its hold released', async () => {
    const team = await setupTeam(app, { credits: 10 });
    const upstreamBefore = app.upstream.requests.length;
    const responses = await Promise.all(
      Array.from({ length: 30 }, () => app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'batch' } })),
    );
    const created = responses.filter((r) => r.status === 201);
    expect(created).toHaveLength(10);
    for (const response of responses.filter((r) => r.status !== 201)) expectJsonError(response, 402, 'insufficient_credits');
    for (const response of created) expect(response.body).toMatchObject({ status: 'pending', credits_reserved: 1, job_id: expect.stringMatching(/^job_/) });

    expect(await jobsOf(app, team.teamId)).toHaveLength(10);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 10, held: 10, available: 0 });

    const completions = await Promise.all(
      created.map((r) => app.request('POST', `/api/jobs/${r.body.job_id}/complete`, { token: team.key, body: { status: 'completed' } })),
    );
    for (const completion of completions) {
      expect(completion.status, JSON.stringify(completion.body)).toBe(200);
      expect(completion.body).toMatchObject({ status: 'completed', costs: { credits_charged: 0, credit_applied: false } });
    }
    expect(app.upstream.requests.length).toBe(upstreamBefore);
    expect(await ledgerEntries(app, team.teamId, { type: 'charge' })).toHaveLength(0);
    expect(await ledgerEntries(app, team.teamId, { type: 'release' })).toHaveLength(10);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 10, held: 0, available: 10 });
  });
});

describe('a job is settled exactly once', () => {
  it('20 concurrent completes of one job all answer the same and charge once', async () => {
    const team = await setupTeam(app, { credits: 5 });
    const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'once' } });
    expect(job.status).toBe(201);
    const jobId: string = job.body.job_id;
    const call = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: team.key, body: CHAT });
    expect(call.status, JSON.stringify(call.body)).toBe(200);

    const responses = await Promise.all(
      Array.from({ length: 20 }, () => app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status: 'completed' } })),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(200));
    for (const response of responses) expect(response.body).toEqual(responses[0]!.body);
    expect(responses[0]!.body).toMatchObject({
      job_id: jobId,
      status: 'completed',
      costs: { total_calls: 1, successful_calls: 1, credits_charged: 1, credit_applied: true, credits_remaining: 4 },
    });

    const settlements = (await ledgerEntries(app, team.teamId, { jobId })).filter((e) => e.entry_type === 'charge' || e.entry_type === 'release');
    expect(settlements).toHaveLength(1);
    expect(settlements[0]).toMatchObject({ entry_type: 'charge', amount_micro: String(-MICRO), held_delta_micro: String(-MICRO) });
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 4, held: 0, available: 4 });

    // A later complete replays too and a conflicting one is refused; neither moves money.
    const later = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status: 'completed' } });
    expect(later.status).toBe(200);
    expect(later.body).toEqual(responses[0]!.body);
    expectJsonError(await app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status: 'failed' } }), 409, 'job_already_settled');
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 4, held: 0, available: 4 });
  });

  it('racing completed and failed on one job: exactly one status wins, the others replay it or get 409; either way its delivered call is charged once', async () => {
    const team = await setupTeam(app, { credits: 5 });
    for (let round = 0; round < 3; round++) {
      const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'race' } });
      expect(job.status).toBe(201);
      const jobId: string = job.body.job_id;
      const call = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: team.key, body: CHAT });
      expect(call.status).toBe(200);
      const before = await expectBooksConsistent(app, team.teamId);

      const statuses = Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? 'completed' : 'failed'));
      const responses = await Promise.all(
        statuses.map((status) => app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status } })),
      );
      const [row] = await query(app, 'SELECT status::text AS status FROM jobs WHERE id = $1', [jobId]);
      const winner: string = row.status;
      expect(['completed', 'failed']).toContain(winner);
      const winning = responses.filter((_, i) => statuses[i] === winner);
      const losing = responses.filter((_, i) => statuses[i] !== winner);
      for (const response of winning) {
        expect(response.status, JSON.stringify(response.body)).toBe(200);
        expect(response.body).toEqual(winning[0]!.body);
        expect(response.body.status).toBe(winner);
      }
      for (const response of losing) expectJsonError(response, 409, 'job_already_settled');

      const settlements = (await ledgerEntries(app, team.teamId, { jobId })).filter((e) => e.entry_type === 'charge' || e.entry_type === 'release');
      expect(settlements).toHaveLength(1);
      expect(settlements[0]!.entry_type).toBe('charge');
      const after = await expectBooksConsistent(app, team.teamId);
      expect(after.held).toBe(before.held - 1);
      expect(after.balance).toBe(before.balance - 1);
    }
  });
});

describe('create-and-call with an Idempotency-Key', () => {
  it('replays the first answer to every retry, calling the upstream and charging once', async () => {
    const team = await setupTeam(app, { credits: 10 });
    const upstreamBefore = app.upstream.requests.length;
    const body = { team_id: team.teamId, job_type: 'idem', ...CHAT };
    const headers = { 'Idempotency-Key': 'order-1' };
    const send = () => app.request('POST', '/api/jobs/create-and-call', { token: team.key, body, headers });

    const first = await send();
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    expect(first.body).toMatchObject({ status: 'completed', job_id: expect.stringMatching(/^job_/), costs: { credits_charged: 1 } });

    const second = await send();
    const third = await send();
    const racing = await Promise.all(Array.from({ length: 5 }, send));
    for (const retry of [second, third, ...racing]) {
      expect(retry.status).toBe(201);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.body).toEqual(first.body);
    }

    expect(app.upstream.requests.length - upstreamBefore).toBe(1);
    expect(await jobsOf(app, team.teamId)).toHaveLength(1);
    expect(await ledgerEntries(app, team.teamId, { type: 'charge' })).toHaveLength(1);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 9, held: 0, available: 9 });

    // The same key asking for something else is refused and changes nothing.
    const reused = await app.request('POST', '/api/jobs/create-and-call', {
      token: team.key,
      body: { ...body, messages: [{ role: 'user', content: 'Something else' }] },
      headers,
    });
    expectJsonError(reused, 409, 'idempotency_key_reused');
    expect(app.upstream.requests.length - upstreamBefore).toBe(1);
    expect(await jobsOf(app, team.teamId)).toHaveLength(1);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 9, held: 0, available: 9 });
  });

  it('refuses a retry while the first attempt is still running, and the first still charges once', async () => {
    const team = await setupTeam(app, { credits: 10 });
    const upstreamBefore = app.upstream.requests.length;
    const body = { team_id: team.teamId, job_type: 'idem', ...CHAT };
    const headers = { 'Idempotency-Key': 'slow-order' };
    app.upstream.enqueue({ headersDelayMs: 800 });

    const first = app.request('POST', '/api/jobs/create-and-call', { token: team.key, body, headers });
    await app.upstream.waitForRequests(upstreamBefore + 1);
    const concurrent = await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body, headers });
    expectJsonError(concurrent, 409, 'idempotency_key_in_progress');

    const done = await first;
    expect(done.status, JSON.stringify(done.body)).toBe(201);
    expect(done.body).toMatchObject({ status: 'completed', costs: { credits_charged: 1 } });

    const replay = await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body, headers });
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).toEqual(done.body);

    expect(app.upstream.requests.length - upstreamBefore).toBe(1);
    expect(await jobsOf(app, team.teamId)).toHaveLength(1);
    expect(await ledgerEntries(app, team.teamId, { type: 'charge' })).toHaveLength(1);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 9, held: 0, available: 9 });
  });

  it('retries racing the first attempt: one runs, the others get 409 in progress or the replay; one call, one charge', async () => {
    const team = await setupTeam(app, { credits: 10 });
    app.upstream.setResponder(() => slowWords(40));
    const upstreamBefore = app.upstream.requests.length;
    const body = { team_id: team.teamId, job_type: 'idem', ...CHAT };
    const headers = { 'Idempotency-Key': 'racing-order' };
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => app.request('POST', '/api/jobs/create-and-call', { token: team.key, body, headers })),
    );
    const original = responses.filter((r) => r.status === 201 && r.headers.get('idempotent-replayed') === null);
    expect(original).toHaveLength(1);
    for (const response of responses) {
      if (response.status === 201) expect(response.body).toEqual(original[0]!.body);
      else expectJsonError(response, 409, 'idempotency_key_in_progress');
    }
    expect(app.upstream.requests.length - upstreamBefore).toBe(1);
    expect(await jobsOf(app, team.teamId)).toHaveLength(1);
    expect(await ledgerEntries(app, team.teamId, { type: 'charge' })).toHaveLength(1);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 9, held: 0, available: 9 });
  });

  it('frees the key when the first attempt failed upstream, so the retry runs again', async () => {
    const team = await setupTeam(app, { credits: 10 });
    const upstreamBefore = app.upstream.requests.length;
    const body = { team_id: team.teamId, job_type: 'idem', ...CHAT };
    const headers = { 'Idempotency-Key': 'flaky-order' };
    app.upstream.enqueue({ status: 500 });

    const failed = await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body, headers });
    expectJsonError(failed, 502, 'upstream_error');
    expect(app.upstream.requests.length - upstreamBefore).toBe(1);
    const [failedJob] = await jobsOf(app, team.teamId);
    expect(failedJob).toMatchObject({ status: 'failed', hold_micro: '0' });
    expect(await ledgerEntries(app, team.teamId, { jobId: failedJob!.id, type: 'release' })).toHaveLength(1);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 10, held: 0, available: 10 });

    const retry = await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body, headers });
    expect(retry.status, JSON.stringify(retry.body)).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(retry.body).toMatchObject({ status: 'completed', costs: { credits_charged: 1 } });
    expect(retry.body.job_id).not.toBe(failedJob!.id);
    expect(app.upstream.requests.length - upstreamBefore).toBe(2);

    const again = await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body, headers });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(retry.body);
    expect(app.upstream.requests.length - upstreamBefore).toBe(2);
    expect(await ledgerEntries(app, team.teamId, { type: 'charge' })).toHaveLength(1);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 9, held: 0, available: 9 });
  });
});

describe('streamed calls retried with the same Idempotency-Key', () => {
  it('create-and-call-stream: the retry replays the same stream without a second upstream call or charge', async () => {
    const team = await setupTeam(app, { credits: 5 });
    app.upstream.setResponder(() => slowWords(5));
    const upstreamBefore = app.upstream.requests.length;
    const body = { team_id: team.teamId, job_type: 'stream-idem', ...CHAT };
    const headers = { 'Idempotency-Key': 'stream-order-1' };

    // A retry while the first stream is still running is refused, as JSON, without touching the first.
    app.upstream.setResponder(() => slowWords(150));
    const running = postRaw(app, '/api/jobs/create-and-call-stream', team.key, body, { headers });
    await app.upstream.waitForRequests(upstreamBefore + 1);
    expectJsonError(await postRaw(app, '/api/jobs/create-and-call-stream', team.key, body, { headers }), 409, 'idempotency_key_in_progress');
    const first = await running;
    expect(first.status, first.text).toBe(200);
    expect(first.contentType).toContain('text/event-stream');
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const original = parseSse(first.text, { strict: true });
    expect(original).toMatchObject({ content: 'Hello from creditgate', endsWithDone: true, errors: [], finishReasons: ['stop'] });

    for (const retry of [
      await postRaw(app, '/api/jobs/create-and-call-stream', team.key, body, { headers }),
      ...(await Promise.all(Array.from({ length: 3 }, () => postRaw(app, '/api/jobs/create-and-call-stream', team.key, body, { headers })))),
    ]) {
      expect(retry.status, retry.text).toBe(200);
      expect(retry.contentType).toContain('text/event-stream');
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.headers.get('x-job-id')).toBe(first.headers.get('x-job-id'));
      expect(retry.headers.get('x-call-id')).toBe(first.headers.get('x-call-id'));
      const replayed = parseSse(retry.text, { strict: true });
      expect(replayed.content).toBe(original.content);
      expect(replayed.finishReasons).toEqual(original.finishReasons);
      expect(replayed.errors).toEqual([]);
      expect(replayed.endsWithDone).toBe(true);
    }

    expect(app.upstream.requests.length - upstreamBefore).toBe(1);
    const jobs = await jobsOf(app, team.teamId);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.status).toBe('completed');
    expect(await ledgerEntries(app, team.teamId, { type: 'charge' })).toHaveLength(1);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 4, held: 0, available: 4 });
  });

  it('llm-call-stream: the retry replays the recorded call; the job is charged once', async () => {
    const team = await setupTeam(app, { credits: 5 });
    app.upstream.setResponder(() => slowWords(5));
    const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'stream-idem' } });
    expect(job.status).toBe(201);
    const jobId: string = job.body.job_id;
    const upstreamBefore = app.upstream.requests.length;
    const headers = { 'Idempotency-Key': 'call-1' };
    const path = `/api/jobs/${jobId}/llm-call-stream`;

    const first = await postRaw(app, path, team.key, CHAT, { headers });
    expect(first.status, first.text).toBe(200);
    const original = parseSse(first.text, { strict: true });
    expect(original).toMatchObject({ content: 'Hello from creditgate', endsWithDone: true, errors: [] });

    const retries = [await postRaw(app, path, team.key, CHAT, { headers }), ...(await Promise.all([1, 2, 3].map(() => postRaw(app, path, team.key, CHAT, { headers }))))];
    for (const retry of retries) {
      expect(retry.status, retry.text).toBe(200);
      expect(retry.contentType).toContain('text/event-stream');
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      const replayed = parseSse(retry.text, { strict: true });
      expect(replayed.content).toBe(original.content);
      expect(replayed.finishReasons).toEqual(original.finishReasons);
      expect(replayed.endsWithDone).toBe(true);
    }
    expect(app.upstream.requests.length - upstreamBefore).toBe(1);
    const [calls] = await query(app, 'SELECT count(*)::int AS n FROM llm_calls WHERE job_id = $1', [jobId]);
    expect(calls.n).toBe(1);

    const completed = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status: 'completed' } });
    expect(completed.status).toBe(200);
    expect(completed.body.costs).toMatchObject({ total_calls: 1, credits_charged: 1 });

    // Replaying after the job closed still does not call or charge again.
    const afterClose = await postRaw(app, path, team.key, CHAT, { headers });
    expect(afterClose.status).toBe(200);
    expect(afterClose.headers.get('idempotent-replayed')).toBe('true');
    expect(parseSse(afterClose.text, { strict: true }).content).toBe(original.content);
    expect(app.upstream.requests.length - upstreamBefore).toBe(1);
    expect(await ledgerEntries(app, team.teamId, { type: 'charge' })).toHaveLength(1);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 4, held: 0, available: 4 });
  });
});

describe('create and complete with an Idempotency-Key', () => {
  it('replays create and complete: one hold, one charge; keys are scoped per team', async () => {
    const a = await setupTeam(app, { credits: 5 });
    const b = await setupTeam(app, { credits: 5 });
    const createA = () =>
      app.request('POST', '/api/jobs/create', { token: a.key, body: { team_id: a.teamId, job_type: 'idem' }, headers: { 'Idempotency-Key': 'shared-key' } });

    const first = await createA();
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const retries = [await createA(), ...(await Promise.all(Array.from({ length: 5 }, createA)))];
    for (const retry of retries) {
      expect(retry.status).toBe(201);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.body).toEqual(first.body);
    }
    const jobId: string = first.body.job_id;
    expect(await jobsOf(app, a.teamId)).toHaveLength(1);
    expect(await ledgerEntries(app, a.teamId, { type: 'hold' })).toHaveLength(1);
    expect(await expectBooksConsistent(app, a.teamId)).toEqual({ balance: 5, held: 1, available: 4 });

    // Racing first attempts with a fresh key also create exactly one job.
    const racingCreates = await Promise.all(
      Array.from({ length: 8 }, () =>
        app.request('POST', '/api/jobs/create', { token: a.key, body: { team_id: a.teamId, job_type: 'idem' }, headers: { 'Idempotency-Key': 'racing-create' } }),
      ),
    );
    expect(racingCreates.map((r) => r.status)).toEqual(Array(8).fill(201));
    expect(new Set(racingCreates.map((r) => r.body.job_id)).size).toBe(1);
    expect(racingCreates.filter((r) => r.headers.get('idempotent-replayed') === 'true')).toHaveLength(7);
    const racedJobId: string = racingCreates[0]!.body.job_id;
    expect(racedJobId).not.toBe(jobId);
    expect(await jobsOf(app, a.teamId)).toHaveLength(2);
    expect(await ledgerEntries(app, a.teamId, { type: 'hold' })).toHaveLength(2);
    expect(await expectBooksConsistent(app, a.teamId)).toEqual({ balance: 5, held: 2, available: 3 });
    const racingCompletes = await Promise.all(
      Array.from({ length: 8 }, () =>
        app.request('POST', `/api/jobs/${racedJobId}/complete`, { token: a.key, body: { status: 'failed' }, headers: { 'Idempotency-Key': 'racing-complete' } }),
      ),
    );
    expect(racingCompletes.map((r) => r.status)).toEqual(Array(8).fill(200));
    for (const response of racingCompletes) expect(response.body).toEqual(racingCompletes[0]!.body);
    expect(racingCompletes[0]!.body).toMatchObject({ status: 'failed', costs: { credits_charged: 0 } });
    expect(await ledgerEntries(app, a.teamId, { jobId: racedJobId, type: 'release' })).toHaveLength(1);
    expect(await expectBooksConsistent(app, a.teamId)).toEqual({ balance: 5, held: 1, available: 4 });

    // Team B sends the same key string: its own fresh job, not team A's answer and not a conflict.
    const createB = () =>
      app.request('POST', '/api/jobs/create', { token: b.key, body: { team_id: b.teamId, job_type: 'idem' }, headers: { 'Idempotency-Key': 'shared-key' } });
    const fromB = await createB();
    expect(fromB.status, JSON.stringify(fromB.body)).toBe(201);
    expect(fromB.headers.get('idempotent-replayed')).toBeNull();
    expect(fromB.body.job_id).not.toBe(jobId);
    const fromBAgain = await createB();
    expect(fromBAgain.headers.get('idempotent-replayed')).toBe('true');
    expect(fromBAgain.body).toEqual(fromB.body);
    expect(await jobsOf(app, b.teamId)).toHaveLength(1);
    expect(await jobsOf(app, a.teamId)).toHaveLength(2);
    expect(await expectBooksConsistent(app, b.teamId)).toEqual({ balance: 5, held: 1, available: 4 });

    // The job delivers output, so completing it charges its price.
    const call = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: a.key, body: CHAT });
    expect(call.status, JSON.stringify(call.body)).toBe(200);
    const complete = () =>
      app.request('POST', `/api/jobs/${jobId}/complete`, { token: a.key, body: { status: 'completed' }, headers: { 'Idempotency-Key': 'done-1' } });
    const completed = await complete();
    expect(completed.status, JSON.stringify(completed.body)).toBe(200);
    expect(completed.body).toMatchObject({ status: 'completed', costs: { credits_charged: 1 } });
    const completeRetries = [await complete(), ...(await Promise.all(Array.from({ length: 5 }, complete)))];
    for (const retry of completeRetries) {
      expect(retry.status).toBe(200);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.body).toEqual(completed.body);
    }
    // The same complete key with another body is a conflict.
    const reused = await app.request('POST', `/api/jobs/${jobId}/complete`, {
      token: a.key,
      body: { status: 'failed' },
      headers: { 'Idempotency-Key': 'done-1' },
    });
    expectJsonError(reused, 409, 'idempotency_key_reused');

    expect(await ledgerEntries(app, a.teamId, { type: 'charge' })).toHaveLength(1);
    expect(await expectBooksConsistent(app, a.teamId)).toEqual({ balance: 4, held: 0, available: 4 });
    // Team B's job is untouched by team A's completion.
    expect((await jobsOf(app, b.teamId))[0]!.status).toBe('pending');
    expect(await expectBooksConsistent(app, b.teamId)).toEqual({ balance: 5, held: 1, available: 4 });
  });

  it('a create refused with 402 under a key leaves no claim: after a top-up the same key creates the job', async () => {
    const team = await setupTeam(app, { credits: 0 });
    const create = () =>
      app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'idem' }, headers: { 'Idempotency-Key': 'k402' } });
    expectJsonError(await create(), 402, 'insufficient_credits');
    expect(await jobsOf(app, team.teamId)).toHaveLength(0);
    const topUp = await app.request('POST', `/api/credits/teams/${team.teamId}/add`, { body: { credits: 1, reason: 'top-up' } });
    expect(topUp.status).toBe(201);
    const created = await create();
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.headers.get('idempotent-replayed')).toBeNull();
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 1, held: 1, available: 0 });
  });
});

describe('running out of credits', () => {
  it('a team with 1 credit settles the job it reserved and never goes negative', async () => {
    const team = await setupTeam(app, { credits: 1 });
    const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'last' } });
    expect(job.status).toBe(201);
    expect(job.body.credits_reserved).toBe(1);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 1, held: 1, available: 0 });

    const call = await app.request('POST', `/api/jobs/${job.body.job_id}/llm-call`, { token: team.key, body: CHAT });
    expect(call.status, JSON.stringify(call.body)).toBe(200);

    expectJsonError(
      await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'last' } }),
      402,
      'insufficient_credits',
    );
    const upstreamBefore = app.upstream.requests.length;
    expectJsonError(
      await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body: { team_id: team.teamId, job_type: 'last', ...CHAT } }),
      402,
      'insufficient_credits',
    );
    expect(app.upstream.requests.length).toBe(upstreamBefore);

    const completed = await app.request('POST', `/api/jobs/${job.body.job_id}/complete`, { token: team.key, body: { status: 'completed' } });
    expect(completed.status, JSON.stringify(completed.body)).toBe(200);
    expect(completed.body.costs).toMatchObject({ credits_charged: 1, credit_applied: true, credits_remaining: 0 });
    expect(await ledgerEntries(app, team.teamId, { type: 'charge' })).toHaveLength(1);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 0, held: 0, available: 0 });
  });

  // What CHAT's prompt is reserved as: its size as JSON, an upper bound of its tokens.
  const CHAT_PROMPT_BOUND = promptTokenBound(CHAT);

  it('consumption_tokens: a call reserves its worst case before it leaves; the job is charged its actual usage', async () => {
    const team = await setupTeam(app, { credits: 100, team: { budget_mode: 'consumption_tokens', tokens_per_credit: 10 } });
    const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'tokens' } });
    expect(job.status, JSON.stringify(job.body)).toBe(201);
    expect(job.body.credits_reserved).toBe(1);
    const jobId: string = job.body.job_id;

    app.upstream.enqueue({ usage: { prompt_tokens: 20, completion_tokens: 30 } });
    const call = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: team.key, body: { ...CHAT, max_tokens: 100 } });
    expect(call.status, JSON.stringify(call.body)).toBe(200);
    expect(call.body.metadata).toMatchObject({ total_tokens: 50, max_tokens: 100 });
    expect(app.upstream.requests.at(-1)!.body.max_tokens).toBe(100);

    // (prompt bound + 100 completion) tokens at 10 per credit, held before the call: 1 credit at creation, the rest now.
    const reserved = ((CHAT_PROMPT_BOUND + 100) / 10) * MICRO;
    const holds = await ledgerEntries(app, team.teamId, { jobId, type: 'hold' });
    expect(holds.map((h) => Number(h.held_delta_micro))).toEqual([MICRO, reserved - MICRO]);
    expect(holds[1]!.reason).toMatch(/reserve a call/);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 100, held: reserved / MICRO, available: 100 - reserved / MICRO });

    const completed = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status: 'completed' } });
    expect(completed.status).toBe(200);
    expect(completed.body.costs).toMatchObject({ total_tokens: 50, credits_charged: 5, credits_remaining: 95 });
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 95, held: 0, available: 95 });
  });

  it('consumption_tokens: near the end of the credits a call is cut to what is left, and below a minimal answer refused with 402', async () => {
    const team = await setupTeam(app, { credits: 10, team: { budget_mode: 'consumption_tokens', tokens_per_credit: 10 } });
    const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'tokens' } });
    expect(job.status, JSON.stringify(job.body)).toBe(201);
    const jobId: string = job.body.job_id;

    // 10 credits buy 100 tokens: the prompt's bound, and what is left of completion instead of the default 4096.
    app.upstream.enqueue({ usage: { prompt_tokens: 20, completion_tokens: 30 } });
    const call = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: team.key, body: CHAT });
    expect(call.status, JSON.stringify(call.body)).toBe(200);
    expect(call.body.metadata.max_tokens).toBe(100 - CHAT_PROMPT_BOUND);
    expect(app.upstream.requests.at(-1)!.body.max_completion_tokens).toBe(100 - CHAT_PROMPT_BOUND);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 10, held: 10, available: 0 });

    // 5 credits (50 tokens) are left in the hold, less than the prompt and a minimal answer: refused before the upstream.
    const upstreamBefore = app.upstream.requests.length;
    expectJsonError(await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: team.key, body: CHAT }), 402, 'insufficient_credits');
    const streamed = await postRaw(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, CHAT);
    expectJsonError(streamed, 402, 'insufficient_credits');
    expect(app.upstream.requests.length).toBe(upstreamBefore);
    expectJsonError(
      await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'tokens' } }),
      402,
      'insufficient_credits',
    );

    const completed = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status: 'completed' } });
    expect(completed.status, JSON.stringify(completed.body)).toBe(200);
    expect(completed.body.costs).toMatchObject({ total_calls: 1, total_tokens: 50, credits_charged: 5, credits_remaining: 5 });
    const charges = await ledgerEntries(app, team.teamId, { type: 'charge' });
    expect(charges).toHaveLength(1);
    expect(Number(charges[0]!.amount_micro)).toBe(-5 * MICRO);
    expect(await expectBooksConsistent(app, team.teamId)).toEqual({ balance: 5, held: 0, available: 5 });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Sweeper: its own apps, one with a fast periodic sweep and one swept only by hand
// ---------------------------------------------------------------------------------------------------------------

async function ageJobs(target: TestApp, jobIds: string[]): Promise<void> {
  await query(target, `UPDATE jobs SET updated_at = now() - interval '1 hour' WHERE id = ANY($1::text[])`, [jobIds]);
}

describe('job sweeper', () => {
  let swept: TestApp | undefined;
  let manual: TestApp | undefined;
  afterAll(async () => {
    await swept?.close();
    await manual?.close();
  });
  /** Swept only at start-up and by hand, so each direct sweep sees every stale job. */
  const manualApp = async () => (manual ??= await createTestApp({ JOB_TIMEOUT_SECONDS: '10', SWEEP_INTERVAL_SECONDS: '3600' }));

  it('expires stale jobs: one that delivered output pays for it, one that did not is released, fresh jobs are left alone', async () => {
    swept = await createTestApp({ JOB_TIMEOUT_SECONDS: '10', SWEEP_INTERVAL_SECONDS: '1' });
    const target = swept;
    const team = await setupTeam(target, { credits: 5 });
    const create = async () => {
      const response = await target.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'stale' } });
      expect(response.status, JSON.stringify(response.body)).toBe(201);
      return response.body.job_id as string;
    };
    const pending = await create();
    const called = await create();
    const fresh = await create();
    const call = await target.request('POST', `/api/jobs/${called}/llm-call`, { token: team.key, body: CHAT });
    expect(call.status, JSON.stringify(call.body)).toBe(200);
    expect(await expectBooksConsistent(target, team.teamId)).toEqual({ balance: 5, held: 3, available: 2 });

    await ageJobs(target, [pending, called]);
    const statuses = await poll(
      async () => {
        const rows = await jobsOf(target, team.teamId);
        const byId = new Map(rows.map((row) => [row.id, row.status]));
        return byId.get(pending) === 'expired' && byId.get(called) === 'expired' ? byId : undefined;
      },
      5_000,
      'the sweeper to expire the stale jobs',
    );
    expect(statuses.get(fresh)).toBe('pending');

    for (const [jobId, charged] of [
      [pending, 0],
      [called, 1],
    ] as const) {
      const settlements = (await ledgerEntries(target, team.teamId, { jobId })).filter((e) => e.entry_type === 'charge' || e.entry_type === 'release');
      expect(settlements).toHaveLength(1);
      expect(settlements[0]).toMatchObject({
        entry_type: charged ? 'charge' : 'release',
        actor: 'system:sweeper',
        amount_micro: String(-charged * MICRO),
        held_delta_micro: String(-MICRO),
      });
      const job = await target.request('GET', `/api/jobs/${jobId}`, { token: team.key });
      expect(job.body).toMatchObject({ status: 'expired', credits_reserved: 0, costs: { credits_charged: charged, credit_applied: charged > 0 } });
    }
    // Job-based: the expired job that delivered output pays its price; only the fresh job still holds its credit.
    expect(await expectBooksConsistent(target, team.teamId)).toEqual({ balance: 4, held: 1, available: 3 });

    expectJsonError(
      await target.request('POST', `/api/jobs/${pending}/complete`, { token: team.key, body: { status: 'completed' } }),
      409,
      'job_already_settled',
    );
    expectJsonError(
      await target.request('POST', `/api/jobs/${called}/complete`, { token: team.key, body: { status: 'failed' } }),
      409,
      'job_already_settled',
    );
    expectJsonError(await target.request('POST', `/api/jobs/${called}/llm-call`, { token: team.key, body: CHAT }), 409, 'job_not_open');

    // The background sweep already did everything: a direct sweep finds nothing to do.
    const ledgerBefore = await ledgerEntries(target, team.teamId);
    expect(await sweepExpiredJobs(target.deps.db, { leaseSeconds: 30 }, target.deps.log)).toBe(0);
    expect(await ledgerEntries(target, team.teamId)).toEqual(ledgerBefore);

    const completed = await target.request('POST', `/api/jobs/${fresh}/complete`, { token: team.key, body: { status: 'completed' } });
    expect(completed.status).toBe(200);
    expect(completed.body.costs).toMatchObject({ credits_charged: 0 });
    expect(await expectBooksConsistent(target, team.teamId)).toEqual({ balance: 4, held: 0, available: 4 });
  });

  it('sweepExpiredJobs is idempotent: concurrent sweeps expire each job once and a second sweep changes nothing', async () => {
    const target = await manualApp();
    const team = await setupTeam(target, { credits: 5 });
    const jobIds: string[] = [];
    for (let i = 0; i < 3; i++) {
      const response = await target.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'stale' } });
      expect(response.status).toBe(201);
      jobIds.push(response.body.job_id);
    }
    const call = await target.request('POST', `/api/jobs/${jobIds[0]}/llm-call`, { token: team.key, body: CHAT });
    expect(call.status).toBe(200);
    const fresh = await target.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'fresh' } });
    expect(fresh.status).toBe(201);
    await ageJobs(target, jobIds);

    const counts = await Promise.all([
      sweepExpiredJobs(target.deps.db, { leaseSeconds: 30 }, target.deps.log),
      sweepExpiredJobs(target.deps.db, { leaseSeconds: 30 }, target.deps.log),
    ]);
    expect(counts[0] + counts[1]).toBe(3);
    const afterFirst = await ledgerEntries(target, team.teamId);
    const settlements = afterFirst.filter((e) => (e.entry_type === 'release' || e.entry_type === 'charge') && e.actor === 'system:sweeper');
    expect(settlements.map((e) => e.job_id).sort()).toEqual([...jobIds].sort());
    expect(await expectBooksConsistent(target, team.teamId)).toEqual({ balance: 4, held: 1, available: 3 });

    expect(await sweepExpiredJobs(target.deps.db, { leaseSeconds: 30 }, target.deps.log)).toBe(0);
    expect(await ledgerEntries(target, team.teamId)).toEqual(afterFirst);
    const jobs = await jobsOf(target, team.teamId);
    expect(jobs.filter((job) => job.status === 'expired').map((job) => job.id).sort()).toEqual([...jobIds].sort());
    expect(jobs.find((job) => job.id === fresh.body.job_id)?.status).toBe('pending');
    expect(await expectBooksConsistent(target, team.teamId)).toEqual({ balance: 4, held: 1, available: 3 });
  });

  it('consumption_tokens: an expired job pays for the tokens it used, an unused one is released', async () => {
    const target = await manualApp();
    const team = await setupTeam(target, { credits: 10, team: { budget_mode: 'consumption_tokens', tokens_per_credit: 10 } });
    const create = async () => {
      const response = await target.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'stale' } });
      expect(response.status, JSON.stringify(response.body)).toBe(201);
      return response.body.job_id as string;
    };
    const used = await create();
    const unused = await create();
    target.upstream.enqueue({ usage: { prompt_tokens: 10, completion_tokens: 20 } });
    const call = await target.request('POST', `/api/jobs/${used}/llm-call`, { token: team.key, body: CHAT });
    expect(call.status, JSON.stringify(call.body)).toBe(200);
    // The call reserved all the team had left (the completion limit lowered to fit), until the job settles.
    expect(await expectBooksConsistent(target, team.teamId)).toEqual({ balance: 10, held: 10, available: 0 });

    await ageJobs(target, [used, unused]);
    expect(await sweepExpiredJobs(target.deps.db, { leaseSeconds: 30 }, target.deps.log)).toBe(2);
    const [charge] = await ledgerEntries(target, team.teamId, { jobId: used, type: 'charge' });
    expect(charge).toMatchObject({ actor: 'system:sweeper', amount_micro: String(-3 * MICRO), held_delta_micro: String(-9 * MICRO) });
    const [release] = await ledgerEntries(target, team.teamId, { jobId: unused, type: 'release' });
    expect(release).toMatchObject({ actor: 'system:sweeper', amount_micro: '0', held_delta_micro: String(-MICRO) });
    expect((await jobsOf(target, team.teamId)).map((job) => job.status)).toEqual(['expired', 'expired']);
    expect(await expectBooksConsistent(target, team.teamId)).toEqual({ balance: 7, held: 0, available: 7 });

    expect(await sweepExpiredJobs(target.deps.db, { leaseSeconds: 30 }, target.deps.log)).toBe(0);
    expect(await expectBooksConsistent(target, team.teamId)).toEqual({ balance: 7, held: 0, available: 7 });
  });
});
