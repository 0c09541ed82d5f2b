import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedRequest, UpstreamScript } from '../../src/upstream/simulated-server.js';
import { balanceOf, expectErrorBody, getJob, waitForJobStatus } from '../helpers/api.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam, type TeamSetup } from '../helpers/factories.js';
import { query } from '../helpers/postgres.js';
import { expectSseHeaders, postStream, sseFrames } from '../helpers/sse.js';
import { upstreamRequest, weatherToolScript } from '../helpers/upstream.js';

/**
 * The queue API over HTTP, end to end: a call submitted with `POST /api/llm/complete` runs server-side at once,
 * whether or not anyone is attached; readers attach (late or live, on this instance or another one on the same
 * database) with `POST /api/llm/queue/stream`, and `POST /api/llm/queue/cancel` aborts the upstream request
 * wherever it runs. The scriptable simulated upstream makes calls slow enough to attach to or cancel mid-way.
 */

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app?.close());

// ---------------------------------------------------------------------------------------------------------
// helpers

const messages = (text = 'Say something') => [{ role: 'user', content: text }];

/** A reply of `parts`, each sent `delayMs` after the previous one. */
const slowScript = (parts: string[], delayMs: number): UpstreamScript => ({
  steps: parts.map((text) => ({ type: 'content' as const, text, delayMs })),
  usage: { prompt_tokens: 10, completion_tokens: parts.length },
});

const submit = (setup: TeamSetup, body: Record<string, unknown> = {}, target = app) =>
  target.request('POST', '/api/llm/complete', {
    token: setup.key,
    body: { model: setup.group, messages: messages(), stream: true, ...body },
  });

async function submitOk(setup: TeamSetup, body: Record<string, unknown> = {}, target = app): Promise<string> {
  const response = await submit(setup, body, target);
  expect(response.status, JSON.stringify(response.body)).toBe(202);
  expect(response.body).toEqual({ data: { queueId: expect.stringMatching(/^q_[a-z0-9]{21}$/), status: 'queued' } });
  return response.body.data.queueId as string;
}

const getItem = (setup: TeamSetup, queueId: string, target = app) => target.request('GET', `/api/llm/queue/${queueId}`, { token: setup.key });

async function waitForStatus(setup: TeamSetup, queueId: string, wanted: string[], target = app, timeoutMs = 15_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await getItem(setup, queueId, target);
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    if (wanted.includes(response.body.status)) return response.body;
    if (Date.now() > deadline) throw new Error(`queue item ${queueId} is still ${response.body.status} after ${timeoutMs} ms`);
    await sleep(25);
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// --- SSE ---------------------------------------------------------------------------------------------------

interface SseEvent {
  event: string;
  data: any;
}

/** Every event as soon as its frame is complete; `:` comment lines (keepalive) carry none. */
async function* sseEvents(response: Response): AsyncGenerator<SseEvent> {
  for await (const frame of sseFrames(response)) {
    if (frame.data !== null) yield { event: frame.event ?? 'message', data: JSON.parse(frame.data) };
  }
}

/** One attached reader: events are read one at a time, so a test can act between them. */
class Attached {
  readonly events: SseEvent[] = [];
  private readonly iterator: AsyncGenerator<SseEvent>;
  private ended = false;

  constructor(readonly response: Response) {
    this.iterator = sseEvents(response);
  }

  async next(): Promise<SseEvent | undefined> {
    if (this.ended) return undefined;
    const result = await this.iterator.next();
    if (result.done) {
      this.ended = true;
      return undefined;
    }
    this.events.push(result.value);
    return result.value;
  }

  /** Reads until an event matches; fails if the stream ends first. */
  async until(predicate: (event: SseEvent) => boolean, what = 'a matching event'): Promise<SseEvent> {
    for (;;) {
      const event = await this.next();
      if (!event) throw new Error(`the stream ended before ${what}: ${JSON.stringify(this.events)}`);
      if (predicate(event)) return event;
    }
  }

  /** Reads to the end of the stream and returns every event. */
  async rest(timeoutMs = 15_000): Promise<SseEvent[]> {
    await withTimeout(
      (async () => {
        while (await this.next());
      })(),
      timeoutMs,
      'the end of the stream',
    );
    return this.events;
  }

  get done(): boolean {
    return this.ended;
  }
}

async function attach(setup: TeamSetup, queueId: string, target = app): Promise<Attached> {
  const response = await postStream(target, '/api/llm/queue/stream', setup.key, { queueId });
  expectSseHeaders(response.headers, response.status);
  return new Attached(response);
}

/** Submits a call the upstream answers with `script`, attaches once its upstream request arrived and reads the start event. */
async function submitAndAttach(setup: TeamSetup, script: UpstreamScript): Promise<{ queueId: string; upstream: RecordedRequest; reader: Attached }> {
  const before = app.upstream.requests.length;
  app.upstream.enqueue(script);
  const queueId = await submitOk(setup);
  const upstream = await upstreamRequest(app, before);
  const reader = await attach(setup, queueId);
  expect(await reader.next()).toEqual({ event: 'start', data: { queueId } });
  return { queueId, upstream, reader };
}

const chunksOf = (events: SseEvent[]) => events.filter((event) => event.event === 'chunk').map((event) => event.data);
const textOf = (events: SseEvent[]) => chunksOf(events).map((chunk) => chunk.delta).join('');
const contentDeltas = (events: SseEvent[]) => chunksOf(events).flatMap((chunk) => (chunk.delta ? [chunk.delta] : []));
const isContent = (text: string) => (event: SseEvent) => event.event === 'chunk' && event.data.delta === text;

/** start {queueId}, then only chunk events, the last one finishing with `finishReason`, then done {}. */
function expectCompleteStream(events: SseEvent[], queueId: string, parts: string[], finishReason = 'stop') {
  const dump = JSON.stringify(events);
  expect(events[0], dump).toEqual({ event: 'start', data: { queueId } });
  expect(events.at(-1), dump).toEqual({ event: 'done', data: {} });
  const middle = events.slice(1, -1);
  expect(middle.length, dump).toBeGreaterThan(0);
  for (const event of middle) {
    expect(event.event, dump).toBe('chunk');
    expect(typeof event.data.delta, dump).toBe('string');
    expect(Object.keys(event.data).every((key) => ['delta', 'finishReason', 'toolCallDeltas'].includes(key)), dump).toBe(true);
  }
  const chunks = middle.map((event) => event.data);
  expect(contentDeltas(events), dump).toEqual(parts.filter((part) => part !== ''));
  expect(textOf(events), dump).toBe(parts.join(''));
  expect(chunks.at(-1).finishReason, dump).toBe(finishReason);
  expect(chunks.slice(0, -1).every((chunk) => chunk.finishReason === null), dump).toBe(true);
}

/** Reads both readers to the end: each gets the complete stream of `parts`, and the second the same events as the first. */
async function expectSameCompleteStreams(first: Attached, second: Attached, queueId: string, parts: string[]) {
  const [firstEvents, secondEvents] = await Promise.all([first.rest(), second.rest()]);
  expectCompleteStream(firstEvents, queueId, parts);
  expectCompleteStream(secondEvents, queueId, parts);
  expect(secondEvents).toEqual(firstEvents);
}

/** start, then whatever chunks were produced, then an error event and done; nothing after done. */
function expectErrorThenDone(events: SseEvent[], queueId: string) {
  const dump = JSON.stringify(events);
  expect(events[0], dump).toEqual({ event: 'start', data: { queueId } });
  expect(events.at(-1), dump).toEqual({ event: 'done', data: {} });
  expect(events.at(-2)?.event, dump).toBe('error');
  expect(events.at(-2)?.data.error, dump).toMatchObject({ type: expect.any(String), code: expect.any(String), message: expect.any(String) });
  expect(events.filter((event) => event.event === 'done'), dump).toHaveLength(1);
  expect(events.filter((event) => event.event === 'error'), dump).toHaveLength(1);
  expect(chunksOf(events).some((chunk) => chunk.finishReason === 'stop'), dump).toBe(false);
  return events.at(-2)!.data.error as { type: string; code: string; message: string };
}

const PARTS = ['Queued ', 'calls ', 'run ', 'on ', 'the ', 'server.'];

// ---------------------------------------------------------------------------------------------------------

describe('submit and run server-side', () => {
  it('answers 202 with a queueId before the model answers, runs the call with nobody attached, and charges one credit', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const before = app.upstream.requests.length;
    app.upstream.enqueue(slowScript(PARTS, 150));

    const queueId = await submitOk(setup, { messages: messages('Tell me about queues'), temperature: 0.2 });
    // The submit is answered while the upstream request is still open (or not even started).
    expect(app.upstream.requests.slice(before).every((request) => request.finishedAt === undefined && request.closedAt === undefined)).toBe(true);
    const submitted = await getItem(setup, queueId);
    expect(submitted.status).toBe(200);
    expect(['queued', 'processing']).toContain(submitted.body.status);
    expect(submitted.body).toMatchObject({ queueId, model: setup.group, jobId: expect.stringMatching(/^job_[a-z0-9]{21}$/), finishedAt: null });

    // Nobody attaches: the call reaches the upstream and runs to the end on its own.
    const upstream = await upstreamRequest(app, before);
    expect(upstream.finishedAt).toBeUndefined();
    expect(upstream.body).toMatchObject({ model: 'sim-small', stream: true, temperature: 0.2, messages: messages('Tell me about queues') });
    for (const own of ['job_id', 'provider', 'queueId']) expect(upstream.body).not.toHaveProperty(own);
    const running = await waitForStatus(setup, queueId, ['processing', 'completed']);
    expect(running.startedAt).toEqual(expect.any(String));

    const item = await waitForStatus(setup, queueId, ['completed']);
    expect(item).toMatchObject({
      queueId,
      status: 'completed',
      model: setup.group,
      callId: expect.stringMatching(/^call_[a-z0-9]{21}$/),
      error: null,
      startedAt: expect.any(String),
      finishedAt: expect.any(String),
      result: { content: PARTS.join(''), finishReason: 'stop', toolCalls: null, totalTokens: 10 + PARTS.length },
    });
    expect(Date.parse(item.finishedAt)).toBeGreaterThanOrEqual(Date.parse(item.startedAt));
    expect(app.upstream.requests).toHaveLength(before + 1);
    expect(upstream.abortedByClient).toBe(false);

    // The job it created for the call is completed and charged one credit.
    const job = await waitForJobStatus(app, setup, item.jobId, 'completed');
    expect(job).toMatchObject({ team_id: setup.teamId, costs: { total_calls: 1, successful_calls: 1, credits_charged: 1, credit_applied: true } });
    expect(job.calls).toHaveLength(1);
    expect(job.calls[0]).toMatchObject({ call_id: item.callId, status: 'success', streamed: true, response_content: PARTS.join('') });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 9, held: 0, credits_remaining: 9 });
  });

  it('streams live to a reader attached at once: start, chunk events as they are produced, done', async () => {
    const setup = await setupTeam(app);
    const before = app.upstream.requests.length;
    app.upstream.enqueue(slowScript(PARTS, 150));
    const queueId = await submitOk(setup);
    const reader = await attach(setup, queueId);

    expect(await reader.next()).toEqual({ event: 'start', data: { queueId } });
    await reader.until(isContent(PARTS[0]!), 'the first content chunk');
    // Live: the first words are in hand while the upstream is still producing the rest.
    expect((await upstreamRequest(app, before)).finishedAt).toBeUndefined();
    const events = await reader.rest();
    expectCompleteStream(events, queueId, PARTS);

    const item = await waitForStatus(setup, queueId, ['completed']);
    expect(item.result.content).toBe(PARTS.join(''));
  });
});

describe('attaching late, after the end, and several readers', () => {
  it('replays everything to a reader attaching half-way through, then goes on live, in order and without duplicates', async () => {
    const setup = await setupTeam(app);
    const before = app.upstream.requests.length;
    app.upstream.enqueue(slowScript(PARTS, 200));
    const queueId = await submitOk(setup);
    const early = await attach(setup, queueId);
    await early.until(isContent(PARTS[2]!), 'half of the reply');

    const late = await attach(setup, queueId);
    await late.until(isContent(PARTS[2]!), 'the replayed half');
    // The replay of the first half arrived while the upstream was still producing the second half.
    expect((await upstreamRequest(app, before)).finishedAt).toBeUndefined();
    expect(contentDeltas(late.events)).toEqual(PARTS.slice(0, 3));

    await expectSameCompleteStreams(early, late, queueId, PARTS);
  });

  it('replays the whole call, then done, to a reader attaching after it completed', async () => {
    const setup = await setupTeam(app);
    app.upstream.enqueue(slowScript(['Already ', 'finished.'], 20));
    const queueId = await submitOk(setup);
    await waitForStatus(setup, queueId, ['completed']);

    const reader = await attach(setup, queueId);
    const events = await reader.rest();
    expectCompleteStream(events, queueId, ['Already ', 'finished.']);
    // A second late reader gets the same again.
    expect(await (await attach(setup, queueId)).rest()).toEqual(events);
  });

  it('gives two readers attached at the same time the whole stream each', async () => {
    const setup = await setupTeam(app);
    app.upstream.enqueue(slowScript(PARTS, 100));
    const queueId = await submitOk(setup);
    const [a, b] = await Promise.all([attach(setup, queueId), attach(setup, queueId)]);
    await expectSameCompleteStreams(a, b, queueId, PARTS);
  });

  it('a reader that leaves does not stop the call', async () => {
    const setup = await setupTeam(app);
    const before = app.upstream.requests.length;
    app.upstream.enqueue(slowScript(PARTS, 100));
    const queueId = await submitOk(setup);
    const controller = new AbortController();
    const response = await postStream(app, '/api/llm/queue/stream', setup.key, { queueId }, { signal: controller.signal });
    const reader = new Attached(response);
    await reader.until(isContent(PARTS[0]!), 'the first content chunk');
    controller.abort();
    await reader.next().catch(() => undefined);

    const item = await waitForStatus(setup, queueId, ['completed', 'cancelled', 'error']);
    expect(item.status).toBe('completed');
    expect(item.result.content).toBe(PARTS.join(''));
    expect((await upstreamRequest(app, before)).abortedByClient).toBe(false);
  });
});

describe('tool calls', () => {
  it('passes tool-call deltas on chunk events and records the reassembled tool call', async () => {
    const setup = await setupTeam(app);
    const before = app.upstream.requests.length;
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    app.upstream.enqueue(weatherToolScript(50));
    const queueId = await submitOk(setup, { messages: messages('Weather in Paris?'), tools, tool_choice: 'auto' });
    const events = await (await attach(setup, queueId)).rest();
    const dump = JSON.stringify(events);
    expect(events[0]).toEqual({ event: 'start', data: { queueId } });
    expect(events.at(-1)).toEqual({ event: 'done', data: {} });
    expect(events.some((event) => event.event === 'error'), dump).toBe(false);

    const chunks = chunksOf(events);
    const deltas = chunks.flatMap((chunk) => chunk.toolCallDeltas ?? []);
    expect(deltas, dump).toHaveLength(3);
    expect(deltas[0]).toMatchObject({ index: 0, id: 'call_weather_1', type: 'function', function: { name: 'get_weather' } });
    expect(deltas.map((delta: { function?: { arguments?: string } }) => delta.function?.arguments ?? '').join('')).toBe('{"city":"Paris"}');
    expect(chunks.at(-1).finishReason, dump).toBe('tool_calls');
    expect(textOf(events)).toBe('');
    expect(app.upstream.requests[before]!.body).toMatchObject({ tools, tool_choice: 'auto' });

    const item = await waitForStatus(setup, queueId, ['completed']);
    expect(item.result).toMatchObject({
      content: null,
      finishReason: 'tool_calls',
      toolCalls: [{ id: 'call_weather_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
    });
    // A late reader gets the tool call replayed too.
    const replay = chunksOf(await (await attach(setup, queueId)).rest());
    expect(replay.flatMap((chunk) => chunk.toolCallDeltas ?? []).map((d: { function?: { arguments?: string } }) => d.function?.arguments ?? '').join('')).toBe(
      '{"city":"Paris"}',
    );
  });
});

describe('cancel', () => {
  /**
   * Cancels the item `reader` is attached to: the upstream request is aborted at once, the reader gets an error and
   * done, and the job ends cancelled with nothing charged, so the team still has `credits`.
   */
  async function cancelAttached(setup: TeamSetup, queueId: string, upstream: RecordedRequest, reader: Attached, credits: number) {
    const cancelled = await app.request('POST', '/api/llm/queue/cancel', { token: setup.key, body: { queueId } });
    expect(cancelled.body).toEqual({ data: { queueId, status: 'cancelled' } });
    expect((await app.upstream.waitForClosed(upstream.id, 1_000)).abortedByClient).toBe(true);
    expectErrorThenDone(await reader.rest(5_000), queueId);
    const item = await waitForStatus(setup, queueId, ['cancelled']);
    const job = await waitForJobStatus(app, setup, item.jobId, 'cancelled');
    expect(job.costs).toMatchObject({ credits_charged: 0, credit_applied: false });
    expect(job.calls[0]).toMatchObject({ status: 'cancelled' });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: credits, held: 0 });
  }

  it('aborts the upstream request at once, ends the reader with error and done, and charges the output delivered before it', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const before = app.upstream.requests.length;
    app.upstream.enqueue(slowScript(['Long ', 'answer ', 'that ', 'never ', 'gets ', 'to ', 'its ', 'end.'], 300));
    const queueId = await submitOk(setup);
    const reader = await attach(setup, queueId);
    await reader.until(isContent('Long '), 'the first content chunk');
    const upstream = await upstreamRequest(app, before);
    expect(upstream.closedAt).toBeUndefined();

    const cancelled = await app.request('POST', '/api/llm/queue/cancel', { token: setup.key, body: { queueId } });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body).toEqual({ data: { queueId, status: 'cancelled' } });
    const closed = await app.upstream.waitForClosed(upstream.id, 1_000);
    expect(closed.abortedByClient).toBe(true);
    expect(closed.finishedAt).toBeUndefined();

    // The attached reader is told, and its stream ends.
    const events = await reader.rest(5_000);
    expectErrorThenDone(events, queueId);
    expect(contentDeltas(events).join('')).not.toContain('end.');

    const item = await waitForStatus(setup, queueId, ['cancelled']);
    expect(item).toMatchObject({ status: 'cancelled', finishedAt: expect.any(String) });
    const job = await waitForJobStatus(app, setup, item.jobId, 'cancelled');
    expect(job.costs).toMatchObject({ credits_charged: 1, credit_applied: true });
    expect(job.calls[0]).toMatchObject({ status: 'cancelled', delivered: true });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 9, held: 0, credits_remaining: 9 });
    // It stays cancelled; cancelling again answers the same and nothing else reaches the upstream.
    const again = await app.request('POST', '/api/llm/queue/cancel', { token: setup.key, body: { queueId } });
    expect(again.body).toEqual({ data: { queueId, status: 'cancelled' } });
    expect((await getItem(setup, queueId)).body.status).toBe('cancelled');
    expect(app.upstream.requests).toHaveLength(before + 1);
  });

  it('cancels a call whose upstream has not answered yet', async () => {
    const setup = await setupTeam(app, { credits: 3 });
    const { queueId, upstream, reader } = await submitAndAttach(setup, { headersDelayMs: 20_000, steps: [{ type: 'content', text: 'too late' }] });

    await cancelAttached(setup, queueId, upstream, reader, 3);
  });

  it('cancels a call whose upstream sent its headers but no chunk yet: cancelled, not an empty success', async () => {
    const setup = await setupTeam(app, { credits: 3 });
    const { queueId, upstream, reader } = await submitAndAttach(setup, { steps: [{ type: 'hang' }] });
    await waitForStatus(setup, queueId, ['processing']);

    await cancelAttached(setup, queueId, upstream, reader, 3);
  });

  it('leaves a completed item completed', async () => {
    const setup = await setupTeam(app, { credits: 5 });
    app.upstream.enqueue(slowScript(['done'], 0));
    const queueId = await submitOk(setup);
    const item = await waitForStatus(setup, queueId, ['completed']);
    const cancelled = await app.request('POST', '/api/llm/queue/cancel', { token: setup.key, body: { queueId } });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body).toEqual({ data: { queueId, status: 'completed' } });
    expect(await getItem(setup, queueId).then((response) => response.body)).toMatchObject({ status: 'completed', finishedAt: item.finishedAt, error: null });
    expect((await getJob(app, setup, item.jobId)).status).toBe('completed');
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 4, held: 0 });
  });
});

describe('two instances on one database', () => {
  let other: TestApp;
  beforeAll(async () => {
    other = await createTestApp({ DATABASE_URL: app.databaseUrl });
  });
  afterAll(() => other?.close());

  it('a cancel on instance B reaches a call on instance A still waiting for its upstream (LISTEN/NOTIFY)', async () => {
    const setup = await setupTeam(app, { credits: 4 });
    const { queueId, upstream, reader } = await submitAndAttach(setup, { headersDelayMs: 20_000, steps: [{ type: 'content', text: 'too late' }] });

    const cancelled = await other.request('POST', '/api/llm/queue/cancel', { token: setup.key, body: { queueId } });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body).toEqual({ data: { queueId, status: 'cancelled' } });
    expect((await app.upstream.waitForClosed(upstream.id, 1_000)).abortedByClient).toBe(true);
    expectErrorThenDone(await reader.rest(5_000), queueId);
    const item = await waitForStatus(setup, queueId, ['cancelled'], other);
    const job = await waitForJobStatus(other, setup, item.jobId, 'cancelled');
    expect(job.costs).toMatchObject({ credits_charged: 0, credit_applied: false });
    expect(await balanceOf(other, setup.teamId)).toMatchObject({ balance: 4, held: 0 });
  });

  it('a cancel on instance B aborts the upstream request of a call streaming on instance A (LISTEN/NOTIFY)', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const before = app.upstream.requests.length;
    const otherBefore = other.upstream.requests.length;
    app.upstream.enqueue(slowScript(['Running ', 'on ', 'instance ', 'A ', 'for ', 'a ', 'while.'], 300));
    const queueId = await submitOk(setup);
    const reader = await attach(setup, queueId);
    await reader.until(isContent('Running '), 'the first content chunk');
    const upstream = await upstreamRequest(app, before);

    // Instance B sees the item through the database...
    const seen = await getItem(setup, queueId, other);
    expect(seen.status).toBe(200);
    expect(seen.body).toMatchObject({ queueId, status: 'processing' });
    // ...and cancels it; the request on A's upstream is aborted within a second.
    const cancelled = await other.request('POST', '/api/llm/queue/cancel', { token: setup.key, body: { queueId } });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body).toEqual({ data: { queueId, status: 'cancelled' } });
    const closed = await app.upstream.waitForClosed(upstream.id, 1_000);
    expect(closed.abortedByClient).toBe(true);

    expectErrorThenDone(await reader.rest(5_000), queueId);
    for (const target of [app, other]) expect((await waitForStatus(setup, queueId, ['cancelled'], target)).status).toBe('cancelled');
    const job = await waitForJobStatus(app, setup, (await getItem(setup, queueId)).body.jobId, 'cancelled');
    expect(job.costs).toMatchObject({ credits_charged: 1, credit_applied: true });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 9, held: 0 });
    expect(other.upstream.requests).toHaveLength(otherBefore);
  });

  it('a reader on instance B follows a call running on instance A and gets it replayed when it ends', async () => {
    const setup = await setupTeam(app);
    const otherBefore = other.upstream.requests.length;
    app.upstream.enqueue(slowScript(PARTS, 150));
    const queueId = await submitOk(setup);
    await waitForStatus(setup, queueId, ['processing']);

    const remote = await attach(setup, queueId, other);
    expect(await remote.next()).toEqual({ event: 'start', data: { queueId } });
    const events = await remote.rest();
    // B only answers once A's call ended.
    expect((await getItem(setup, queueId)).body.status).toBe('completed');
    expectCompleteStream(events, queueId, [PARTS.join('')]);
    expect(textOf(events)).toBe(PARTS.join(''));

    // Attaching on B after the end replays it from the database too.
    const after = await (await attach(setup, queueId, other)).rest();
    expect(textOf(after)).toBe(PARTS.join(''));
    expect(chunksOf(after).at(-1).finishReason).toBe('stop');
    expect(after.at(-1)).toEqual({ event: 'done', data: {} });
    expect(other.upstream.requests).toHaveLength(otherBefore);
  });

  it('a reader on instance B of a call on A that gets cancelled receives an error, then done', async () => {
    const setup = await setupTeam(app);
    const before = app.upstream.requests.length;
    app.upstream.enqueue(slowScript(['Partial ', 'remote ', 'answer ', 'cut ', 'short ', 'here.'], 300));
    const queueId = await submitOk(setup);
    const local = await attach(setup, queueId);
    await local.until(isContent('Partial '), 'the first content chunk');
    const remote = await attach(setup, queueId, other);
    expect(await remote.next()).toEqual({ event: 'start', data: { queueId } });

    const cancelled = await other.request('POST', '/api/llm/queue/cancel', { token: setup.key, body: { queueId } });
    expect(cancelled.body).toEqual({ data: { queueId, status: 'cancelled' } });
    // B follows the item through the database: once it is cancelled, B's reader ends with the error too.
    const remoteEvents = await remote.rest(5_000);
    expectErrorThenDone(remoteEvents, queueId);
    expect(contentDeltas(remoteEvents).join('')).not.toContain('here.');
    expectErrorThenDone(await local.rest(5_000), queueId);
    expect((await app.upstream.waitForClosed((await upstreamRequest(app, before)).id, 1_000)).abortedByClient).toBe(true);
  });
});

describe('running inside a given job', () => {
  it('runs the call in an open job of the team and leaves the job open', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const created = await app.request('POST', '/api/jobs/create', { token: setup.key, body: { team_id: setup.teamId, job_type: 'research' } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const jobId: string = created.body.job_id;
    app.upstream.enqueue(slowScript(['Inside ', 'a ', 'job.'], 20));

    const queueId = await submitOk(setup, { job_id: jobId });
    const item = await waitForStatus(setup, queueId, ['completed']);
    expect(item).toMatchObject({ jobId, result: { content: 'Inside a job.' } });
    // The queue does not complete a job it did not create: still open, its hold in place, nothing charged.
    const job = await getJob(app, setup, jobId);
    expect(job).toMatchObject({ status: 'pending', job_type: 'research', costs: { total_calls: 1, credits_charged: 0 } });
    expect(job.calls[0]).toMatchObject({ call_id: item.callId, status: 'success', response_content: 'Inside a job.' });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 10, held: 1 });
    expect(await query(app, 'SELECT id FROM jobs WHERE team_id = $1', [setup.teamId])).toHaveLength(1);

    // The job takes more calls, and completing it charges its one credit.
    app.upstream.enqueue(slowScript(['Second.'], 0));
    const second = await submitOk(setup, { job_id: jobId });
    await waitForStatus(setup, second, ['completed']);
    const completed = await app.request('POST', `/api/jobs/${jobId}/complete`, { token: setup.key, body: { status: 'completed' } });
    expect(completed.status, JSON.stringify(completed.body)).toBe(200);
    expect(completed.body.costs).toMatchObject({ total_calls: 2, successful_calls: 2, credits_charged: 1 });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 9, held: 0 });
  });

  it("refuses another team's job with 404 and a closed job with 409, before anything reaches the upstream", async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const stranger = await setupTeam(app, { credits: 10 });
    const before = app.upstream.requests.length;
    const strangerJob = await app.request('POST', '/api/jobs/create', { token: stranger.key, body: { team_id: stranger.teamId, job_type: 'x' } });
    expect(strangerJob.status).toBe(201);
    expectErrorBody(await submit(setup, { job_id: strangerJob.body.job_id }), 404);
    expectErrorBody(await submit(setup, { job_id: `job_${'a'.repeat(21)}` }), 404);
    expect((await getJob(app, stranger, strangerJob.body.job_id)).calls).toEqual([]);

    const closed = await app.request('POST', '/api/jobs/create', { token: setup.key, body: { team_id: setup.teamId, job_type: 'x' } });
    const failed = await app.request('POST', `/api/jobs/${closed.body.job_id}/complete`, { token: setup.key, body: { status: 'failed' } });
    expect(failed.status).toBe(200);
    expectErrorBody(await submit(setup, { job_id: closed.body.job_id }), 409, 'job_not_open');
    expectErrorBody(await submit(setup, { job_id: 'not-a-job' }), 400);

    expect(app.upstream.requests).toHaveLength(before);
    expect(await query(app, 'SELECT id FROM queue_requests WHERE team_id = $1', [setup.teamId])).toEqual([]);
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 10, held: 0 });
  });
});

describe('errors', () => {
  it('refuses a team without credits with 402 and sends nothing upstream', async () => {
    const setup = await setupTeam(app, { credits: 0 });
    const before = app.upstream.requests.length;
    const refused = await submit(setup);
    expect(expectErrorBody(refused, 402, 'insufficient_credits').type).toBe('billing_error');
    expect(app.upstream.requests).toHaveLength(before);
    expect(await query(app, 'SELECT id FROM queue_requests WHERE team_id = $1', [setup.teamId])).toEqual([]);
    expect(await query(app, 'SELECT id FROM jobs WHERE team_id = $1', [setup.teamId])).toEqual([]);
  });

  it("answers 404 for an unknown queueId and another team's, on stream, cancel and get; 400 for a malformed one", async () => {
    const owner = await setupTeam(app);
    const stranger = await setupTeam(app);
    app.upstream.enqueue(slowScript(['Mine ', 'only.'], 100));
    const queueId = await submitOk(owner);

    for (const [who, id] of [
      [stranger, queueId],
      [owner, `q_${'a'.repeat(21)}`],
    ] as const) {
      expectErrorBody(await app.request('POST', '/api/llm/queue/stream', { token: who.key, body: { queueId: id } }), 404);
      expectErrorBody(await app.request('POST', '/api/llm/queue/cancel', { token: who.key, body: { queueId: id } }), 404);
      expectErrorBody(await getItem(who, id), 404);
    }
    for (const bad of ['not-a-queue-id', 'q_SHORT', `q_${'A'.repeat(21)}`]) {
      expect(expectErrorBody(await app.request('POST', '/api/llm/queue/stream', { token: owner.key, body: { queueId: bad } }), 400).param).toBe('queueId');
      expect(expectErrorBody(await app.request('POST', '/api/llm/queue/cancel', { token: owner.key, body: { queueId: bad } }), 400).param).toBe('queueId');
      expect(expectErrorBody(await getItem(owner, bad), 400).param).toBe('queueId');
    }
    expectErrorBody(await app.request('POST', '/api/llm/queue/cancel', { token: owner.key, body: {} }), 400);
    expectErrorBody(await submit(owner, { messages: [] }), 400);

    // The stranger's cancel did nothing: the owner's call completes.
    const item = await waitForStatus(owner, queueId, ['completed', 'cancelled', 'error']);
    expect(item).toMatchObject({ status: 'completed', result: { content: 'Mine only.' } });
  });

  it('an upstream failing before the first byte ends the item in error: the reader gets error then done, nothing is charged', async () => {
    const setup = await setupTeam(app, { models: ['sim-small', 'sim-large'], credits: 5 });
    const before = app.upstream.requests.length;
    app.upstream.enqueue({ status: 500 }, { status: 500 });
    const queueId = await submitOk(setup);
    const reader = await attach(setup, queueId);
    const events = await reader.rest();
    expectErrorThenDone(events, queueId);
    expect(textOf(events)).toBe('');
    expect(app.upstream.requests.slice(before).map((request) => request.body.model)).toEqual(['sim-small', 'sim-large']);

    const item = await waitForStatus(setup, queueId, ['error']);
    expect(item).toMatchObject({ status: 'error', error: expect.any(String), finishedAt: expect.any(String) });
    const job = await waitForJobStatus(app, setup, item.jobId, 'failed');
    expect(job.costs).toMatchObject({ credits_charged: 0, credit_applied: false });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 5, held: 0, credits_remaining: 5 });
    // A reader attaching afterwards gets the same ending.
    expectErrorThenDone(await (await attach(setup, queueId)).rest(), queueId);
  });
});
