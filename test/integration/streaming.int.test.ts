import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedRequest, ScriptStep, UpstreamScript } from '../../src/upstream/simulated-server.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam, uniqueId, type TeamSetup } from '../helpers/factories.js';
import { MICRO, expectLedgerConsistent, jobLedger } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { expectSseHeaders, frameReader, parseFrame, postNodeHttp, postStream, type Frame, type FrameReader } from '../helpers/sse.js';
import { poll } from '../helpers/wait.js';

/**
 * Streaming over HTTP, end to end: the in-process app against a real PostgreSQL and the scripted upstream.
 * Client disconnects, keepalive comments, first-token and between-chunk timeouts, errors in the middle of a
 * stream, tool-call deltas, cancellation (on this instance and across instances through LISTEN/NOTIFY),
 * backpressure from a slow reader, and the SSE headers of every streaming endpoint.
 *
 * Every test scripts the upstream by a marker it puts in its user message, so no test can consume another's
 * script, and it finds its own upstream requests by the same marker.
 */

/** Upper bound for "at once": generous, the suite runs on a small machine with other files in parallel. */
const AT_ONCE_MS = 1_000;

// ---------------------------------------------------------------------------------------------------------------
// Helpers: scripted upstream
// ---------------------------------------------------------------------------------------------------------------

type ScriptSource = UpstreamScript | ((request: RecordedRequest) => UpstreamScript);

const scriptRegistries = new WeakMap<TestApp, Map<string, (request: RecordedRequest) => UpstreamScript>>();

function registryOf(target: TestApp) {
  let registry = scriptRegistries.get(target);
  if (!registry) {
    const scripts = new Map<string, (request: RecordedRequest) => UpstreamScript>();
    registry = scripts;
    scriptRegistries.set(target, scripts);
    target.upstream.setResponder((request) => {
      const text = JSON.stringify(request.body?.messages ?? []);
      for (const [marker, respond] of scripts) if (text.includes(marker)) return respond(request);
      return { steps: [{ type: 'content', text: 'unscripted' }] };
    });
  }
  return registry;
}

interface Scripted {
  marker: string;
  messages: { role: 'user'; content: string }[];
  /** The upstream requests this test caused, in order. */
  requests(): RecordedRequest[];
  /** Waits (event-based) for the n-th upstream request of this test. */
  request(n?: number): Promise<RecordedRequest>;
}

function scripted(target: TestApp, source: ScriptSource): Scripted {
  const marker = uniqueId('mark');
  registryOf(target).set(marker, typeof source === 'function' ? source : () => source);
  const mine = () => target.upstream.requests.filter((r) => JSON.stringify(r.body?.messages ?? []).includes(marker));
  return {
    marker,
    messages: [{ role: 'user', content: `Test ${marker}: say something` }],
    requests: mine,
    async request(n = 0) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const found = mine()[n];
        if (found) return found;
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw new Error(`no upstream request #${n} for ${marker}`);
        // Resolves as soon as one more request (of any test) arrives.
        await target.upstream.waitForRequests(target.upstream.requests.length + 1, remaining).catch(() => undefined);
      }
    },
  };
}

const words = (count: number, delayMs = 0): ScriptStep[] =>
  Array.from({ length: count }, (_, i) => ({ type: 'content' as const, text: `w${i} `, ...(delayMs && { delayMs }) }));
const wordsText = (count: number) => Array.from({ length: count }, (_, i) => `w${i} `).join('');

/** 50 words, 50 ms apart: 2.5 s in all, long enough to be cut short. No usage: it arrives only at the end. */
const slowScript = (): UpstreamScript => ({ steps: [...words(50, 50), { type: 'finish', reason: 'stop' }] });

// ---------------------------------------------------------------------------------------------------------------
// Helpers: database, teams, jobs
// ---------------------------------------------------------------------------------------------------------------

async function createJob(target: TestApp, team: TeamSetup, jobType = 'stream'): Promise<string> {
  const response = await target.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: jobType } });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body.job_id as string;
}

interface CallRow {
  id: string;
  job_id: string;
  status: string;
  model_used: string | null;
  response_content: string | null;
  tool_calls: unknown;
  finish_reason: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  usage_source: string;
  error: string | null;
  delivered: boolean;
}

interface JobRow {
  id: string;
  status: string;
  hold_micro: string;
  charged_micro: string | null;
}

/** The call's record once it is no longer in progress (a disconnect is recorded after the response ended). */
function endedCall(target: TestApp, callId: string): Promise<CallRow> {
  return poll(async () => {
    const [row] = await query<CallRow>(target, 'SELECT * FROM llm_calls WHERE id = $1', [callId]);
    return row && row.status !== 'in_progress' ? row : undefined;
  }, 10_000, `call ${callId} to end`, 25);
}

const jobRow = async (target: TestApp, jobId: string) => (await query<JobRow>(target, 'SELECT id, status::text, hold_micro::text, charged_micro::text FROM jobs WHERE id = $1', [jobId]))[0]!;

function settledJob(target: TestApp, jobId: string): Promise<JobRow> {
  return poll(async () => {
    const row = await jobRow(target, jobId);
    return row.status === 'pending' || row.status === 'in_progress' ? undefined : row;
  }, 10_000, `job ${jobId} to settle`, 25);
}

/** The team's balance and held credits, checked against the sum of its ledger (test/helpers/ledger.ts). */
async function balanceOf(target: TestApp, teamId: string): Promise<{ balance: number; held: number }> {
  const { balanceMicro, heldMicro } = await expectLedgerConsistent(target, teamId);
  return { balance: balanceMicro / MICRO, held: heldMicro / MICRO };
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers: SSE over fetch, frame by frame, with arrival times
// ---------------------------------------------------------------------------------------------------------------

const readAll = (response: Response) => frameReader(response).rest();

/** The JSON payloads of the `data:` frames, [DONE] kept as the string. */
const payloadsOf = (frames: Frame[]) => frames.filter((f) => f.data !== null).map((f) => (f.data === '[DONE]' ? '[DONE]' : JSON.parse(f.data!)));

const contentOf = (chunk: any): string => {
  const content = chunk?.choices?.[0]?.delta?.content;
  return typeof content === 'string' ? content : '';
};

/** Reads frames until `count` chunks with content arrived; returns their text. */
async function readContent(reader: FrameReader, count: number): Promise<string[]> {
  const parts: string[] = [];
  while (parts.length < count) {
    const frame = await reader.next();
    expect(frame, 'the stream ended early').toBeDefined();
    if (frame!.data === null || frame!.data === '[DONE]') continue;
    const text = contentOf(JSON.parse(frame!.data));
    if (text) parts.push(text);
  }
  return parts;
}

/**
 * An OpenAI stream that failed after it began: chunks, then exactly one `data: {"error"}`, then `data: [DONE]`
 * as the very last frame. Returns the chunks and the error.
 */
function expectInBandError(frames: Frame[]) {
  const payloads = payloadsOf(frames);
  expect(payloads.at(-1), 'the stream ends with [DONE]').toBe('[DONE]');
  expect(payloads.filter((p) => p === '[DONE]')).toHaveLength(1);
  const errorFrame = payloads.at(-2);
  expect(Object.keys(errorFrame ?? {}), JSON.stringify(errorFrame)).toEqual(['error']);
  expect(errorFrame.error).toMatchObject({ type: expect.any(String), code: expect.any(String), message: expect.any(String) });
  const chunks = payloads.slice(0, -2);
  expect(chunks.every((chunk) => chunk.object === 'chat.completion.chunk' && !chunk.error)).toBe(true);
  return { chunks, error: errorFrame.error as { type: string; code: string; message: string } };
}

/** A POST through node:http, so the test controls reading (pause/resume) at the socket level. */
function rawPost(target: TestApp, path: string, key: string, body: unknown): Promise<IncomingMessage> {
  const req = postNodeHttp(target, path, key, body);
  return new Promise((resolve, reject) => req.once('response', resolve).once('error', reject));
}

// ---------------------------------------------------------------------------------------------------------------
// The default app: production timeouts (60 s), keepalive 5 s
// ---------------------------------------------------------------------------------------------------------------

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app?.close());

describe('a client that disconnects aborts the upstream request at once', () => {
  /** Starts a slow stream, reads three chunks, aborts the fetch; checks the upstream side and returns what it saw. */
  async function streamThenDisconnect(target: TestApp, path: string, team: TeamSetup, body: Record<string, unknown>) {
    const script = scripted(target, slowScript());
    const controller = new AbortController();
    const response = await postStream(target, path, team.key, { ...body, messages: script.messages }, { signal: controller.signal });
    expectSseHeaders(response.headers, response.status);
    const callId = response.headers.get('x-call-id')!;
    expect(callId).toMatch(/^call_/);
    const reader = frameReader(response);
    const received = (await readContent(reader, 3)).join('');
    expect(received).toBe('w0 w1 w2 ');

    const upstream = await script.request();
    expect(upstream.closedAt, 'the upstream is still streaming when the client leaves').toBeUndefined();
    const abortedAt = Date.now();
    controller.abort();
    const closed = await target.upstream.waitForClosed(upstream.id, 10_000);
    expect(closed.closedAt! - abortedAt, 'upstream closed within a second of the disconnect').toBeLessThan(AT_ONCE_MS);
    expect(closed.abortedByClient).toBe(true);
    expect(closed.finishedAt, 'the upstream did not run to the end').toBeUndefined();
    expect(script.requests()).toHaveLength(1);

    const call = await endedCall(target, callId);
    expect(call).toMatchObject({ status: 'cancelled', usage_source: 'estimated', model_used: 'sim-small' });
    // What the server had received when the client left: at least what the client read, never the whole reply.
    expect(call.response_content?.startsWith(received), call.response_content ?? 'null').toBe(true);
    expect(wordsText(50).startsWith(call.response_content!)).toBe(true);
    expect(call.response_content!.length).toBeLessThan(wordsText(50).length);
    expect(call.prompt_tokens).toBeGreaterThan(0);
    expect(call.completion_tokens).toBeGreaterThan(0);
    expect(call.total_tokens).toBe(call.prompt_tokens + call.completion_tokens);
    return { response, call };
  }

  it('create-and-call-stream (job_based): the call is recorded cancelled with its partial content; the job is cancelled and pays its price for the output it delivered', async () => {
    const team = await setupTeam(app, { credits: 5 });
    const { response, call } = await streamThenDisconnect(app, '/api/jobs/create-and-call-stream', team, { team_id: team.teamId, job_type: 'disconnect' });
    const jobId = response.headers.get('x-job-id')!;
    expect(call.job_id).toBe(jobId);
    expect(call.delivered).toBe(true);

    const job = await settledJob(app, jobId);
    expect(job).toMatchObject({ status: 'cancelled', hold_micro: '0', charged_micro: String(MICRO) });
    expect(await jobLedger(app, jobId)).toEqual([
      { type: 'hold', amount: 0, held: 1 },
      { type: 'charge', amount: -1, held: -1 },
    ]);
    expect(await balanceOf(app, team.teamId)).toEqual({ balance: 4, held: 0 });
    const fetched = await app.request('GET', `/api/jobs/${jobId}`, { token: team.key });
    expect(fetched.body).toMatchObject({ status: 'cancelled', costs: { credits_charged: 1, credit_applied: true } });
  });

  it('create-and-call-stream (consumption_tokens): the cancelled job pays for the partial usage', async () => {
    const team = await setupTeam(app, { credits: 10, team: { budget_mode: 'consumption_tokens', tokens_per_credit: 10 } });
    const { response, call } = await streamThenDisconnect(app, '/api/jobs/create-and-call-stream', team, { team_id: team.teamId, job_type: 'disconnect' });
    const jobId = response.headers.get('x-job-id')!;

    const job = await settledJob(app, jobId);
    expect(job.status).toBe('cancelled');
    expect(job.hold_micro).toBe('0');
    const expectedCharge = Math.ceil((call.total_tokens * MICRO) / 10);
    expect(expectedCharge).toBeGreaterThan(0);
    expect(expectedCharge).toBeLessThan(10 * MICRO);
    expect(Number(job.charged_micro)).toBe(expectedCharge);
    const ledger = await jobLedger(app, jobId);
    const charges = ledger.filter((entry) => entry.type === 'charge');
    expect(charges).toHaveLength(1);
    expect(charges[0]!.amount).toBe(-expectedCharge / MICRO);
    expect(ledger.filter((entry) => entry.type === 'release')).toHaveLength(0);
    expect(await balanceOf(app, team.teamId)).toEqual({ balance: 10 - expectedCharge / MICRO, held: 0 });
  });

  it('llm-call-stream: the call is recorded cancelled, the job stays open and can still be used and completed', async () => {
    const team = await setupTeam(app, { credits: 5 });
    const jobId = await createJob(app, team);
    const { call } = await streamThenDisconnect(app, `/api/jobs/${jobId}/llm-call-stream`, team, {});
    expect(call.job_id).toBe(jobId);
    expect((await jobRow(app, jobId)).status).toBe('pending');
    expect(await balanceOf(app, team.teamId)).toEqual({ balance: 5, held: 1 });

    // The job still takes calls...
    const next = scripted(app, { steps: [{ type: 'content', text: 'again' }], usage: { prompt_tokens: 5, completion_tokens: 1 } });
    const again = await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, { messages: next.messages });
    expectSseHeaders(again.headers, again.status);
    const payloads = payloadsOf(await readAll(again));
    expect(payloads.at(-1)).toBe('[DONE]');
    expect(payloads.slice(0, -1).map(contentOf).join('')).toBe('again');

    // ...and completes, charged once.
    const completed = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status: 'completed' } });
    expect(completed.status, JSON.stringify(completed.body)).toBe(200);
    expect(completed.body).toMatchObject({ status: 'completed', costs: { total_calls: 2, successful_calls: 1, credits_charged: 1, credit_applied: true } });
    expect(completed.body.calls.map((c: { status: string }) => c.status)).toEqual(['cancelled', 'success']);
    expect(await balanceOf(app, team.teamId)).toEqual({ balance: 4, held: 0 });
  });
});

describe('errors in the middle of a stream', () => {
  const failures: [string, Extract<ScriptStep, { type: 'destroy' | 'raw' }>][] = [
    ['the upstream resets the connection', { type: 'destroy' }],
    ['the upstream sends a malformed line', { type: 'raw', line: 'data: {oops' }],
  ];
  const endpoints = ['llm-call-stream', 'create-and-call-stream'] as const;
  const cases = failures.flatMap(([what, step]) => endpoints.map((endpoint) => [what, endpoint, step] as const));

  it.each(cases)('%s (%s): in-band error then [DONE], the call failed with its partial content, which is billed', async (_what, endpoint, step) => {
    const team = await setupTeam(app, { credits: 5 });
    const script = scripted(app, {
      steps: [{ type: 'content', text: 'Partial ' }, { type: 'content', text: 'answer', delayMs: 20 }, { ...step, delayMs: 20 }],
    });
    const jobId = endpoint === 'llm-call-stream' ? await createJob(app, team) : undefined;
    const response = jobId
      ? await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, { messages: script.messages })
      : await postStream(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'broken', messages: script.messages });
    expectSseHeaders(response.headers, response.status);
    const callId = response.headers.get('x-call-id')!;
    const { chunks, error } = expectInBandError(await readAll(response));
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    expect(chunks.map(contentOf).join('')).toBe('Partial answer');
    expect(chunks.some((chunk) => chunk.choices?.[0]?.finish_reason)).toBe(false);
    expect(error).toMatchObject({ type: 'upstream_error', code: 'upstream_error' });
    expect(error.message).not.toContain('oops');

    const call = await endedCall(app, callId);
    expect(call).toMatchObject({ status: 'failed', response_content: 'Partial answer', finish_reason: null, usage_source: 'estimated' });
    expect(call.completion_tokens).toBeGreaterThan(0);
    expect(call.error).toBe(error.message);
    expect(script.requests()).toHaveLength(1); // no retry after the first byte

    const job = await jobRow(app, call.job_id);
    if (endpoint === 'create-and-call-stream') {
      expect(call.job_id).toBe(response.headers.get('x-job-id'));
      expect(job).toMatchObject({ status: 'failed', hold_micro: '0', charged_micro: String(MICRO) });
      expect(await jobLedger(app, call.job_id)).toEqual([
        { type: 'hold', amount: 0, held: 1 },
        { type: 'charge', amount: -1, held: -1 },
      ]);
      expect(await balanceOf(app, team.teamId)).toEqual({ balance: 4, held: 0 });
    } else {
      expect(job.status).toBe('pending');
      expect(await balanceOf(app, team.teamId)).toEqual({ balance: 5, held: 1 });
    }
  });
});

describe('tool calls', () => {
  const toolScript: ScriptStep[] = [
    { type: 'tool_call', index: 0, id: 'call_weather', name: 'get_weather', arguments: '' },
    { type: 'tool_call', index: 1, id: 'call_time', name: 'get_time', arguments: '' },
    { type: 'tool_call', index: 0, arguments: '{"city":' },
    { type: 'tool_call', index: 1, arguments: '{"tz":' },
    { type: 'tool_call', index: 0, arguments: '"Paris"}' },
    { type: 'tool_call', index: 1, arguments: '"Europe/Paris"}' },
    { type: 'finish', reason: 'tool_calls' },
  ];
  /** What the scripted upstream sends for each tool_call step (an OpenAI tool-call delta). */
  const expectedDeltas = toolScript.flatMap((step) =>
    step.type === 'tool_call'
      ? [
          {
            index: step.index,
            ...(step.id !== undefined && { id: step.id, type: 'function' }),
            function: { ...(step.name !== undefined && { name: step.name }), ...(step.arguments !== undefined && { arguments: step.arguments }) },
          },
        ]
      : [],
  );
  const reassembled = [
    { id: 'call_weather', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
    { id: 'call_time', type: 'function', function: { name: 'get_time', arguments: '{"tz":"Europe/Paris"}' } },
  ];
  const tools = [
    { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
    { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } },
  ];

  it.each(['llm-call-stream', 'create-and-call-stream', '/v1/chat/completions'] as const)(
    '%s passes interleaved deltas of two tools through unchanged and records them reassembled by index',
    async (endpoint) => {
      const team = await setupTeam(app);
      const script = scripted(app, { steps: toolScript, usage: { prompt_tokens: 40, completion_tokens: 20 } });
      const body = { messages: script.messages, tools, tool_choice: 'auto' };
      let response: Response;
      if (endpoint === 'llm-call-stream') {
        const jobId = await createJob(app, team);
        response = await postStream(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, body);
      } else if (endpoint === 'create-and-call-stream') {
        response = await postStream(app, '/api/jobs/create-and-call-stream', team.key, { ...body, team_id: team.teamId, job_type: 'tools' });
      } else {
        response = await postStream(app, '/v1/chat/completions', team.key, { ...body, model: team.group, stream: true });
      }
      expectSseHeaders(response.headers, response.status);
      const payloads = payloadsOf(await readAll(response));
      expect(payloads.at(-1)).toBe('[DONE]');
      expect(payloads.filter((p) => p === '[DONE]')).toHaveLength(1);
      const chunks = payloads.slice(0, -1);
      expect(chunks.every((chunk) => chunk.object === 'chat.completion.chunk')).toBe(true);
      expect(chunks[0].choices[0].delta.role).toBe('assistant');
      const deltaChunks = chunks.filter((chunk) => chunk.choices?.[0]?.delta?.tool_calls);
      expect(deltaChunks.map((chunk) => chunk.choices[0].delta.tool_calls)).toEqual(expectedDeltas.map((delta) => [delta]));
      const finishes = chunks.filter((chunk) => chunk.choices?.[0]?.finish_reason);
      expect(finishes.map((chunk) => chunk.choices[0].finish_reason)).toEqual(['tool_calls']);
      expect(script.requests()[0]!.body).toMatchObject({ tools, tool_choice: 'auto', stream: true });

      const [call] = await query<CallRow>(app, 'SELECT * FROM llm_calls WHERE id = $1', [response.headers.get('x-call-id')]);
      expect(call).toMatchObject({
        status: 'success',
        tool_calls: reassembled,
        finish_reason: 'tool_calls',
        response_content: null,
        prompt_tokens: 40,
        completion_tokens: 20,
        usage_source: 'upstream',
      });
    },
  );
});

describe('cancelling a job while its stream runs', () => {
  /** Starts a slow llm-call-stream on `runOn` and reads three chunks. */
  async function runningStream(runOn: TestApp, team: TeamSetup, jobId: string) {
    const script = scripted(runOn, slowScript());
    const response = await postStream(runOn, `/api/jobs/${jobId}/llm-call-stream`, team.key, { messages: script.messages });
    expectSseHeaders(response.headers, response.status);
    const reader = frameReader(response);
    const received = (await readContent(reader, 3)).join('');
    const upstream = await script.request();
    expect(upstream.closedAt).toBeUndefined();
    return { script, response, reader, received, upstream, callId: response.headers.get('x-call-id')! };
  }

  /** The stream after a cancel: an in-band error then [DONE]; the call recorded cancelled with its partial content. */
  async function expectCancelledStream(target: TestApp, run: Awaited<ReturnType<typeof runningStream>>) {
    const { chunks } = expectInBandError(await run.reader.rest());
    expect(chunks.every((chunk) => !chunk.choices?.[0]?.finish_reason)).toBe(true);
    const call = await endedCall(target, run.callId);
    expect(call.status).toBe('cancelled');
    expect(call.response_content?.startsWith(run.received)).toBe(true);
    expect(call.response_content!.length).toBeLessThan(wordsText(50).length);
    expect(call.completion_tokens).toBeGreaterThan(0);
    return call;
  }

  it('POST /cancel aborts the upstream within a second; the job ends cancelled and pays for the output already delivered; cancel replays, complete is 409', async () => {
    const team = await setupTeam(app, { credits: 5 });
    const jobId = await createJob(app, team);
    const run = await runningStream(app, team, jobId);

    const cancelledAt = Date.now();
    const cancelling = app.request('POST', `/api/jobs/${jobId}/cancel`, { token: team.key });
    cancelling.catch(() => undefined); // awaited below; a failed assertion before must not leave it unhandled
    const closed = await app.upstream.waitForClosed(run.upstream.id, 10_000);
    expect(closed.closedAt! - cancelledAt, 'upstream aborted within a second of the cancel').toBeLessThan(AT_ONCE_MS);
    expect(closed.abortedByClient).toBe(true);
    expect(closed.finishedAt).toBeUndefined();
    await expectCancelledStream(app, run);

    const cancel = await cancelling;
    expect(cancel.status, JSON.stringify(cancel.body)).toBe(200);
    expect(cancel.body).toMatchObject({
      job_id: jobId,
      status: 'cancelled',
      costs: { total_calls: 1, credits_charged: 1, credit_applied: true },
    });
    expect(cancel.body.calls.map((c: { status: string }) => c.status)).toEqual(['cancelled']);
    expect(await settledJob(app, jobId)).toMatchObject({ status: 'cancelled', hold_micro: '0' });
    expect(await jobLedger(app, jobId)).toEqual([
      { type: 'hold', amount: 0, held: 1 },
      { type: 'charge', amount: -1, held: -1 },
    ]);
    expect(await balanceOf(app, team.teamId)).toEqual({ balance: 4, held: 0 });

    const again = await app.request('POST', `/api/jobs/${jobId}/cancel`, { token: team.key });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(cancel.body);
    for (const status of ['completed', 'failed']) {
      const complete = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: team.key, body: { status } });
      expect(complete.status, JSON.stringify(complete.body)).toBe(409);
      expect(complete.body.error.code).toBe('job_already_settled');
    }
    expect(await balanceOf(app, team.teamId)).toEqual({ balance: 4, held: 0 });
    expect(run.script.requests(), 'no retry after a cancel').toHaveLength(1);
  });

  it('consumption_tokens: a cancelled job pays for the partial usage of its cancelled call', async () => {
    const team = await setupTeam(app, { credits: 10, team: { budget_mode: 'consumption_tokens', tokens_per_credit: 10 } });
    const jobId = await createJob(app, team);
    const run = await runningStream(app, team, jobId);
    const cancelling = app.request('POST', `/api/jobs/${jobId}/cancel`, { token: team.key });
    cancelling.catch(() => undefined);
    await app.upstream.waitForClosed(run.upstream.id, 10_000);
    const call = await expectCancelledStream(app, run);
    const cancel = await cancelling;
    expect(cancel.status, JSON.stringify(cancel.body)).toBe(200);
    const expectedCharge = Math.ceil((call.total_tokens * MICRO) / 10);
    expect(cancel.body).toMatchObject({ status: 'cancelled', costs: { total_tokens: call.total_tokens, credits_charged: expectedCharge / MICRO, credit_applied: true } });
    expect(await balanceOf(app, team.teamId)).toEqual({ balance: 10 - expectedCharge / MICRO, held: 0 });
  });

  it('a cancel through another instance on the same database aborts the upstream within a second (LISTEN/NOTIFY)', async () => {
    const other = await createTestApp({ DATABASE_URL: app.databaseUrl });
    try {
      const team = await setupTeam(app, { credits: 5 });
      const jobId = await createJob(app, team);
      const run = await runningStream(app, team, jobId);

      const cancelledAt = Date.now();
      const cancelling = other.request('POST', `/api/jobs/${jobId}/cancel`, { token: team.key });
      cancelling.catch(() => undefined);
      const closed = await app.upstream.waitForClosed(run.upstream.id, 10_000);
      expect(closed.closedAt! - cancelledAt, 'upstream on the first instance aborted within a second').toBeLessThan(AT_ONCE_MS);
      expect(closed.abortedByClient).toBe(true);
      expect(closed.finishedAt).toBeUndefined();
      await expectCancelledStream(app, run);

      const cancel = await cancelling;
      expect(cancel.status, JSON.stringify(cancel.body)).toBe(200);
      expect(cancel.body).toMatchObject({ job_id: jobId, status: 'cancelled', costs: { credits_charged: 1 } });
      expect(cancel.body.calls.map((c: { status: string }) => c.status)).toEqual(['cancelled']);
      expect(other.upstream.requests).toHaveLength(0);
      expect(await balanceOf(app, team.teamId)).toEqual({ balance: 4, held: 0 });
      const again = await app.request('POST', `/api/jobs/${jobId}/cancel`, { token: team.key });
      expect(again.body).toEqual(cancel.body);
    } finally {
      await other?.close();
    }
  });

  it('cancelling a create-and-call-stream job ends its stream and the job cancelled, charged for the output it delivered', async () => {
    const team = await setupTeam(app, { credits: 5 });
    const script = scripted(app, slowScript());
    const response = await postStream(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'cancel', messages: script.messages });
    expectSseHeaders(response.headers, response.status);
    const jobId = response.headers.get('x-job-id')!;
    const reader = frameReader(response);
    const received = (await readContent(reader, 2)).join('');
    const upstream = await script.request();
    const cancelledAt = Date.now();
    const cancel = await app.request('POST', `/api/jobs/${jobId}/cancel`, { token: team.key });
    expect(cancel.status, JSON.stringify(cancel.body)).toBe(200);
    expect(cancel.body).toMatchObject({ status: 'cancelled', costs: { credits_charged: 1 } });
    const closed = await app.upstream.waitForClosed(upstream.id, 10_000);
    expect(closed.closedAt! - cancelledAt).toBeLessThan(AT_ONCE_MS);
    const { chunks } = expectInBandError(await reader.rest());
    expect(received + chunks.map(contentOf).join('')).toBe((await endedCall(app, response.headers.get('x-call-id')!)).response_content);
    expect(await settledJob(app, jobId)).toMatchObject({ status: 'cancelled', hold_micro: '0' });
    expect(await balanceOf(app, team.teamId)).toEqual({ balance: 4, held: 0 });
  });
});

describe('a slow reader holds the upstream back (backpressure)', () => {
  it('2,000 chunks of 16 KB to a paused client: the upstream is not read ahead, memory stays flat, then everything arrives', async () => {
    const CHUNKS = 2_000;
    const SIZE = 16_384;
    const piece = (i: number) => `${String(i).padStart(5, '0')}:${'x'.repeat(SIZE - 6)}`;
    // Each step counts itself when the upstream reads its text to send it: how far the upstream got.
    let sentByUpstream = 0;
    const steps: ScriptStep[] = Array.from({ length: CHUNKS }, (_, i) => ({
      type: 'content' as const,
      get text() {
        sentByUpstream = Math.max(sentByUpstream, i + 1);
        return piece(i);
      },
    }));
    const script = scripted(app, { steps, usage: { prompt_tokens: 10, completion_tokens: CHUNKS } });
    const totalContent = CHUNKS * SIZE;
    const team = await setupTeam(app);
    const jobId = await createJob(app, team);

    const rssBefore = process.memoryUsage().rss;
    const response = await rawPost(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, { messages: script.messages });
    response.pause();
    expect(response.statusCode).toBe(200);
    expectSseHeaders(response.headers);
    const upstream = await script.request();

    await sleep(500); // the client reads nothing for half a second
    expect(upstream.finishedAt, 'the upstream must not have sent its whole reply to a client that reads nothing').toBeUndefined();
    expect(upstream.closedAt).toBeUndefined();
    // The socket buffers of the two loopback connections hold a few MB (about 8 MB on Linux); the rest of the
    // 32 MB reply must still be waiting at the upstream.
    expect(sentByUpstream, `the upstream sent ${sentByUpstream} of ${CHUNKS} chunks`).toBeLessThan(CHUNKS / 2);
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    // Reading ahead would keep the whole reply (32 MB of frames) in this process, plus its parsed copies.
    expect(rssGrowth, `rss grew by ${rssGrowth} bytes`).toBeLessThan(totalContent);

    // Resume: everything arrives, in order and complete.
    const received: Buffer[] = [];
    response.on('data', (chunk: Buffer) => received.push(chunk));
    response.resume();
    await new Promise<void>((resolve, reject) => {
      response.once('end', resolve);
      response.once('error', reject);
    });
    const frames = Buffer.concat(received)
      .toString('utf8')
      .split('\n\n')
      .filter((frame) => frame.trim() !== '')
      .map((frame) => parseFrame(frame, 0));
    const payloads = payloadsOf(frames);
    expect(payloads.at(-1)).toBe('[DONE]');
    const content = payloads.slice(0, -1).map(contentOf).join('');
    expect(content.length).toBe(totalContent);
    expect(content === Array.from({ length: CHUNKS }, (_, i) => piece(i)).join('')).toBe(true);
    const closed = await app.upstream.waitForClosed(upstream.id);
    expect(closed.finishedAt).toBeDefined();
    expect(closed.abortedByClient).toBe(false);
    const call = await endedCall(app, response.headers['x-call-id'] as string);
    expect(call.status).toBe('success');
    expect(call.response_content?.length).toBe(totalContent);
  });
});

describe('SSE headers on every streaming endpoint', () => {
  it('llm-call-stream, create-and-call-stream, /v1/chat/completions, the queue stream and a replayed stream', async () => {
    const team = await setupTeam(app, { credits: 10 });
    const reply = () => scripted(app, { steps: [{ type: 'content', text: 'hi' }], usage: { prompt_tokens: 3, completion_tokens: 1 } });
    const jobId = await createJob(app, team);

    const checks: [string, () => Promise<Response>][] = [
      ['llm-call-stream', () => postStream(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, { messages: reply().messages })],
      [
        'create-and-call-stream',
        () => postStream(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'h', messages: reply().messages }),
      ],
      ['/v1/chat/completions', () => postStream(app, '/v1/chat/completions', team.key, { model: team.group, stream: true, messages: reply().messages })],
      [
        'queue stream',
        async () => {
          const submitted = await app.request('POST', '/api/llm/complete', { token: team.key, body: { model: team.group, stream: true, messages: reply().messages } });
          expect(submitted.status, JSON.stringify(submitted.body)).toBe(202);
          return postStream(app, '/api/llm/queue/stream', team.key, { queueId: submitted.body.data.queueId });
        },
      ],
    ];
    const idempotent = reply();
    const replayed = () =>
      postStream(app, `/api/jobs/${jobId}/llm-call-stream`, team.key, { messages: idempotent.messages }, { headers: { 'Idempotency-Key': idempotent.marker } });
    const storedAnswer = () =>
      poll(async () => {
        const [row] = await query(app, `SELECT status::text FROM idempotency_keys WHERE key = $1`, [idempotent.marker]);
        return row?.status === 'in_progress' ? undefined : row;
      }, 10_000, 'the first answer to be stored', 25);
    checks.push(
      ['llm-call-stream with an Idempotency-Key', replayed],
      ['its replay', async () => (await storedAnswer(), replayed())],
    );

    for (const [name, open] of checks) {
      const response = await open();
      expect(response.status, name).toBe(200);
      expect(response.headers.get('content-type'), name).toMatch(/^text\/event-stream/);
      expect(response.headers.get('cache-control'), name).toMatch(/no-cache/);
      expect(response.headers.get('x-accel-buffering'), name).toBe('no');
      const frames = await readAll(response);
      const last = frames.at(-1)!;
      if (name === 'queue stream') expect(last.event, name).toBe('done');
      else expect(last.data, name).toBe('[DONE]');
      if (name === 'its replay') expect(response.headers.get('idempotent-replayed')).toBe('true');
    }
    expect(idempotent.requests()).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Keepalive: an app that comments after 100 ms of silence
// ---------------------------------------------------------------------------------------------------------------

describe('keepalive comments while the upstream is silent', () => {
  let ka: TestApp;
  beforeAll(async () => {
    ka = await createTestApp({ STREAM_KEEPALIVE_MS: '100' });
  });
  afterAll(() => ka?.close());

  const slowFirstToken = (kind: 'first chunk' | 'headers'): UpstreamScript => ({
    ...(kind === 'headers' && { headersDelayMs: 600 }),
    steps: [
      { type: 'content', text: 'Hello', ...(kind === 'first chunk' && { delayMs: 600 }) },
      { type: 'content', text: ' world', delayMs: 500 },
      { type: 'content', text: '!' },
      { type: 'finish', reason: 'stop' },
    ],
    usage: { prompt_tokens: 8, completion_tokens: 3 },
  });

  const cases = [
    ['llm-call-stream', 'first chunk'],
    ['llm-call-stream', 'headers'],
    ['create-and-call-stream', 'first chunk'],
    ['/v1/chat/completions', 'headers'],
  ] as const;

  it.each(cases)('%s, upstream slow to send its %s: headers at once, `: keepalive` before the first chunk and between chunks', async (endpoint, kind) => {
    const team = await setupTeam(ka);
    const script = scripted(ka, slowFirstToken(kind));
    const sentAt = Date.now();
    let response: Response;
    if (endpoint === 'llm-call-stream') {
      const jobId = await createJob(ka, team);
      response = await postStream(ka, `/api/jobs/${jobId}/llm-call-stream`, team.key, { messages: script.messages });
    } else if (endpoint === 'create-and-call-stream') {
      response = await postStream(ka, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'ka', messages: script.messages });
    } else {
      response = await postStream(ka, '/v1/chat/completions', team.key, { model: team.group, stream: true, messages: script.messages });
    }
    const headersAt = Date.now();
    expectSseHeaders(response.headers, response.status);
    const frames = await readAll(response);

    const firstData = frames.findIndex((frame) => frame.data !== null);
    expect(firstData).toBeGreaterThan(0);
    const before = frames.slice(0, firstData);
    expect(before.every((frame) => frame.comment && frame.raw === ': keepalive'), JSON.stringify(before.map((f) => f.raw))).toBe(true);
    expect(before.length, 'keepalive comments while waiting ~600 ms for the first token').toBeGreaterThanOrEqual(2);
    // The response was committed long before the first token.
    expect(frames[firstData]!.at - headersAt, 'headers arrived well before the first chunk').toBeGreaterThan(200);
    expect(frames[firstData]!.at - sentAt).toBeGreaterThanOrEqual(500);

    // The 500 ms between " world" and its predecessor are filled with comments too.
    const dataFrames = frames.filter((frame) => frame.data !== null);
    const worldIndex = frames.findIndex((frame) => frame.data !== null && frame.data !== '[DONE]' && contentOf(JSON.parse(frame.data)) === ' world');
    const helloIndex = frames.findIndex((frame) => frame.data !== null && frame.data !== '[DONE]' && contentOf(JSON.parse(frame.data)) === 'Hello');
    expect(helloIndex).toBeGreaterThan(0);
    expect(worldIndex).toBeGreaterThan(helloIndex);
    const between = frames.slice(helloIndex + 1, worldIndex);
    expect(between.length, 'keepalive comments between two chunks 500 ms apart').toBeGreaterThanOrEqual(1);
    expect(between.every((frame) => frame.raw === ': keepalive')).toBe(true);

    const payloads = payloadsOf(dataFrames);
    expect(payloads.at(-1)).toBe('[DONE]');
    expect(payloads.filter((p) => p === '[DONE]')).toHaveLength(1);
    const chunks = payloads.slice(0, -1);
    expect(chunks.every((chunk) => chunk.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    expect(chunks.map(contentOf).join('')).toBe('Hello world!');
    expect(chunks.filter((chunk) => chunk.choices?.[0]?.finish_reason).map((chunk) => chunk.choices[0].finish_reason)).toEqual(['stop']);

    const call = await endedCall(ka, response.headers.get('x-call-id')!);
    expect(call).toMatchObject({ status: 'success', response_content: 'Hello world!', prompt_tokens: 8, completion_tokens: 3 });
    if (endpoint !== 'llm-call-stream') expect((await settledJob(ka, call.job_id)).status).toBe('completed');
  });

  it('the queue stream sends `: keepalive` while the queued call is silent', async () => {
    const team = await setupTeam(ka);
    const script = scripted(ka, slowFirstToken('first chunk'));
    const submitted = await ka.request('POST', '/api/llm/complete', { token: team.key, body: { model: team.group, stream: true, messages: script.messages } });
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(202);
    const response = await postStream(ka, '/api/llm/queue/stream', team.key, { queueId: submitted.body.data.queueId });
    expectSseHeaders(response.headers, response.status);
    const frames = await readAll(response);
    expect(frames[0]!.event).toBe('start');
    const firstChunk = frames.findIndex((frame) => frame.event === 'chunk');
    expect(frames.slice(1, firstChunk).filter((frame) => frame.raw === ': keepalive').length).toBeGreaterThanOrEqual(2);
    const chunks = frames.filter((frame) => frame.event === 'chunk').map((frame) => JSON.parse(frame.data!));
    expect(chunks.map((chunk) => chunk.delta).join('')).toBe('Hello world!');
    expect(frames.at(-1)!.event).toBe('done');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Timeouts: an app with 300 ms first-token and between-chunk timeouts, and keepalive too slow to matter
// ---------------------------------------------------------------------------------------------------------------

describe('upstream timeouts', () => {
  let slow: TestApp;
  beforeAll(async () => {
    slow = await createTestApp({ UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: '300', UPSTREAM_CHUNK_TIMEOUT_MS: '300', UPSTREAM_TIMEOUT_MS: '300', STREAM_KEEPALIVE_MS: '60000' });
  });
  afterAll(() => slow?.close());

  const hangs: [string, UpstreamScript][] = [
    ['hangs after its headers', { steps: [{ type: 'hang' }] }],
    ['never sends its headers', { headersDelayMs: 30_000, steps: [{ type: 'content', text: 'too late' }] }],
  ];

  it.each(hangs)('a first model that %s is abandoned after the first-token timeout and the second model answers', async (_what, hang) => {
    const team = await setupTeam(slow, { models: ['sim-small', 'sim-large'], credits: 5 });
    const script = scripted(slow, (request) =>
      request.body.model === 'sim-small' ? hang : { steps: [{ type: 'content', text: 'Fallback ' }, { type: 'content', text: 'answer' }], usage: { prompt_tokens: 9, completion_tokens: 2 } },
    );
    const response = await postStream(slow, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'fallback', messages: script.messages });
    expectSseHeaders(response.headers, response.status);
    const payloads = payloadsOf(await readAll(response));
    expect(payloads.at(-1)).toBe('[DONE]');
    const chunks = payloads.slice(0, -1);
    expect(chunks.some((chunk) => chunk.error)).toBe(false);
    expect(chunks.map(contentOf).join('')).toBe('Fallback answer');
    expect(chunks.every((chunk) => chunk.model === 'sim-large')).toBe(true);

    const [first, second] = script.requests();
    expect(script.requests()).toHaveLength(2);
    expect(first!.body.model).toBe('sim-small');
    expect(second!.body.model).toBe('sim-large');
    const closed = await slow.upstream.waitForClosed(first!.id);
    expect(closed.abortedByClient, 'the hung request was aborted by creditgate').toBe(true);
    expect(closed.closedAt! - closed.startedAt, 'abandoned by the timeout, not at once').toBeGreaterThanOrEqual(150);
    expect(closed.closedAt! - closed.startedAt).toBeLessThan(300 + AT_ONCE_MS);
    expect(second!.startedAt).toBeGreaterThanOrEqual(first!.startedAt + 150);

    const call = await endedCall(slow, response.headers.get('x-call-id')!);
    expect(call).toMatchObject({ status: 'success', model_used: 'sim-large', response_content: 'Fallback answer', prompt_tokens: 9, completion_tokens: 2 });
    const job = await settledJob(slow, response.headers.get('x-job-id')!);
    expect(job).toMatchObject({ status: 'completed', charged_micro: String(MICRO) });
    expect(await balanceOf(slow, team.teamId)).toEqual({ balance: 4, held: 0 });
  });

  it('every model hanging before its first byte: 504 upstream_timeout as JSON, both upstream requests closed, the job failed, nothing charged', async () => {
    const team = await setupTeam(slow, { models: ['sim-small', 'sim-large'], credits: 5 });
    const script = scripted(slow, { steps: [{ type: 'hang' }] });
    const response = await postStream(slow, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'hang', messages: script.messages });
    expect(response.status).toBe(504);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await response.json()) as any;
    expect(body.error).toMatchObject({ code: 'upstream_timeout', message: expect.any(String) });

    expect(script.requests().map((r) => r.body.model)).toEqual(['sim-small', 'sim-large']);
    for (const request of script.requests()) {
      const closed = await slow.upstream.waitForClosed(request.id);
      expect(closed.abortedByClient).toBe(true);
      expect(closed.closedAt! - closed.startedAt).toBeLessThan(300 + AT_ONCE_MS);
    }
    const jobs = await query<JobRow>(slow, 'SELECT id, status::text, hold_micro::text, charged_micro::text FROM jobs WHERE team_id = $1', [team.teamId]);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]).toMatchObject({ status: 'failed', hold_micro: '0' });
    expect(Number(jobs[0]!.charged_micro ?? 0)).toBe(0);
    expect(await jobLedger(slow, jobs[0]!.id)).toEqual([
      { type: 'hold', amount: 0, held: 1 },
      { type: 'release', amount: 0, held: -1 },
    ]);
    const [call] = await query<CallRow>(slow, 'SELECT * FROM llm_calls WHERE job_id = $1', [jobs[0]!.id]);
    expect(call).toMatchObject({ status: 'failed', response_content: null });
    expect(await balanceOf(slow, team.teamId)).toEqual({ balance: 5, held: 0 });
  });

  it('a lone model hanging on a non-streamed create-and-call: 504 upstream_timeout, its request closed, the job failed, nothing charged', async () => {
    const team = await setupTeam(slow, { credits: 5 });
    const script = scripted(slow, { steps: [{ type: 'hang' }] });
    const response = await slow.request('POST', '/api/jobs/create-and-call', { token: team.key, body: { team_id: team.teamId, job_type: 'hang', messages: script.messages } });
    expect(response.status).toBe(504);
    expect((response.body as any).error.code).toBe('upstream_timeout');
    const [request] = script.requests();
    expect(script.requests()).toHaveLength(1);
    const closed = await slow.upstream.waitForClosed(request!.id);
    expect(closed.abortedByClient).toBe(true);
    expect(closed.closedAt! - closed.startedAt).toBeLessThan(300 + AT_ONCE_MS);
    const [job] = await query<JobRow>(slow, 'SELECT id, status::text, hold_micro::text, charged_micro::text FROM jobs WHERE team_id = $1', [team.teamId]);
    expect(job).toMatchObject({ status: 'failed', hold_micro: '0' });
    expect(Number(job!.charged_micro ?? 0)).toBe(0);
    expect(await balanceOf(slow, team.teamId)).toEqual({ balance: 5, held: 0 });
  });

  it('every model hanging on llm-call-stream: 504, the call recorded failed, the job still open', async () => {
    const team = await setupTeam(slow, { credits: 5 });
    const jobId = await createJob(slow, team);
    const script = scripted(slow, { steps: [{ type: 'hang' }] });
    const response = await postStream(slow, `/api/jobs/${jobId}/llm-call-stream`, team.key, { messages: script.messages });
    expect(response.status).toBe(504);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(((await response.json()) as any).error.code).toBe('upstream_timeout');
    const closed = await slow.upstream.waitForClosed(script.requests()[0]!.id);
    expect(closed.abortedByClient).toBe(true);
    const calls = await query<CallRow>(slow, 'SELECT * FROM llm_calls WHERE job_id = $1', [jobId]);
    expect(calls.map((c) => c.status)).toEqual(['failed']);
    expect((await jobRow(slow, jobId)).status).toBe('pending');
  });

  it('a stream that goes silent after some content: content, then an upstream_timeout error, then [DONE]; the call failed with its partial content', async () => {
    const team = await setupTeam(slow, { credits: 5 });
    const jobId = await createJob(slow, team);
    const script = scripted(slow, { steps: [{ type: 'content', text: 'Partial ' }, { type: 'content', text: 'content' }, { type: 'hang' }] });
    const response = await postStream(slow, `/api/jobs/${jobId}/llm-call-stream`, team.key, { messages: script.messages });
    expectSseHeaders(response.headers, response.status);
    const frames = await readAll(response);
    const { chunks, error } = expectInBandError(frames);
    expect(chunks.map(contentOf).join('')).toBe('Partial content');
    expect(error).toMatchObject({ type: 'upstream_error', code: 'upstream_timeout' });
    const dataFrames = frames.filter((frame) => frame.data !== null);
    const silence = dataFrames.at(-2)!.at - dataFrames.at(-3)!.at;
    expect(silence, 'the error came after the chunk timeout').toBeGreaterThanOrEqual(200);

    const closed = await slow.upstream.waitForClosed(script.requests()[0]!.id);
    expect(closed.abortedByClient).toBe(true);
    expect(closed.finishedAt).toBeUndefined();
    expect(script.requests()).toHaveLength(1);
    const call = await endedCall(slow, response.headers.get('x-call-id')!);
    expect(call).toMatchObject({ status: 'failed', response_content: 'Partial content', usage_source: 'estimated', error: error.message });
    expect(call.completion_tokens).toBeGreaterThan(0);
    expect((await jobRow(slow, jobId)).status).toBe('pending');
  });

  it('create-and-call-stream that goes silent mid-stream: the job failed, charged for the output it delivered', async () => {
    const team = await setupTeam(slow, { credits: 5 });
    const script = scripted(slow, { steps: [{ type: 'content', text: 'half' }, { type: 'hang' }] });
    const response = await postStream(slow, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'silent', messages: script.messages });
    expectSseHeaders(response.headers, response.status);
    const { chunks, error } = expectInBandError(await readAll(response));
    expect(chunks.map(contentOf).join('')).toBe('half');
    expect(error.code).toBe('upstream_timeout');
    const closed = await slow.upstream.waitForClosed(script.requests()[0]!.id);
    expect(closed.abortedByClient, 'the silent upstream request was aborted').toBe(true);
    const job = await settledJob(slow, response.headers.get('x-job-id')!);
    expect(job).toMatchObject({ status: 'failed', hold_micro: '0', charged_micro: String(MICRO) });
    expect(await balanceOf(slow, team.teamId)).toEqual({ balance: 4, held: 0 });
  });

  it('every model hanging after keepalives already went out: the timeout is reported in-band, then [DONE]', async () => {
    const keptAlive = await createTestApp({ UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: '300', STREAM_KEEPALIVE_MS: '100' });
    try {
      const team = await setupTeam(keptAlive, { models: ['sim-small', 'sim-large'], credits: 5 });
      const script = scripted(keptAlive, { steps: [{ type: 'hang' }] });
      const response = await postStream(keptAlive, '/api/jobs/create-and-call-stream', team.key, {
        team_id: team.teamId,
        job_type: 'hang',
        messages: script.messages,
      });
      expectSseHeaders(response.headers, response.status);
      const frames = await readAll(response);
      expect(frames.filter((frame) => frame.raw === ': keepalive').length).toBeGreaterThanOrEqual(1);
      const { chunks, error } = expectInBandError(frames);
      expect(chunks).toEqual([]);
      expect(error.code).toBe('upstream_timeout');
      for (const request of script.requests()) expect((await keptAlive.upstream.waitForClosed(request.id)).abortedByClient).toBe(true);
      expect(script.requests()).toHaveLength(2);
      const job = await settledJob(keptAlive, response.headers.get('x-job-id')!);
      expect(job.status).toBe('failed');
      expect(await balanceOf(keptAlive, team.teamId)).toEqual({ balance: 5, held: 0 });
    } finally {
      await keptAlive?.close();
    }
  });
});
