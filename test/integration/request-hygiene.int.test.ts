import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promptTokenBound } from '../../src/domain/billing/reservation.models.js';
import { estimatePromptTokens } from '../../src/domain/llm/token-estimate.js';
import { balanceOf, expectErrorBody, waitForJobStatus } from '../helpers/api.js';
import { createTestApp, TEST_MASTER_KEY, type ApiResponse, type RequestOptions, type TestApp } from '../helpers/app.js';
import { createOrganization, setupTeam, type AdminApi, type TeamSetup } from '../helpers/factories.js';
import { expectLedgerConsistent, jobLedger } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { frameReader, parseSse, postRaw, postStream } from '../helpers/sse.js';
import { upstreamRequest } from '../helpers/upstream.js';

/**
 * Issue 12, what a request may carry and what it may cost the server: only allow-listed OpenAI parameters reach
 * the upstream (anything else is refused before a credit moves), a master key may look like a LiteLLM key, and
 * counting the tokens of a huge prompt never freezes the event loop.
 */

const CHAT = { messages: [{ role: 'user', content: 'Say hello' }] };

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app?.close());

interface Route {
  name: string;
  /** The path and the body of a valid request to it, for a team (and its open job). */
  request(team: TeamSetup, jobId: string): { path: string; body: Record<string, unknown> };
  /** How a valid request is answered: a JSON status, or an SSE stream. */
  answer: number | 'sse';
  /** The call goes upstream as a stream (queued calls always do). */
  streamed: boolean;
}

const ROUTES: Route[] = [
  { name: 'llm-call', answer: 200, streamed: false, request: (_t, jobId) => ({ path: `/api/jobs/${jobId}/llm-call`, body: { ...CHAT } }) },
  { name: 'llm-call-stream', answer: 'sse', streamed: true, request: (_t, jobId) => ({ path: `/api/jobs/${jobId}/llm-call-stream`, body: { ...CHAT } }) },
  { name: 'create-and-call', answer: 201, streamed: false, request: (t) => ({ path: '/api/jobs/create-and-call', body: { team_id: t.teamId, job_type: 'hygiene', ...CHAT } }) },
  { name: 'create-and-call-stream', answer: 'sse', streamed: true, request: (t) => ({ path: '/api/jobs/create-and-call-stream', body: { team_id: t.teamId, job_type: 'hygiene', ...CHAT } }) },
  { name: '/v1/chat/completions', answer: 200, streamed: false, request: (t) => ({ path: '/v1/chat/completions', body: { model: t.group, ...CHAT } }) },
  { name: '/v1/chat/completions stream', answer: 'sse', streamed: true, request: (t) => ({ path: '/v1/chat/completions', body: { model: t.group, stream: true, ...CHAT } }) },
  { name: '/api/llm/complete', answer: 202, streamed: true, request: (t) => ({ path: '/api/llm/complete', body: { model: t.group, ...CHAT } }) },
];

/** Fields creditgate must not forward: LiteLLM's per-request overrides, and parameters that change what a call costs. */
const REFUSED_FIELDS: [field: string, value: unknown, param: string, code: string][] = [
  ['api_base', 'http://attacker.example/v1', 'api_base', 'unknown_parameter'],
  ['api_key', 'sk-attacker-0000', 'api_key', 'unknown_parameter'],
  ['user_config', { model_list: [{ model_name: 'x', litellm_params: { model: 'gpt-4o', api_key: 'k' } }] }, 'user_config', 'unknown_parameter'],
  ['fallbacks', ['gpt-4o'], 'fallbacks', 'unknown_parameter'],
  ['extra_body', { api_base: 'http://attacker.example/v1' }, 'extra_body', 'unknown_parameter'],
  ['service_tier', 'priority', 'service_tier', 'unknown_parameter'],
  ['web_search_options', {}, 'web_search_options', 'unknown_parameter'],
  // metadata is allowed, but only as OpenAI's string → string map.
  ['metadata', { priority: 1 }, 'metadata.priority', 'invalid_type'],
];

describe('only known fields go upstream', () => {
  let team: TeamSetup;
  let jobId: string;
  beforeAll(async () => {
    team = await setupTeam(app, { credits: 10 });
    const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'hygiene' } });
    expect(job.status, JSON.stringify(job.body)).toBe(201);
    jobId = job.body.job_id;
  });

  const cases = ROUTES.flatMap((route) => REFUSED_FIELDS.map(([field, value, param, code]) => [route.name, field, route, value, param, code] as const));

  it.each(cases)('%s with %s → 400 naming it; nothing reaches the upstream and no credit moves', async (_name, field, route, value, param, code) => {
    const upstreamBefore = app.upstream.requests.length;
    const { path, body } = route.request(team, jobId);
    const response = await app.request('POST', path, { token: team.key, body: { ...body, [field]: value } });
    const error = expectErrorBody(response, 400, code);
    expect(error).toMatchObject({ type: 'invalid_request_error', param });

    expect(app.upstream.requests.length).toBe(upstreamBefore);
    // Only the open job holds its credit; no one-shot job, call or queue item was written.
    const { balanceMicro, heldMicro } = await expectLedgerConsistent(app, team.teamId);
    expect([balanceMicro, heldMicro]).toEqual([10_000_000, 1_000_000]);
    expect(await balanceOf(app, team.teamId)).toMatchObject({ balance: 10, held: 1 });
    expect(await query(app, 'SELECT id FROM jobs WHERE team_id = $1', [team.teamId])).toEqual([{ id: jobId }]);
    expect(await query(app, 'SELECT id FROM llm_calls WHERE team_id = $1 UNION ALL SELECT id FROM queue_requests WHERE team_id = $1', [team.teamId])).toEqual([]);
  });

  const ALLOWED = {
    temperature: 0.2,
    seed: 7,
    presence_penalty: 0.5,
    frequency_penalty: -0.5,
    logit_bias: { '50256': -100 },
    user: 'end-user-42',
    parallel_tool_calls: false,
    reasoning_effort: 'low',
    metadata: { ticket: 'T-1001', channel: 'email' },
  };

  it.each(ROUTES.map((route) => [route.name, route] as const))('%s: allow-listed parameters pass through to the upstream request as sent', async (_name, route) => {
    const passing = await setupTeam(app, { credits: 5 });
    const open = await app.request('POST', '/api/jobs/create', { token: passing.key, body: { team_id: passing.teamId, job_type: 'hygiene' } });
    expect(open.status).toBe(201);
    const { path, body } = route.request(passing, open.body.job_id);
    const index = app.upstream.requests.length;
    const sent = { ...body, ...ALLOWED, ...(route.streamed && { stream_options: { include_usage: true } }) };

    if (route.answer === 'sse') {
      const streamed = await postRaw(app, path, passing.key, sent);
      expect(streamed.status, streamed.text).toBe(200);
      expect(parseSse(streamed.text, { strict: true })).toMatchObject({ errors: [], endsWithDone: true });
    } else {
      const answered = await app.request('POST', path, { token: passing.key, body: sent });
      expect(answered.status, JSON.stringify(answered.body)).toBe(route.answer);
    }

    // Exactly these fields: the routed model, the messages, the allowed parameters and the completion limit reserved.
    const upstream = await upstreamRequest(app, index);
    expect(upstream.body).toEqual({
      model: 'sim-small',
      messages: CHAT.messages,
      ...ALLOWED,
      max_completion_tokens: 4096,
      stream: route.streamed,
      ...(route.streamed && { stream_options: { include_usage: true } }),
    });
  });
});

describe('a MASTER_KEY that starts with sk-', () => {
  const SK_MASTER = 'sk-master-key-for-litellm-migrants-0123';
  let skApp: TestApp;
  let admin: AdminApi;
  beforeAll(async () => {
    skApp = await createTestApp({ MASTER_KEY: SK_MASTER });
    admin = { request: (method, path, options: RequestOptions = {}) => skApp.request(method, path, { ...options, token: SK_MASTER }) };
  });
  afterAll(() => skApp?.close());

  it('works for admin routes, while team keys still work as team keys and other sk- strings are refused', async () => {
    const organizationId = await createOrganization(admin);
    const team = await setupTeam(admin, { organizationId, credits: 3 });
    expect(team.key.startsWith('sk-')).toBe(true);
    const balance: ApiResponse = await admin.request('GET', `/api/credits/teams/${team.teamId}/balance`);
    expect(balance.status).toBe(200);
    expect(balance.body).toMatchObject({ balance: 3, held: 0 });

    const called = await skApp.request('POST', '/api/jobs/create-and-call', { token: team.key, body: { team_id: team.teamId, job_type: 'sk', ...CHAT } });
    expect(called.status, JSON.stringify(called.body)).toBe(201);
    expect(called.body).toMatchObject({ status: 'completed', costs: { credits_charged: 1 } });

    expectErrorBody(await skApp.request('POST', '/api/organizations/create', { token: team.key, body: { organization_id: 'not-allowed', name: 'x' } }), 403, 'admin_required');
    expectErrorBody(await skApp.request('POST', '/api/jobs/create', { token: SK_MASTER, body: { team_id: team.teamId, job_type: 'sk' } }), 403, 'team_key_required');
    for (const wrong of [`${SK_MASTER.slice(0, -1)}4`, `${SK_MASTER}0`, TEST_MASTER_KEY]) {
      expectErrorBody(await skApp.request('GET', '/api/organizations', { token: wrong }), 401, 'invalid_api_key');
    }
  });
});

describe('counting tokens never stalls the event loop', () => {
  /** The worst event-loop stall, in ms, while `work` runs (the app runs in this process). */
  async function worstStallDuring(work: () => Promise<void>): Promise<number> {
    const stalls = monitorEventLoopDelay({ resolution: 10 });
    stalls.enable();
    try {
      await work();
    } finally {
      stalls.disable();
    }
    return stalls.max / 1e6;
  }

  // Each test file runs in a process of its own and nothing above needs an estimate, so this is the process's first.
  it('the first estimate of a process (the tokenizer is loaded then) does not stall the event loop', async () => {
    const team = await setupTeam(app, { credits: 5 });
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'Hello there' }], usage: 'none' });
    let response: ApiResponse | undefined;
    const worstMs = await worstStallDuring(async () => {
      response = await app.request('POST', '/api/jobs/create-and-call', { token: team.key, body: { team_id: team.teamId, job_type: 'first', ...CHAT } });
    });
    expect(response!.status, JSON.stringify(response!.body)).toBe(201);
    const job = await waitForJobStatus(app, team, response!.body.job_id, 'completed');
    expect(job.calls).toMatchObject([{ status: 'success', usage_source: 'estimated', prompt_tokens: await estimatePromptTokens(CHAT.messages), completion_tokens: 2 }]);
    expect(worstMs, `worst event-loop stall ${worstMs.toFixed(1)} ms`).toBeLessThan(250);
  });

  it('a 300 KB one-word prompt aborted after the first chunk is estimated and charged; the count is linear and yields', async () => {
    // The tokenizer's one-time load is the previous test's subject; here only the counting is measured.
    await estimatePromptTokens([{ role: 'user', content: 'warm up' }]);
    const team = await setupTeam(app, { credits: 5, team: { max_tokens_per_job: 1_000_000 } });
    const messages = [{ role: 'user', content: 'a'.repeat(300_000) }];
    app.upstream.enqueue({
      steps: [
        { type: 'content', text: 'one ' },
        { type: 'content', text: 'two ', delayMs: 50 },
        { type: 'content', text: 'three', delayMs: 50 },
        { type: 'hang' },
      ],
      usage: 'none',
    });

    let job: any;
    const worstMs = await worstStallDuring(async () => {
      const controller = new AbortController();
      const response = await postStream(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'huge', messages }, { signal: controller.signal });
      expect(response.status).toBe(200);
      // The role chunk, then the first content chunk; then the client leaves.
      const reader = frameReader(response);
      const deltas = [JSON.parse((await reader.next())!.data!).choices[0].delta, JSON.parse((await reader.next())!.data!).choices[0].delta];
      expect(deltas).toEqual([{ role: 'assistant', content: '' }, { content: 'one ' }]);
      controller.abort();
      job = await waitForJobStatus(app, team, response.headers.get('x-job-id')!, 'cancelled', 20_000);
    });

    expect(job.costs).toMatchObject({ credits_charged: 1, credit_applied: true });
    expect(job.calls).toHaveLength(1);
    const [call] = job.calls;
    expect(call).toMatchObject({ status: 'cancelled', delivered: true, usage_source: 'estimated', prompt_tokens: await estimatePromptTokens(messages) });
    expect(call.response_content.startsWith('one ')).toBe(true);
    // 300,000 repeated letters are tens of thousands of tokens, and never more than the prompt's byte bound.
    expect(call.prompt_tokens).toBeGreaterThan(30_000);
    expect(call.prompt_tokens).toBeLessThan(promptTokenBound({ messages }));
    expect(await jobLedger(app, job.job_id)).toEqual([
      { type: 'hold', amount: 0, held: 1 },
      { type: 'charge', amount: -1, held: -1 },
    ]);
    // The quadratic tokenizer stalled 39 s on this input; now no single stall comes near a quarter of a second.
    expect(worstMs, `worst event-loop stall ${worstMs.toFixed(1)} ms`).toBeLessThan(250);
  });
});
