import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  AdminClient,
  APIConnectionError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  CreditgateClient,
  CreditgateError,
  InsufficientCreditsError,
  NotFoundError,
  PermissionDeniedError,
  UpstreamError,
  type ChatCompletionChunk,
  type QueueEvent,
} from '@creditgate/client';
import type { RecordedRequest, UpstreamScript } from '../../src/upstream/simulated-server.js';
import { createTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { uniqueId } from '../helpers/factories.js';

/**
 * The SDK against the real app (in process, real PostgreSQL, scripted upstream): every method, the typed errors,
 * streams and their cancellation, and retries that can never charge twice.
 */

let app: TestApp;
let admin: AdminClient;
beforeAll(async () => {
  app = await createTestApp();
  admin = new AdminClient({ baseUrl: app.url, apiKey: TEST_MASTER_KEY });
});
afterAll(() => app?.close());

interface TeamSetup {
  teamId: string;
  key: string;
  group: string;
  organizationId: string;
  client: CreditgateClient;
}

async function newTeam(credits = 10, clientOptions: Partial<ConstructorParameters<typeof CreditgateClient>[0]> = {}): Promise<TeamSetup> {
  const { organization_id: organizationId } = await admin.organizations.create({ organization_id: uniqueId('org'), name: 'SDK org' });
  const { group_name: group } = await admin.modelGroups.create({ group_name: uniqueId('group'), models: [{ model_name: 'sim-small', priority: 0 }] });
  const team = await admin.teams.create({ organization_id: organizationId, team_id: uniqueId('team'), model_groups: [group], credits_allocated: credits });
  const client = new CreditgateClient({ baseUrl: app.url, apiKey: team.virtual_key, ...clientOptions });
  return { teamId: team.team_id, key: team.virtual_key, group, organizationId, client };
}

const messages = (text = 'Say something') => [{ role: 'user' as const, content: text }];
const content = (...parts: string[]): UpstreamScript => ({ steps: parts.map((text) => ({ type: 'content' as const, text })) });
const UNKNOWN_JOB = 'job_000000000000000000000';

/** Runs `start`, and returns the upstream request it caused once that request reached the upstream. */
async function upstreamRequestOf<T>(start: () => T): Promise<{ result: T; request: RecordedRequest }> {
  const before = app.upstream.requests.length;
  const result = start();
  const requests = await app.upstream.waitForRequests(before + 1);
  return { result, request: requests[before]! };
}

/** A fetch that counts calls and remembers each call's Idempotency-Key. */
function recordingFetch(wrap: (response: Response, attempt: number) => Response | Promise<Response> = (response) => response) {
  const keys: (string | null)[] = [];
  const tracked: typeof fetch = async (input, init) => {
    keys.push(new Headers(init?.headers).get('idempotency-key'));
    return wrap(await fetch(input, init), keys.length);
  };
  return { fetch: tracked, keys };
}

async function rejection(promise: Promise<unknown>): Promise<CreditgateError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error, 'the call should have failed').toBeInstanceOf(CreditgateError);
  return error as CreditgateError;
}

describe('jobs', () => {
  it('creates a job, calls within it, reads it and its costs, completes it once and charges one credit', async () => {
    const { client, teamId } = await newTeam(5);
    const created = await client.createJob({ team_id: teamId, job_type: 'summarize', user_id: 'u-1', metadata: { doc: 7 } });
    expect(created).toMatchObject({ status: 'pending', credits_reserved: 1 });
    expect(created.job_id).toMatch(/^job_/);

    app.upstream.enqueue({ ...content('Hello', ' world'), usage: { prompt_tokens: 4, completion_tokens: 2 } });
    const call = await client.llmCall(created.job_id, { messages: messages(), temperature: 0.2 });
    expect(call.call_id).toMatch(/^call_/);
    expect(call.response.choices[0]?.message).toMatchObject({ role: 'assistant', content: 'Hello world' });
    expect(call.metadata).toMatchObject({ job_id: created.job_id, model_used: 'sim-small', prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 });

    const job = await client.getJob(created.job_id);
    expect(job).toMatchObject({ job_id: created.job_id, team_id: teamId, job_type: 'summarize', user_id: 'u-1', status: 'pending', metadata: { doc: 7 } });
    expect(job.calls).toHaveLength(1);
    expect(job.calls[0]).toMatchObject({ call_id: call.call_id, status: 'success', response_content: 'Hello world', total_tokens: 6 });

    const completed = await client.completeJob(created.job_id, { status: 'completed', metadata: { pages: 3 } });
    expect(completed).toMatchObject({ job_id: created.job_id, status: 'completed' });
    expect(completed.costs).toMatchObject({ total_calls: 1, successful_calls: 1, total_tokens: 6, credits_charged: 1, credit_applied: true, credits_remaining: 4 });
    expect(await client.getCosts(created.job_id)).toEqual(completed.costs);
    // Completing again with the same status replays the answer and charges nothing more.
    expect((await client.completeJob(created.job_id, { status: 'completed', metadata: { pages: 3 } })).costs.credits_charged).toBe(1);
    expect(await client.getBalance(teamId)).toMatchObject({ balance: 4, held: 0, credits_used: 1 });
  });

  it('streams a call chunk by chunk: text grows with each chunk, finalCall() has the content, usage and finish reason', async () => {
    const { client, teamId } = await newTeam();
    const { job_id: jobId } = await client.createJob({ team_id: teamId, job_type: 'chat' });
    app.upstream.enqueue({ ...content('Hel', 'lo', ' there'), usage: { prompt_tokens: 3, completion_tokens: 3 } });
    const stream = await client.chatStream(jobId, { messages: messages(), stream_options: { include_usage: true } });
    expect(stream.jobId).toBe(jobId);
    expect(stream.callId).toMatch(/^call_/);

    const chunks: ChatCompletionChunk[] = [];
    const texts: string[] = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      texts.push(stream.text);
    }
    expect(chunks[0]?.object).toBe('chat.completion.chunk');
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    // The first chunk only names the role.
    expect(texts.filter((text, i) => text !== texts[i - 1])).toEqual(['', 'Hel', 'Hello', 'Hello there']);
    expect(await stream.finalCall()).toEqual({
      content: 'Hello there',
      toolCalls: [],
      finishReason: 'stop',
      usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 },
    });
    const [recorded] = (await client.getJob(jobId)).calls;
    expect(recorded).toMatchObject({ call_id: stream.callId, streamed: true, status: 'success', response_content: 'Hello there' });
  });

  it('reassembles tool-call deltas by index; finalCall() alone reads the whole stream', async () => {
    const { client, teamId } = await newTeam();
    const { job_id: jobId } = await client.createJob({ team_id: teamId, job_type: 'tools' });
    app.upstream.enqueue({
      steps: [
        { type: 'tool_call', index: 0, id: 'call_a', name: 'get_weather', arguments: '' },
        { type: 'tool_call', index: 1, id: 'call_b', name: 'get_time', arguments: '{"tz":' },
        { type: 'tool_call', index: 0, arguments: '{"location":' },
        { type: 'tool_call', index: 0, arguments: '"Paris"}' },
        { type: 'tool_call', index: 1, arguments: '"CET"}' },
      ],
    });
    const stream = await client.chatStream(jobId, { messages: messages('weather?'), tools: [{ type: 'function', function: { name: 'get_weather' } }] });
    const final = await stream.finalCall();
    expect(final.finishReason).toBe('tool_calls');
    expect(final.toolCalls).toEqual([
      { id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } },
      { id: 'call_b', type: 'function', function: { name: 'get_time', arguments: '{"tz":"CET"}' } },
    ]);
    expect(stream.toolCalls).toEqual(final.toolCalls);
    expect(final.usage).toBeUndefined();
  });

  it('createAndCall creates, calls and completes in one request', async () => {
    const { client, teamId } = await newTeam(3);
    app.upstream.enqueue(content('One', ' shot'));
    const answer = await client.createAndCall({ team_id: teamId, job_type: 'oneshot', messages: messages(), job_metadata: { source: 'sdk' } });
    expect(answer).toMatchObject({ status: 'completed', costs: { credits_charged: 1, credit_applied: true, credits_remaining: 2 } });
    expect(answer.response.choices[0]?.message).toMatchObject({ content: 'One shot' });
    expect(await client.getJob(answer.job_id)).toMatchObject({ status: 'completed', job_type: 'oneshot', metadata: { source: 'sdk' } });
  });

  it('createAndCallStream names its job from X-Job-Id and has charged it when the stream ends', async () => {
    const { client, teamId } = await newTeam(3);
    app.upstream.enqueue(content('Streamed', ' job'));
    const stream = await client.createAndCallStream({ team_id: teamId, job_type: 'oneshot-stream', messages: messages() });
    expect(stream.jobId).toMatch(/^job_/);
    expect(stream.callId).toMatch(/^call_/);
    let chunks = 0;
    for await (const _chunk of stream) chunks++;
    expect(chunks).toBeGreaterThanOrEqual(3);
    expect(stream.text).toBe('Streamed job');
    const job = await client.getJob(stream.jobId!);
    expect(job).toMatchObject({ status: 'completed', costs: { credits_charged: 1, credits_remaining: 2 } });
    expect(job.calls[0]?.call_id).toBe(stream.callId);
  });

  it("updateJobMetadata merges keys into the job's metadata and removes the ones set to null", async () => {
    const { client, teamId } = await newTeam(2);
    const { job_id: jobId } = await client.createJob({ team_id: teamId, job_type: 'tagged', metadata: { ticket: 'T-1', keep: true } });
    const updated = await client.updateJobMetadata(jobId, { metadata: { ticket: null, stage: 'review' } });
    expect(updated.metadata).toEqual({ keep: true, stage: 'review' });
    expect((await client.getJob(jobId)).metadata).toEqual({ keep: true, stage: 'review' });
  });

  it('cancelJob ends a pending job cancelled and releases its hold', async () => {
    const { client, teamId } = await newTeam(2);
    const { job_id: jobId } = await client.createJob({ team_id: teamId, job_type: 'cancel-me' });
    expect((await client.getBalance(teamId)).held).toBe(1);
    const cancelled = await client.cancelJob(jobId);
    expect(cancelled).toMatchObject({ job_id: jobId, status: 'cancelled', costs: { credits_charged: 0 } });
    expect(await client.getBalance(teamId)).toMatchObject({ balance: 2, held: 0 });
  });

  it('cancelJob aborts a running stream: the upstream request closes and iteration throws UpstreamError', async () => {
    const { client, teamId } = await newTeam();
    const { job_id: jobId } = await client.createJob({ team_id: teamId, job_type: 'cancel-running' });
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'partial ' }, { type: 'hang' }] });
    const { result, request } = await upstreamRequestOf(() => client.chatStream(jobId, { messages: messages() }));
    const iterator = (await result)[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.choices[0]?.delta.role).toBe('assistant');
    expect((await client.cancelJob(jobId)).status).toBe('cancelled');
    expect((await app.upstream.waitForClosed(request.id)).closedAt).toBeDefined();
    const error = await rejection((async () => {
      while (!(await iterator.next()).done);
    })());
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error.code).toBe('cancelled');
  });
});

describe('stream cancellation', () => {
  it('breaking out of the loop aborts the request: the upstream request closes and the call is recorded cancelled', async () => {
    const signals: AbortSignal[] = [];
    const { client, teamId } = await newTeam(10, {
      fetch: (input, init) => {
        signals.push(init!.signal!);
        return fetch(input, init);
      },
    });
    const { job_id: jobId } = await client.createJob({ team_id: teamId, job_type: 'leave-early' });
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'first ' }, { type: 'content', text: 'second', delayMs: 10_000 }] });
    const { result, request } = await upstreamRequestOf(() => client.chatStream(jobId, { messages: messages() }));
    const stream = await result;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) break;
    }
    expect(stream.text).toBe('first ');
    expect(signals.at(-1)?.aborted, 'the HTTP request of the stream is aborted').toBe(true);
    const closed = await app.upstream.waitForClosed(request.id);
    expect(closed.abortedByClient).toBe(true);
    await vi.waitFor(async () => expect((await client.getJob(jobId)).calls[0]).toMatchObject({ status: 'cancelled', response_content: 'first ' }));
    await expect(stream.finalCall()).rejects.toBeInstanceOf(APIUserAbortError);
  });

  it('abort() stops a stream being read: the loop throws APIUserAbortError', async () => {
    const { client, teamId } = await newTeam();
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'x' }, { type: 'hang' }] });
    const { result, request } = await upstreamRequestOf(() => client.createAndCallStream({ team_id: teamId, job_type: 'abort', messages: messages() }));
    const stream = await result;
    const error = await rejection((async () => {
      for await (const _chunk of stream) stream.abort();
    })());
    expect(error).toBeInstanceOf(APIUserAbortError);
    expect((await app.upstream.waitForClosed(request.id)).abortedByClient).toBe(true);
    await vi.waitFor(async () => expect((await client.getJob(stream.jobId!)).status).toBe('cancelled'));
  });

  it("the caller's AbortSignal aborts a plain call; the server cancels the upstream request", async () => {
    const { client, teamId } = await newTeam();
    const { job_id: jobId } = await client.createJob({ team_id: teamId, job_type: 'signal' });
    app.upstream.enqueue({ steps: [{ type: 'hang' }] });
    const controller = new AbortController();
    const { result, request } = await upstreamRequestOf(() => client.llmCall(jobId, { messages: messages() }, { signal: controller.signal }));
    controller.abort();
    expect(await rejection(result)).toBeInstanceOf(APIUserAbortError);
    expect((await app.upstream.waitForClosed(request.id)).abortedByClient).toBe(true);
    await vi.waitFor(async () => expect((await client.getJob(jobId)).calls[0]?.status).toBe('cancelled'));
  });

  it('timeoutMs ends a call that takes too long with APITimeoutError', async () => {
    const { client, teamId } = await newTeam(10, { maxRetries: 0 });
    const { job_id: jobId } = await client.createJob({ team_id: teamId, job_type: 'timeout' });
    app.upstream.enqueue({ steps: [{ type: 'hang' }] });
    const error = await rejection(client.llmCall(jobId, { messages: messages() }, { timeoutMs: 300 }));
    expect(error).toBeInstanceOf(APITimeoutError);
    expect(error).toBeInstanceOf(APIConnectionError);
  });
});

describe('typed errors', () => {
  it('401 AuthenticationError for an unknown key, with the request id', async () => {
    const { teamId } = await newTeam();
    const client = new CreditgateClient({ baseUrl: app.url, apiKey: 'sk-not-a-real-key' });
    const error = await rejection(client.getBalance(teamId));
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error).toMatchObject({ status: 401, type: 'authentication_error', code: 'invalid_api_key' });
    expect(error.requestId).toMatch(/^req_/);
    expect(error.headers?.get('x-request-id')).toBe(error.requestId);
  });

  it('402 InsufficientCreditsError for a team without credits', async () => {
    const { client, teamId } = await newTeam(0);
    const error = await rejection(client.createJob({ team_id: teamId, job_type: 'broke' }));
    expect(error).toBeInstanceOf(InsufficientCreditsError);
    expect(error).toMatchObject({ status: 402, type: 'billing_error', code: 'insufficient_credits' });
  });

  it('403 PermissionDeniedError for a team key on an admin route and for a model the team may not use', async () => {
    const { client, key, teamId } = await newTeam();
    const asTeam = new AdminClient({ baseUrl: app.url, apiKey: key });
    expect(await rejection(asTeam.organizations.list())).toMatchObject({ status: 403, code: 'admin_required', type: 'permission_error' });
    const { job_id: jobId } = await client.createJob({ team_id: teamId, job_type: 'forbidden-model' });
    const error = await rejection(client.llmCall(jobId, { model: 'sim-large', messages: messages() }));
    expect(error).toBeInstanceOf(PermissionDeniedError);
    expect(error).toMatchObject({ code: 'model_not_allowed', param: 'model' });
  });

  it('404 NotFoundError for an unknown job and for another team’s job', async () => {
    const a = await newTeam();
    const b = await newTeam();
    expect(await rejection(a.client.getJob(UNKNOWN_JOB))).toBeInstanceOf(NotFoundError);
    const { job_id: jobOfB } = await b.client.createJob({ team_id: b.teamId, job_type: 'private' });
    expect(await rejection(a.client.getCosts(jobOfB))).toMatchObject({ status: 404, param: 'job_id' });
  });

  it('409 ConflictError for completing a job with another status', async () => {
    const { client, teamId } = await newTeam();
    const { job_id: jobId } = await client.createJob({ team_id: teamId, job_type: 'twice' });
    await client.completeJob(jobId, { status: 'completed' });
    const error = await rejection(client.completeJob(jobId, { status: 'failed', error_message: 'changed my mind' }));
    expect(error).toBeInstanceOf(ConflictError);
    expect(error).toMatchObject({ status: 409, code: 'job_already_settled' });
  });

  it('400 BadRequestError naming the bad parameter', async () => {
    const { client } = await newTeam();
    const error = await rejection(client.createJob({ team_id: 'not a slug!', job_type: 'x' }));
    expect(error).toBeInstanceOf(BadRequestError);
    expect(error).toMatchObject({ status: 400, type: 'invalid_request_error', param: 'team_id' });
  });

  it('502 UpstreamError when the model fails before any byte, and it is not retried', async () => {
    const recorder = recordingFetch();
    const { client, teamId } = await newTeam(10, { fetch: recorder.fetch });
    const { job_id: jobId } = await client.createJob({ team_id: teamId, job_type: 'upstream-down' });
    const before = app.upstream.requests.length;
    app.upstream.enqueue({ status: 500 });
    const error = await rejection(client.llmCall(jobId, { messages: messages() }));
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ status: 502, code: 'upstream_error' });
    expect(recorder.keys).toHaveLength(2); // createJob, then llmCall once
    expect(app.upstream.requests.length - before).toBe(1);
  });

  it('an in-band stream error throws UpstreamError during iteration, after the chunks before it', async () => {
    const { client, teamId } = await newTeam();
    const { job_id: jobId } = await client.createJob({ team_id: teamId, job_type: 'mid-stream-error' });
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'partial' }, { type: 'error', message: 'provider exploded' }] });
    const stream = await client.chatStream(jobId, { messages: messages() });
    const seen: string[] = [];
    const error = await rejection((async () => {
      for await (const chunk of stream) seen.push(chunk.choices[0]?.delta.content ?? '');
    })());
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ type: 'upstream_error', code: 'upstream_error', status: undefined });
    expect(seen.join('')).toBe('partial');
    expect(stream.text).toBe('partial');
    await expect(stream.finalCall()).rejects.toBe(error);
  });
});

describe('retries', () => {
  it('a createAndCall whose answer is lost is retried with the same Idempotency-Key and charged once', async () => {
    const recorder = recordingFetch(async (response, attempt) => {
      if (attempt === 2) {
        // The server answered the first create-and-call; the client never sees it.
        await response.text();
        throw new TypeError('fetch failed: other side closed');
      }
      return response;
    });
    const { client, teamId } = await newTeam(5, { fetch: recorder.fetch });
    await client.getBalance(teamId);
    const before = app.upstream.requests.length;
    app.upstream.enqueue(content('Charged', ' once'));
    const answer = await client.createAndCall({ team_id: teamId, job_type: 'lossy', messages: messages() });
    expect(answer.response.choices[0]?.message).toMatchObject({ content: 'Charged once' });
    const [, first, retry] = recorder.keys;
    expect(first).toMatch(/^cg-[0-9a-f-]{36}$/);
    expect(retry).toBe(first);
    expect(app.upstream.requests.length - before).toBe(1);
    expect(await client.getBalance(teamId)).toMatchObject({ balance: 4, held: 0, credits_used: 1 });
    const charges = (await client.getTransactions(teamId)).data.filter((entry) => entry.type === 'charge');
    expect(charges).toHaveLength(1);
    expect(charges[0]?.job_id).toBe(answer.job_id);
  });

  it("uses the caller's Idempotency-Key; the same key replays instead of creating a second job", async () => {
    const recorder = recordingFetch();
    const { client, teamId } = await newTeam(5, { fetch: recorder.fetch });
    const first = await client.createJob({ team_id: teamId, job_type: 'keyed' }, { idempotencyKey: 'order-42' });
    const again = await client.createJob({ team_id: teamId, job_type: 'keyed' }, { idempotencyKey: 'order-42' });
    expect(again).toEqual(first);
    expect(recorder.keys).toEqual(['order-42', 'order-42']);
    expect((await client.getBalance(teamId)).held).toBe(1);
    // GETs carry no key.
    await client.getJob(first.job_id);
    expect(recorder.keys.at(-1)).toBeNull();
  });

  it('retries a 409 idempotency_key_in_progress until the first attempt answers, then gets its replay', async () => {
    const { client, teamId } = await newTeam(5, { maxRetries: 5 });
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'slow', delayMs: 1_000 }] });
    const { result: first } = await upstreamRequestOf(() =>
      client.createAndCall({ team_id: teamId, job_type: 'slow', messages: messages() }, { idempotencyKey: 'slow-1' }),
    );
    const second = await client.createAndCall({ team_id: teamId, job_type: 'slow', messages: messages() }, { idempotencyKey: 'slow-1' });
    expect(second).toEqual(await first);
    expect(await client.getBalance(teamId)).toMatchObject({ balance: 4, credits_used: 1 });
  });

  it('honours Retry-After on a 503 and retries with the same key', async () => {
    const recorder = recordingFetch((response, attempt) =>
      attempt === 1
        ? new Response(JSON.stringify({ error: { type: 'api_error', code: 'unavailable', message: 'busy', param: null } }), {
            status: 503,
            headers: { 'content-type': 'application/json', 'retry-after': '0.2' },
          })
        : response,
    );
    const { teamId, key } = await newTeam(5);
    const client = new CreditgateClient({ baseUrl: app.url, apiKey: key, fetch: recorder.fetch });
    const started = performance.now();
    const job = await client.createJob({ team_id: teamId, job_type: 'busy' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    expect(recorder.keys).toHaveLength(2);
    expect(recorder.keys[1]).toBe(recorder.keys[0]);
    expect((await client.getJob(job.job_id)).status).toBe('pending');
  });

  it('never retries a stream that started: a stream cut off mid-way throws APIConnectionError', async () => {
    const recorder = recordingFetch((response) => {
      if (!response.headers.get('content-type')?.includes('event-stream')) return response;
      let chunks = 0;
      const cut = response.body!.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            if (chunks++ === 0) controller.enqueue(chunk);
            else controller.error(new TypeError('terminated'));
          },
        }),
      );
      return new Response(cut, { status: response.status, headers: response.headers });
    });
    const { client, teamId } = await newTeam(5, { fetch: recorder.fetch });
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'a' }, { type: 'content', text: 'b', delayMs: 200 }] });
    const stream = await client.createAndCallStream({ team_id: teamId, job_type: 'cut', messages: messages() });
    const error = await rejection((async () => {
      for await (const _chunk of stream);
    })());
    expect(error).toBeInstanceOf(APIConnectionError);
    expect(stream.text).toBe('a');
    expect(recorder.keys).toHaveLength(1);
  });
});

describe('queue', () => {
  it('submits, streams start/chunk/done events, and reports the result', async () => {
    const { client, group } = await newTeam();
    app.upstream.enqueue(content('Queued', ' answer'));
    const submitted = await client.submit({ model: group, messages: messages(), stream: true });
    expect(submitted).toEqual({ queueId: expect.stringMatching(/^q_/), status: 'queued' });
    const events: QueueEvent[] = [];
    for await (const event of await client.streamQueue(submitted.queueId)) events.push(event);
    expect(events[0]).toEqual({ event: 'start', data: { queueId: submitted.queueId } });
    expect(events.at(-1)).toEqual({ event: 'done', data: {} });
    const chunks = events.flatMap((event) => (event.event === 'chunk' ? [event.data] : []));
    expect(chunks.map((chunk) => chunk.delta).join('')).toBe('Queued answer');
    expect(chunks.at(-1)?.finishReason).toBe('stop');
    await vi.waitFor(async () =>
      expect(await client.getQueued(submitted.queueId)).toMatchObject({
        status: 'completed',
        model: group,
        jobId: expect.stringMatching(/^job_/),
        result: { content: 'Queued answer', finishReason: 'stop' },
      }),
    );
  });

  it('cancels a running queued call: the upstream request closes, nothing is charged, a late reader gets the error event', async () => {
    const { client, group, teamId } = await newTeam(5);
    app.upstream.enqueue({ steps: [{ type: 'hang' }] });
    const { result, request } = await upstreamRequestOf(() => client.submit({ model: group, messages: messages() }));
    const { queueId } = await result;
    expect(await client.cancelQueue(queueId)).toEqual({ queueId, status: 'cancelled' });
    expect((await app.upstream.waitForClosed(request.id)).abortedByClient).toBe(true);
    const events: QueueEvent[] = [];
    for await (const event of await client.streamQueue(queueId)) events.push(event);
    expect(events.map((event) => event.event)).toEqual(['start', 'error', 'done']);
    expect(events[1]).toMatchObject({ event: 'error', data: { error: { type: 'upstream_error', message: expect.any(String) } } });
    const item = await client.getQueued(queueId);
    expect(item.status).toBe('cancelled');
    await vi.waitFor(async () => expect((await client.getJob(item.jobId)).status).toBe('cancelled'));
    expect(await client.getBalance(teamId)).toMatchObject({ balance: 5, held: 0, credits_used: 0 });
    expect(await rejection(client.getQueued('q_000000000000000000000'))).toBeInstanceOf(NotFoundError);
  });
});

describe('credits and usage with a team key', () => {
  it('reads the balance, pages the ledger with a cursor and reports usage', async () => {
    const { client, teamId } = await newTeam(4);
    app.upstream.enqueue(content('usage'));
    await client.createAndCall({ team_id: teamId, job_type: 'measured', messages: messages() });
    expect(await client.getBalance(teamId)).toMatchObject({ team_id: teamId, balance: 3, credits_allocated: 4, credits_used: 1, budget_mode: 'job_based' });

    const all = await client.getTransactions(teamId, { limit: 50 });
    expect(all.data.map((entry) => entry.type)).toEqual(['charge', 'hold', 'grant']);
    const first = await client.getTransactions(teamId, { limit: 2 });
    expect(first).toMatchObject({ has_more: true, next_cursor: expect.any(String) });
    const rest = await client.getTransactions(teamId, { limit: 2, cursor: first.next_cursor! });
    expect([...first.data, ...rest.data].map((entry) => entry.transaction_id)).toEqual(all.data.map((entry) => entry.transaction_id));
    expect(rest.has_more).toBe(false);

    const usage = await client.getUsage(teamId, { from: new Date(Date.now() - 3_600_000).toISOString() });
    expect(usage.totals).toMatchObject({ jobs: 1, calls: 1, credits_charged: 1 });
    expect(usage.by_job_type).toEqual([expect.objectContaining({ job_type: 'measured', jobs: 1 })]);
    expect((await client.getUsage(teamId, { to: new Date(Date.now() - 3_600_000).toISOString() })).totals.jobs).toBe(0);
  });
});

describe('AdminClient', () => {
  it('organizations: create, get, list and usage', async () => {
    const organizationId = uniqueId('org');
    const created = await admin.organizations.create({ organization_id: organizationId, name: 'Acme', metadata: { tier: 'gold' } });
    expect(created).toMatchObject({ organization_id: organizationId, name: 'Acme', metadata: { tier: 'gold' }, team_count: 0 });
    expect(await admin.organizations.get(organizationId)).toEqual(created);
    const listed = await admin.organizations.list({ limit: 200 });
    expect(listed.data.map((org) => org.organization_id)).toContain(organizationId);
    const usage = await admin.organizations.usage(organizationId);
    expect(usage).toMatchObject({ totals: { jobs: 0, calls: 0 }, by_team: [] });
    expect(await rejection(admin.organizations.create({ organization_id: organizationId, name: 'again' }))).toBeInstanceOf(ConflictError);
  });

  it('model groups: create, list, get, update and delete', async () => {
    const groupName = uniqueId('group');
    const created = await admin.modelGroups.create({
      group_name: groupName,
      display_name: 'Fast',
      models: [
        { model_name: 'sim-large', priority: 5 },
        { model_name: 'sim-small', priority: 1 },
      ],
    });
    expect(created.models.map((model) => model.model_name)).toEqual(['sim-small', 'sim-large']);
    expect((await admin.modelGroups.list()).data.map((group) => group.group_name)).toContain(groupName);
    expect(await admin.modelGroups.get(groupName)).toEqual(created);
    const updated = await admin.modelGroups.update(groupName, { display_name: 'Faster', models: [{ model_name: 'gpt-4o-mini', priority: 0 }] });
    expect(updated).toMatchObject({ display_name: 'Faster', models: [{ model_name: 'gpt-4o-mini', priority: 0 }] });
    expect(await admin.modelGroups.delete(groupName)).toEqual({ group_name: groupName, deleted: true });
    expect(await rejection(admin.modelGroups.get(groupName))).toBeInstanceOf(NotFoundError);
  });

  it('teams: create with a key that works, get, suspend, resume and usage', async () => {
    const { organization_id: organizationId } = await admin.organizations.create({ organization_id: uniqueId('org'), name: 'Teams' });
    const { group_name: group } = await admin.modelGroups.create({ group_name: uniqueId('group'), models: [{ model_name: 'sim-small', priority: 0 }] });
    const team = await admin.teams.create({ organization_id: organizationId, team_id: uniqueId('team'), team_alias: 'Writers', model_groups: [group], credits_allocated: 3 });
    expect(team.virtual_key).toMatch(/^sk-/);
    expect(team).toMatchObject({ status: 'active', team_alias: 'Writers', model_groups: [group], credits: { balance: 3, held: 0, credits_remaining: 3 } });
    const asTeam = new CreditgateClient({ baseUrl: app.url, apiKey: team.virtual_key });
    expect((await asTeam.getBalance(team.team_id)).balance).toBe(3);

    expect((await admin.teams.get(team.team_id)).team_alias).toBe('Writers');
    expect((await admin.teams.suspend(team.team_id)).status).toBe('suspended');
    const suspended = await rejection(asTeam.getBalance(team.team_id));
    expect(suspended).toBeInstanceOf(PermissionDeniedError);
    expect(suspended).toMatchObject({ status: 403, code: 'team_suspended' });
    expect((await admin.teams.resume(team.team_id)).status).toBe('active');
    expect((await asTeam.getBalance(team.team_id)).balance).toBe(3);

    app.upstream.enqueue(content('team usage'));
    await asTeam.createAndCall({ team_id: team.team_id, job_type: 'counted', messages: messages() });
    expect((await admin.teams.usage(team.team_id)).totals).toMatchObject({ jobs: 1, calls: 1, credits_charged: 1 });
    expect((await admin.organizations.usage(organizationId)).by_team).toEqual([expect.objectContaining({ team_id: team.team_id, jobs: 1 })]);
  });

  it('keys: create, list and revoke; a revoked key gets 401', async () => {
    const { teamId, key } = await newTeam();
    const extra = await admin.keys.create(teamId, { name: 'ci' });
    expect(extra).toMatchObject({ team_id: teamId, name: 'ci', status: 'active' });
    expect(extra.virtual_key).toMatch(/^sk-/);
    const listed = await admin.keys.list(teamId);
    expect(listed.data.map((k) => k.key_id)).toContain(extra.key_id);
    expect(listed.data).toHaveLength(2);
    expect(listed.data.every((k) => !('virtual_key' in k))).toBe(true);

    expect((await admin.keys.revoke(extra.key_id)).status).toBe('revoked');
    const revoked = new CreditgateClient({ baseUrl: app.url, apiKey: extra.virtual_key });
    expect(await rejection(revoked.getBalance(teamId))).toBeInstanceOf(AuthenticationError);
    expect((await new CreditgateClient({ baseUrl: app.url, apiKey: key }).getBalance(teamId)).team_id).toBe(teamId);
  });

  it('credits: balance, add (replayed under one key), transactions and budget mode', async () => {
    const { teamId } = await newTeam(2);
    expect(await admin.credits.balance(teamId)).toMatchObject({ balance: 2, credits_allocated: 2 });
    const added = await admin.credits.add(teamId, { credits: 7, reason: 'top-up' }, { idempotencyKey: 'topup-1' });
    expect(added.balance).toMatchObject({ balance: 9, credits_allocated: 9 });
    expect(added.transaction).toMatchObject({ type: 'grant', amount: 7, reason: 'top-up', balance_after: 9 });
    const replayed = await admin.credits.add(teamId, { credits: 7, reason: 'top-up' }, { idempotencyKey: 'topup-1' });
    expect(replayed.transaction.transaction_id).toBe(added.transaction.transaction_id);
    expect((await admin.credits.balance(teamId)).balance).toBe(9);

    const ledger = await admin.credits.transactions(teamId, { limit: 10 });
    expect(ledger.data.map((entry) => [entry.type, entry.amount])).toEqual([
      ['grant', 7],
      ['grant', 2],
    ]);

    const budget = await admin.credits.setBudgetMode(teamId, { budget_mode: 'consumption_usd', credits_per_dollar: 2.5 });
    expect(budget).toMatchObject({ budget_mode: 'consumption_usd', credits_per_dollar: '2.500000' });
    expect((await admin.teams.get(teamId)).budget_mode).toBe('consumption_usd');
  });

  it('model prices: set and list', async () => {
    const price = await admin.modelPrices.set('sim-tiny-sdk', { input_usd_per_million: 0.25, output_usd_per_million: '1.125' });
    expect(price).toMatchObject({ model_name: 'sim-tiny-sdk', input_usd_per_million: '0.250000', output_usd_per_million: '1.125000' });
    const listed = await admin.modelPrices.list();
    expect(listed.data.find((p) => p.model_name === 'sim-tiny-sdk')).toEqual(price);
  });

  it('admin users: create, log in without a key, and use the JWT as the apiKey', async () => {
    expect(await admin.adminUsers.me()).toEqual({ kind: 'master_key', admin_user: null });
    const email = `${uniqueId('ops')}@example.com`;
    const user = await admin.adminUsers.create({ email, password: 'correct horse battery' });
    expect(user).toMatchObject({ email, last_login_at: null });

    const anonymous = new AdminClient({ baseUrl: app.url });
    expect(await rejection(anonymous.adminUsers.login({ email, password: 'wrong password!' }))).toBeInstanceOf(AuthenticationError);
    const login = await anonymous.adminUsers.login({ email: email.toUpperCase(), password: 'correct horse battery' });
    expect(login).toMatchObject({ token_type: 'Bearer', expires_in: expect.any(Number) });

    const asUser = new AdminClient({ baseUrl: app.url, apiKey: login.access_token });
    const me = await asUser.adminUsers.me();
    expect(me).toMatchObject({ kind: 'admin_user', admin_user: { admin_user_id: user.admin_user_id, email } });
    const organizationId = uniqueId('org');
    expect((await asUser.organizations.create({ organization_id: organizationId, name: 'By JWT' })).organization_id).toBe(organizationId);
    expect(await rejection(anonymous.adminUsers.me())).toBeInstanceOf(AuthenticationError);
  });
});
