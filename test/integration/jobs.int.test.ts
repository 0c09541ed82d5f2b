import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UpstreamScript } from '../../src/upstream/simulated-server.js';
import { balanceOf, expectErrorBody } from '../helpers/api.js';
import { createTestApp, freePort, type TestApp } from '../helpers/app.js';
import { createModelGroup, createOrganization, setupTeam, uniqueId, type TeamSetup } from '../helpers/factories.js';
import { ledgerSum } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { expectSseHeaders, postStream, sseFrames } from '../helpers/sse.js';
import { weatherToolScript } from '../helpers/upstream.js';

/**
 * The job API over HTTP, end to end: the real app against a real PostgreSQL and the scriptable simulated
 * upstream. Streams are read incrementally with fetch and checked chunk by chunk; money is checked through the
 * balance endpoint, the ledger endpoint and the database itself.
 */

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app?.close());

// ---------------------------------------------------------------------------------------------------------
// helpers

const messages = (text = 'Say something') => [{ role: 'user', content: text }];

/** The scripted reply: content steps, then the finish reason, with the given usage. */
const script = (parts: string[], usage: { prompt_tokens: number; completion_tokens: number }, extra: Partial<UpstreamScript> = {}): UpstreamScript => ({
  steps: parts.map((text) => ({ type: 'content' as const, text })),
  usage,
  ...extra,
});

/** The ledger entries of one job, oldest first. */
async function jobLedger(teamId: string, jobId: string, target = app) {
  const response = await target.request('GET', `/api/credits/teams/${teamId}/transactions?limit=200`);
  expect(response.status).toBe(200);
  return (response.body.data as { job_id: string | null; type: string; amount: number; held_change: number }[])
    .filter((entry) => entry.job_id === jobId)
    .reverse()
    .map(({ type, amount, held_change }) => ({ type, amount, held_change }));
}

const dbCall = async (callId: string, target = app) => (await query(target, 'SELECT * FROM llm_calls WHERE id = $1', [callId]))[0];
const dbJobs = (teamId: string, target = app) =>
  query<{ id: string; status: string; charged_micro: string | number; hold_micro: string | number }>(target, 'SELECT * FROM jobs WHERE team_id = $1 ORDER BY created_at', [teamId]);

/** USD per million tokens with six decimals → pico-USD per token, so costs are computed exactly. */
const PRICES: Record<string, [number, number]> = { 'sim-small': [500_000, 1_500_000], 'sim-large': [5_000_000, 15_000_000] };
const costPico = (model: string, prompt: number, completion: number) => prompt * PRICES[model]![0] + completion * PRICES[model]![1];
const usd = (pico: number) => pico / 1e12;

async function createJob(setup: TeamSetup, jobType = 'summarize', target = app) {
  const response = await target.request('POST', '/api/jobs/create', { token: setup.key, body: { team_id: setup.teamId, job_type: jobType } });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body.job_id as string;
}

// --- SSE ---------------------------------------------------------------------------------------------------

/** The payload of every `data:` line, as soon as its frame is complete (`:` keepalive comments carry none). */
async function* sseData(response: Response): AsyncGenerator<string> {
  for await (const frame of sseFrames(response)) yield* frame.dataLines;
}

async function collectSse(response: Response): Promise<string[]> {
  const all: string[] = [];
  for await (const data of sseData(response)) all.push(data);
  return all;
}

/** A 200 with the SSE headers and the call's id. */
function expectCallStream(response: Response) {
  expectSseHeaders(response.headers, response.status);
  expect(response.headers.get('x-call-id')).toMatch(/^call_[a-z0-9]{21}$/);
}

/** Checks the stream is well formed (chunks, then exactly one trailing [DONE]) and returns the chunks parsed. */
function chunksOf(frames: string[]): any[] {
  expect(frames.at(-1)).toBe('[DONE]');
  expect(frames.filter((frame) => frame === '[DONE]')).toHaveLength(1);
  return frames.slice(0, -1).map((frame) => JSON.parse(frame));
}

const contentsOf = (chunks: any[]) =>
  chunks.flatMap((chunk) => (typeof chunk.choices?.[0]?.delta?.content === 'string' && chunk.choices[0].delta.content !== '' ? [chunk.choices[0].delta.content] : []));

/** The OpenAI chunk contract for a plain text reply. */
function expectTextChunks(chunks: any[], parts: string[], model = 'sim-small') {
  for (const chunk of chunks) {
    expect(chunk.object).toBe('chat.completion.chunk');
    expect(chunk.model).toBe(model);
  }
  const choiceChunks = chunks.filter((chunk) => chunk.choices.length > 0);
  expect(choiceChunks[0].choices[0].delta.role).toBe('assistant');
  expect(contentsOf(chunks)).toEqual(parts);
  const finishes = choiceChunks.filter((chunk) => chunk.choices[0].finish_reason !== null);
  expect(finishes).toHaveLength(1);
  expect(finishes[0].choices[0].finish_reason).toBe('stop');
  expect(choiceChunks.at(-1)).toBe(finishes[0]);
}

const jsonOf = async (response: Response): Promise<any> => response.json();

// ---------------------------------------------------------------------------------------------------------

describe('job lifecycle', () => {
  it('creates a job, calls and streams within it, completes it once and charges exactly one credit', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const { teamId, key, group } = setup;

    // --- create: the job's price is held
    const created = await app.request('POST', '/api/jobs/create', {
      token: key,
      body: { team_id: teamId, job_type: 'summarize', user_id: 'user-1', metadata: { doc: 42 } },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toEqual({ job_id: expect.stringMatching(/^job_[a-z0-9]{21}$/), status: 'pending', created_at: expect.any(String), credits_reserved: 1 });
    expect(Number.isNaN(Date.parse(created.body.created_at))).toBe(false);
    const jobId: string = created.body.job_id;
    expect(await balanceOf(app, teamId)).toMatchObject({ balance: 10, held: 1, credits_remaining: 9 });

    const fresh = await app.request('GET', `/api/jobs/${jobId}`, { token: key });
    expect(fresh.status).toBe(200);
    expect(fresh.body).toMatchObject({
      job_id: jobId,
      team_id: teamId,
      job_type: 'summarize',
      user_id: 'user-1',
      status: 'pending',
      metadata: { doc: 42 },
      credits_reserved: 1,
      completed_at: null,
      calls: [],
      costs: { total_calls: 0, successful_calls: 0, failed_calls: 0, total_tokens: 0, credits_charged: 0, credit_applied: false, credits_remaining: 9 },
    });

    // --- non-streamed call
    const requestsBefore = app.upstream.requests.length;
    app.upstream.enqueue(script(['Hello ', 'world'], { prompt_tokens: 11, completion_tokens: 7 }));
    const call = await app.request('POST', `/api/jobs/${jobId}/llm-call`, {
      token: key,
      body: { messages: messages('Say hello'), temperature: 0.5, max_tokens: 50 },
    });
    expect(call.status, JSON.stringify(call.body)).toBe(200);
    expect(call.body.call_id).toMatch(/^call_[a-z0-9]{21}$/);
    expect(call.body.response).toMatchObject({
      object: 'chat.completion',
      model: 'sim-small',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello world' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 },
    });
    expect(call.body.metadata).toEqual({
      job_id: jobId,
      model_requested: group,
      model_used: 'sim-small',
      prompt_tokens: 11,
      completion_tokens: 7,
      total_tokens: 18,
      cost_usd: usd(costPico('sim-small', 11, 7)),
      max_tokens: 50,
      latency_ms: expect.any(Number),
    });
    const plainRequest = app.upstream.requests[requestsBefore]!;
    expect(app.upstream.requests).toHaveLength(requestsBefore + 1);
    expect(plainRequest.body).toMatchObject({ model: 'sim-small', stream: false, temperature: 0.5, max_tokens: 50, messages: messages('Say hello') });
    for (const own of ['team_id', 'job_type', 'job_id', 'stream_options']) expect(plainRequest.body).not.toHaveProperty(own);

    // --- streamed call, read chunk by chunk; the third part is delayed so we can see chunks arrive before the end
    app.upstream.enqueue({
      steps: [
        { type: 'content', text: 'One' },
        { type: 'content', text: ' two' },
        { type: 'content', text: ' three', delayMs: 400 },
        { type: 'finish', reason: 'stop' },
      ],
      usage: { prompt_tokens: 20, completion_tokens: 3 },
    });
    const response = await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, key, { messages: messages('Count to three') });
    expectCallStream(response);
    const streamCallId = response.headers.get('x-call-id')!;
    const frames: string[] = [];
    let sawEarlyChunk = false;
    for await (const data of sseData(response)) {
      frames.push(data);
      if (data !== '[DONE]' && JSON.parse(data).choices?.[0]?.delta?.content === ' two') {
        // Flushed per chunk: the client holds " two" while the upstream is still waiting to send " three".
        expect(app.upstream.requests[requestsBefore + 1]!.finishedAt).toBeUndefined();
        sawEarlyChunk = true;
      }
    }
    expect(sawEarlyChunk).toBe(true);
    const chunks = chunksOf(frames);
    expectTextChunks(chunks, ['One', ' two', ' three']);
    expect(contentsOf(chunks).join('')).toBe('One two three');
    // The client did not ask for usage: the usage-only chunk is not passed on...
    expect(chunks.filter((chunk) => chunk.choices.length === 0)).toEqual([]);
    expect(chunks.some((chunk) => chunk.usage)).toBe(false);
    // ...but creditgate asked the upstream for it, to bill real tokens.
    const streamRequest = app.upstream.requests[requestsBefore + 1]!;
    expect(app.upstream.requests).toHaveLength(requestsBefore + 2);
    expect(streamRequest.body).toMatchObject({ model: 'sim-small', stream: true, stream_options: { include_usage: true } });

    // --- the job with both calls: pending again, since no call is in flight
    const job = await app.request('GET', `/api/jobs/${jobId}`, { token: key });
    expect(job.status).toBe(200);
    expect(job.body.status).toBe('pending');
    expect(job.body.calls).toHaveLength(2);
    const [first, second] = job.body.calls;
    expect(first).toMatchObject({
      call_id: call.body.call_id,
      status: 'success',
      streamed: false,
      model_requested: group,
      model_used: 'sim-small',
      response_content: 'Hello world',
      tool_calls: null,
      finish_reason: 'stop',
      prompt_tokens: 11,
      completion_tokens: 7,
      total_tokens: 18,
      usage_source: 'upstream',
      cost_usd: usd(costPico('sim-small', 11, 7)),
      error: null,
    });
    expect(first.latency_ms).toEqual(expect.any(Number));
    expect(second).toMatchObject({
      call_id: streamCallId,
      status: 'success',
      streamed: true,
      model_requested: group,
      model_used: 'sim-small',
      response_content: 'One two three',
      tool_calls: null,
      finish_reason: 'stop',
      prompt_tokens: 20,
      completion_tokens: 3,
      total_tokens: 23,
      usage_source: 'upstream',
      cost_usd: usd(costPico('sim-small', 20, 3)),
      error: null,
    });
    expect(second.ttft_ms).toEqual(expect.any(Number));
    expect(second.latency_ms).toEqual(expect.any(Number));
    expect(second.ttft_ms).toBeLessThanOrEqual(second.latency_ms);
    expect(second.latency_ms).toBeGreaterThanOrEqual(350); // the scripted 400 ms pause is inside the call
    expect(second.completed_at).toEqual(expect.any(String));

    // --- the database row is what was streamed
    const row = await dbCall(streamCallId);
    expect(row).toMatchObject({
      job_id: jobId,
      team_id: teamId,
      status: 'success',
      streamed: true,
      model_requested: group,
      model_used: 'sim-small',
      response_content: 'One two three',
      finish_reason: 'stop',
      prompt_tokens: 20,
      completion_tokens: 3,
      total_tokens: 23,
      usage_source: 'upstream',
      error: null,
      tool_calls: null,
    });
    expect(row.request_messages).toEqual(messages('Count to three'));
    expect(Number(row.cost_usd)).toBe(usd(costPico('sim-small', 20, 3)));

    // --- complete: the hold becomes a charge of credits_per_job
    const totalCost = usd(costPico('sim-small', 11, 7) + costPico('sim-small', 20, 3));
    const completed = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: key, body: { status: 'completed', metadata: { rating: 5 } } });
    expect(completed.status, JSON.stringify(completed.body)).toBe(200);
    expect(completed.body).toMatchObject({
      job_id: jobId,
      status: 'completed',
      completed_at: expect.any(String),
      costs: {
        total_calls: 2,
        successful_calls: 2,
        failed_calls: 0,
        total_tokens: 41,
        total_cost_usd: totalCost,
        credits_charged: 1,
        credit_applied: true,
        credits_remaining: 9,
      },
    });
    expect(completed.body.calls.map((c: { call_id: string }) => c.call_id)).toEqual([call.body.call_id, streamCallId]);
    const costs = await app.request('GET', `/api/jobs/${jobId}/costs`, { token: key });
    expect(costs.status).toBe(200);
    expect(costs.body).toEqual(completed.body.costs);
    expect(await balanceOf(app, teamId)).toMatchObject({ balance: 9, held: 0, credits_remaining: 9, credits_used: 1 });
    expect(await ledgerSum(app, teamId)).toEqual({ balance: 9, held: 0 });
    expect(await jobLedger(teamId, jobId)).toEqual([
      { type: 'hold', amount: 0, held_change: 1 },
      { type: 'charge', amount: -1, held_change: -1 },
    ]);
    const settled = await app.request('GET', `/api/jobs/${jobId}`, { token: key });
    expect(settled.body).toMatchObject({ status: 'completed', completed_at: completed.body.completed_at, metadata: { doc: 42, rating: 5 }, credits_reserved: 0 });

    // --- completing again with the same status replays the answer and charges nothing more
    const again = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: key, body: { status: 'completed' } });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(completed.body);
    const otherStatus = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: key, body: { status: 'failed' } });
    expectErrorBody(otherStatus, 409, 'job_already_settled');
    expect(await balanceOf(app, teamId)).toMatchObject({ balance: 9, held: 0 });
    expect(await jobLedger(teamId, jobId)).toHaveLength(2);

    // --- a settled job takes no more calls, and nothing reaches the upstream
    const requestsAfter = app.upstream.requests.length;
    const late = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: key, body: { messages: messages() } });
    expectErrorBody(late, 409, 'job_not_open');
    const lateStream = await app.request('POST', `/api/jobs/${jobId}/llm-call-stream`, { token: key, body: { messages: messages() } });
    expectErrorBody(lateStream, 409, 'job_not_open');
    expect(app.upstream.requests).toHaveLength(requestsAfter);
    expect((await app.request('GET', `/api/jobs/${jobId}`, { token: key })).body.calls).toHaveLength(2);
  });

  it('passes the usage chunk through only to a client that asked for it with stream_options.include_usage', async () => {
    const setup = await setupTeam(app);
    const jobId = await createJob(setup);
    const before = app.upstream.requests.length;
    app.upstream.enqueue(script(['Alpha', ' beta'], { prompt_tokens: 9, completion_tokens: 2 }));
    const response = await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, setup.key, {
      messages: messages(),
      stream_options: { include_usage: true },
    });
    expectCallStream(response);
    const chunks = chunksOf(await collectSse(response));
    expectTextChunks(chunks.filter((chunk) => chunk.choices.length > 0), ['Alpha', ' beta']);
    const usageChunks = chunks.filter((chunk) => chunk.choices.length === 0);
    expect(usageChunks).toHaveLength(1);
    expect(usageChunks[0].usage).toEqual({ prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 });
    // After the finish chunk, just before [DONE], as OpenAI sends it.
    expect(chunks.at(-1)).toBe(usageChunks[0]);
    expect(app.upstream.requests[before]!.body.stream_options).toEqual({ include_usage: true });

    const job = await app.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
    expect(job.body.calls[0]).toMatchObject({ prompt_tokens: 9, completion_tokens: 2, total_tokens: 11, usage_source: 'upstream' });
  });

  it('releases the hold of a job completed as failed and charges nothing', async () => {
    const setup = await setupTeam(app, { credits: 4 });
    const jobId = await createJob(setup);
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 4, held: 1 });
    const failed = await app.request('POST', `/api/jobs/${jobId}/complete`, {
      token: setup.key,
      body: { status: 'failed', error_message: 'user gave up' },
    });
    expect(failed.status, JSON.stringify(failed.body)).toBe(200);
    expect(failed.body).toMatchObject({
      job_id: jobId,
      status: 'failed',
      calls: [],
      costs: { total_calls: 0, total_tokens: 0, total_cost_usd: 0, credits_charged: 0, credit_applied: false, credits_remaining: 4 },
    });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 4, held: 0, credits_remaining: 4, credits_used: 0 });
    expect(await jobLedger(setup.teamId, jobId)).toEqual([
      { type: 'hold', amount: 0, held_change: 1 },
      { type: 'release', amount: 0, held_change: -1 },
    ]);
    const job = await app.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
    expect(job.body).toMatchObject({ status: 'failed', error_message: 'user gave up' });
    // Replays with the same status, conflicts with another.
    expect((await app.request('POST', `/api/jobs/${jobId}/complete`, { token: setup.key, body: { status: 'failed' } })).body).toEqual(failed.body);
    expectErrorBody(await app.request('POST', `/api/jobs/${jobId}/complete`, { token: setup.key, body: { status: 'completed' } }), 409, 'job_already_settled');
    expect(await ledgerSum(app, setup.teamId)).toEqual({ balance: 4, held: 0 });
  });
});

describe('job metadata', () => {
  it("a team's key merges keys into its own job's metadata (null removes one); another team's key gets 404 and changes nothing", async () => {
    const owner = await setupTeam(app);
    const stranger = await setupTeam(app);
    const created = await app.request('POST', '/api/jobs/create', { token: owner.key, body: { team_id: owner.teamId, job_type: 'chat', metadata: { ticket: 'T-1', keep: true } } });
    expect(created.status).toBe(201);
    const path = `/api/jobs/${created.body.job_id}/metadata`;
    const edited = await app.request('PATCH', path, { token: owner.key, body: { metadata: { ticket: null, stage: 'review' } } });
    expect(edited.status, JSON.stringify(edited.body)).toBe(200);
    expect(edited.body.metadata).toEqual({ keep: true, stage: 'review' });
    expectErrorBody(await app.request('PATCH', path, { token: stranger.key, body: { metadata: { stage: 'stolen' } } }), 404);
    const job = await app.request('GET', `/api/jobs/${created.body.job_id}`, { token: owner.key });
    expect(job.body.metadata).toEqual({ keep: true, stage: 'review' });
  });
});

describe('create-and-call', () => {
  it('creates, calls and completes a job in one request, charging one credit', async () => {
    const setup = await setupTeam(app, { credits: 5 });
    app.upstream.enqueue(script(['All ', 'in ', 'one'], { prompt_tokens: 15, completion_tokens: 3 }));
    const response = await app.request('POST', '/api/jobs/create-and-call', {
      token: setup.key,
      body: { team_id: setup.teamId, job_type: 'oneshot', user_id: 'u-7', job_metadata: { source: 'test' }, messages: messages(), temperature: 0.1 },
    });
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    expect(response.body).toMatchObject({
      job_id: expect.stringMatching(/^job_/),
      call_id: expect.stringMatching(/^call_/),
      status: 'completed',
      response: { object: 'chat.completion', choices: [{ message: { role: 'assistant', content: 'All in one' }, finish_reason: 'stop' }] },
      metadata: { model_used: 'sim-small', model_requested: setup.group, prompt_tokens: 15, completion_tokens: 3, total_tokens: 18 },
      costs: { total_calls: 1, successful_calls: 1, failed_calls: 0, total_tokens: 18, credits_charged: 1, credit_applied: true, credits_remaining: 4 },
    });
    expect(response.body.metadata.job_id).toBe(response.body.job_id);
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 4, held: 0 });
    expect(await jobLedger(setup.teamId, response.body.job_id)).toEqual([
      { type: 'hold', amount: 0, held_change: 1 },
      { type: 'charge', amount: -1, held_change: -1 },
    ]);
    const job = await app.request('GET', `/api/jobs/${response.body.job_id}`, { token: setup.key });
    expect(job.body).toMatchObject({ status: 'completed', job_type: 'oneshot', user_id: 'u-7', metadata: { source: 'test' } });
    expect(job.body.calls).toHaveLength(1);
    expect(job.body.calls[0]).toMatchObject({ response_content: 'All in one', status: 'success', usage_source: 'upstream' });
    // The job fields are creditgate's, not the upstream's.
    const upstreamBody = app.upstream.requests.at(-1)!.body;
    expect(upstreamBody).toMatchObject({ temperature: 0.1, messages: messages() });
    for (const own of ['team_id', 'job_type', 'user_id', 'job_metadata']) expect(upstreamBody).not.toHaveProperty(own);
  });

  it('streams create-and-call-stream chunk by chunk and has charged the job before [DONE]', async () => {
    const setup = await setupTeam(app, { credits: 5 });
    const before = app.upstream.requests.length;
    app.upstream.enqueue(script(['Stream', 'ing ', 'job'], { prompt_tokens: 12, completion_tokens: 3 }));
    const response = await postStream(app, '/api/jobs/create-and-call-stream', setup.key, { team_id: setup.teamId, job_type: 'stream', messages: messages() });
    expectCallStream(response);
    const jobId = response.headers.get('x-job-id')!;
    expect(jobId).toMatch(/^job_[a-z0-9]{21}$/);
    const frames: string[] = [];
    for await (const data of sseData(response)) {
      frames.push(data);
      if (data === '[DONE]') {
        // The client has [DONE] in hand: the job is already settled and charged.
        expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 4, held: 0, credits_remaining: 4 });
        const job = await app.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
        expect(job.body).toMatchObject({ status: 'completed', costs: { credits_charged: 1, credit_applied: true } });
      }
    }
    const chunks = chunksOf(frames);
    expectTextChunks(chunks, ['Stream', 'ing ', 'job']);
    expect(chunks.filter((chunk) => chunk.choices.length === 0)).toEqual([]);
    expect(app.upstream.requests[before]!.body.stream_options).toEqual({ include_usage: true });

    const job = await app.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
    expect(job.body.calls).toHaveLength(1);
    expect(job.body.calls[0]).toMatchObject({
      call_id: response.headers.get('x-call-id'),
      streamed: true,
      status: 'success',
      response_content: 'Streaming job',
      finish_reason: 'stop',
      prompt_tokens: 12,
      completion_tokens: 3,
      usage_source: 'upstream',
    });
    expect(await jobLedger(setup.teamId, jobId)).toEqual([
      { type: 'hold', amount: 0, held_change: 1 },
      { type: 'charge', amount: -1, held_change: -1 },
    ]);
  });
});

describe('budget modes', () => {
  it('job_based with credits_per_job 3 holds and charges 3', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const mode = await app.request('PATCH', `/api/credits/teams/${setup.teamId}/budget-mode`, { body: { budget_mode: 'job_based', credits_per_job: 3 } });
    expect(mode.status).toBe(200);
    const created = await app.request('POST', '/api/jobs/create', { token: setup.key, body: { team_id: setup.teamId, job_type: 'x' } });
    expect(created.body.credits_reserved).toBe(3);
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 10, held: 3 });
    app.upstream.enqueue(script(['ok'], { prompt_tokens: 1000, completion_tokens: 1000 }));
    expect((await app.request('POST', `/api/jobs/${created.body.job_id}/llm-call`, { token: setup.key, body: { messages: messages() } })).status).toBe(200);
    const completed = await app.request('POST', `/api/jobs/${created.body.job_id}/complete`, { token: setup.key, body: { status: 'completed' } });
    expect(completed.body.costs).toMatchObject({ credits_charged: 3, credit_applied: true, credits_remaining: 7, total_tokens: 2000 });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 7, held: 0 });
    expect(await ledgerSum(app, setup.teamId)).toEqual({ balance: 7, held: 0 });
  });

  it('consumption_tokens charges total tokens / tokens_per_credit exactly (250 tokens at 100 per credit = 2.5)', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const mode = await app.request('PATCH', `/api/credits/teams/${setup.teamId}/budget-mode`, {
      body: { budget_mode: 'consumption_tokens', tokens_per_credit: 100 },
    });
    expect(mode.status).toBe(200);
    const jobId = await createJob(setup);
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 10, held: 1 });
    app.upstream.enqueue(script(['counted'], { prompt_tokens: 120, completion_tokens: 130 }));
    const response = await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, setup.key, { messages: messages() });
    expectCallStream(response);
    expectTextChunks(chunksOf(await collectSse(response)), ['counted']);
    // Before the call the hold grew to its worst case, here all the team had (the completion limit lowered to fit).
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 10, held: 10 });
    const completed = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: setup.key, body: { status: 'completed' } });
    expect(completed.status).toBe(200);
    expect(completed.body.costs).toMatchObject({ total_tokens: 250, credits_charged: 2.5, credit_applied: true, credits_remaining: 7.5 });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 7.5, held: 0, credits_remaining: 7.5, credits_used: 2.5 });
    expect(await ledgerSum(app, setup.teamId)).toEqual({ balance: 7.5, held: 0 });
    const ledger = await jobLedger(setup.teamId, jobId);
    expect(ledger.at(-1)).toEqual({ type: 'charge', amount: -2.5, held_change: -10 });
    expect(ledger.filter((entry) => entry.type === 'hold').reduce((sum, entry) => sum + entry.held_change, 0)).toBe(10);
  });

  it('consumption_usd charges cost x credits_per_dollar exactly, with the price table at the time of the call', async () => {
    // A dedicated app: the price table is shared by every team of an instance.
    const usdApp = await createTestApp();
    try {
      const price = await usdApp.request('PUT', '/api/model-prices/sim-small', { body: { input_usd_per_million: 1, output_usd_per_million: 2 } });
      expect(price.status, JSON.stringify(price.body)).toBe(200);
      expect(price.body).toMatchObject({ model_name: 'sim-small' });
      expect(Number(price.body.input_usd_per_million)).toBe(1);
      expect(Number(price.body.output_usd_per_million)).toBe(2);
      const setup = await setupTeam(usdApp, { credits: 100 });
      const mode = await usdApp.request('PATCH', `/api/credits/teams/${setup.teamId}/budget-mode`, {
        body: { budget_mode: 'consumption_usd', credits_per_dollar: 1000 },
      });
      expect(mode.status).toBe(200);
      const jobId = await createJob(setup, 'usd', usdApp);

      // 1200 × $1/M + 800 × $2/M = $0.0028; 123 × $1/M + 457 × $2/M = $0.001037
      usdApp.upstream.enqueue(script(['first'], { prompt_tokens: 1200, completion_tokens: 800 }));
      const first = await usdApp.request('POST', `/api/jobs/${jobId}/llm-call`, { token: setup.key, body: { messages: messages() } });
      expect(first.status).toBe(200);
      expect(first.body.metadata.cost_usd).toBe(0.0028);
      usdApp.upstream.enqueue(script(['second'], { prompt_tokens: 123, completion_tokens: 457 }));
      const second = await postStream(usdApp, `/api/jobs/${jobId}/llm-call-stream`, setup.key, { messages: messages() });
      expectTextChunks(chunksOf(await collectSse(second)), ['second']);

      const job = await usdApp.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
      expect(job.body.calls.map((c: { cost_usd: number }) => c.cost_usd)).toEqual([0.0028, 0.001037]);
      const rows = await query(usdApp, 'SELECT cost_usd FROM llm_calls WHERE job_id = $1 ORDER BY created_at', [jobId]);
      expect(rows.map((row) => row.cost_usd)).toEqual(['0.002800000000', '0.001037000000']);

      const completed = await usdApp.request('POST', `/api/jobs/${jobId}/complete`, { token: setup.key, body: { status: 'completed' } });
      expect(completed.status).toBe(200);
      // $0.003837 × 1000 credits per dollar = 3.837 credits
      expect(completed.body.costs).toMatchObject({
        total_calls: 2,
        total_tokens: 1200 + 800 + 123 + 457,
        total_cost_usd: 0.003837,
        credits_charged: 3.837,
        credit_applied: true,
        credits_remaining: 96.163,
      });
      expect(await balanceOf(usdApp, setup.teamId)).toMatchObject({ balance: 96.163, held: 0 });
      const [jobRow] = await query(usdApp, 'SELECT charged_micro FROM jobs WHERE id = $1', [jobId]);
      expect(Number(jobRow.charged_micro)).toBe(3_837_000);
      expect(await ledgerSum(usdApp, setup.teamId)).toEqual({ balance: 96.163, held: 0 });
    } finally {
      await usdApp.close();
    }
  });
});

describe('refusals', () => {
  it('refuses a job to a team without credits with 402, before anything reaches the upstream', async () => {
    const setup = await setupTeam(app, { credits: 0 });
    const before = app.upstream.requests.length;
    const refused = await app.request('POST', '/api/jobs/create', { token: setup.key, body: { team_id: setup.teamId, job_type: 'x' } });
    expectErrorBody(refused, 402, 'insufficient_credits');
    expect(refused.body.error.type).toBe('billing_error');
    const oneShot = await app.request('POST', '/api/jobs/create-and-call', {
      token: setup.key,
      body: { team_id: setup.teamId, job_type: 'x', messages: messages() },
    });
    expectErrorBody(oneShot, 402, 'insufficient_credits');
    const stream = await postStream(app, '/api/jobs/create-and-call-stream', setup.key, { team_id: setup.teamId, job_type: 'x', messages: messages() });
    expect(stream.status).toBe(402);
    expect(stream.headers.get('content-type')).toMatch(/^application\/json/);
    expect((await jsonOf(stream)).error.code).toBe('insufficient_credits');
    expect(app.upstream.requests).toHaveLength(before);
    expect(await dbJobs(setup.teamId)).toEqual([]);
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 0, held: 0 });
  });

  it("answers 404 for another team's team_id and job id, and for unknown jobs; 400 for an ill-formed id", async () => {
    const a = await setupTeam(app);
    const b = await setupTeam(app);
    expectErrorBody(await app.request('POST', '/api/jobs/create', { token: a.key, body: { team_id: b.teamId, job_type: 'x' } }), 404);
    expectErrorBody(
      await app.request('POST', '/api/jobs/create-and-call', { token: a.key, body: { team_id: b.teamId, job_type: 'x', messages: messages() } }),
      404,
    );
    expect(await dbJobs(b.teamId)).toEqual([]);
    expect(await balanceOf(app, b.teamId)).toMatchObject({ balance: 10, held: 0 });

    const bJob = await createJob(b);
    const before = app.upstream.requests.length;
    expectErrorBody(await app.request('GET', `/api/jobs/${bJob}`, { token: a.key }), 404);
    expectErrorBody(await app.request('GET', `/api/jobs/${bJob}/costs`, { token: a.key }), 404);
    expectErrorBody(await app.request('POST', `/api/jobs/${bJob}/llm-call`, { token: a.key, body: { messages: messages() } }), 404);
    expectErrorBody(await app.request('POST', `/api/jobs/${bJob}/llm-call-stream`, { token: a.key, body: { messages: messages() } }), 404);
    expectErrorBody(await app.request('POST', `/api/jobs/${bJob}/complete`, { token: a.key, body: { status: 'completed' } }), 404);
    expect(app.upstream.requests).toHaveLength(before);
    const untouched = await app.request('GET', `/api/jobs/${bJob}`, { token: b.key });
    expect(untouched.body).toMatchObject({ status: 'pending', calls: [] });
    expect(await balanceOf(app, b.teamId)).toMatchObject({ balance: 10, held: 1 });

    const unknown = `job_${'a'.repeat(21)}`;
    expectErrorBody(await app.request('GET', `/api/jobs/${unknown}`, { token: a.key }), 404);
    expectErrorBody(await app.request('POST', `/api/jobs/${unknown}/llm-call`, { token: a.key, body: { messages: messages() } }), 404);
    expectErrorBody(await app.request('POST', `/api/jobs/${unknown}/complete`, { token: a.key, body: { status: 'completed' } }), 404);
    const illFormed = await app.request('GET', '/api/jobs/not-a-job', { token: a.key });
    expect(expectErrorBody(illFormed, 400)).toMatchObject({ type: 'invalid_request_error', param: 'job_id' });
    expectErrorBody(await app.request('POST', '/api/jobs/JOB_X/llm-call', { token: a.key, body: { messages: messages() } }), 400);
    expect(app.upstream.requests).toHaveLength(before);
  });

  it('refuses a model the team may not use with 403 model_not_allowed and sends nothing upstream', async () => {
    const setup = await setupTeam(app, { models: ['sim-small'], credits: 5 });
    const otherGroup = await createModelGroup(app, uniqueId('other'), ['sim-large']);
    const jobId = await createJob(setup);
    const before = app.upstream.requests.length;
    for (const model of ['sim-large', 'gpt-4o', otherGroup]) {
      const refused = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: setup.key, body: { messages: messages(), model } });
      expect(expectErrorBody(refused, 403, 'model_not_allowed')).toMatchObject({ type: 'permission_error', param: 'model' });
      const refusedStream = await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, setup.key, { messages: messages(), model });
      expect(refusedStream.status).toBe(403);
      expect(refusedStream.headers.get('content-type')).toMatch(/^application\/json/);
      expect((await jsonOf(refusedStream)).error.code).toBe('model_not_allowed');
    }
    const job = await app.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
    expect(job.body).toMatchObject({ status: 'pending', calls: [] });

    // The one-shot variant is refused before any job exists: no hold, no ledger entry.
    const oneShot = await app.request('POST', '/api/jobs/create-and-call', {
      token: setup.key,
      body: { team_id: setup.teamId, job_type: 'x', messages: messages(), model: 'gpt-4o' },
    });
    expectErrorBody(oneShot, 403, 'model_not_allowed');
    expect(app.upstream.requests).toHaveLength(before);
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 5, held: 1 }); // only the first job's hold
    const jobs = await dbJobs(setup.teamId);
    expect(jobs.map((j) => j.status)).toEqual(['pending']);
  });

  it('refuses calls of a team without model groups with 403', async () => {
    const setup = await setupTeam(app, { noGroup: true, credits: 3 });
    const jobId = await createJob(setup);
    const before = app.upstream.requests.length;
    expectErrorBody(await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: setup.key, body: { messages: messages() } }), 403, 'no_model_access');
    expectErrorBody(
      await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: setup.key, body: { messages: messages(), model: 'sim-small' } }),
      403,
    );
    expect(app.upstream.requests).toHaveLength(before);
  });

  it('uses exactly the model named when it is inside one of the team groups', async () => {
    const setup = await setupTeam(app, { models: ['sim-small', 'sim-large'] });
    const jobId = await createJob(setup);
    const before = app.upstream.requests.length;
    app.upstream.enqueue(script(['large'], { prompt_tokens: 5, completion_tokens: 1 }));
    const call = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: setup.key, body: { messages: messages(), model: 'sim-large' } });
    expect(call.status, JSON.stringify(call.body)).toBe(200);
    expect(call.body.metadata).toMatchObject({ model_requested: 'sim-large', model_used: 'sim-large', cost_usd: usd(costPico('sim-large', 5, 1)) });
    expect(app.upstream.requests.slice(before).map((r) => r.body.model)).toEqual(['sim-large']);

    // Naming the group uses its models in priority order.
    app.upstream.enqueue(script(['group'], { prompt_tokens: 5, completion_tokens: 1 }));
    const byGroup = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: setup.key, body: { messages: messages(), model: setup.group } });
    expect(byGroup.body.metadata).toMatchObject({ model_requested: setup.group, model_used: 'sim-small' });
    expect(app.upstream.requests.slice(before).map((r) => r.body.model)).toEqual(['sim-large', 'sim-small']);
  });
});

describe('fallback and upstream failures', () => {
  it('falls back to the next model of the group when the first fails before its first byte', async () => {
    const setup = await setupTeam(app, { models: ['sim-small', 'sim-large'] });
    const jobId = await createJob(setup);
    const before = app.upstream.requests.length;
    app.upstream.enqueue({ status: 500 }, script(['from ', 'large'], { prompt_tokens: 8, completion_tokens: 2 }));
    const call = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: setup.key, body: { messages: messages() } });
    expect(call.status, JSON.stringify(call.body)).toBe(200);
    expect(call.body.metadata).toMatchObject({ model_requested: setup.group, model_used: 'sim-large' });
    expect(call.body.response.choices[0].message.content).toBe('from large');
    expect(app.upstream.requests.slice(before).map((r) => r.body.model)).toEqual(['sim-small', 'sim-large']);

    // The same for a stream: nothing was sent to the client before the fallback.
    app.upstream.enqueue({ status: 503 }, script(['streamed ', 'large'], { prompt_tokens: 8, completion_tokens: 2 }));
    const response = await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, setup.key, { messages: messages() });
    expectCallStream(response);
    expectTextChunks(chunksOf(await collectSse(response)), ['streamed ', 'large'], 'sim-large');
    expect(app.upstream.requests.slice(before).map((r) => r.body.model)).toEqual(['sim-small', 'sim-large', 'sim-small', 'sim-large']);

    const job = await app.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
    expect(job.body.calls.map((c: { status: string; model_used: string }) => [c.status, c.model_used])).toEqual([
      ['success', 'sim-large'],
      ['success', 'sim-large'],
    ]);
    expect(job.body.calls[1]).toMatchObject({ response_content: 'streamed large', cost_usd: usd(costPico('sim-large', 8, 2)) });
  });

  it('answers 502 JSON (not SSE) when every model fails, records the call failed and charges nothing', async () => {
    const setup = await setupTeam(app, { models: ['sim-small', 'sim-large'], credits: 5 });
    const secret = 'upstream-secret-detail-xyz';
    const jobId = await createJob(setup);
    const before = app.upstream.requests.length;

    app.upstream.enqueue({ status: 500, errorMessage: secret }, { status: 500, errorMessage: secret });
    const stream = await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, setup.key, { messages: messages() });
    expect(stream.status).toBe(502);
    expect(stream.headers.get('content-type')).toMatch(/^application\/json/);
    const streamError = await jsonOf(stream);
    expect(Object.keys(streamError)).toEqual(['error']);
    expect(streamError.error).toMatchObject({ type: 'upstream_error', code: 'upstream_error' });
    expect(streamError.error.message).not.toContain(secret);
    expect(app.upstream.requests.slice(before).map((r) => r.body.model)).toEqual(['sim-small', 'sim-large']);

    app.upstream.enqueue({ status: 500, errorMessage: secret }, { status: 500, errorMessage: secret });
    const plain = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: setup.key, body: { messages: messages() } });
    expect(expectErrorBody(plain, 502, 'upstream_error').message).not.toContain(secret);

    const job = await app.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
    expect(job.body.status).toBe('pending');
    expect(job.body.calls).toHaveLength(2);
    for (const call of job.body.calls) {
      expect(call).toMatchObject({ status: 'failed', response_content: null, error: expect.any(String), completed_at: expect.any(String) });
      expect(call.error).not.toContain(secret);
    }
    expect(job.body.calls.map((c: { streamed: boolean }) => c.streamed)).toEqual([true, false]);
    expect(job.body.costs).toMatchObject({ total_calls: 2, successful_calls: 0, failed_calls: 2 });
    // The job stays usable; failing it releases the hold.
    const failed = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: setup.key, body: { status: 'failed' } });
    expect(failed.body.costs).toMatchObject({ credits_charged: 0, credit_applied: false, failed_calls: 2 });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 5, held: 0 });
  });

  it('create-and-call and create-and-call-stream answer 502 when every model fails, end the job failed and charge nothing', async () => {
    const setup = await setupTeam(app, { models: ['sim-small', 'sim-large'], credits: 5 });
    const before = app.upstream.requests.length;

    app.upstream.enqueue({ status: 500 }, { status: 502 });
    const plain = await app.request('POST', '/api/jobs/create-and-call', {
      token: setup.key,
      body: { team_id: setup.teamId, job_type: 'oneshot', messages: messages() },
    });
    expectErrorBody(plain, 502, 'upstream_error');
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 5, held: 0, credits_remaining: 5 });

    app.upstream.enqueue({ status: 500 }, { status: 500 });
    const stream = await postStream(app, '/api/jobs/create-and-call-stream', setup.key, { team_id: setup.teamId, job_type: 'oneshot', messages: messages() });
    expect(stream.status).toBe(502);
    expect(stream.headers.get('content-type')).toMatch(/^application\/json/);
    expect((await jsonOf(stream)).error).toMatchObject({ type: 'upstream_error', code: 'upstream_error' });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 5, held: 0, credits_remaining: 5, credits_used: 0 });
    expect(app.upstream.requests).toHaveLength(before + 4);

    const jobs = await dbJobs(setup.teamId);
    expect(jobs).toHaveLength(2);
    for (const row of jobs) {
      expect(row.status).toBe('failed');
      expect(Number(row.charged_micro)).toBe(0);
      const job = await app.request('GET', `/api/jobs/${row.id}`, { token: setup.key });
      expect(job.body).toMatchObject({ status: 'failed', costs: { credits_charged: 0, credit_applied: false, failed_calls: 1, successful_calls: 0 } });
      expect(job.body.calls[0]).toMatchObject({ status: 'failed' });
      expect(await jobLedger(setup.teamId, row.id)).toEqual([
        { type: 'hold', amount: 0, held_change: 1 },
        { type: 'release', amount: 0, held_change: -1 },
      ]);
    }
    expect(await ledgerSum(app, setup.teamId)).toEqual({ balance: 5, held: 0 });
  });

  it('answers 502 when the upstream is down, for calls and one-shot jobs alike, and charges nothing', async () => {
    const downApp = await createTestApp({ LLM_BASE_URL: `http://127.0.0.1:${await freePort()}/v1` });
    try {
      const setup = await setupTeam(downApp, { credits: 5 });
      const jobId = await createJob(setup, 'x', downApp);
      const plain = await downApp.request('POST', `/api/jobs/${jobId}/llm-call`, { token: setup.key, body: { messages: messages() } });
      expectErrorBody(plain, 502, 'upstream_error');
      const stream = await postStream(downApp, `/api/jobs/${jobId}/llm-call-stream`, setup.key, { messages: messages() });
      expect(stream.status).toBe(502);
      expect(stream.headers.get('content-type')).toMatch(/^application\/json/);
      expect((await jsonOf(stream)).error.code).toBe('upstream_error');
      const job = await downApp.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
      expect(job.body.calls.map((c: { status: string }) => c.status)).toEqual(['failed', 'failed']);

      const oneShot = await postStream(downApp, '/api/jobs/create-and-call-stream', setup.key, { team_id: setup.teamId, job_type: 'x', messages: messages() });
      expect(oneShot.status).toBe(502);
      expect((await jsonOf(oneShot)).error.type).toBe('upstream_error');
      const oneShotPlain = await downApp.request('POST', '/api/jobs/create-and-call', {
        token: setup.key,
        body: { team_id: setup.teamId, job_type: 'x', messages: messages() },
      });
      expectErrorBody(oneShotPlain, 502, 'upstream_error');
      expect((await dbJobs(setup.teamId, downApp)).map((j) => j.status)).toEqual(['pending', 'failed', 'failed']);
      expect(await balanceOf(downApp, setup.teamId)).toMatchObject({ balance: 5, held: 1 }); // the open job's hold only
      expect(downApp.upstream.requests).toHaveLength(0);
    } finally {
      await downApp.close();
    }
  });

  it('sends an error mid-stream as data: {"error"} then [DONE], without the upstream text, and records the partial call', async () => {
    const setup = await setupTeam(app, { credits: 5 });
    const jobId = await createJob(setup);
    app.upstream.enqueue({
      steps: [
        { type: 'content', text: 'Partial ' },
        { type: 'content', text: 'answer' },
        { type: 'error', message: 'boom' },
      ],
    });
    const response = await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, setup.key, { messages: messages() });
    expectCallStream(response);
    const frames = await collectSse(response);
    expect(frames.at(-1)).toBe('[DONE]');
    const parsed = frames.slice(0, -1).map((frame) => JSON.parse(frame));
    const errorFrame = parsed.at(-1);
    expect(Object.keys(errorFrame)).toEqual(['error']);
    expect(errorFrame.error).toMatchObject({ type: 'upstream_error', code: 'upstream_error', message: expect.any(String) });
    expect(errorFrame.error.message).not.toContain('boom');
    const chunks = parsed.slice(0, -1);
    expect(chunks.every((chunk) => chunk.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    expect(contentsOf(chunks)).toEqual(['Partial ', 'answer']);
    expect(chunks.some((chunk) => chunk.choices[0]?.finish_reason)).toBe(false);

    const job = await app.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
    const [call] = job.body.calls;
    expect(call).toMatchObject({
      call_id: response.headers.get('x-call-id'),
      status: 'failed',
      streamed: true,
      model_used: 'sim-small',
      response_content: 'Partial answer',
      finish_reason: null,
      usage_source: 'estimated', // no usage arrived: counted with the tokenizer
    });
    expect(call.completion_tokens).toBeGreaterThan(0);
    expect(call.prompt_tokens).toBeGreaterThan(0);
    expect(call.error).toBe(errorFrame.error.message);
    expect((await dbCall(call.call_id)).response_content).toBe('Partial answer');
  });

  it('create-and-call-stream with an error mid-stream ends the job failed, charges the output it delivered, and still ends with [DONE]', async () => {
    const setup = await setupTeam(app, { credits: 5 });
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'half' }, { type: 'error', message: 'boom' }] });
    const response = await postStream(app, '/api/jobs/create-and-call-stream', setup.key, { team_id: setup.teamId, job_type: 'x', messages: messages() });
    expectCallStream(response);
    const jobId = response.headers.get('x-job-id')!;
    const frames = await collectSse(response);
    expect(frames.at(-1)).toBe('[DONE]');
    const errorFrame = JSON.parse(frames.at(-2)!);
    expect(errorFrame.error.type).toBe('upstream_error');
    expect(errorFrame.error.message).not.toContain('boom');
    expect(contentsOf(frames.slice(0, -2).map((frame) => JSON.parse(frame)))).toEqual(['half']);
    const job = await app.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
    expect(job.body).toMatchObject({ status: 'failed', costs: { credits_charged: 1, credit_applied: true, failed_calls: 1 } });
    expect(job.body.calls[0]).toMatchObject({ status: 'failed', response_content: 'half', delivered: true });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 4, held: 0 });
  });

  it('carries the finish reasons length and content_filter through and records them', async () => {
    const setup = await setupTeam(app);
    const jobId = await createJob(setup);
    for (const reason of ['length', 'content_filter'] as const) {
      app.upstream.enqueue({ steps: [{ type: 'content', text: 'cut' }, { type: 'finish', reason }], usage: { prompt_tokens: 4, completion_tokens: 1 } });
      const response = await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, setup.key, { messages: messages() });
      expectCallStream(response);
      const chunks = chunksOf(await collectSse(response));
      expect(contentsOf(chunks)).toEqual(['cut']);
      expect(chunks.at(-1).choices[0].finish_reason).toBe(reason);
      const call = await dbCall(response.headers.get('x-call-id')!);
      expect(call).toMatchObject({ status: 'success', finish_reason: reason, response_content: 'cut' });
    }
  });

  it('passes tool-call deltas through and records the reassembled tool calls', async () => {
    const setup = await setupTeam(app);
    const jobId = await createJob(setup);
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const toolScript = weatherToolScript();
    const before = app.upstream.requests.length;
    app.upstream.enqueue(toolScript);
    const response = await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, setup.key, { messages: messages('Weather in Paris?'), tools, tool_choice: 'auto' });
    expectCallStream(response);
    const chunks = chunksOf(await collectSse(response));
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    const deltas = chunks.flatMap((chunk) => chunk.choices[0]?.delta?.tool_calls ?? []);
    expect(deltas).toHaveLength(3);
    expect(deltas[0]).toMatchObject({ index: 0, id: 'call_weather_1', type: 'function', function: { name: 'get_weather' } });
    expect(deltas.map((d: { function: { arguments?: string } }) => d.function.arguments ?? '').join('')).toBe('{"city":"Paris"}');
    expect(chunks.at(-1).choices[0].finish_reason).toBe('tool_calls');
    expect(app.upstream.requests[before]!.body).toMatchObject({ tools, tool_choice: 'auto' });

    const expected = [{ id: 'call_weather_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }];
    const job = await app.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
    expect(job.body.calls[0]).toMatchObject({
      status: 'success',
      tool_calls: expected,
      finish_reason: 'tool_calls',
      response_content: null,
      prompt_tokens: 30,
      completion_tokens: 12,
      usage_source: 'upstream',
    });
    expect((await dbCall(job.body.calls[0].call_id)).tool_calls).toEqual(expected);

    // Non-streamed, the upstream's message carries the tool calls and the record matches.
    app.upstream.enqueue(toolScript);
    const plain = await app.request('POST', `/api/jobs/${jobId}/llm-call`, { token: setup.key, body: { messages: messages('Weather in Paris?'), tools } });
    expect(plain.status).toBe(200);
    expect(plain.body.response.choices[0]).toMatchObject({ finish_reason: 'tool_calls', message: { tool_calls: expected } });
    const after = await app.request('GET', `/api/jobs/${jobId}`, { token: setup.key });
    expect(after.body.calls[1]).toMatchObject({ tool_calls: expected, finish_reason: 'tool_calls', streamed: false });
  });
});

describe('usage', () => {
  it('reports team and organization usage by job type, by model and by team', async () => {
    const organizationId = await createOrganization(app);
    const a = await setupTeam(app, { organizationId, models: ['sim-small', 'sim-large'], credits: 20 });
    const b = await setupTeam(app, { organizationId, credits: 20 });
    const oneShot = async (setup: TeamSetup, jobType: string, usage: { prompt_tokens: number; completion_tokens: number }, model?: string) => {
      app.upstream.enqueue(script(['x'], usage));
      const response = await app.request('POST', '/api/jobs/create-and-call', {
        token: setup.key,
        body: { team_id: setup.teamId, job_type: jobType, messages: messages(), ...(model && { model }) },
      });
      expect(response.status, JSON.stringify(response.body)).toBe(201);
    };

    await oneShot(a, 'summarize', { prompt_tokens: 100, completion_tokens: 50 });
    await oneShot(a, 'summarize', { prompt_tokens: 200, completion_tokens: 100 }, 'sim-large');
    const translate = await createJob(a, 'translate');
    for (const usage of [{ prompt_tokens: 10, completion_tokens: 5 }, { prompt_tokens: 20, completion_tokens: 10 }]) {
      app.upstream.enqueue(script(['t'], usage));
      expect((await app.request('POST', `/api/jobs/${translate}/llm-call`, { token: a.key, body: { messages: messages() } })).status).toBe(200);
    }
    expect((await app.request('POST', `/api/jobs/${translate}/complete`, { token: a.key, body: { status: 'completed' } })).status).toBe(200);
    const abandoned = await createJob(a, 'translate');
    expect((await app.request('POST', `/api/jobs/${abandoned}/complete`, { token: a.key, body: { status: 'failed' } })).status).toBe(200);
    await oneShot(b, 'summarize', { prompt_tokens: 40, completion_tokens: 20 });

    const summarizeCost = costPico('sim-small', 100, 50) + costPico('sim-large', 200, 100);
    const translateCost = costPico('sim-small', 10, 5) + costPico('sim-small', 20, 10);
    const bCost = costPico('sim-small', 40, 20);
    const aTotals = { jobs: 4, calls: 4, total_tokens: 150 + 300 + 15 + 30, cost_usd: usd(summarizeCost + translateCost), credits_charged: 3 };

    const admin = await app.request('GET', `/api/teams/${a.teamId}/usage`);
    expect(admin.status, JSON.stringify(admin.body)).toBe(200);
    expect(admin.body.totals).toEqual(aTotals);
    expect(admin.body.by_job_type).toEqual([
      { job_type: 'summarize', jobs: 2, calls: 2, total_tokens: 450, cost_usd: usd(summarizeCost), credits_charged: 2 },
      { job_type: 'translate', jobs: 2, calls: 2, total_tokens: 45, cost_usd: usd(translateCost), credits_charged: 1 },
    ]);
    expect(admin.body.by_model).toEqual([
      { model: 'sim-large', calls: 1, total_tokens: 300, cost_usd: usd(costPico('sim-large', 200, 100)) },
      { model: 'sim-small', calls: 3, total_tokens: 195, cost_usd: usd(costPico('sim-small', 100, 50) + translateCost) },
    ]);
    expect(admin.body).not.toHaveProperty('by_team');
    expect(Date.parse(admin.body.from)).toBeLessThan(Date.parse(admin.body.to));

    // A team key reads its own usage (the same numbers) but not another team's.
    const own = await app.request('GET', `/api/teams/${a.teamId}/usage`, { token: a.key });
    expect(own.status).toBe(200);
    expect({ ...own.body, from: undefined, to: undefined }).toEqual({ ...admin.body, from: undefined, to: undefined });
    expectErrorBody(await app.request('GET', `/api/teams/${b.teamId}/usage`, { token: a.key }), 404);
    expectErrorBody(await app.request('GET', `/api/organizations/${organizationId}/usage`, { token: a.key }), 403);

    // A range that ends before the jobs were created holds none of them.
    const past = await app.request('GET', `/api/teams/${a.teamId}/usage?to=${encodeURIComponent(new Date(Date.now() - 3_600_000).toISOString())}`);
    expect(past.status).toBe(200);
    expect(past.body.totals).toEqual({ jobs: 0, calls: 0, total_tokens: 0, cost_usd: 0, credits_charged: 0 });

    const organization = await app.request('GET', `/api/organizations/${organizationId}/usage`);
    expect(organization.status, JSON.stringify(organization.body)).toBe(200);
    expect(organization.body.totals).toEqual({ jobs: 5, calls: 5, total_tokens: 495 + 60, cost_usd: usd(summarizeCost + translateCost + bCost), credits_charged: 4 });
    expect(organization.body.by_team).toEqual(
      [
        { team_id: a.teamId, ...aTotals },
        { team_id: b.teamId, jobs: 1, calls: 1, total_tokens: 60, cost_usd: usd(bCost), credits_charged: 1 },
      ].sort((x, y) => x.team_id.localeCompare(y.team_id)),
    );
    expect(organization.body.by_job_type).toEqual([
      { job_type: 'summarize', jobs: 3, calls: 3, total_tokens: 510, cost_usd: usd(summarizeCost + bCost), credits_charged: 3 },
      { job_type: 'translate', jobs: 2, calls: 2, total_tokens: 45, cost_usd: usd(translateCost), credits_charged: 1 },
    ]);
    expectErrorBody(await app.request('GET', `/api/organizations/${uniqueId('no-org')}/usage`), 404);
  });
});
