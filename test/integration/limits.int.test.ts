import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promptTokenBound } from '../../src/domain/billing/reservation.models.js';
import type { RecordedRequest, UpstreamScript } from '../../src/upstream/simulated-server.js';
import { expectErrorBody } from '../helpers/api.js';
import { createTestApp, type ApiResponse, type TestApp } from '../helpers/app.js';
import { setupTeam, uniqueId, type TeamSetup } from '../helpers/factories.js';
import { expectLedgerConsistent, ledgerSum } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { postRaw, postStream } from '../helpers/sse.js';
import { poll, sleep } from '../helpers/wait.js';

/**
 * Limits per team and per key, over HTTP: requests and tokens per minute (windows shared by every instance through
 * PostgreSQL, spent locally), concurrent jobs and calls (counted on the team's balance row). Over a limit a request
 * gets 429 in the contract's error shape with Retry-After, never reaches the upstream and moves no credits; answers
 * to a team with per-minute limits carry OpenAI's x-ratelimit headers.
 *
 * Per-minute windows are calendar minutes: each test uses teams of its own (each has its own windows) and, before
 * a burst that must fall in one window, waits for the next minute only if the current one is about to end.
 */

let app: TestApp;
/** A second instance on the same database. */
let other: TestApp;
beforeAll(async () => {
  app = await createTestApp();
  other = await createTestApp({ DATABASE_URL: app.databaseUrl });
});
afterAll(async () => {
  await other?.close();
  await app?.close();
});

// ---------------------------------------------------------------------------------------------------------------
// helpers

const messages = (text = 'Hello') => [{ role: 'user', content: text }];

/** Waits for the next minute if fewer than `needMs` are left of this one, so what follows stays in one window. */
async function roomInThisMinute(needMs = 8_000): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < needMs) await sleep(left + 50);
}

type Route = 'create-and-call' | 'create-and-call-stream' | 'v1' | 'v1-stream' | 'llm-call' | 'llm-call-stream';

const SUCCESS: Record<Route, number> = {
  'create-and-call': 201,
  'create-and-call-stream': 200,
  v1: 200,
  'v1-stream': 200,
  'llm-call': 200,
  'llm-call-stream': 200,
};

interface CallOptions {
  /** Another key of the team (default: the team's first). */
  key?: string;
  /** The job of an llm-call route. */
  jobId?: string;
  maxTokens?: number;
  text?: string;
  target?: TestApp;
}

/** What a model call sends: its path and body. */
function callRequest(team: TeamSetup, route: Route, options: CallOptions): { path: string; body: Record<string, unknown> } {
  const limit = options.maxTokens === undefined ? {} : { max_tokens: options.maxTokens };
  const chat = { messages: messages(options.text), ...limit };
  switch (route) {
    case 'create-and-call':
    case 'create-and-call-stream':
      return { path: `/api/jobs/${route}`, body: { team_id: team.teamId, job_type: 'limited', ...chat } };
    case 'v1':
    case 'v1-stream':
      return { path: '/v1/chat/completions', body: { model: team.group, ...chat, ...(route === 'v1-stream' && { stream: true }) } };
    case 'llm-call':
    case 'llm-call-stream':
      if (!options.jobId) throw new Error(`${route} needs a job`);
      return { path: `/api/jobs/${options.jobId}/${route}`, body: chat };
  }
}

/** A model call read to its end; a JSON answer is parsed (a stream's refusal is JSON too), a stream stays text. */
async function modelCall(team: TeamSetup, route: Route, options: CallOptions = {}): Promise<ApiResponse> {
  const target = options.target ?? app;
  const { path, body } = callRequest(team, route, options);
  const raw = await postRaw(target, path, options.key ?? team.key, body);
  return { status: raw.status, headers: raw.headers, body: raw.contentType.includes('json') ? JSON.parse(raw.text) : raw.text };
}

async function expectServed(team: TeamSetup, route: Route, options: CallOptions = {}): Promise<ApiResponse> {
  const response = await modelCall(team, route, options);
  expect(response.status, `${route}: ${JSON.stringify(response.body)}`).toBe(SUCCESS[route]);
  return response;
}

/** A 429 of that code in the contract's shape; with Retry-After when `retryAfter` is given as [min, max] seconds. */
function expectLimited(response: ApiResponse, code: string, retryAfter?: [number, number]) {
  const error = expectErrorBody(response, 429, code);
  expect(error.type).toBe('rate_limit_error');
  if (retryAfter) {
    const header = response.headers.get('retry-after');
    expect(header, 'Retry-After is whole seconds').toMatch(/^\d+$/);
    expect(Number(header)).toBeGreaterThanOrEqual(retryAfter[0]);
    expect(Number(header)).toBeLessThanOrEqual(retryAfter[1]);
  }
  return error;
}

/** OpenAI's rate limit headers of one kind, as numbers; the reset is OpenAI's `12.34s` and within the minute. */
function rateHeaders(response: { headers: Headers }, kind: 'requests' | 'tokens') {
  const limit = response.headers.get(`x-ratelimit-limit-${kind}`);
  const remaining = response.headers.get(`x-ratelimit-remaining-${kind}`);
  const reset = response.headers.get(`x-ratelimit-reset-${kind}`);
  if (limit === null && remaining === null && reset === null) return undefined;
  expect(reset).toMatch(/^\d+(\.\d+)?s$/);
  const resetSeconds = Number.parseFloat(reset!);
  expect(resetSeconds).toBeGreaterThanOrEqual(0);
  expect(resetSeconds).toBeLessThanOrEqual(60);
  return { limit: Number(limit), remaining: Number(remaining) };
}

async function createKey(team: TeamSetup, limits?: Record<string, number | null>, target = app): Promise<{ keyId: string; key: string }> {
  const response = await target.request('POST', `/api/teams/${team.teamId}/keys`, { body: { name: uniqueId('key'), ...(limits && { limits }) } });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return { keyId: response.body.key_id, key: response.body.virtual_key };
}

async function openJob(team: TeamSetup, key = team.key, target = app): Promise<ApiResponse> {
  return target.request('POST', '/api/jobs/create', { token: key, body: { team_id: team.teamId, job_type: 'limited' } });
}

async function openJobOk(team: TeamSetup, key = team.key, target = app): Promise<string> {
  const response = await openJob(team, key, target);
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body.job_id as string;
}

/** What a refused request must leave untouched: the upstream's requests, the team's ledger and its jobs. */
async function footprint(team: TeamSetup, targets: TestApp[] = [app]) {
  const jobs = await query(app, 'SELECT count(*)::int AS n FROM jobs WHERE team_id = $1', [team.teamId]);
  return {
    upstreamRequests: targets.reduce((sum, target) => sum + target.upstream.requests.length, 0),
    ledger: await ledgerSum(app, team.teamId, { entries: true }),
    jobs: jobs[0].n as number,
  };
}

async function counters(team: TeamSetup) {
  const [row] = await query(
    app,
    'SELECT open_jobs, calls_in_flight, key_open_jobs, key_calls_in_flight FROM credit_balances WHERE team_id = $1',
    [team.teamId],
  );
  return row as { open_jobs: number; calls_in_flight: number; key_open_jobs: Record<string, number>; key_calls_in_flight: Record<string, number> };
}

/** Upstream requests whose last user message is `hold` stream one chunk and then hang until their client leaves. */
const HOLD = 'hold';
const holdingResponder = (request: RecordedRequest): UpstreamScript => {
  const last = request.body?.messages?.at(-1)?.content;
  return last === HOLD ? { steps: [{ type: 'content', text: 'x' }, { type: 'hang' }], usage: 'none' } : {};
};

interface HeldStream {
  response: Response;
  leave(): void;
}

/** A stream that stays open (its upstream hangs after one chunk) until `leave()`; resolves once it is flowing. */
async function holdStream(team: TeamSetup, route: 'create-and-call-stream' | 'v1-stream' | 'llm-call-stream', options: CallOptions = {}): Promise<HeldStream> {
  const target = options.target ?? app;
  const { path, body } = callRequest(team, route, { ...options, text: HOLD });
  const controller = new AbortController();
  const response = await postStream(target, path, options.key ?? team.key, body, { signal: controller.signal });
  expect(response.status, response.status === 200 ? '' : await response.text()).toBe(200);
  const reader = response.body!.getReader();
  await reader.read(); // its first bytes: the call is in flight
  return { response, leave: () => controller.abort() };
}

/** Waits until none of the team's calls is in flight any more (their records written, counters back). */
async function untilNoCallInFlight(team: TeamSetup): Promise<void> {
  await poll(async () => ((await counters(team)).calls_in_flight === 0 ? true : undefined), 5_000, `the calls of ${team.teamId} to end`);
}

// ---------------------------------------------------------------------------------------------------------------

describe('requests per minute', () => {
  it('team requests_per_minute 5: five model calls on any route, then 429 requests_per_minute_limit on every route; refused calls reach no upstream and move no credits; every answer carries the x-ratelimit headers', async () => {
    const team = await setupTeam(app, { credits: 20, team: { limits: { requests_per_minute: 5 } } });
    await roomInThisMinute();

    // Opening a job or reading it is not a model call.
    const jobId = await openJobOk(team);
    const read = await app.request('GET', `/api/jobs/${jobId}`, { token: team.key });
    expect(read.status).toBe(200);
    expect(rateHeaders(read, 'requests')).toEqual({ limit: 5, remaining: 5 });
    expect(rateHeaders(read, 'tokens'), 'no tokens_per_minute: no tokens headers').toBeUndefined();

    let remaining = 5;
    for (const route of ['create-and-call', 'create-and-call-stream', 'v1', 'llm-call'] as const) {
      const response = await expectServed(team, route, { jobId });
      remaining -= 1;
      expect(rateHeaders(response, 'requests'), route).toEqual({ limit: 5, remaining });
    }
    // A queued call is a model call too: the fifth.
    const submitted = await app.request('POST', '/api/llm/complete', { token: team.key, body: { model: team.group, messages: messages() } });
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(202);
    expect(rateHeaders(submitted, 'requests')?.limit).toBe(5);
    const queueId = submitted.body.data.queueId as string;
    const item = await poll(
      async () => {
        const got = await app.request('GET', `/api/llm/queue/${queueId}`, { token: team.key });
        return ['completed', 'error', 'cancelled'].includes(got.body.status) ? got : undefined;
      },
      5_000,
      'the queued call to end',
    );
    expect(item.body.status, JSON.stringify(item.body)).toBe('completed');
    expect(rateHeaders(item, 'requests')).toEqual({ limit: 5, remaining: 0 });

    const before = await footprint(team);
    for (const route of ['create-and-call', 'create-and-call-stream', 'v1', 'v1-stream', 'llm-call', 'llm-call-stream'] as const) {
      const refused = await modelCall(team, route, { jobId });
      const error = expectLimited(refused, 'requests_per_minute_limit', [1, 60]);
      expect(error.message).toMatch(/team/);
      expect(rateHeaders(refused, 'requests'), route).toEqual({ limit: 5, remaining: 0 });
    }
    expect(await footprint(team), 'refused calls reached no upstream, opened no job and wrote no ledger entry').toEqual(before);

    // A queued call submitted now does not reach the upstream either (refused when it is submitted, or when it runs).
    const late = await app.request('POST', '/api/llm/complete', { token: team.key, body: { model: team.group, messages: messages() } });
    if (late.status === 202) {
      const ended = await poll(
        async () => {
          const got = await app.request('GET', `/api/llm/queue/${late.body.data.queueId}`, { token: team.key });
          return ['completed', 'error', 'cancelled'].includes(got.body.status) ? got.body : undefined;
        },
        5_000,
        'the refused queued call to end',
      );
      expect(ended.status).toBe('error');
      expect(ended.error).toMatch(/requests_per_minute/);
    } else {
      expectLimited(late, 'requests_per_minute_limit', [1, 60]);
    }
    const after = await footprint(team);
    expect(after.upstreamRequests, 'a refused queued call never reached the upstream').toBe(before.upstreamRequests);
    expect({ balance: after.ledger.balance, held: after.ledger.held }, 'a refused queued call moved no credits').toEqual({
      balance: before.ledger.balance,
      held: before.ledger.held,
    });

    // Reads still work, and still say how the window stands.
    const reread = await app.request('GET', `/api/jobs/${jobId}`, { token: team.key });
    expect(reread.status).toBe(200);
    expect(rateHeaders(reread, 'requests')).toEqual({ limit: 5, remaining: 0 });
    await expectLedgerConsistent(app, team.teamId, { jobs: true });
  });

  it("a key's requests_per_minute is its own, and every key's calls count against the team's too", async () => {
    const team = await setupTeam(app, { credits: 20, team: { limits: { requests_per_minute: 4 } } });
    const limitedKey = await createKey(team, { requests_per_minute: 2 });
    const keys = await app.request('GET', `/api/teams/${team.teamId}/keys`);
    expect(keys.body.data.find((key: { key_id: string }) => key.key_id === limitedKey.keyId).limits).toEqual({
      requests_per_minute: 2,
      tokens_per_minute: null,
      max_concurrent_jobs: null,
      max_concurrent_calls: null,
    });
    await roomInThisMinute();

    // The limited key: its two calls (the tighter limit is the key's), then 429 for that key.
    expect(rateHeaders(await expectServed(team, 'v1', { key: limitedKey.key }), 'requests')).toEqual({ limit: 2, remaining: 1 });
    expect(rateHeaders(await expectServed(team, 'create-and-call', { key: limitedKey.key }), 'requests')).toEqual({ limit: 2, remaining: 0 });
    const before = await footprint(team);
    const refusedKey = await modelCall(team, 'v1', { key: limitedKey.key });
    expect(expectLimited(refusedKey, 'requests_per_minute_limit', [1, 60]).message).toMatch(/key/);

    // The team's other key still works: the team has 4 a minute, 2 of them used by the limited key.
    expect(rateHeaders(await expectServed(team, 'v1'), 'requests')).toEqual({ limit: 4, remaining: 1 });
    expect(rateHeaders(await expectServed(team, 'create-and-call-stream'), 'requests')).toEqual({ limit: 4, remaining: 0 });
    // Now the team's window is spent, for every key.
    expect(expectLimited(await modelCall(team, 'v1'), 'requests_per_minute_limit', [1, 60]).message).toMatch(/team/);
    expectLimited(await modelCall(team, 'v1', { key: limitedKey.key }), 'requests_per_minute_limit', [1, 60]);
    const after = await footprint(team);
    expect(after.upstreamRequests - before.upstreamRequests, 'only the two admitted calls reached the upstream').toBe(2);
    expect(after.jobs - before.jobs).toBe(2);
    await expectLedgerConsistent(app, team.teamId, { jobs: true });
  });

  it('a burst of 10 concurrent calls under requests_per_minute 10 on one instance is admitted whole; the 11th is refused', async () => {
    const team = await setupTeam(app, { credits: 50, team: { limits: { requests_per_minute: 10 } } });
    await roomInThisMinute();
    const answers = await Promise.all(Array.from({ length: 10 }, () => modelCall(team, 'v1')));
    // Within the limit, no call may be refused as if the minute's requests were spent.
    expect(answers.map((answer) => (answer.status === 200 ? 'served' : answer.body?.error?.code))).toEqual(Array(10).fill('served'));
    expectLimited(await modelCall(team, 'v1'), 'requests_per_minute_limit', [1, 60]);
  });

  it('two instances on one database with requests_per_minute 10: of 30 concurrent calls at most 10 are admitted, every refusal a 429 with Retry-After', async () => {
    const team = await setupTeam(app, { credits: 50, team: { limits: { requests_per_minute: 10 } } });
    await roomInThisMinute();
    const before = await footprint(team, [app, other]);
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) => modelCall(team, i % 3 === 0 ? 'create-and-call' : i % 3 === 1 ? 'v1' : 'create-and-call-stream', { target: i % 2 === 0 ? app : other })),
    );
    const admitted = answers.filter((answer) => answer.status === 200 || answer.status === 201);
    const refused = answers.filter((answer) => answer.status !== 200 && answer.status !== 201);
    expect(admitted.length, 'admitted by both instances together').toBeLessThanOrEqual(10);
    // And most of it (small limits are claimed call by call, so neither instance strands a share; calls refused while
    // the window still had room are the subject of the burst test above).
    expect(admitted.length).toBeGreaterThanOrEqual(8);
    for (const answer of refused) expectLimited(answer, 'requests_per_minute_limit', [1, 60]);
    const after = await footprint(team, [app, other]);
    expect(after.upstreamRequests - before.upstreamRequests, 'exactly the admitted calls reached the upstream').toBe(admitted.length);
    expect(after.jobs - before.jobs).toBe(admitted.length);
    // The shared window never granted more than the limit.
    const windows = await query(app, `SELECT requests FROM rate_windows WHERE subject = $1`, [`team:${team.teamId}`]);
    for (const window of windows) expect(window.requests).toBeLessThanOrEqual(10);
    await expectLedgerConsistent(app, team.teamId, { jobs: true });
  });

  it('50 sequential calls under requests_per_minute 1000 cost a handful of database claims, not one per call', async () => {
    const team = await setupTeam(app, { credits: 100, team: { limits: { requests_per_minute: 1000 } } });
    await roomInThisMinute();
    const claimsBefore = app.deps.limiter.claims;
    let last: ApiResponse | undefined;
    for (let i = 0; i < 50; i++) last = await expectServed(team, 'v1');
    const claims = app.deps.limiter.claims - claimsBefore;
    expect(claims, 'claims from the shared window for 50 calls').toBeGreaterThanOrEqual(1);
    expect(claims).toBeLessThanOrEqual(3);
    expect(rateHeaders(last!, 'requests')).toEqual({ limit: 1000, remaining: 950 });
    const [window] = await query(app, `SELECT requests FROM rate_windows WHERE subject = $1`, [`team:${team.teamId}`]);
    expect(window.requests, 'the window holds whole chunks of a tenth of the limit').toBe(100 * claims);
  });
});

describe('tokens per minute', () => {
  const MAX_TOKENS = 400;
  const worstCase = promptTokenBound({ messages: messages() }) + MAX_TOKENS;
  /** A short answer that reports 10 tokens used. */
  const small: UpstreamScript = { steps: [{ type: 'content', text: 'ok' }], usage: { prompt_tokens: 5, completion_tokens: 5 } };

  it("a call whose worst case (prompt bound + max_tokens) exceeds the team's tokens_per_minute is refused with 429 request_too_large_for_limit", async () => {
    const team = await setupTeam(app, { credits: 20, team: { limits: { tokens_per_minute: 1000 } } });
    const before = await footprint(team);
    for (const route of ['create-and-call', 'v1-stream'] as const) {
      const refused = await modelCall(team, route, { maxTokens: 1000 });
      const error = expectLimited(refused, 'request_too_large_for_limit');
      expect(error.param).toBe('max_tokens');
      expect(error.message).toMatch(/1000 tokens per minute/);
    }
    // Without max_tokens, the default completion limit (4096) is the worst case: too large as well.
    expectLimited(await modelCall(team, 'v1'), 'request_too_large_for_limit');
    expect(await footprint(team)).toEqual(before);
    // One that fits is served, and says how many tokens are left.
    const served = await expectServed(team, 'v1', { maxTokens: MAX_TOKENS });
    expect(rateHeaders(served, 'tokens')?.limit).toBe(1000);
    expect(rateHeaders(served, 'requests'), 'no requests_per_minute: no requests headers').toBeUndefined();
  });

  it('sequential calls that use little keep being admitted: each counts its worst case only while it runs, then what it used', async () => {
    const team = await setupTeam(app, { credits: 20, team: { limits: { tokens_per_minute: 1000 } } });
    expect(worstCase * 8).toBeGreaterThan(1000);
    await roomInThisMinute();
    for (let i = 1; i <= 8; i++) {
      app.upstream.enqueue(small);
      const response = await expectServed(team, i % 2 === 0 ? 'v1' : 'create-and-call', { maxTokens: MAX_TOKENS });
      expect(rateHeaders(response, 'tokens'), `after call ${i}`).toEqual({ limit: 1000, remaining: 1000 - 10 * i });
    }
  });

  it('concurrent calls are limited by their worst case; once they end with little used, calls are admitted again', async () => {
    const team = await setupTeam(app, { credits: 20, team: { limits: { tokens_per_minute: 1000 } } });
    const heldWorstCase = promptTokenBound({ messages: messages(HOLD) }) + MAX_TOKENS;
    expect(heldWorstCase * 2 + worstCase).toBeGreaterThan(1000);
    app.upstream.setResponder(holdingResponder);
    try {
      await roomInThisMinute();
      const held = [
        await holdStream(team, 'create-and-call-stream', { maxTokens: MAX_TOKENS }),
        await holdStream(team, 'v1-stream', { maxTokens: MAX_TOKENS }),
      ];
      const before = await footprint(team);
      const refused = await modelCall(team, 'v1', { maxTokens: MAX_TOKENS });
      expectLimited(refused, 'tokens_per_minute_limit', [1, 60]);
      // What is left: the minute's tokens less the worst cases of the two calls in flight, exactly.
      const left = rateHeaders(refused, 'tokens')!.remaining;
      expect(left).toBe(1000 - 2 * heldWorstCase);
      expect(left).toBeLessThan(worstCase);
      expect(await footprint(team)).toEqual(before);
      // A smaller call whose worst case fits in what is left is admitted meanwhile.
      const smallLimit = left - promptTokenBound({ messages: messages() });
      expect(smallLimit).toBeGreaterThan(16);
      app.upstream.enqueue(small);
      await expectServed(team, 'v1', { maxTokens: smallLimit });
      expectLimited(await modelCall(team, 'v1', { maxTokens: MAX_TOKENS }), 'tokens_per_minute_limit', [1, 60]);

      for (const stream of held) stream.leave();
      await untilNoCallInFlight(team);
      app.upstream.enqueue(small);
      const again = await expectServed(team, 'v1', { maxTokens: MAX_TOKENS });
      // Two streams that used a few tokens each and this call's 10: most of the minute is left.
      expect(rateHeaders(again, 'tokens')!.remaining).toBeGreaterThan(1000 - worstCase);
    } finally {
      app.upstream.setResponder(undefined);
    }
  });
});

describe('concurrent calls and jobs', () => {
  afterAll(() => app.upstream.setResponder(undefined));

  it('team max_concurrent_calls 2: a third call while two stream is 429 concurrent_calls_limit on every route, before any upstream request; after they end, calls work again', async () => {
    // A team rich enough for early upstream starts (EARLY_UPSTREAM_MIN_HOLDS): with a concurrency limit, no call may
    // contact the upstream before its slot is written.
    const team = await setupTeam(app, { credits: 1_000, team: { limits: { max_concurrent_calls: 2 } } });
    await expectServed(team, 'create-and-call');
    app.upstream.setResponder(holdingResponder);
    const jobId = await openJobOk(team);
    const held = [await holdStream(team, 'create-and-call-stream'), await holdStream(team, 'llm-call-stream', { jobId })];
    expect(await counters(team)).toMatchObject({ calls_in_flight: 2, open_jobs: 2 });

    const before = await footprint(team);
    for (const route of ['create-and-call', 'create-and-call-stream', 'v1', 'v1-stream', 'llm-call', 'llm-call-stream'] as const) {
      const refused = await modelCall(team, route, { jobId });
      expect(expectLimited(refused, 'concurrent_calls_limit').message).toMatch(/team already has 2 calls in flight/);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(rateHeaders(refused, 'requests'), 'no per-minute limits: no x-ratelimit headers').toBeUndefined();
    }
    expect(await footprint(team), 'nothing reached the upstream, no job opened, no credit moved').toEqual(before);
    expect(await counters(team)).toMatchObject({ calls_in_flight: 2, open_jobs: 2 });

    for (const stream of held) stream.leave();
    await untilNoCallInFlight(team);
    app.upstream.setResponder(undefined);
    await expectServed(team, 'create-and-call');
    await expectServed(team, 'llm-call', { jobId });
    await expectServed(team, 'v1-stream');
    expect(await counters(team)).toMatchObject({ calls_in_flight: 0, open_jobs: 1 });
    await expectLedgerConsistent(app, team.teamId, { jobs: true });
  });

  it("a key's max_concurrent_calls 1 limits that key only; the team's other key keeps streaming", async () => {
    app.upstream.setResponder(holdingResponder);
    const team = await setupTeam(app, { credits: 20 });
    const limitedKey = await createKey(team, { max_concurrent_calls: 1 });
    const held = [await holdStream(team, 'v1-stream', { key: limitedKey.key })];
    const before = await footprint(team);
    const refused = await modelCall(team, 'create-and-call', { key: limitedKey.key });
    expect(expectLimited(refused, 'concurrent_calls_limit').message).toMatch(/key already has 1 calls in flight/);
    expect(await footprint(team)).toEqual(before);
    // The other key: two more streams at once.
    held.push(await holdStream(team, 'v1-stream'), await holdStream(team, 'create-and-call-stream'));
    const state = await counters(team);
    expect(state.calls_in_flight).toBe(3);
    expect(state.key_calls_in_flight[limitedKey.keyId]).toBe(1);

    for (const stream of held) stream.leave();
    await untilNoCallInFlight(team);
    app.upstream.setResponder(undefined);
    await expectServed(team, 'create-and-call', { key: limitedKey.key });
    await expectLedgerConsistent(app, team.teamId, { jobs: true });
  });

  it('team max_concurrent_jobs 2: a third job (or one-shot call) is 429 concurrent_jobs_limit holding nothing; completing one frees a slot', async () => {
    const team = await setupTeam(app, { credits: 20, team: { limits: { max_concurrent_jobs: 2 } } });
    const first = await openJobOk(team);
    await openJobOk(team);
    const before = await footprint(team);
    const refused = await openJob(team);
    expect(expectLimited(refused, 'concurrent_jobs_limit').message).toMatch(/team already has 2 open jobs/);
    expect(refused.headers.get('retry-after')).toBe('1');
    // A one-shot request opens a job too.
    expectLimited(await modelCall(team, 'create-and-call'), 'concurrent_jobs_limit');
    expectLimited(await modelCall(team, 'v1-stream'), 'concurrent_jobs_limit');
    expect(await footprint(team)).toEqual(before);
    expect(before.ledger.held, 'two job prices held, no more').toBe(2);

    const completed = await app.request('POST', `/api/jobs/${first}/complete`, { token: team.key, body: { status: 'completed' } });
    expect(completed.status, JSON.stringify(completed.body)).toBe(200);
    await openJobOk(team);
    expectLimited(await openJob(team), 'concurrent_jobs_limit');
    expect(await counters(team)).toMatchObject({ open_jobs: 2 });
    await expectLedgerConsistent(app, team.teamId, { jobs: true });
  });

  it("a key's max_concurrent_jobs 1 limits that key only", async () => {
    const team = await setupTeam(app, { credits: 20 });
    const limitedKey = await createKey(team, { max_concurrent_jobs: 1 });
    const jobId = await openJobOk(team, limitedKey.key);
    expect(expectLimited(await openJob(team, limitedKey.key), 'concurrent_jobs_limit').message).toMatch(/key already has 1 open jobs/);
    expectLimited(await modelCall(team, 'create-and-call', { key: limitedKey.key }), 'concurrent_jobs_limit');
    // The key's open job still takes calls (a call is not a job), and the other key opens jobs freely.
    await expectServed(team, 'llm-call', { key: limitedKey.key, jobId });
    await openJobOk(team);
    await expectServed(team, 'create-and-call');
    const state = await counters(team);
    expect(state.open_jobs).toBe(2);
    expect(state.key_open_jobs[limitedKey.keyId]).toBe(1);
    const cancelled = await app.request('POST', `/api/jobs/${jobId}/cancel`, { token: limitedKey.key });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    await openJobOk(team, limitedKey.key);
  });
});

describe('changing limits', () => {
  it('PATCH /api/teams/{team_id} lowers requests_per_minute for the very next request, even after this instance claimed a share under the old limit', async () => {
    const team = await setupTeam(app, { credits: 20, team: { limits: { requests_per_minute: 100 } } });
    await roomInThisMinute();
    expect(rateHeaders(await expectServed(team, 'v1'), 'requests')).toEqual({ limit: 100, remaining: 99 });
    const patched = await app.request('PATCH', `/api/teams/${team.teamId}`, { body: { limits: { requests_per_minute: 2 } } });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    expect(patched.body.limits).toEqual({ requests_per_minute: 2, tokens_per_minute: null, max_concurrent_jobs: null, max_concurrent_calls: null });
    // One call made this minute, the limit is now 2: one more, then 429 (not the rest of a share claimed under 100).
    const after: ApiResponse[] = [];
    for (let i = 0; i < 5; i++) after.push(await modelCall(team, 'v1'));
    expect(after.map((answer) => answer.status)).toEqual([200, 429, 429, 429, 429]);
    expect(rateHeaders(after[0]!, 'requests')).toEqual({ limit: 2, remaining: 0 });
    for (const refused of after.slice(1)) expectLimited(refused, 'requests_per_minute_limit', [1, 60]);
  });

  it('PATCH raising requests_per_minute lets the next request through at once, and removing it removes the x-ratelimit headers', async () => {
    const team = await setupTeam(app, { credits: 20, team: { limits: { requests_per_minute: 1 } } });
    await roomInThisMinute();
    await expectServed(team, 'v1');
    expectLimited(await modelCall(team, 'v1'), 'requests_per_minute_limit', [1, 60]);
    const raised = await app.request('PATCH', `/api/teams/${team.teamId}`, { body: { limits: { requests_per_minute: 3 } } });
    expect(raised.status, JSON.stringify(raised.body)).toBe(200);
    // One call made this minute, the limit is now 3: two more, then 429.
    const after: ApiResponse[] = [];
    for (let i = 0; i < 3; i++) after.push(await modelCall(team, 'v1'));
    expect(after.map((answer) => answer.status)).toEqual([200, 200, 429]);
    expect(rateHeaders(after[1]!, 'requests')).toEqual({ limit: 3, remaining: 0 });
    const removed = await app.request('PATCH', `/api/teams/${team.teamId}`, { body: { limits: { requests_per_minute: null } } });
    expect(removed.body.limits.requests_per_minute).toBeNull();
    const unlimited = await expectServed(team, 'v1');
    expect(rateHeaders(unlimited, 'requests')).toBeUndefined();
  });

  it('limits changed through one instance hold on the other for the next request: team requests_per_minute, a key\'s limit, concurrency', async () => {
    const team = await setupTeam(app, { credits: 20 });
    const secondKey = await createKey(team);
    await roomInThisMinute();
    // Both instances have the team and its keys cached, unlimited.
    for (const target of [app, other]) {
      const served = await expectServed(team, 'v1', { target });
      expect(rateHeaders(served, 'requests')).toBeUndefined();
      await expectServed(team, 'v1', { target, key: secondKey.key });
    }

    const patched = await app.request('PATCH', `/api/teams/${team.teamId}`, { body: { limits: { requests_per_minute: 2 } } });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    // The other instance, at once: two calls (the calls made unlimited never counted), then 429 on both instances.
    expect(rateHeaders(await expectServed(team, 'v1', { target: other }), 'requests')).toEqual({ limit: 2, remaining: 1 });
    expect(rateHeaders(await expectServed(team, 'create-and-call', { target: other }), 'requests')).toEqual({ limit: 2, remaining: 0 });
    expectLimited(await modelCall(team, 'v1', { target: other }), 'requests_per_minute_limit', [1, 60]);
    expectLimited(await modelCall(team, 'v1', { target: app }), 'requests_per_minute_limit', [1, 60]);

    // A key's own limit, changed on the other instance, holds on this one.
    const unlimitedAgain = await other.request('PATCH', `/api/teams/${team.teamId}`, { body: { limits: { requests_per_minute: null } } });
    expect(unlimitedAgain.status).toBe(200);
    await expectServed(team, 'v1', { target: app, key: secondKey.key });
    const keyPatched = await other.request('PATCH', `/api/keys/${secondKey.keyId}`, { body: { limits: { max_concurrent_jobs: 1 } } });
    expect(keyPatched.status, JSON.stringify(keyPatched.body)).toBe(200);
    expect(keyPatched.body.limits).toEqual({ requests_per_minute: null, tokens_per_minute: null, max_concurrent_jobs: 1, max_concurrent_calls: null });
    await openJobOk(team, secondKey.key, app);
    expect(expectLimited(await openJob(team, secondKey.key, app), 'concurrent_jobs_limit').message).toMatch(/key/);
    // The team's first key is not limited by it.
    await openJobOk(team, team.key, app);
    await expectLedgerConsistent(app, team.teamId, { jobs: true });
  });
});
