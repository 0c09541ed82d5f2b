import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedUpstream, type SimulatedUpstream } from '../../src/upstream/simulated-server.js';
import { query } from '../helpers/postgres.js';
import { sleep } from '../helpers/wait.js';
import { streamsThroughShutdown, type SimContext } from './simulation/behaviours.js';
import { Cluster } from './simulation/cluster.js';
import { checkInvariants, readSnapshot, type Violation } from './simulation/invariants.js';
import { Observations, sawOutput } from './simulation/observations.js';
import { operationRandom } from './simulation/random.js';
import { runOperations, type RunReport } from './simulation/scheduler.js';
import { setupTeams, type TeamsSetup } from './simulation/teams.js';
import { UpstreamPlans } from './simulation/upstream-plans.js';
import { freshDatabase, stopAllServers, type FreshDatabase } from './support.js';

/**
 * Adversarial clients against two creditgate processes on one database (issue 12). A seeded scheduler runs
 * SIM_OPS operations, up to SIM_CONCURRENCY at a time, drawn from the client behaviours in simulation/behaviours.ts:
 * one-shot calls streamed or not (job routes and /v1/chat/completions), jobs of several calls (some concurrent on
 * one job) completed, completed as failed after output, cancelled or abandoned, clients that leave at any point
 * (during the body, 0–30 ms after sending, at the first byte, mid-stream, just before [DONE]), slow and stalled
 * readers, jobs idle past the job timeout and streams longer than it, and operator top-ups. The scripted upstream
 * answers each call as its plan says: long outputs, tool calls, in-band errors, resets, HTTP 500s, hangs, slow
 * streams. One instance is stopped with SIGTERM and one killed with -9 during the run, each then restarted.
 *
 * Once the clients are done and everything has settled, the database is judged against the billing rules and what
 * the clients saw (simulation/invariants.ts): balances equal their ledgers, held equals what open jobs hold, every
 * job settled once and charged at least its delivered usage and at most what it reserved, nothing left open, no
 * upstream request outliving its client, memory back within bounds.
 *
 * Replay: SIM_SEED=<seed> (printed at the start and in every failure) and SIM_OPS=<n> replay the same operation
 * plans; timing is the processes' own, so a replay explores the same plans, not the same interleaving.
 * Default seed: fixed under CI, random otherwise. SIM_OPS defaults to 2500 (about 2–3 minutes here); no operation
 * starts after SIM_MAX_RUN_SECONDS (default 150, 0 for none), so a busy machine runs a prefix of the same plans;
 * under CI at least MIN_OPS_UNDER_CI of them must have run, so a slow machine cannot quietly shrink the run.
 * A longer run is a bigger SIM_OPS with SIM_MAX_RUN_SECONDS=0. SIM_CONCURRENCY: clients at once (default 24).
 */

const CI_SEED = 12_012_026;
const SEED = process.env.SIM_SEED ? Number(process.env.SIM_SEED) >>> 0 : process.env.CI ? CI_SEED : Math.floor(Math.random() * 2 ** 32);
const OPS = Number(process.env.SIM_OPS ?? 2500);
const CONCURRENCY = Number(process.env.SIM_CONCURRENCY ?? 24);
/** Past this, no new operation starts (a busy machine runs a prefix of the same plans); 0: no limit. */
const MAX_RUN_SECONDS = Number(process.env.SIM_MAX_RUN_SECONDS ?? 150);
/** Under CI a run shorter than this fails: 'several thousand operations' is what the suite promises. */
const MIN_OPS_UNDER_CI = 2_000;
const JOB_TIMEOUT_SECONDS = 10;
const REPLAY = `SIM_SEED=${SEED} SIM_OPS=${OPS}`;

const SERVER_ENV: Record<string, string> = {
  JOB_TIMEOUT_SECONDS: String(JOB_TIMEOUT_SECONDS),
  SWEEP_INTERVAL_SECONDS: '1',
  CALL_LEASE_SECONDS: '3',
  SHUTDOWN_GRACE_MS: '3000',
  STREAM_WRITE_TIMEOUT_MS: '4000',
  UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: '4000',
  UPSTREAM_CHUNK_TIMEOUT_MS: '4000',
  UPSTREAM_TIMEOUT_MS: '8000',
  // Early upstream start (hold written while the upstream is contacted) whenever a team can afford a few holds.
  EARLY_UPSTREAM_MIN_HOLDS: '5',
  DB_POOL_MAX: '8',
};

/**
 * After the clients are done, abandoned jobs and crashed calls need the job timeout plus a few sweeps: wait until
 * nothing is open, or until nothing has changed for a while once that time has passed (what is left then stays).
 */
const SETTLE_TIME_MS = JOB_TIMEOUT_SECONDS * 1000 + 15_000;
const UNCHANGED_FOR_MS = 10_000;
const QUIESCE_TIMEOUT_MS = 75_000;

let db: FreshDatabase;
let upstream: SimulatedUpstream;
let cluster: Cluster;
let setup: TeamsSetup;
const plans = new UpstreamPlans();
const log = (line: string) => process.stdout.write(`${line}\n`);

beforeAll(async () => {
  log(`[sim] adversarial simulation: ${REPLAY} SIM_CONCURRENCY=${CONCURRENCY}`);
  [db, upstream] = await Promise.all([freshDatabase(), startSimulatedUpstream({ responder: plans.responder })]);
  cluster = new Cluster({ databaseUrl: db.url, upstreamBaseURL: upstream.baseURL, env: SERVER_ENV, size: 2 });
  await cluster.start();
  setup = await setupTeams(cluster.live()[0]!.url);
  log(`[sim] waive_failed_jobs ${setup.waiveSupported ? 'supported: one team waives failed jobs' : 'not supported by this server: that variant is skipped'}`);
});

afterAll(async () => {
  await stopAllServers();
  await upstream?.close();
  await db?.drop();
});

async function openWork() {
  const [row] = await query(
    db.pool,
    `SELECT (SELECT count(*) FROM jobs WHERE status IN ('pending', 'in_progress'))::int AS jobs,
            (SELECT count(*) FROM llm_calls WHERE status = 'in_progress')::int AS calls,
            (SELECT count(*) FROM queue_requests WHERE status IN ('queued', 'processing'))::int AS queue`,
  );
  return { jobs: row.jobs as number, calls: row.calls as number, queue: row.queue as number, upstream: upstream.openStreams() };
}

/** Polls until nothing is open (jobs, calls, queue items, upstream requests), or gives up and lets the checks say what is left. */
async function quiesce(): Promise<{ quiet: boolean; waitedMs: number; left: Awaited<ReturnType<typeof openWork>> }> {
  const startedAt = Date.now();
  let last = '';
  let lastChangeAt = startedAt;
  for (;;) {
    const left = await openWork();
    const waitedMs = Date.now() - startedAt;
    const quiet = left.jobs === 0 && left.calls === 0 && left.queue === 0 && left.upstream === 0;
    if (JSON.stringify(left) !== last) [last, lastChangeAt] = [JSON.stringify(left), Date.now()];
    const stuck = waitedMs > SETTLE_TIME_MS && Date.now() - lastChangeAt > UNCHANGED_FOR_MS;
    if (quiet || stuck || waitedMs > QUIESCE_TIMEOUT_MS) return { quiet, waitedMs, left };
    await sleep(500);
  }
}

/** Violations grouped by invariant: a count each, and the first few with their details when `details`. */
function summarise(violations: Violation[], examples: number, details: boolean): string {
  const groups = new Map<string, Violation[]>();
  for (const v of violations) groups.set(v.invariant, [...(groups.get(v.invariant) ?? []), v]);
  const lines: string[] = [];
  for (const [invariant, list] of [...groups.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`- ${invariant}: ${list.length} violation(s)`);
    for (const v of list.slice(0, examples)) {
      lines.push(`    ${v.message}`);
      if (details && v.details !== undefined) lines.push(`      ${JSON.stringify(v.details, (_, value) => (typeof value === 'bigint' ? value.toString() : value))}`);
    }
  }
  return lines.join('\n');
}

describe('adversarial clients against two creditgate instances on one database', () => {
  it(
    'keep every balance equal to its ledger, every job charged once for what it delivered, nothing left open',
    async () => {
      const observations = new Observations();
      const sim: SimContext = { cluster, teams: setup.teams, plans, observations, jobTimeoutMs: JOB_TIMEOUT_SECONDS * 1000, patienceMs: 12_000 };
      const report: RunReport = await runOperations({
        seed: SEED,
        ops: OPS,
        concurrency: CONCURRENCY,
        sim,
        log,
        maxRunMs: MAX_RUN_SECONDS > 0 ? MAX_RUN_SECONDS * 1000 : Number.POSITIVE_INFINITY,
        chaos: [
          {
            name: 'SIGTERM instance 0 (graceful stop) with streams longer than its grace in flight, then restart',
            atOp: Math.floor(OPS * 0.35),
            async run() {
              const streams = streamsThroughShutdown(sim, operationRandom(SEED, OPS), cluster.at(0)!, OPS);
              await streams.flowing;
              await cluster.gracefulRestart(0, 20_000);
              await streams.done;
            },
          },
          { name: 'kill -9 instance 1, then restart', atOp: Math.floor(OPS * 0.65), run: () => cluster.crashRestart(1) },
        ],
      });
      log(`[sim] ${report.opsRun} of ${OPS} operations in ${Math.round(report.elapsedMs / 1000)} s: ${JSON.stringify(report.counts)}`);
      log(`[sim] durations: ${JSON.stringify(report.durations)}`);

      const settled = await quiesce();
      log(`[sim] ${settled.quiet ? 'quiet' : 'NOT quiet'} after ${Math.round(settled.waitedMs / 1000)} s: ${JSON.stringify(settled.left)}`);

      const snapshot = await readSnapshot(db.pool, setup.teams.map((t) => t.teamId));
      const violations = await checkInvariants({ snapshot, simTeams: setup.teams, observations, upstream, cluster });
      const rss = await cluster.rss();
      const stats = {
        jobs: snapshot.jobs.length,
        byStatus: snapshot.jobs.reduce<Record<string, number>>((acc, j) => ({ ...acc, [j.status]: (acc[j.status] ?? 0) + 1 }), {}),
        calls: snapshot.calls.length,
        upstreamRequests: upstream.requests.length,
        operationsThatSawOutput: observations.operations.filter(sawOutput).length,
        rssMb: rss.map((p) => p.rssMb),
      };
      log(`[sim] ${JSON.stringify(stats)}`);

      const reportFile = path.join(tmpdir(), `creditgate-adversarial-${SEED}-${OPS}.json`);
      await writeFile(
        reportFile,
        JSON.stringify({ seed: SEED, ops: OPS, concurrency: CONCURRENCY, teams: setup.teams.map(({ key: _key, ...team }) => team), stats, run: report, quiesce: settled, violations, operations: observations.operations }, (_, v) => (typeof v === 'bigint' ? v.toString() : v), 2),
      );
      if (violations.length > 0) log(`[sim] ${violations.length} violations (${REPLAY}; full report ${reportFile}):\n${summarise(violations, 3, true)}`);

      // The harness worked: no exception of its own, both chaos events ran, the run did real work.
      expect(report.harnessErrors, `harness errors (${REPLAY})`).toEqual([]);
      expect(report.chaos.map((c) => [c.name, c.error ?? 'ok']), `chaos events (${REPLAY})`).toEqual(
        report.chaos.map((c) => [c.name, 'ok']),
      );
      expect(report.chaos).toHaveLength(2);
      if (process.env.CI) expect(report.opsRun, `operations run within SIM_MAX_RUN_SECONDS (${REPLAY})`).toBeGreaterThanOrEqual(Math.min(OPS, MIN_OPS_UNDER_CI));
      expect(stats.byStatus.completed ?? 0, 'jobs completed').toBeGreaterThan(report.opsRun / 20);
      expect(stats.operationsThatSawOutput, 'operations whose client received output').toBeGreaterThan(report.opsRun / 10);

      expect(violations.length, `invariant violations (${REPLAY}; details above and in ${reportFile}):\n${summarise(violations, 1, false)}\n`).toBe(0);
    },
    // The run (at most SIM_MAX_RUN_SECONDS), the last operations, the wait for the sweeper and the checks.
    (MAX_RUN_SECONDS > 0 ? MAX_RUN_SECONDS * 1000 : OPS * 200) + 150_000,
  );
});
