import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abandonCallsOfStoppedInstances } from '../../src/domain/jobs/job-sweeper.js';
import type { UpstreamScript } from '../../src/upstream/simulated-server.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam, type TeamSetup } from '../helpers/factories.js';
import { MICRO, expectLedgerConsistent, jobLedger } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { frameReader, parseSse, postStream, type Frame } from '../helpers/sse.js';
import { poll, sleep } from '../helpers/wait.js';

/**
 * Streams end cleanly whatever happens to them: a client that leaves at any instant, a reader that stops
 * reading, a server that is stopped, a sweep while a stream is live, an instance that dies. Each case ends with
 * its call recorded, its job settled or open as it should be, no hold left behind and no upstream socket open.
 */

const words = (n: number, delayMs: number): UpstreamScript => ({
  steps: Array.from({ length: n }, (_, i) => ({ type: 'content' as const, text: `w${i} `, delayMs })),
  usage: 'none',
});

/** The team's jobs, calls and holds: none in progress, none holding credits but the open jobs, books balanced. */
async function expectNothingLeft(target: TestApp, teamId: string): Promise<{ jobs: { id: string; status: string; charged_micro: string | null }[] }> {
  const calls = await query(target, `SELECT id FROM llm_calls WHERE team_id = $1 AND status = 'in_progress'`, [teamId]);
  expect(calls, 'no call in progress').toEqual([]);
  const jobs = await query(target, 'SELECT id, status::text, hold_micro::text, charged_micro::text FROM jobs WHERE team_id = $1 ORDER BY id', [teamId]);
  expect(jobs.filter((job) => job.status === 'in_progress'), 'no job in progress without a live call').toEqual([]);
  const { heldMicro } = await expectLedgerConsistent(target, teamId, { jobs: false });
  const openHolds = jobs.filter((job) => job.status === 'pending').reduce((sum, job) => sum + Number(job.hold_micro), 0);
  expect(heldMicro, 'held = the holds of open jobs').toBe(openHolds);
  return { jobs };
}

/** A one-shot job once settled (its stream's record and settle may come just after the client left). */
function settledJob(target: TestApp, jobId: string): Promise<{ status: string; charged_micro: string | null }> {
  return poll(
    async () => (await query(target, `SELECT status::text, charged_micro::text FROM jobs WHERE id = $1 AND status NOT IN ('pending', 'in_progress')`, [jobId]))[0],
    5_000,
    `job ${jobId} to settle`,
  );
}

/** A one-shot stream of `script` (max_tokens 100) on `target`: its job and the reading of its body. */
async function startStreamOfAtMost100Tokens(target: TestApp, team: TeamSetup, jobType: string, script: UpstreamScript) {
  target.upstream.enqueue(script);
  const response = await postStream(target, '/api/jobs/create-and-call-stream', team.key, {
    team_id: team.teamId,
    job_type: jobType,
    messages: [{ role: 'user', content: 'x' }],
    max_tokens: 100,
  });
  const jobId = response.headers.get('x-job-id')!;
  return { jobId, reading: response.text() };
}

/** A POST on a connection of its own that is destroyed `afterMs` after the request was written. */
function postAndLeave(target: TestApp, path: string, token: string, body: unknown, afterMs: number): Promise<void> {
  const url = new URL(target.url + path);
  const payload = JSON.stringify(body);
  return new Promise((resolve) => {
    const req = httpRequest({
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      method: 'POST',
      agent: false,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    });
    req.on('error', () => resolve());
    req.on('close', () => resolve());
    req.end(payload, () => setTimeout(() => req.destroy(), afterMs));
  });
}

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp({ JOB_TIMEOUT_SECONDS: '10', SWEEP_INTERVAL_SECONDS: '1', CALL_LEASE_SECONDS: '3' });
});
afterAll(() => app?.close());

describe('a client that leaves at any instant', () => {
  const instants = [0, 2, 5, 10, 20, 30];

  it.each(['create-and-call-stream', 'v1', 'llm-call-stream'] as const)(
    '%s: a client gone 0-30 ms after sending leaves no job in progress, no hold and no upstream socket, within a second',
    async (route) => {
      const team = await setupTeam(app, { credits: 100 });
      // Three seconds of output each: an upstream request closed within a second of its client leaving was aborted.
      app.upstream.setResponder(() => ({ ...words(20, 150) }));
      const since = Date.now();
      try {
        const jobIds: string[] = [];
        for (const afterMs of instants.flatMap((ms) => [ms, ms])) {
          const { path, body } = await routeRequest(app, team, route, jobIds);
          await postAndLeave(app, path, team.key, body, afterMs);
        }
        await poll(async () => (app.upstream.openStreams() === 0 ? true : undefined), 5_000, 'every upstream request to be closed');
        await poll(
          async () => {
            const live = await query(app, `SELECT 1 FROM llm_calls WHERE team_id = $1 AND status = 'in_progress'`, [team.teamId]);
            return live.length === 0 ? true : undefined;
          },
          2_000,
          'every call to be recorded',
        );
        const { jobs } = await expectNothingLeft(app, team.teamId);
        // One-shot jobs ended with their call; the multi-call jobs stay open (their client may come back) and hold only their price.
        if (route === 'llm-call-stream') expect(jobs.every((job) => job.status === 'pending')).toBe(true);
        else expect(jobs.every((job) => job.status !== 'pending')).toBe(true);
        for (const request of app.upstream.requests.filter((r) => r.closedAt === undefined)) throw new Error(`upstream request ${request.id} still open`);
        const ours = app.upstream.requests.filter((r) => r.startedAt >= since);
        expect(ours.length, 'requests that reached the upstream').toBeGreaterThan(0);
        for (const request of ours) {
          expect(request.abortedByClient, `upstream request ${request.id} aborted`).toBe(true);
          // It started after its client sent the request, and the client left at most 30 ms after sending.
          expect(request.closedAt! - request.startedAt, `upstream request ${request.id} open after its client left (ms)`).toBeLessThan(1_030);
        }
      } finally {
        app.upstream.setResponder(undefined);
      }
    },
  );

  it('a client that leaves right after the last content chunk (before [DONE]) still has its job recorded and charged', async () => {
    const team = await setupTeam(app, { credits: 5 });
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'all ' }, { type: 'content', text: 'of it' }, { type: 'finish', reason: 'stop' }] });
    const controller = new AbortController();
    const response = await postStream(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'leave', messages: [{ role: 'user', content: 'hi' }] }, { signal: controller.signal });
    const jobId = response.headers.get('x-job-id')!;
    const reader = frameReader(response);
    for (let frame = await reader.next(); frame; frame = await reader.next()) {
      if (JSON.parse(frame.data!).choices?.[0]?.finish_reason) break;
    }
    controller.abort();
    const job = await settledJob(app, jobId);
    expect(job).toMatchObject({ status: 'completed', charged_micro: String(MICRO) });
    await expectNothingLeft(app, team.teamId);
  });
});

async function routeRequest(target: TestApp, team: TeamSetup, route: 'create-and-call-stream' | 'v1' | 'llm-call-stream', jobIds: string[]) {
  const messages = [{ role: 'user', content: 'Tell me a story' }];
  if (route === 'create-and-call-stream') return { path: '/api/jobs/create-and-call-stream', body: { team_id: team.teamId, job_type: 'leave', messages } };
  if (route === 'v1') return { path: '/v1/chat/completions', body: { model: team.group, messages, stream: true } };
  const job = await target.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'leave' } });
  expect(job.status, JSON.stringify(job.body)).toBe(201);
  jobIds.push(job.body.job_id);
  return { path: `/api/jobs/${job.body.job_id}/llm-call-stream`, body: { messages } };
}

describe('a live stream is never swept', () => {
  it('a stream that outlives its idle timeout keeps its job; the job is charged when it ends', async () => {
    const team = await setupTeam(app, { credits: 5 });
    app.upstream.enqueue({ ...words(12, 250), usage: { prompt_tokens: 5, completion_tokens: 12 } });
    const response = await postStream(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'long', messages: [{ role: 'user', content: 'long' }] });
    const jobId = response.headers.get('x-job-id')!;
    const reading = response.text();
    // Idle for an hour as far as the sweeper can tell, and swept every second: the live call protects it.
    await sleep(500);
    await query(app, `UPDATE jobs SET updated_at = now() - interval '1 hour' WHERE id = $1`, [jobId]);
    const parsed = parseSse(await reading);
    expect(parsed.errors).toEqual([]);
    expect(parsed.endsWithDone).toBe(true);
    expect(parsed.content).toBe(Array.from({ length: 12 }, (_, i) => `w${i} `).join(''));
    const [job] = await query(app, 'SELECT status::text, charged_micro::text FROM jobs WHERE id = $1', [jobId]);
    expect(job).toEqual({ status: 'completed', charged_micro: String(MICRO) });
    await expectNothingLeft(app, team.teamId);
  });

  it('a call whose instance stopped renewing its lease is abandoned, billed at its reservation, and its late record changes nothing', async () => {
    const team = await setupTeam(app, { credits: 100, team: { budget_mode: 'consumption_tokens', tokens_per_credit: 100 } });
    const other = await createTestApp({ DATABASE_URL: app.databaseUrl, CALL_LEASE_SECONDS: '3', SWEEP_INTERVAL_SECONDS: '1' });
    try {
      // The stream runs on `other`, whose leases stop being renewed, as if the instance had died; `app` sweeps.
      other.deps.leases.stop();
      // 12 s of stream: the lease lapses after 3, and the sweeper (every second) must act before the stream's own
      // record arrives at its end; under a loaded CI machine a 6 s stream sometimes ended first.
      const { jobId, reading } = await startStreamOfAtMost100Tokens(other, team, 'orphan', {
        ...words(60, 200),
        usage: { prompt_tokens: 5, completion_tokens: 60 },
      });
      const [{ hold_micro: hold }] = await query(app, 'SELECT hold_micro::text FROM jobs WHERE id = $1', [jobId]);
      const settled = await poll(
        async () => (await query(app, `SELECT status::text, charged_micro::text FROM jobs WHERE id = $1 AND status = 'expired'`, [jobId]))[0],
        10_000,
        'the sweeper to abandon the call and expire its job',
      );
      expect(settled).toEqual({ status: 'expired', charged_micro: hold });
      const [call] = await query(app, 'SELECT status::text, usage_source::text, delivered FROM llm_calls WHERE job_id = $1', [jobId]);
      expect(call).toEqual({ status: 'failed', usage_source: 'reserved', delivered: true });
      await reading;
      // The stream's own record and settle came too late: the call and the charge stay as the sweeper left them.
      await sleep(300);
      expect((await jobLedger(app, jobId)).map((entry) => entry.type)).toEqual(['hold', 'charge']);
      expect((await query(app, 'SELECT usage_source::text FROM llm_calls WHERE job_id = $1', [jobId]))[0]).toEqual({ usage_source: 'reserved' });
      await expectNothingLeft(app, team.teamId);
    } finally {
      await other.close();
    }
  });
});

describe('a call abandoned while its stream still runs', () => {
  it("is billed at its reservation by its job's settle, whatever its late record says, and is counted out of the calls in flight once", async () => {
    // An instance too busy to renew a lease in time is, to the sweeper, one that died. Its stream goes on, and its
    // settle may come between the sweep's two steps: the call abandoned (the job pending again), the job not yet
    // expired. That settle must not charge the record it can no longer write.
    const lone = await createTestApp({ SWEEP_INTERVAL_SECONDS: '3600' });
    try {
      lone.deps.leases.stop();
      const team = await setupTeam(lone, { credits: 100, team: { budget_mode: 'consumption_tokens', tokens_per_credit: 100 } });
      const { jobId, reading } = await startStreamOfAtMost100Tokens(lone, team, 'late', {
        ...words(10, 300),
        usage: { prompt_tokens: 5, completion_tokens: 10 },
      });
      const [{ hold_micro: hold }] = await query(lone, 'SELECT hold_micro::text FROM jobs WHERE id = $1', [jobId]);
      await query(lone, `UPDATE llm_calls SET heartbeat_at = now() - interval '1 minute' WHERE job_id = $1`, [jobId]);
      expect(await abandonCallsOfStoppedInstances(lone.deps.db, { leaseSeconds: 3 })).toEqual([jobId]);

      const parsed = parseSse(await reading);
      expect(parsed.endsWithDone).toBe(true);
      expect(parsed.content).toBe(Array.from({ length: 10 }, (_, i) => `w${i} `).join(''));
      expect(await settledJob(lone, jobId)).toEqual({ status: 'completed', charged_micro: hold });
      // Its record is the reservation's: the prompt's bound and the completion limit the whole hold paid for.
      const [call] = await query(lone, 'SELECT status::text, usage_source::text, prompt_tokens, completion_tokens, prompt_bound_tokens FROM llm_calls WHERE job_id = $1', [jobId]);
      expect(call).toMatchObject({ status: 'failed', usage_source: 'reserved', completion_tokens: 100 });
      expect(call.prompt_tokens).toBe(call.prompt_bound_tokens);
      expect((await jobLedger(lone, jobId)).map((entry) => entry.type)).toEqual(['hold', 'charge']);
      const [counts] = await query(lone, 'SELECT open_jobs, calls_in_flight FROM credit_balances WHERE team_id = $1', [team.teamId]);
      expect(counts).toEqual({ open_jobs: 0, calls_in_flight: 0 });
      await expectNothingLeft(lone, team.teamId);
    } finally {
      await lone.close();
    }
  });
});

describe('a reader that stops reading', () => {
  it('is treated as gone after STREAM_WRITE_TIMEOUT_MS: the upstream is aborted, the call recorded and the job settled', async () => {
    const slow = await createTestApp({ STREAM_WRITE_TIMEOUT_MS: '500' });
    try {
      const team = await setupTeam(slow, { credits: 5 });
      const big = 'x'.repeat(64 * 1024);
      slow.upstream.enqueue({ steps: Array.from({ length: 400 }, () => ({ type: 'content' as const, text: big })), usage: 'none' });
      const url = new URL(`${slow.url}/api/jobs/create-and-call-stream`);
      const payload = JSON.stringify({ team_id: team.teamId, job_type: 'stall', messages: [{ role: 'user', content: 'x' }] });
      let jobId = '';
      const req = httpRequest({
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        agent: false,
        headers: { authorization: `Bearer ${team.key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      });
      req.on('response', (res) => {
        jobId = res.headers['x-job-id'] as string;
        res.pause(); // never read: the server's socket fills up
      });
      req.on('error', () => undefined);
      req.end(payload);
      const upstream = await slow.upstream.waitForRequests(1).then((requests) => requests[0]!);
      const closed = await slow.upstream.waitForClosed(upstream.id, 10_000);
      expect(closed.abortedByClient).toBe(true);
      const job = await settledJob(slow, jobId);
      expect(job).toEqual({ status: 'cancelled', charged_micro: String(MICRO) });
      const [call] = await query(slow, 'SELECT status::text, error, delivered FROM llm_calls WHERE job_id = $1', [jobId]);
      expect(call).toMatchObject({ status: 'cancelled', delivered: true, error: expect.stringMatching(/read nothing/) });
      req.destroy();
      await expectNothingLeft(slow, team.teamId);
    } finally {
      await slow.close();
    }
  });
});

describe('a graceful stop (SIGTERM)', () => {
  it('lets streams run for the grace period, then ends each with an error event and [DONE], records and settles it, and only then closes the pool', async () => {
    const stopping = await createTestApp({ SHUTDOWN_GRACE_MS: '400' });
    const team = await setupTeam(stopping, { credits: 10 });
    try {
      const job = await stopping.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'open' } });
      expect(job.status).toBe(201);
      stopping.upstream.setResponder(() => words(50, 100));
      const oneShot = await postStream(stopping, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'stop', messages: [{ role: 'user', content: 'x' }] });
      const inJob = await postStream(stopping, `/api/jobs/${job.body.job_id}/llm-call-stream`, team.key, { messages: [{ role: 'user', content: 'x' }] });
      const oneShotJob = oneShot.headers.get('x-job-id')!;
      const [first, second] = [frameReader(oneShot), frameReader(inJob)];
      await Promise.all([first.next(), second.next()]);

      const stoppedAt = Date.now();
      await stopping.stopGracefully();
      for (const reader of [first, second]) {
        const frames: Frame[] = await reader.rest();
        const data = frames.filter((frame) => frame.data !== null).map((frame) => frame.data!);
        expect(data.at(-1)).toBe('[DONE]');
        expect(JSON.parse(data.at(-2)!)).toMatchObject({ error: { code: 'server_shutting_down' } });
        expect(frames.at(-1)!.at - stoppedAt, 'streams ran through the grace period').toBeGreaterThanOrEqual(350);
      }
      // Nothing is left holding credits but the open multi-call job, whose client owns it; its call is recorded.
      const { jobs } = await expectNothingLeft(stopping, team.teamId);
      expect(jobs.find((j) => j.id === oneShotJob)).toMatchObject({ status: 'cancelled', charged_micro: String(MICRO) });
      expect(jobs.find((j) => j.id === job.body.job_id)).toMatchObject({ status: 'pending' });
      const calls = await query(stopping, 'SELECT status::text, delivered FROM llm_calls WHERE team_id = $1', [team.teamId]);
      expect(calls).toEqual([
        { status: 'cancelled', delivered: true },
        { status: 'cancelled', delivered: true },
      ]);
      expect(stopping.upstream.openStreams()).toBe(0);
      await expect(fetch(`${stopping.url}/health`)).rejects.toThrow();
    } finally {
      await stopping.close();
    }
  });
});
