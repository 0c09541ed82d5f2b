import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedUpstream, type SimulatedUpstream } from '../../src/upstream/simulated-server.js';
import { MICRO, expectLedgerConsistent } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { openStream, parseSse, type StreamResult } from '../helpers/sse.js';
import { poll } from '../helpers/wait.js';
import {
  CHAT,
  ageOpenWork,
  api,
  expectedContent,
  freshDatabase,
  fundedTeam,
  jobsOf,
  openCalls,
  slowStream,
  spawnServer,
  stopAllServers,
  type FreshDatabase,
  type ServerProcess,
} from './support.js';

/**
 * kill -9 of a creditgate process in the middle of 55 streams, then a restart on the same database. Whatever was
 * in flight must end settled by the sweeper: no job left open, no hold left, nothing charged for the jobs that
 * never completed, every balance equal to its ledger, and an Idempotency-Key whose request died with the process
 * usable again once its claim is swept (the retry runs once and is charged once).
 */

const SERVER_ENV = { JOB_TIMEOUT_SECONDS: '10', SWEEP_INTERVAL_SECONDS: '1' };
/** 9 s streams: far longer than it takes to start all 55 on a busy machine, so none can finish before the kill. */
const CHUNKS = 300;
const CHUNK_DELAY_MS = 30;

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

describe('a creditgate process killed with -9 mid-stream', () => {
  it('leaves nothing open or held once the restarted instance has swept, and bills each abandoned stream once, at its reservation', async () => {
    upstream.setResponder(() => slowStream(CHUNKS, CHUNK_DELAY_MS));
    const first: ServerProcess = await spawnServer({ databaseUrl: db.url, upstreamBaseURL: upstream.baseURL, env: SERVER_ENV });
    const team = await fundedTeam(first.url, 100);

    // 50 create-and-call-stream (5 of them with an Idempotency-Key) and 5 jobs created first, then streamed into.
    const idempotent = new Map<number, string>();
    const streams = Array.from({ length: 50 }, (_, i) => {
      const headers: Record<string, string> = {};
      if (i < 5) {
        idempotent.set(i, `crash-retry-${i}-${team.teamId}`);
        headers['idempotency-key'] = idempotent.get(i)!;
      }
      return openStream(first, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'crash', user_id: `u${i}`, ...CHAT }, { headers });
    });
    const jobIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      const job = await api(first.url, 'POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'crash-manual' } });
      expect(job.status, JSON.stringify(job.body)).toBe(201);
      jobIds.push(job.body.job_id);
    }
    const jobStreams = jobIds.map((jobId) => openStream(first, `/api/jobs/${jobId}/llm-call-stream`, team.key, CHAT));
    const all = [...streams, ...jobStreams];

    // Every stream is flowing (first bytes received) and every upstream request is still open.
    await Promise.race([
      Promise.all(all.map((s) => s.started)),
      new Promise((_, reject) => setTimeout(() => reject(new Error('the 55 streams did not all start within 30 s')), 30_000)),
    ]);
    await poll(async () => (upstream.openStreams() >= 55 ? true : undefined), 10_000, '55 open upstream streams');
    const [beforeCrash] = await query(db.pool, `SELECT count(*)::int AS n FROM jobs WHERE team_id = $1 AND status = 'completed'`, [team.teamId]);
    expect(beforeCrash.n, 'no stream may have finished before the crash (streams are too slow)').toBe(0);

    await first.kill9();

    // Clients see their streams end (never hang) and none of them saw [DONE].
    const results: StreamResult[] = await Promise.all(all.map((s) => s.done));
    for (const result of results) {
      expect(result.status).toBe(200);
      expect(parseSse(result.text).endsWithDone, result.text.slice(-200)).toBe(false);
      expect(result.transportError, 'a killed server must not look like a cleanly finished stream').toBeDefined();
    }

    // The crash really left work behind: 55 open jobs holding 55 credits, 55 calls in progress.
    const open = await query(db.pool, `SELECT count(*)::int AS n FROM jobs WHERE team_id = $1 AND status IN ('pending', 'in_progress')`, [team.teamId]);
    expect(open[0].n).toBe(55);
    expect(await openCalls(db.pool, team.teamId)).toBe(55);
    expect(await expectLedgerConsistent(db.pool, team.teamId, { jobs: true })).toEqual({ balanceMicro: 100 * MICRO, heldMicro: 55 * MICRO });

    // Restart on the same database; age the abandoned work as if JOB_TIMEOUT_SECONDS had passed.
    const second = await spawnServer({ databaseUrl: db.url, upstreamBaseURL: upstream.baseURL, env: SERVER_ENV });
    await ageOpenWork(db.pool);
    await poll(
      async () => {
        const [row] = await query(
          db.pool,
          `SELECT (SELECT count(*) FROM jobs WHERE status IN ('pending', 'in_progress'))::int AS jobs,
                  (SELECT count(*) FROM idempotency_keys WHERE status = 'in_progress')::int AS claims`,
        );
        return row.jobs === 0 && row.claims === 0 ? true : undefined;
      },
      15_000,
      'the sweeper of the restarted instance to expire every open job and free every orphaned claim',
    );

    // Nobody can say what the dead instance's calls delivered (they were streaming output): each is billed at its
    // reservation, here the job's price, exactly once.
    const jobs = await jobsOf(db.pool, team.teamId);
    expect(jobs).toHaveLength(55);
    for (const job of jobs) {
      expect(job, 'every abandoned job is expired and charged its reservation exactly once').toMatchObject({
        status: 'expired',
        charges: 1,
        releases: 0,
        charged_micro: MICRO,
      });
    }
    expect(await openCalls(db.pool, team.teamId)).toBe(0);
    const calls = await query(
      db.pool,
      `SELECT status::text, usage_source::text, count(*)::int AS n FROM llm_calls WHERE team_id = $1 GROUP BY status, usage_source`,
      [team.teamId],
    );
    expect(calls).toEqual([{ status: 'failed', usage_source: 'reserved', n: 55 }]);
    expect(await expectLedgerConsistent(db.pool, team.teamId, { jobs: true })).toEqual({ balanceMicro: 45 * MICRO, heldMicro: 0 });

    // Retrying the requests that died with the process, with the same Idempotency-Key, runs them once now.
    upstream.setResponder(() => slowStream(5, 5));
    const retries = await Promise.all(
      [...idempotent.entries()].map(([i, key]) =>
        openStream(
          second,
          '/api/jobs/create-and-call-stream',
          team.key,
          { team_id: team.teamId, job_type: 'crash', user_id: `u${i}`, ...CHAT },
          { headers: { 'idempotency-key': key } },
        ).done,
      ),
    );
    for (const retry of retries) {
      expect(retry.status, retry.text).toBe(200);
      const parsed = parseSse(retry.text);
      expect(parsed.endsWithDone, retry.text).toBe(true);
      expect(parsed.errors).toEqual([]);
      expect(parsed.content).toBe(expectedContent(5));
    }
    // And a second retry replays (Idempotent-Replayed) without a new job or charge.
    const replay = await openStream(
      second,
      '/api/jobs/create-and-call-stream',
      team.key,
      { team_id: team.teamId, job_type: 'crash', user_id: 'u0', ...CHAT },
      { headers: { 'idempotency-key': idempotent.get(0)! } },
    ).done;
    expect(replay.status, replay.text).toBe(200);
    expect(replay.headers?.get('idempotent-replayed')).toBe('true');
    expect(parseSse(replay.text).content).toBe(expectedContent(5));

    const after = await jobsOf(db.pool, team.teamId);
    expect(after).toHaveLength(60);
    expect(after.filter((j) => j.status === 'completed').every((j) => j.charges === 1 && j.charged_micro === MICRO)).toBe(true);
    expect(after.filter((j) => j.status === 'completed')).toHaveLength(5);
    expect(await expectLedgerConsistent(db.pool, team.teamId, { jobs: true })).toEqual({ balanceMicro: 40 * MICRO, heldMicro: 0 });

    // The restarted instance is healthy and its sweeper found nothing wrong to log.
    expect((await api(second.url, 'GET', '/ready', { token: null })).status).toBe(200);
    expect(second.output()).not.toMatch(/"level":(50|60)/);
  });
});
