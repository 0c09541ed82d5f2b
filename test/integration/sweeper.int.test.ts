import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepExpiredJobs } from '../../src/domain/jobs/job-sweeper.js';
import { expectErrorBody } from '../helpers/api.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam, uniqueId, type TeamSetup } from '../helpers/factories.js';
import { query } from '../helpers/postgres.js';
import { poll } from '../helpers/wait.js';

/**
 * What the job sweeper ends besides jobs, across instances: every deadline is the one recorded with the work by the
 * instance that took it, never the sweeping instance's JOB_TIMEOUT_SECONDS, so an instance with a shorter setting
 * does not free another's Idempotency-Key claim of a stream still running (a retry would run the call twice) nor
 * abandon its queue item. And the per-minute rate limit windows of past minutes are deleted.
 *
 * Both instances share one database, read here through `long` (`short.databaseUrl` is the unused one its helper
 * made). Their own periodic sweeps are out of the way (SWEEP_INTERVAL_SECONDS): each sweep here is run explicitly
 * with the sweeping instance's database and options, as its timer would.
 */

let long: TestApp;
let short: TestApp;
beforeAll(async () => {
  long = await createTestApp({ JOB_TIMEOUT_SECONDS: '3600', SWEEP_INTERVAL_SECONDS: '3600' });
  short = await createTestApp({ DATABASE_URL: long.databaseUrl, JOB_TIMEOUT_SECONDS: '10', SWEEP_INTERVAL_SECONDS: '3600' });
});
afterAll(async () => {
  await short?.close();
  await long?.close();
});

const sweepFrom = (app: TestApp) => sweepExpiredJobs(app.deps.db, { leaseSeconds: app.deps.config.CALL_LEASE_SECONDS }, app.deps.log);
const messages = [{ role: 'user', content: 'Hello' }];

/** Starts a stream with an Idempotency-Key on `app` whose upstream never ends; resolves once the model was called. */
async function hangingStream(app: TestApp, team: TeamSetup, idempotencyKey: string): Promise<AbortController> {
  const before = app.upstream.requests.length;
  app.upstream.enqueue({ steps: [{ type: 'content', text: 'still going' }, { type: 'hang' }] });
  const controller = new AbortController();
  void fetch(`${app.url}/v1/chat/completions`, {
    method: 'POST',
    signal: controller.signal,
    headers: { authorization: `Bearer ${team.key}`, 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
    body: JSON.stringify({ model: team.group, stream: true, messages }),
  }).catch(() => undefined);
  await app.upstream.waitForRequests(before + 1);
  return controller;
}

const claimOf = async (team: TeamSetup, key: string) =>
  (await query(long, 'SELECT status::text, timeout_seconds FROM idempotency_keys WHERE scope = $1 AND key = $2', [`team:${team.teamId}`, key]))[0];

/** Moves a claim's clock back, as if its request had been running that long. */
const ageClaim = (team: TeamSetup, key: string, seconds: number) =>
  query(long, `UPDATE idempotency_keys SET created_at = now() - make_interval(secs => $3) WHERE scope = $1 AND key = $2`, [`team:${team.teamId}`, key, seconds]);

describe('Idempotency-Key claims of requests still running', () => {
  let team: TeamSetup;
  beforeAll(async () => {
    team = await setupTeam(long, { credits: 100 });
  });

  it("an instance with JOB_TIMEOUT_SECONDS 10 does not free the claim of a stream running for a minute on an instance with 3600: a retry still gets 409, and the claim is freed past its own recorded timeout", async () => {
    const key = uniqueId('idem');
    const stream = await hangingStream(long, team, key);
    try {
      expect(await claimOf(team, key)).toEqual({ status: 'in_progress', timeout_seconds: 3600 });
      await ageClaim(team, key, 60);

      await sweepFrom(short);
      expect(await claimOf(team, key), 'the short instance left the claim alone').toEqual({ status: 'in_progress', timeout_seconds: 3600 });
      const modelCalls = short.upstream.requests.length;
      const retry = await short.request('POST', '/v1/chat/completions', {
        token: team.key,
        headers: { 'idempotency-key': key },
        body: { model: team.group, stream: true, messages },
      });
      expectErrorBody(retry, 409, 'idempotency_key_in_progress');
      expect(short.upstream.requests.length, 'the retry reached no model').toBe(modelCalls);

      // Past its own timeout (its instance died, say), any instance frees it.
      await ageClaim(team, key, 3_601);
      await sweepFrom(short);
      expect(await claimOf(team, key)).toBeUndefined();
    } finally {
      stream.abort();
    }
  });

  it('a claim taken on the instance with JOB_TIMEOUT_SECONDS 10 is freed after 10 s by the sweep of the instance with 3600', async () => {
    const key = uniqueId('idem');
    const stream = await hangingStream(short, team, key);
    try {
      expect(await claimOf(team, key)).toEqual({ status: 'in_progress', timeout_seconds: 10 });
      await sweepFrom(long);
      expect(await claimOf(team, key), 'not yet: it was just taken').toEqual({ status: 'in_progress', timeout_seconds: 10 });
      await ageClaim(team, key, 11);
      await sweepFrom(long);
      expect(await claimOf(team, key)).toBeUndefined();
    } finally {
      stream.abort();
    }
  });

  it('a claim that commits with its answer records no timeout', async () => {
    const key = uniqueId('idem');
    const created = await long.request('POST', '/api/jobs/create', {
      token: team.key,
      headers: { 'idempotency-key': key },
      body: { team_id: team.teamId, job_type: 'recorded' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(await claimOf(team, key)).toEqual({ status: 'completed', timeout_seconds: null });
  });
});

describe('queue items whose instance has not written their end', () => {
  let team: TeamSetup;
  beforeAll(async () => {
    team = await setupTeam(short, { credits: 100 });
  });

  /**
   * A queued call run to its end on `app`, then put back to `processing` with its job over and its clock `ageSeconds`
   * back: the state its instance leaves between settling the job and marking the item, or forever if it died there.
   */
  async function itemBetweenJobAndEnd(app: TestApp, ageSeconds: number): Promise<string> {
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'done' }] });
    const submitted = await app.request('POST', '/api/llm/complete', { token: team.key, body: { model: team.group, messages, stream: true } });
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(202);
    const queueId = submitted.body.data.queueId as string;
    await poll(
      async () => ((await query(long, `SELECT status::text FROM queue_requests WHERE id = $1`, [queueId]))[0]?.status === 'completed' ? true : undefined),
      10_000,
      'the queued call to complete',
    );
    const [job] = await query(long, `SELECT j.status::text, j.timeout_seconds FROM jobs j JOIN queue_requests q ON q.job_id = j.id WHERE q.id = $1`, [queueId]);
    expect(job).toEqual({ status: 'completed', timeout_seconds: app.deps.config.JOB_TIMEOUT_SECONDS });
    await query(
      long,
      `UPDATE queue_requests SET status = 'processing', finished_at = NULL, created_at = now() - make_interval(secs => $2) WHERE id = $1`,
      [queueId, ageSeconds],
    );
    return queueId;
  }

  const itemOf = async (queueId: string) => (await query(long, `SELECT status::text, error FROM queue_requests WHERE id = $1`, [queueId]))[0];

  it("an instance with JOB_TIMEOUT_SECONDS 10 does not abandon, after a minute, an item of the instance with 3600; past its job's recorded timeout, any instance does", async () => {
    const queueId = await itemBetweenJobAndEnd(long, 60);
    await sweepFrom(short);
    expect(await itemOf(queueId)).toEqual({ status: 'processing', error: null });

    await query(long, `UPDATE queue_requests SET created_at = now() - interval '3601 seconds' WHERE id = $1`, [queueId]);
    await sweepFrom(short);
    expect(await itemOf(queueId)).toEqual({ status: 'error', error: 'abandoned: the instance running it stopped' });
  });

  it('the instance with 3600 abandons an item of the instance with 10 once its 10 s passed', async () => {
    const queueId = await itemBetweenJobAndEnd(short, 11);
    await sweepFrom(long);
    expect(await itemOf(queueId)).toEqual({ status: 'error', error: 'abandoned: the instance running it stopped' });
  });
});

describe('rate limit windows', () => {
  it('windows of minutes more than 5 minutes past are deleted, in batches; recent ones are kept with their counts', async () => {
    const team = await setupTeam(long, { credits: 100, team: { limits: { requests_per_minute: 3 } } });
    const called = await long.request('POST', '/v1/chat/completions', { token: team.key, body: { model: team.group, messages } });
    expect(called.status, JSON.stringify(called.body)).toBe(200);
    const subject = `team:${team.teamId}`;
    const windowsOf = () => query(long, `SELECT window_start, requests FROM rate_windows WHERE subject = $1 ORDER BY window_start`, [subject]);
    const [current] = await windowsOf();
    expect(current).toMatchObject({ requests: 1 });
    // 2500 windows of minutes 6 minutes ago and older (more than two batches), and one of 4 minutes ago.
    await query(
      long,
      `INSERT INTO rate_windows (subject, window_start, requests)
       SELECT $1, date_trunc('minute', now()) - make_interval(mins => 6 + n), 1 FROM generate_series(0, 2499) AS n`,
      [subject],
    );
    const recent = await query(
      long,
      `INSERT INTO rate_windows (subject, window_start, requests) VALUES ($1, date_trunc('minute', now()) - interval '4 minutes', 2) RETURNING window_start, requests`,
      [subject],
    );

    await sweepFrom(short);
    expect(await windowsOf()).toEqual([...recent, current]);
  });
});
