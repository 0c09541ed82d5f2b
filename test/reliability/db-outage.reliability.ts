import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedUpstream, type SimulatedUpstream } from '../../src/upstream/simulated-server.js';
import { query } from '../helpers/postgres.js';
import { openStream, safeJson, type StreamResult } from '../helpers/sse.js';
import { poll, sleep } from '../helpers/wait.js';
import {
  api,
  expectRecovered,
  freshDatabase,
  fundedTeam,
  isErrorShape,
  slowStream,
  spawnServer,
  stopAllServers,
  streamOutcomes,
  type FreshDatabase,
  type ServerProcess,
} from './support.js';

/**
 * The database goes away while streams are running: every connection of the server's database is terminated over
 * and over and new ones are refused (`ALLOW_CONNECTIONS false`) for OUTAGE_MS, then it comes back.
 *
 * What creditgate guarantees here (and this test checks):
 * - No client hangs: a stream that had started ends within a bounded time, either complete (`[DONE]`, no error
 *   event) or with an in-band `data: {"error": ...}` event; a request arriving during the outage gets a JSON error
 *   at once.
 * - A client that saw `[DONE]` was charged exactly once: the job is settled before `[DONE]` is written.
 * - A client that got its whole answer but whose call could not be recorded sees an in-band `recording_deferred`
 *   error before `[DONE]`; the call is recorded and its job settled (charged once) when the database is back, or,
 *   if it stays away too long, the sweeper expires the job without a charge. Never twice.
 * - A client that saw any other error was not charged (job_based mode): its job ends failed, or, when the failure came
 *   from the database itself and nothing could be written, it stays open until the sweeper expires it and releases
 *   its hold once the database is back.
 * - Afterwards nothing is left in progress or held, every balance equals its ledger, no job is settled twice, and
 *   the server (and its connection pool) serves new requests again without a restart.
 */

const OUTAGE_MS = 1_500;
const CHUNK_DELAY_MS = 50;
/** Stream lengths in chunks: some end before the outage starts, several inside it, some after it. */
const LENGTHS = [4, 12, 16, 20, 24, 28, 32, 36, 44, 60, 80];
/**
 * EARLY_UPSTREAM_MIN_HOLDS=1: once the server has seen the team afford a hold, one-shot calls contact the upstream
 * while their hold is being written, as for any team with ample credits, so the request during the outage is one
 * whose hold fails after its upstream request went out.
 */
const SERVER_ENV = { JOB_TIMEOUT_SECONDS: '10', SWEEP_INTERVAL_SECONDS: '1', DB_POOL_MAX: '10', EARLY_UPSTREAM_MIN_HOLDS: '1' };

let db: FreshDatabase;
let admin: pg.Pool;
let upstream: SimulatedUpstream;
let server: ServerProcess;

beforeAll(async () => {
  [db, upstream] = await Promise.all([freshDatabase(), startSimulatedUpstream()]);
  admin = new pg.Pool({ connectionString: db.serverUrl, max: 1 });
  admin.on('error', () => undefined);
  server = await spawnServer({ databaseUrl: db.url, upstreamBaseURL: upstream.baseURL, env: SERVER_ENV });
});

afterAll(async () => {
  // Whatever happened, the database must accept connections again before it can be dropped.
  await admin?.query(`ALTER DATABASE "${db.name}" ALLOW_CONNECTIONS true`).catch(() => undefined);
  await stopAllServers();
  await admin?.end();
  await upstream?.close();
  await db?.drop();
});

/** Cuts the database off for `ms`: refuses new connections and terminates every existing one every 50 ms. */
async function outage(ms: number): Promise<void> {
  await admin.query(`ALTER DATABASE "${db.name}" ALLOW_CONNECTIONS false`);
  try {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [db.name]);
      await sleep(50);
    }
  } finally {
    await admin.query(`ALTER DATABASE "${db.name}" ALLOW_CONNECTIONS true`);
  }
}

const chatFor = (chunks: number) => ({ messages: [{ role: 'user', content: `chunks=${chunks}` }] });

describe('a database outage in the middle of streams', () => {
  it('never hangs a client, never charges twice or for a failed stream, and recovers when the database returns', async () => {
    const team = await fundedTeam(server.url, 50);
    upstream.setResponder((request) => {
      const text = String(request.body?.messages?.at(-1)?.content ?? '');
      const chunks = Number(/chunks=(\d+)/.exec(text)?.[1] ?? 3);
      return slowStream(chunks, CHUNK_DELAY_MS);
    });

    // A warm pool, so the outage also kills connections the server believes are fine.
    for (let i = 0; i < 3; i++) expect((await api(server.url, 'GET', `/api/credits/teams/${team.teamId}/balance`)).status).toBe(200);

    const streams = LENGTHS.map((chunks) =>
      openStream(server, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: `len-${chunks}`, ...chatFor(chunks) }, { timeoutMs: 60_000 }),
    );
    await Promise.all(streams.map((s) => s.started));

    // Cut the database ~300 ms into the streams; meanwhile a new request and /ready must answer, not hang.
    await sleep(300);
    const cut = outage(OUTAGE_MS);
    await sleep(300);
    const duringStartedAt = performance.now();
    const [during, readyDuring] = await Promise.all([
      // 40 chunks (2 s): its upstream stream is still open when its hold fails.
      openStream(server, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'during', ...chatFor(40) }, { timeoutMs: 20_000 }).done,
      fetch(`${server.url}/ready`, { signal: AbortSignal.timeout(20_000) }).then(
        (r) => r.status,
        () => 0,
      ),
    ]);
    const duringMs = performance.now() - duringStartedAt;
    await cut;

    const results: StreamResult[] = await Promise.all(streams.map((s) => s.done));

    // A request during the outage: answered quickly with an error in the contract's shape (or, if the pool got a
    // connection in between, served in full). A database that is unreachable is a temporary condition the client
    // should retry: 503 with Retry-After, like overload, not a 500 "internal server error".
    expect(during.transportError).toBeUndefined();
    expect(duringMs, 'a request during the outage is answered, not left hanging').toBeLessThan(10_000);
    if (during.status !== 200) {
      expect(isErrorShape(safeJson(during.text)), during.text).toBe(true);
      expect(during.status, during.text).toBeGreaterThanOrEqual(500);
      expect.soft(during.status, `a request during the database outage: ${during.text}\n${server.output().split('\n').filter((l) => l.includes('unhandled error')).join('\n').slice(0, 3000)}`).toBe(503);
      expect.soft(during.headers?.get('retry-after') ?? '(no Retry-After)', 'a request during the database outage says when to retry').toMatch(/^\d+$/);
    }
    expect([200, 503], '/ready during the outage').toContain(readyDuring);
    if (during.status === 503) {
      // It started before its hold was written (logged when the hold failed); if its upstream request got out
      // before that (a new upstream connection may take longer), creditgate aborted it.
      await expect
        .poll(() => server.output(), { message: 'the request during the outage started early', timeout: 10_000 })
        .toContain('a call started before its hold was written, and the hold failed');
      const early = upstream.requests.filter((request) => request.body?.messages?.at(-1)?.content === 'chunks=40');
      expect(early.length).toBeLessThanOrEqual(1);
      for (const request of early) expect((await upstream.waitForClosed(request.id)).abortedByClient, 'creditgate aborted it').toBe(true);
    }

    // Every client got its whole stream or an error event; never a silent cut.
    const outcomes = streamOutcomes(results, LENGTHS);
    expect(outcomes.some((o) => !o.complete), 'the outage hit the end of at least one stream (else this test proves nothing)').toBe(true);
    expect(outcomes.some((o) => o.complete), 'streams that ended outside the outage were served in full').toBe(true);

    // The database is back: the server recovers by itself.
    await poll(async () => ((await fetch(`${server.url}/ready`)).status === 200 ? true : undefined), 15_000, '/ready to answer 200 again');
    // The LISTEN connection (cross-instance cancels, key revocations) is re-established too.
    await poll(
      async () => {
        const [row] = await query(
          admin,
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'creditgate-notifier'`,
          [db.name],
        );
        return row.n >= 1 ? true : undefined;
      },
      15_000,
      'the notifier to reconnect',
    );
    // Whatever the outage left open is swept once its timeout passes, and charged as its client saw it.
    await expectRecovered(server, db, team, 50, outcomes);
  });
});
