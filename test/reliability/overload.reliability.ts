import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedUpstream, type SimulatedUpstream } from '../../src/upstream/simulated-server.js';
import { MICRO, expectLedgerConsistent } from '../helpers/ledger.js';
import { openStream, parseSse, safeJson, type StreamResult } from '../helpers/sse.js';
import { maxOverlap } from '../helpers/upstream.js';
import { sleep } from '../helpers/wait.js';
import {
  CHAT,
  api,
  freshDatabase,
  expectedContent,
  fundedTeam,
  isErrorShape,
  jobsOf,
  slowStream,
  spawnServer,
  stopAllServers,
  type FreshDatabase,
  type ServerProcess,
} from './support.js';

/**
 * The server runs in its own process (as in production), so its answers are timed without the test's own load on
 * the event loop. Ten times more concurrent streams than MAX_INFLIGHT_REQUESTS: the excess is refused at once with 503 (or 429)
 * and Retry-After in the error envelope, the admitted streams run to [DONE], /health keeps answering, the
 * instance recovers, and exactly the successful streams are charged.
 */

const MAX_INFLIGHT = 20;
const BURST = MAX_INFLIGHT * 10;
const CHUNKS = 40;
const CHUNK_DELAY_MS = 100;
/**
 * A refusal must come before an admitted stream could have finished (40 x 100 ms), which proves it was not queued
 * behind the admitted streams; measured from the client, so it includes the test process's own scheduling delays.
 */
const FAST_REFUSAL_MS = CHUNKS * CHUNK_DELAY_MS;

let db: FreshDatabase;
let upstream: SimulatedUpstream;
let server: ServerProcess;

beforeAll(async () => {
  [db, upstream] = await Promise.all([freshDatabase(), startSimulatedUpstream()]);
  server = await spawnServer({
    databaseUrl: db.url,
    upstreamBaseURL: upstream.baseURL,
    env: { MAX_INFLIGHT_REQUESTS: String(MAX_INFLIGHT), DB_POOL_MAX: '20' },
  });
});

afterAll(async () => {
  await stopAllServers();
  await upstream?.close();
  await db?.drop();
});

describe(`${BURST} concurrent streams against MAX_INFLIGHT_REQUESTS=${MAX_INFLIGHT}`, () => {
  it('serves or quickly refuses every one, keeps /health up, recovers, and charges exactly the served streams', async () => {
    const team = await fundedTeam(server.url, 1_000);
    upstream.setResponder(() => slowStream(CHUNKS, CHUNK_DELAY_MS));
    const upstreamBefore = upstream.requests.length;

    // /health is polled all along the burst; each answer must be a 200 within a second.
    let bursting = true;
    const health: { status: number; ms: number }[] = [];
    const healthLoop = (async () => {
      while (bursting) {
        const startedAt = performance.now();
        const status = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(5_000) }).then(
          (r) => r.status,
          () => 0,
        );
        health.push({ status, ms: performance.now() - startedAt });
        await sleep(50);
      }
    })();

    const burstStarted = performance.now();
    const results: StreamResult[] = await Promise.all(
      Array.from({ length: BURST }, (_, i) =>
        openStream(server, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'burst', user_id: `u${i}`, ...CHAT }, { timeoutMs: 30_000 })
          .done,
      ),
    );
    const burstMs = performance.now() - burstStarted;
    bursting = false;
    await healthLoop;

    const served = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status !== 200);
    for (const result of results) {
      expect(result.transportError, 'no request may hang or be cut').toBeUndefined();
      expect([200, 429, 503], result.text.slice(0, 300)).toContain(result.status);
    }
    for (const result of served) {
      expect(result.contentType).toContain('text/event-stream');
      const stream = parseSse(result.text);
      expect(stream.endsWithDone, result.text.slice(-300)).toBe(true);
      expect(stream.errors).toEqual([]);
      expect(stream.content).toBe(expectedContent(CHUNKS));
    }
    for (const result of refused) {
      expect(result.contentType).toContain('application/json');
      const body = safeJson(result.text);
      expect(isErrorShape(body), result.text).toBe(true);
      expect(result.headers?.get('retry-after'), 'a refusal says when to retry').toMatch(/^\d+$/);
      expect(result.elapsedMs, 'a refusal is fast').toBeLessThan(FAST_REFUSAL_MS);
    }
    expect(served.length, 'the instance still serves up to its limit').toBeGreaterThanOrEqual(1);
    expect(refused.length, 'the excess is shed').toBeGreaterThan(0);
    expect(burstMs, 'the whole burst is bounded').toBeLessThan(30_000);

    // Never more upstream streams at once than the instance admits.
    const upstreamRequests = upstream.requests.slice(upstreamBefore);
    expect(upstreamRequests).toHaveLength(served.length);
    expect(maxOverlap(upstreamRequests)).toBeLessThanOrEqual(MAX_INFLIGHT);

    expect(health.length).toBeGreaterThan(0);
    expect(health.filter((h) => h.status !== 200), 'every /health answer during the burst is 200').toEqual([]);
    expect(Math.max(...health.map((h) => h.ms)), '/health answers within a second').toBeLessThan(1_000);

    // Recovered: a normal request after the burst is served in full.
    upstream.setResponder(() => slowStream(3, 5));
    const after = await openStream(server, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'after', ...CHAT }).done;
    expect(after.status, after.text).toBe(200);
    expect(parseSse(after.text).endsWithDone).toBe(true);
    expect((await api(server.url, 'GET', `/api/credits/teams/${team.teamId}/balance`)).status).toBe(200);

    // Money: one completed, charged job per served stream; refusals created nothing.
    const jobs = await jobsOf(db.pool, team.teamId);
    expect(jobs).toHaveLength(served.length + 1);
    for (const job of jobs) expect(job).toMatchObject({ status: 'completed', charges: 1, releases: 0, charged_micro: MICRO });
    const [charges] = (await db.pool.query(`SELECT count(*)::int AS n FROM credit_ledger WHERE team_id = $1 AND entry_type = 'charge'`, [team.teamId])).rows;
    expect(charges.n).toBe(served.length + 1);
    expect(await expectLedgerConsistent(db.pool, team.teamId, { jobs: true })).toEqual({
      balanceMicro: (1_000 - served.length - 1) * MICRO,
      heldMicro: 0,
    });
  });
});
