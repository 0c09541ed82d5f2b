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
 * and are charged, 70 are refused with 402 before any upstream call, and the balance ends at exactly 0.
 */

const CREDITS = 30;
const REQUESTS = 100;
const CHUNKS = 5;

let db: FreshDatabase;
let upstream: SimulatedUpstream;
let servers: ServerProcess[];

beforeAll(async () => {
  [db, upstream] = await Promise.all([freshDatabase(), startSimulatedUpstream()]);
  servers = await Promise.all([0, 1].map(() => spawnServer({ databaseUrl: db.url, upstreamBaseURL: upstream.baseURL })));
});

afterAll(async () => {
  await stopAllServers();
  await upstream?.close();
  await db?.drop();
});

describe('two creditgate processes on one database', () => {
  it(`sell exactly ${CREDITS} jobs of a ${CREDITS}-credit team between them, never more`, async () => {
    const [a, b] = servers as [ServerProcess, ServerProcess];
    const team = await fundedTeam(a.url, CREDITS);
    upstream.setResponder(() => slowStream(CHUNKS, 40));
    // Both processes warmed up (key verified, routes and validation run once), so neither starts the race late.
    for (const server of servers) {
      expect((await api(server.url, 'GET', `/api/credits/teams/${team.teamId}/balance`, { token: team.key })).status).toBe(200);
      expect((await api(server.url, 'POST', '/api/jobs/create-and-call-stream', { token: team.key, body: { team_id: team.teamId } })).status).toBe(400);
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

    // Only the funded jobs reached the upstream; each is completed and charged once; the team has nothing left.
    expect(upstream.requests.length - upstreamBefore).toBe(CREDITS);
    const jobs = await jobsOf(db.pool, team.teamId);
    expect(jobs).toHaveLength(CREDITS);
    for (const job of jobs) expect(job).toMatchObject({ status: 'completed', charges: 1, releases: 0, charged_micro: MICRO });
    expect(new Set(ok.map((r) => r.headers?.get('x-job-id')))).toEqual(new Set(jobs.map((j) => j.id)));
    expect(await expectLedgerConsistent(db.pool, team.teamId, { jobs: true })).toEqual({ balanceMicro: 0, heldMicro: 0 });

    // Neither instance logged an unhandled error while racing the other.
    for (const server of servers) expect(server.output()).not.toMatch(/"level":(50|60)/);
  });
});
