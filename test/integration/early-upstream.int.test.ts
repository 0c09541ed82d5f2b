import type { IncomingMessage } from 'node:http';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UpstreamScript } from '../../src/upstream/simulated-server.js';
import { balanceOf, expectErrorBody, getJob } from '../helpers/api.js';
import { createTestApp, type ApiResponse, type TestApp } from '../helpers/app.js';
import { setupTeam, type TeamSetup } from '../helpers/factories.js';
import { MICRO, expectLedgerConsistent, jobLedger, ledgerSum } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { expectSseHeaders, parseSse, postNodeHttp, postRaw } from '../helpers/sse.js';
import { upstreamRequest } from '../helpers/upstream.js';
import { poll, sleep } from '../helpers/wait.js';

/**
 * Early upstream start for one-shot calls: when an instance has just seen a team afford many holds
 * (EARLY_UPSTREAM_MIN_HOLDS), the upstream request goes out while the job's hold is still being written. Nothing
 * reaches the client before the hold is written, a refused hold aborts the upstream request and writes nothing, a
 * refusal makes the next request write its hold first, and EARLY_UPSTREAM_MIN_HOLDS=0 turns the early start off.
 *
 * "While the hold is being written" is made to last as long as a test wants: a connection of the test's own locks
 * the team's balance row (SELECT ... FOR UPDATE), so the hold statement waits until that transaction ends. A hold
 * that will be refused does not wait for a row lock (PostgreSQL skips a row whose committed version fails the
 * UPDATE's condition without waiting for its locker), so to hold back a refusal the test locks the whole
 * credit_balances table instead (LOCK TABLE ... IN EXCLUSIVE MODE: reads go on, every UPDATE waits).
 */

/** How long a test watches for something that must not happen (a response, an upstream request). */
const QUIET_MS = 300;
/** Upper bound for "at once": generous, the suite runs on a small machine with other files in parallel. */
const AT_ONCE_MS = 1_000;

const ample = { credits: 1_000_000, team: { budget_mode: 'job_based' as const, credits_per_job: 1 } };

const say = (text: string) => ({ messages: [{ role: 'user', content: text }] });

const words = (parts: string[], delayMs = 0): UpstreamScript => ({
  steps: [...parts.map((text) => ({ type: 'content' as const, text, ...(delayMs && { delayMs }) })), { type: 'finish', reason: 'stop' }],
  usage: { prompt_tokens: 10, completion_tokens: parts.length },
});

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

interface BalanceLock {
  /** Ends the locking transaction; returns Date.now() from just before the COMMIT was sent. */
  release(): Promise<number>;
  /** Resolves once another session (the app's hold statement) waits for this lock. */
  blocking(): Promise<void>;
  /** Rolls back if still open and closes the connection; safe to call more than once. */
  close(): Promise<void>;
}

/**
 * Locks the team's balance row (or, with `table`, the whole credit_balances table) in a transaction of the test's
 * own, so the next hold statement waits for it.
 */
async function lockBalances(target: TestApp, teamId: string, options: { table?: boolean } = {}): Promise<BalanceLock> {
  const client = new pg.Client({ connectionString: target.databaseUrl });
  client.on('error', () => undefined);
  await client.connect();
  let open = false;
  let closed = false;
  try {
    const [{ pid }] = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows as [{ pid: number }];
    await client.query('BEGIN');
    open = true;
    if (options.table) await client.query('LOCK TABLE credit_balances IN EXCLUSIVE MODE');
    const locked = await client.query('SELECT 1 FROM credit_balances WHERE team_id = $1 FOR UPDATE', [teamId]);
    expect(locked.rowCount, `no balance row for ${teamId}`).toBe(1);
    return {
      async release() {
        const at = Date.now();
        open = false;
        await client.query('COMMIT');
        return at;
      },
      async blocking() {
        await poll(
          async () => {
            const [row] = await query<{ n: number }>(target, 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [pid]);
            return row!.n > 0 ? true : undefined;
          },
          5_000,
          'a statement waiting for the balance row lock',
          10,
        );
      },
      async close() {
        if (closed) return;
        closed = true;
        if (open) await client.query('ROLLBACK').catch(() => undefined);
        open = false;
        await client.end().catch(() => undefined);
      },
    };
  } catch (error) {
    closed = true;
    await client.end().catch(() => undefined);
    throw error;
  }
}

interface RawCall {
  /** Date.now() when the status line and headers arrived; undefined until they did. */
  respondedAt(): number | undefined;
  /** The answer read to its end. */
  read(): Promise<{ status: number; headers: Headers; text: string }>;
  /** Drops the connection (a no-op once the answer was read). */
  abort(): void;
}

/**
 * A JSON POST through node:http, so the test sees exactly when the status line and headers arrive (the `response`
 * event), independently of reading the body.
 */
function rawPost(target: TestApp, path: string, key: string, body: unknown): RawCall {
  let respondedAt: number | undefined;
  const req = postNodeHttp(target, path, key, body);
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', (res) => {
      respondedAt = Date.now();
      resolve(res);
    });
    req.once('error', reject);
  });
  response.catch(() => undefined); // a test that fails early aborts the request in `finally`
  return {
    respondedAt: () => respondedAt,
    async read() {
      const res = await response;
      const chunks: Buffer[] = [];
      for await (const chunk of res) chunks.push(chunk as Buffer);
      const headers = new Headers();
      for (const [name, value] of Object.entries(res.headers)) {
        if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
      }
      return { status: res.statusCode ?? 0, headers, text: Buffer.concat(chunks).toString('utf8') };
    },
    abort: () => req.destroy(),
  };
}

const asJsonResponse = ({ status, headers, text }: { status: number; headers: Headers; text: string }): ApiResponse => ({
  status,
  headers,
  body: JSON.parse(text),
});

const countRows = async (target: TestApp, table: 'jobs' | 'llm_calls', teamId: string) =>
  (await query<{ n: number }>(target, `SELECT count(*)::int AS n FROM ${table} WHERE team_id = $1`, [teamId]))[0]!.n;

/** A one-credit job completed with its one successful call, charged exactly once. */
async function expectChargedOnce(target: TestApp, team: TeamSetup, jobId: string, content: string) {
  const job = await getJob(target, team, jobId);
  expect(job).toMatchObject({ status: 'completed', costs: { total_calls: 1, successful_calls: 1, credits_charged: 1, credit_applied: true } });
  expect(job.calls[0]).toMatchObject({ status: 'success', response_content: content });
  const ledger = await jobLedger(target, jobId);
  expect(ledger.map((entry) => entry.type)).toEqual(['hold', 'charge']);
  expect(ledger[0]).toEqual({ type: 'hold', amount: 0, held: 1 });
  expect(ledger[1]!.amount).toBe(-1);
  expect(ledger[1]!.held).toBe(-1);
}

/** A create-and-call-stream read to the end: 200, an event stream ending in [DONE], no in-band error. */
async function streamToTheEnd(target: TestApp, team: TeamSetup, text: string, expected: string) {
  const response = await postRaw(target, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'early', ...say(text) });
  expectSseHeaders(response.headers, response.status);
  const stream = parseSse(response.text, { strict: true });
  expect(stream, response.text).toMatchObject({ content: expected, errors: [], endsWithDone: true, finishReasons: ['stop'], junk: [] });
  return response.headers.get('x-job-id')!;
}

// ---------------------------------------------------------------------------------------------------------------
// Default EARLY_UPSTREAM_MIN_HOLDS (100); keepalive comments every 100 ms, so one would show up during the wait
// for the hold if it were not held back
// ---------------------------------------------------------------------------------------------------------------

describe('early upstream start (EARLY_UPSTREAM_MIN_HOLDS default)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp({ STREAM_KEEPALIVE_MS: '100' });
  });
  afterAll(() => app?.close());

  it('create-and-call-stream: the upstream is contacted while the hold waits, and the client sees nothing until it is written', async () => {
    const team = await setupTeam(app, ample);
    app.upstream.enqueue(words(['Learn ', 'first']));
    const firstJob = await streamToTheEnd(app, team, 'first request', 'Learn first');

    const before = app.upstream.requests.length;
    app.upstream.enqueue(words(['Early ', 'bird ', 'answer']));
    const lock = await lockBalances(app, team.teamId);
    const call = rawPost(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'early', ...say('second request') });
    try {
      const upstream = await upstreamRequest(app, before, 5_000);
      expect(upstream.body.messages).toEqual(say('second request').messages);
      await lock.blocking(); // the hold statement is waiting for the lock
      await sleep(QUIET_MS);
      expect(call.respondedAt(), 'no status line or header before the hold is written').toBeUndefined();
      expect(await countRows(app, 'jobs', team.teamId), 'no job row before the hold is written').toBe(1);
      expect(await countRows(app, 'llm_calls', team.teamId), 'no call row before the hold is written').toBe(1);

      const releasedAt = await lock.release();
      const answer = await call.read();
      expect(call.respondedAt()!).toBeGreaterThanOrEqual(releasedAt);
      expectSseHeaders(answer.headers, answer.status);
      const stream = parseSse(answer.text, { strict: true });
      expect(stream, answer.text).toMatchObject({ content: 'Early bird answer', errors: [], endsWithDone: true, finishReasons: ['stop'], junk: [] });
      expect(app.upstream.requests).toHaveLength(before + 1);

      const jobId = answer.headers.get('x-job-id')!;
      expect(jobId).toMatch(/^job_/);
      expect(jobId).not.toBe(firstJob);
      await expectChargedOnce(app, team, jobId, 'Early bird answer');
      await expectChargedOnce(app, team, firstJob, 'Learn first');
      expect(await balanceOf(app, team.teamId)).toMatchObject({ balance: 1_000_000 - 2, held: 0 });
      await expectLedgerConsistent(app, team.teamId, { jobs: true });
    } finally {
      call.abort();
      await lock.close();
    }
  });

  it('/v1/chat/completions without stream: the upstream answers while the hold waits, the client gets the completion only after it is written', async () => {
    const team = await setupTeam(app, ample);
    app.upstream.enqueue(words(['Learn']));
    const learn = await app.request('POST', '/v1/chat/completions', { token: team.key, body: { model: team.group, ...say('first request') } });
    expect(learn.status, JSON.stringify(learn.body)).toBe(200);
    expect(learn.body.choices[0].message.content).toBe('Learn');

    const before = app.upstream.requests.length;
    app.upstream.enqueue(words(['Whole ', 'completion']));
    const lock = await lockBalances(app, team.teamId);
    const call = rawPost(app, '/v1/chat/completions', team.key, { model: team.group, ...say('second request') });
    try {
      const upstream = await upstreamRequest(app, before, 5_000);
      expect(upstream.body).toMatchObject({ model: 'sim-small', messages: say('second request').messages });
      // The upstream has sent its whole answer while the hold still waits.
      const closed = await app.upstream.waitForClosed(upstream.id, 5_000);
      expect(closed.finishedAt, 'the upstream answered in full').toBeDefined();
      expect(closed.abortedByClient).toBe(false);
      await lock.blocking();
      await sleep(QUIET_MS);
      expect(call.respondedAt(), 'no answer before the hold is written').toBeUndefined();
      expect(await countRows(app, 'jobs', team.teamId)).toBe(1);
      expect(await countRows(app, 'llm_calls', team.teamId)).toBe(1);

      const releasedAt = await lock.release();
      const answer = asJsonResponse(await call.read());
      expect(call.respondedAt()!).toBeGreaterThanOrEqual(releasedAt);
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(answer.body).toMatchObject({
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: 'Whole completion' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 },
      });
      expect(app.upstream.requests).toHaveLength(before + 1);

      const jobId = answer.headers.get('x-job-id')!;
      expect(jobId).toMatch(/^job_/);
      await expectChargedOnce(app, team, jobId, 'Whole completion');
      expect(await balanceOf(app, team.teamId)).toMatchObject({ balance: 1_000_000 - 2, held: 0 });
      await expectLedgerConsistent(app, team.teamId, { jobs: true });
    } finally {
      call.abort();
      await lock.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// After a pause: the caches (CACHE_TTL_MS=200) expire, what the team could afford is kept for a minute
// ---------------------------------------------------------------------------------------------------------------

describe('the early start after a pause longer than the caches live (CACHE_TTL_MS=200)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp({ CACHE_TTL_MS: '200' });
  });
  afterAll(() => app?.close());

  it('still contacts the upstream while the hold waits: what the team could afford is kept longer than the caches', async () => {
    const team = await setupTeam(app, ample);
    app.upstream.enqueue(words(['Learn ', 'first']));
    await streamToTheEnd(app, team, 'first request', 'Learn first');
    await sleep(1_000);

    const before = app.upstream.requests.length;
    app.upstream.enqueue(words(['After ', 'a ', 'pause']));
    const lock = await lockBalances(app, team.teamId);
    const call = rawPost(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'early', ...say('after a pause') });
    try {
      await lock.blocking();
      expect((await upstreamRequest(app, before, 2_000)).body.messages).toEqual(say('after a pause').messages);
      await lock.release();
      const answer = await call.read();
      expect(parseSse(answer.text, { strict: true })).toMatchObject({ content: 'After a pause', errors: [], endsWithDone: true });
      await expectChargedOnce(app, team, answer.headers.get('x-job-id')!, 'After a pause');
    } finally {
      call.abort();
      await lock.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// A refused early hold: instance A believes the team can afford 2 holds, instance B has spent them
// ---------------------------------------------------------------------------------------------------------------

describe('a refused early hold (EARLY_UPSTREAM_MIN_HOLDS=2, two instances)', () => {
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    // A long cache lifetime so A's knowledge cannot expire during the test: only the refusal may drop it.
    a = await createTestApp({ EARLY_UPSTREAM_MIN_HOLDS: '2', CACHE_TTL_MS: '60000' });
    b = await createTestApp({ EARLY_UPSTREAM_MIN_HOLDS: '2', DATABASE_URL: a.databaseUrl });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it('aborts the upstream request at once, answers 402 and writes nothing; the next request writes its hold first', async () => {
    const team = await setupTeam(a, { credits: 3, team: { budget_mode: 'job_based', credits_per_job: 1 } });
    const path = '/api/jobs/create-and-call-stream';
    const body = (text: string) => ({ team_id: team.teamId, job_type: 'early', ...say(text) });

    // A streams one job: right after its hold the team had 2 credits available, enough for 2 holds.
    a.upstream.enqueue(words(['Served']));
    await streamToTheEnd(a, team, 'first request', 'Served');
    expect(a.deps.caches.availableCredits.get(team.teamId), "A's knowledge of the team").toBe(2 * MICRO);

    // B spends the rest, A does not know.
    for (let i = 0; i < 2; i++) {
      const created = await b.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'elsewhere' } });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
    }
    expect(await balanceOf(a, team.teamId)).toMatchObject({ balance: 2, held: 2, credits_remaining: 0 });
    const ledgerBefore = await ledgerSum(a, team.teamId, { entries: true });
    expect(await countRows(a, 'jobs', team.teamId)).toBe(3);
    expect(await countRows(a, 'llm_calls', team.teamId)).toBe(1);

    // A's next request starts early (its first token would take 2 s); the table lock keeps its (doomed) hold
    // statement waiting until the upstream has certainly received the request.
    const before = a.upstream.requests.length;
    a.upstream.enqueue(words(['too ', 'late'], 2_000));
    let lock = await lockBalances(a, team.teamId, { table: true });
    let call = rawPost(a, path, team.key, body('second request'));
    try {
      const upstream = await upstreamRequest(a, before, 5_000);
      expect(upstream.body.messages).toEqual(say('second request').messages);
      await lock.blocking();
      expect(call.respondedAt()).toBeUndefined();

      const releasedAt = await lock.release();
      const refused = asJsonResponse(await call.read());
      expectErrorBody(refused, 402, 'insufficient_credits');
      expect(call.respondedAt()! - releasedAt, 'refused at once, not after the first token').toBeLessThan(AT_ONCE_MS);

      const closed = await a.upstream.waitForClosed(upstream.id, AT_ONCE_MS);
      expect(closed.abortedByClient, 'creditgate aborted the upstream request').toBe(true);
      expect(closed.finishedAt, 'the upstream request did not run to its end').toBeUndefined();
      expect(closed.closedAt! - releasedAt, 'the upstream request was aborted at once').toBeLessThan(AT_ONCE_MS);
      expect(closed.closedAt! - closed.startedAt, 'aborted before its first token').toBeLessThan(2_000);

      expect(await countRows(a, 'jobs', team.teamId), 'no job written').toBe(3);
      expect(await countRows(a, 'llm_calls', team.teamId), 'no call written').toBe(1);
      expect(await ledgerSum(a, team.teamId, { entries: true }), 'no ledger entry written').toEqual(ledgerBefore);
      await expectLedgerConsistent(a, team.teamId, { jobs: true });
    } finally {
      call.abort();
      await lock.close();
    }

    // The refusal dropped A's knowledge: the next request writes its hold first, so while that hold waits for the
    // lock the upstream hears nothing, and once refused it never does.
    lock = await lockBalances(a, team.teamId, { table: true });
    call = rawPost(a, path, team.key, body('third request'));
    try {
      await lock.blocking();
      await sleep(QUIET_MS);
      expect(a.upstream.requests, 'no upstream request while the hold waits').toHaveLength(before + 1);
      expect(call.respondedAt()).toBeUndefined();

      await lock.release();
      expectErrorBody(asJsonResponse(await call.read()), 402, 'insufficient_credits');
      expect(a.upstream.requests, 'no upstream request for a refused hold').toHaveLength(before + 1);
      expect(await countRows(a, 'jobs', team.teamId)).toBe(3);
      expect(await countRows(a, 'llm_calls', team.teamId)).toBe(1);
      expect(await ledgerSum(a, team.teamId, { entries: true })).toEqual(ledgerBefore);
      expect(await balanceOf(a, team.teamId)).toMatchObject({ balance: 2, held: 2, credits_remaining: 0 });
      await expectLedgerConsistent(a, team.teamId, { jobs: true });
    } finally {
      call.abort();
      await lock.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// EARLY_UPSTREAM_MIN_HOLDS=0: never early
// ---------------------------------------------------------------------------------------------------------------

describe('EARLY_UPSTREAM_MIN_HOLDS=0', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp({ EARLY_UPSTREAM_MIN_HOLDS: '0', STREAM_KEEPALIVE_MS: '100' });
  });
  afterAll(() => app?.close());

  it('writes the hold first: the upstream hears nothing while the hold waits, then the stream completes normally', async () => {
    const team = await setupTeam(app, ample);
    // A served request first, so the instance knows the team could afford plenty of holds.
    app.upstream.enqueue(words(['Learn']));
    const firstJob = await streamToTheEnd(app, team, 'first request', 'Learn');

    const before = app.upstream.requests.length;
    app.upstream.enqueue(words(['After ', 'the ', 'hold']));
    const lock = await lockBalances(app, team.teamId);
    const call = rawPost(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'early', ...say('second request') });
    try {
      await lock.blocking();
      await sleep(QUIET_MS);
      expect(app.upstream.requests, 'no upstream request while the hold waits').toHaveLength(before);
      expect(call.respondedAt()).toBeUndefined();

      const releasedAt = await lock.release();
      const upstream = await upstreamRequest(app, before, 5_000);
      expect(upstream.startedAt, 'the upstream was contacted after the hold').toBeGreaterThanOrEqual(releasedAt);
      const answer = await call.read();
      expectSseHeaders(answer.headers, answer.status);
      const stream = parseSse(answer.text, { strict: true });
      expect(stream, answer.text).toMatchObject({ content: 'After the hold', errors: [], endsWithDone: true, finishReasons: ['stop'], junk: [] });
      expect(app.upstream.requests).toHaveLength(before + 1);

      const jobId = answer.headers.get('x-job-id')!;
      expect(jobId).not.toBe(firstJob);
      await expectChargedOnce(app, team, jobId, 'After the hold');
      expect(await balanceOf(app, team.teamId)).toMatchObject({ balance: 1_000_000 - 2, held: 0 });
      await expectLedgerConsistent(app, team.teamId, { jobs: true });
    } finally {
      call.abort();
      await lock.close();
    }
  });
});
