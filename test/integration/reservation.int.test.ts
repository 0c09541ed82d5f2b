import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promptTokenBound } from '../../src/domain/billing/reservation.models.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectErrorBody } from '../helpers/api.js';
import { setupTeam } from '../helpers/factories.js';
import { MICRO, expectLedgerConsistent } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { postRaw } from '../helpers/sse.js';

/**
 * A team can never consume more than it has: each call's worst case (its prompt's token bound plus its completion
 * limit) is reserved before it leaves, calls in flight count toward the job's hold, the completion limit is lowered
 * to what the credits cover, and the job is charged what was actually used.
 */

const messages = (text: string) => [{ role: 'user', content: text }];

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app?.close());

describe('calls in flight count toward the hold', () => {
  it('50 concurrent calls on one job of a team with 30 credits: what is served never costs more than 30 credits', async () => {
    const team = await setupTeam(app, { credits: 30, team: { budget_mode: 'consumption_tokens', tokens_per_credit: 10 } });
    const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'burst' } });
    expect(job.status).toBe(201);
    const jobId: string = job.body.job_id;
    const request = { messages: messages('Write a long story about a lighthouse keeper'), max_tokens: 40 };
    const upstreamBefore = app.upstream.requests.length;

    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        i % 2 === 0
          ? app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: team.key, body: request })
          : postRaw(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, request).then((raw) => ({ status: raw.status, body: raw.text })),
      ),
    );
    const served = responses.filter((response) => response.status === 200);
    const refused = responses.filter((response) => response.status !== 200);
    expect(served.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    for (const response of refused) expect(response.status, String(response.body)).toBe(402);
    // Refused calls never reached the upstream; every served call went out with a limit its reservation covered.
    const upstream = app.upstream.requests.slice(upstreamBefore);
    expect(upstream).toHaveLength(served.length);
    const bound = promptTokenBound(request);
    for (const sent of upstream) expect(bound + (sent.body.max_tokens as number)).toBeLessThanOrEqual(30 * 10);

    const completed = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status: 'completed' } });
    expect(completed.status, JSON.stringify(completed.body)).toBe(200);
    const { total_tokens: tokens, credits_charged: charged } = completed.body.costs;
    expect(completed.body.costs.total_calls).toBe(served.length);
    // The job pays exactly what was used, rounded up to the micro-credit, and that is within what the team had.
    expect(charged).toBe(Math.ceil((tokens * MICRO) / 10) / MICRO);
    expect(charged).toBeLessThanOrEqual(30);
    const { balanceMicro, heldMicro } = await expectLedgerConsistent(app, team.teamId, { jobs: false });
    expect({ balance: balanceMicro / MICRO, held: heldMicro / MICRO }).toEqual({ balance: 30 - charged, held: 0 });
  });
});

describe('the completion limit follows the credits', () => {
  it('create-and-call asking for 100,000 tokens is sent with what 20 credits cover, and charged what it used', async () => {
    const team = await setupTeam(app, { credits: 20, team: { budget_mode: 'consumption_tokens', tokens_per_credit: 10 } });
    const body = { team_id: team.teamId, job_type: 'huge', messages: messages('Repeat the word hello forever'), max_tokens: 100_000 };
    const response = await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body });
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    const limit = 20 * 10 - promptTokenBound(body);
    expect(app.upstream.requests.at(-1)!.body.max_tokens).toBe(limit);
    expect(response.body.metadata.max_tokens).toBe(limit);
    expect(response.body.costs.credits_charged).toBe(Math.ceil((response.body.metadata.total_tokens * MICRO) / 10) / MICRO);
    expect(response.body.costs.credits_charged).toBeLessThanOrEqual(20);
  });

  it('an upstream that ignores the limit (50,010 tokens for a 1-credit reservation) is charged all the team had, never more', async () => {
    const team = await setupTeam(app, { credits: 20, team: { budget_mode: 'consumption_tokens', tokens_per_credit: 10 } });
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'hello '.repeat(50) }], usage: { prompt_tokens: 10, completion_tokens: 50_000 } });
    const response = await app.request('POST', '/api/jobs/create-and-call', {
      token: team.key,
      body: { team_id: team.teamId, job_type: 'runaway', messages: messages('x'), max_tokens: 50 },
    });
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    expect(response.body.metadata.total_tokens).toBe(50_010);
    expect(response.body.costs).toMatchObject({ credits_charged: 20, credits_remaining: 0 });
    const { balanceMicro, heldMicro } = await expectLedgerConsistent(app, team.teamId, { jobs: false });
    expect([balanceMicro, heldMicro]).toEqual([0, 0]);
  });

  it('a team whose credits do not cover the prompt and a minimal answer is refused with 402 before any upstream call', async () => {
    const team = await setupTeam(app, { credits: 1, team: { budget_mode: 'consumption_tokens', tokens_per_credit: 10 } });
    const before = app.upstream.requests.length;
    for (const path of ['/api/jobs/create-and-call', '/api/jobs/create-and-call-stream']) {
      const raw = await postRaw(app, path, team.key, { team_id: team.teamId, job_type: 'poor', messages: messages('Hello there') });
      expect(raw.status, raw.text).toBe(402);
      expect(JSON.parse(raw.text).error.code).toBe('insufficient_credits');
    }
    expectErrorBody(
      await app.request('POST', '/v1/chat/completions', { token: team.key, body: { model: team.group, messages: messages('Hello there') } }),
      402,
      'insufficient_credits',
    );
    expect(app.upstream.requests.length).toBe(before);
    expect(await query(app, 'SELECT id FROM jobs WHERE team_id = $1', [team.teamId])).toEqual([]);
    const { balanceMicro, heldMicro } = await expectLedgerConsistent(app, team.teamId, { jobs: false });
    expect([balanceMicro, heldMicro]).toEqual([MICRO, 0]);
  });
});

describe('job_based one-shot calls', () => {
  it('are limited by the job token cap and charged the job price once they delivered', async () => {
    const team = await setupTeam(app, { credits: 3, team: { max_tokens_per_job: 500 } });
    const body = { team_id: team.teamId, job_type: 'capped', messages: messages('Hi'), max_tokens: 10_000 };
    const response = await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body });
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    expect(app.upstream.requests.at(-1)!.body.max_tokens).toBe(500 - promptTokenBound(body));
    expect(response.body.costs).toMatchObject({ credits_charged: 1, credits_remaining: 2 });
  });
});
