import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedUpstream, type SimulatedUpstream } from '../../src/upstream/simulated-server.js';
import { MICRO, expectLedgerConsistent } from '../helpers/ledger.js';
import { openStream, parseSse, safeJson } from '../helpers/sse.js';
import {
  CHAT,
  api,
  expectedContent,
  freshDatabase,
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
 * Two creditgate processes on one database share one team's credits: 100 concurrent create-and-call-stream split
 * across both, for a team that can afford 30 jobs. The balance row serialises both instances, so exactly 30 run
 * and are charged, 70 are refused with 402, and the balance ends at exactly 0.
 *
 * Twice: with the hold written before the upstream is contacted (then the refused requests never reach it), and
 * with early upstream start forced (EARLY_UPSTREAM_MIN_HOLDS=1, both instances warmed by one paid stream so each
 * believes the team can pay): then refused requests may reach the upstream, but each of those is aborted and none
 * is answered or charged.
 */

const CREDITS = 30;
const REQUESTS = 100;
const CHUNKS = 5;

let db: FreshDatabase;
let upstream: SimulatedUpstream;

beforeAll(async () => {
  [db, upstream] = await Promise.all([freshDatabase(), startSimulatedUpstream()]);
});

afterAll(async () => {
  await stopAllServers();
  await upstream?.close();
  await db?.drop();
});

const EARLY_REFUSAL_LOG = 'a call started before its hold was written, and the hold failed';

const MODES: { name: string; early: boolean; env: Record<string, string> }[] = [
  { name: 'the hold written first', early: false, env: { EARLY_UPSTREAM_MIN_HOLDS: '0' } },
  // What an instance knows of the team's credits lives CACHE_TTL_MS: long enough here to outlast the warm-ups.
  { name: 'early upstream start', early: true, env: { EARLY_UPSTREAM_MIN_HOLDS: '1', CACHE_TTL_MS: '60000' } },
];

describe.each(MODES)('two creditgate processes on one database, $name', ({ early, env }) => {
  let servers: ServerProcess[];

  beforeAll(async () => {
    servers = await Promise.all([0, 1].map(() => spawnServer({ databaseUrl: db.url, upstreamBaseURL: upstream.baseURL, env })));
  });

  it(`sell exactly ${CREDITS} jobs of a ${CREDITS}-credit team between them, never more`, async () => {
    const [a, b] = servers as [ServerProcess, ServerProcess];
    const warmups = early ? servers.length : 0;
    const team = await fundedTeam(a.url, CREDITS + warmups);
    // With early start, the streams last longer than refusing a hold can take on a busy machine, so every upstream
    // request of a refused hold is still open when creditgate aborts it.
    upstream.setResponder(() => slowStream(CHUNKS, early ? 500 : 40));
    // Both processes warmed up (key verified, routes and validation run once), so neither starts the race late;
    // for early start each also serves one paid stream, from which it learns the team can pay.
    const warmJobIds = new Set<string | null | undefined>();
    for (const server of servers) {
      expect((await api(server.url, 'GET', `/api/credits/teams/${team.teamId}/balance`, { token: team.key })).status).toBe(200);
      expect((await api(server.url, 'POST', '/api/jobs/create-and-call-stream', { token: team.key, body: { team_id: team.teamId } })).status).toBe(400);
      if (early) {
        const warm = await openStream(server, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'warm-up', ...CHAT }).done;
        expect(warm.status, warm.text).toBe(200);
        warmJobIds.add(warm.headers?.get('x-job-id'));
      }
    }
    const upstreamBefore = upstream.requests.length;

    const results = await Promise.all(
      Array.from({ length: REQUESTS }, (_, i) =>
        openStream(i % 2 === 0 ? a : b, '/api/jobs/create-and-call-stream', team.key, {
          team_id: team.teamId,
          job_type: 'shared',
          user_id: `u${i}`,
          ...CHAT,
        }).done.then((result) => ({ ...result, instance: i % 2 })),
      ),
    );

    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status !== 200);
    for (const result of results) expect(result.transportError).toBeUndefined();
    expect(ok).toHaveLength(CREDITS);
    expect(refused).toHaveLength(REQUESTS - CREDITS);
    // Both instances sold some (the split is not a trick of one instance doing all the work).
    expect(new Set(ok.map((r) => r.instance)).size).toBe(2);
    for (const result of ok) {
      const stream = parseSse(result.text);
      expect(stream.endsWithDone, result.text.slice(-200)).toBe(true);
      expect(stream.errors).toEqual([]);
      expect(stream.content).toBe(expectedContent(CHUNKS));
    }
    for (const result of refused) {
      expect(result.status, result.text).toBe(402);
      const body = safeJson(result.text) as any;
      expect(isErrorShape(body), result.text).toBe(true);
      expect(body.error.code).toBe('insufficient_credits');
    }

    const reached = upstream.requests.slice(upstreamBefore);
    if (early) {
      // Calls did start before their holds were written, and some of those holds failed (each such refusal is logged).
      // Their upstream requests that got out (one waiting for a new connection may not have) were aborted before
      // their end.
      // The logger writes asynchronously: the line may follow the answers.
      await expect
        .poll(() => servers.some((server) => server.output().includes(EARLY_REFUSAL_LOG)), { message: 'an early start met a refused hold', timeout: 10_000 })
        .toBe(true);
      const closed = await Promise.all(reached.map((request) => upstream.waitForClosed(request.id)));
      expect(closed.filter((request) => request.abortedByClient)).toHaveLength(reached.length - CREDITS);
    } else {
      // Only the funded jobs reached the upstream.
      expect(reached).toHaveLength(CREDITS);
    }
    // Each paid job is completed and charged once; the team has nothing left.
    const jobs = (await jobsOf(db.pool, team.teamId)).filter((job) => !warmJobIds.has(job.id));
    expect(jobs).toHaveLength(CREDITS);
    for (const job of jobs) expect(job).toMatchObject({ status: 'completed', charges: 1, releases: 0, charged_micro: MICRO });
    expect(new Set(ok.map((r) => r.headers?.get('x-job-id')))).toEqual(new Set(jobs.map((j) => j.id)));
    expect(await expectLedgerConsistent(db.pool, team.teamId, { jobs: true })).toEqual({ balanceMicro: 0, heldMicro: 0 });

    // Neither instance logged an unhandled error while racing the other.
    for (const server of servers) expect(server.output()).not.toMatch(/"level":(50|60)/);
  });
});
