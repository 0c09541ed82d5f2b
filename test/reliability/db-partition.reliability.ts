import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedUpstream, type SimulatedUpstream } from '../../src/upstream/simulated-server.js';
import { query } from '../helpers/postgres.js';
import { openStream, safeJson, type StreamResult } from '../helpers/sse.js';
import { startPartitionableRelay, type PartitionableRelay } from '../helpers/tcp-partition.js';
import { poll, sleep } from '../helpers/wait.js';
import {
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
 * The network to the database is cut while streams run, without a connection being closed (a partition, a frozen
 * host): statements get no answer, connections opened meanwhile never finish their handshake, and the listening
 * connection hears nothing. Unlike an outage that closes connections (db-outage), nothing tells creditgate: only
 * its own timeouts (DB_QUERY_TIMEOUT_MS, DB_CONNECT_TIMEOUT_MS, the listener's liveness check) can.
 *
 * What this checks:
 * - No client waits for the database to come back: every stream and request ends while the network is still cut,
 *   complete, with an in-band error event, or with a JSON error, within a few statement timeouts.
 * - Money as with any outage: `[DONE]` charged once, a deferred recording once too, an error never; every
 *   statement whose answer was lost is reconciled once the database answers (nothing left held or open).
 * - Healed, the instance serves again without a restart, and its listening connection was replaced.
 */

const QUERY_TIMEOUT_MS = 1_500;
const SERVER_ENV = {
  DB_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
  DB_CONNECT_TIMEOUT_MS: '1000',
  JOB_TIMEOUT_SECONDS: '10',
  SWEEP_INTERVAL_SECONDS: '1',
  DB_POOL_MAX: '10',
  EARLY_UPSTREAM_MIN_HOLDS: '1',
  LOG_LEVEL: 'warn',
};
/** Longer than the few statement timeouts a stream may meet, and than the listener's liveness interval (5 s). */
const PARTITION_MS = 12_000;
const CHUNK_DELAY_MS = 50;
/** Stream lengths in chunks: all end their output inside the partition, the first ones soon after the cut. */
const LENGTHS = [4, 8, 12, 16, 24, 32, 40, 60];

let db: FreshDatabase;
let upstream: SimulatedUpstream;
let relay: PartitionableRelay;
let server: ServerProcess;

beforeAll(async () => {
  [db, upstream] = await Promise.all([freshDatabase(), startSimulatedUpstream()]);
  const target = new URL(db.url);
  relay = await startPartitionableRelay(target.hostname, Number(target.port || 5432));
  server = await spawnServer({ databaseUrl: relay.url(db.url), upstreamBaseURL: upstream.baseURL, env: SERVER_ENV });
});

afterAll(async () => {
  relay?.heal();
  await stopAllServers();
  await relay?.close();
  await upstream?.close();
  await db?.drop();
});

const chatFor = (chunks: number) => ({ messages: [{ role: 'user', content: `chunks=${chunks}` }] });

/** The backend pid of the instance's listening connection, read directly (not through the relay). */
async function notifierPid(): Promise<number | undefined> {
  const [row] = await query(db.pool, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'creditgate-notifier'`);
  return row?.pid;
}

describe('a network partition between creditgate and its database', () => {
  it('answers every client while the network is cut, charges as seen, and serves again once it heals', async () => {
    const team = await fundedTeam(server.url, 50);
    upstream.setResponder((request) => {
      const text = String(request.body?.messages?.at(-1)?.content ?? '');
      return slowStream(Number(/chunks=(\d+)/.exec(text)?.[1] ?? 3), CHUNK_DELAY_MS);
    });
    // A warm pool and a cached key, so the partition catches connections the instance believes are fine.
    for (let i = 0; i < 3; i++) {
      const warm = await openStream(server, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'warm', ...chatFor(2) }).done;
      expect(warm.status, warm.text).toBe(200);
    }
    const listenerBefore = await notifierPid();
    expect(listenerBefore).toBeDefined();

    const streams = LENGTHS.map((chunks) =>
      openStream(server, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: `len-${chunks}`, ...chatFor(chunks) }, { timeoutMs: 60_000 }),
    );
    await Promise.all(streams.map((s) => s.started));
    const endedAt: number[] = [];
    const results: Promise<StreamResult[]> = Promise.all(streams.map((s, i) => s.done.then((result) => ((endedAt[i] = performance.now()), result))));

    await sleep(100);
    relay.cut();
    const cutAt = performance.now();
    await sleep(300);
    const duringStartedAt = performance.now();
    const during = await openStream(server, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'during', ...chatFor(3) }, { timeoutMs: 30_000 }).done;
    const duringMs = performance.now() - duringStartedAt;

    const ended = await Promise.race([results, sleep(PARTITION_MS - (performance.now() - cutAt)).then(() => undefined)]);
    await sleep(PARTITION_MS - (performance.now() - cutAt));
    const healedAt = performance.now();
    relay.heal();

    // A request arriving while the network is cut gets a JSON error once its hold goes unanswered, or is served.
    expect(during.transportError).toBeUndefined();
    expect(duringMs, 'a request during the partition is answered, not left waiting for the database').toBeLessThan(4 * QUERY_TIMEOUT_MS);
    if (during.status !== 200) {
      expect(isErrorShape(safeJson(during.text)), during.text).toBe(true);
      expect(during.status, during.text).toBe(503);
    }
    // Every stream ended before the network came back.
    expect(ended, `streams still open when the network healed (ended: ${endedAt.filter(Boolean).length} of ${LENGTHS.length})`).toBeDefined();
    for (const [i, at] of endedAt.entries()) expect(at, `stream ${i} ended while the network was cut`).toBeLessThan(healedAt);

    const outcomes = streamOutcomes(ended!, LENGTHS);
    expect(outcomes.some((o) => !o.complete), 'the partition caught the end of at least one stream (else this test proves nothing)').toBe(true);

    // Healed: served again without a restart, and the listening connection was replaced while the network was cut.
    await poll(async () => ((await fetch(`${server.url}/ready`)).status === 200 ? true : undefined), 20_000, '/ready to answer 200 again');
    // The old listening connection was never closed and works again once healed: only the liveness check replaces it.
    await poll(async () => {
      const pid = await notifierPid();
      return pid !== undefined && pid !== listenerBefore ? true : undefined;
    }, 20_000, 'a new listening connection');
    // Whatever the partition left open is reconciled or swept, and charged as its client saw it.
    await expectRecovered(server, db, team, 50, outcomes);
  });
});
