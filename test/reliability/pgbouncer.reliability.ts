import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedUpstream, type RecordedRequest, type SimulatedUpstream } from '../../src/upstream/simulated-server.js';
import { freePort } from '../helpers/app.js';
import type { TeamSetup } from '../helpers/factories.js';
import { MICRO, expectLedgerConsistent } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { openStream, parseSse, safeJson, type StreamResult } from '../helpers/sse.js';
import { poll, sleep } from '../helpers/wait.js';
import {
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
 * Three creditgate processes behind one PgBouncer (Debian's, 1.18: transaction pooling, no protocol-level prepared
 * statements) in front of one PostgreSQL, as docs/operations.md describes: DATABASE_URL through PgBouncer with
 * DB_PREPARED_STATEMENTS=false, DATABASE_DIRECT_URL straight to PostgreSQL for LISTEN and migrations.
 *
 * 150 create-and-call-stream for a team that can afford 60 jobs, spread over the three (c's first), with multi-call jobs whose
 * streams run on one instance cancelled through another; one instance is killed with -9 in the middle and started
 * again. Then: exactly 60 jobs sold (what the dead instance held is swept, whatever it gave back is sold after),
 * no job settled twice, every balance equal to its ledger, nothing held or in flight, cancels crossing instances
 * (the restarted one included), and never more server connections than PgBouncer's pool.
 */

const CREDITS = 60;
const REQUESTS = 150;
const CANCELS = 6;
const POOL_SIZE = 10;
/** About 3 s per paid stream: the kill lands while the dead instance's streams run. */
const CHUNKS = 30;
const CHUNK_DELAY_MS = 100;
/** A cancelled stream would run 20 s: ending early proves the cancel reached it. */
const CANCEL_CHUNKS = 200;
const CANCEL_CHUNK_DELAY_MS = 100;

const SERVER_ENV = { DB_PREPARED_STATEMENTS: 'false', DB_POOL_MAX: '10', SWEEP_INTERVAL_SECONDS: '1', JOB_TIMEOUT_SECONDS: '10' };

interface PgBouncer {
  url: string;
  output(): string;
  stop(): Promise<void>;
}

/** Debian installs it in /usr/sbin, which is not on every user's PATH. */
function pgbouncerBinary(): string {
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin']) {
    const candidate = path.join(dir, 'pgbouncer');
    if (dir && existsSync(candidate)) return candidate;
  }
  // Never a skip: the test exists to run through a real PgBouncer.
  throw new Error('pgbouncer is not installed: apt-get install pgbouncer (.ci/run installs it)');
}

/** PgBouncer in transaction mode on a free port, in front of `database` (its own login, whatever the client sends). */
async function startPgBouncer(database: FreshDatabase): Promise<PgBouncer> {
  const binary = pgbouncerBinary();
  const server = new URL(database.url);
  const password = decodeURIComponent(server.password);
  if (/['\s\\]/.test(password)) throw new Error('the test database password cannot be written into pgbouncer.ini');
  const port = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), 'creditgate-pgbouncer-'));
  // Readable by `nobody`, whom PgBouncer becomes when started by root (it refuses to run as root).
  await chmod(dir, 0o755);
  const ini = path.join(dir, 'pgbouncer.ini');
  await writeFile(
    ini,
    [
      '[databases]',
      `creditgate = host=${server.hostname} port=${server.port} dbname=${database.name} user=${decodeURIComponent(server.username)}${password ? ` password='${password}'` : ''}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      // Clients are not authenticated here; PgBouncer logs in to PostgreSQL with the database entry's credentials.
      'auth_type = any',
      'pool_mode = transaction',
      `default_pool_size = ${POOL_SIZE}`,
      'max_client_conn = 500',
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  const args = process.getuid?.() === 0 ? ['-u', 'nobody', ini] : [ini];
  const child: ChildProcess = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (data: Buffer) => (output += data.toString()));
  child.stderr!.on('data', (data: Buffer) => (output += data.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.once('exit', () => child.kill('SIGKILL'));
  const url = `postgres://creditgate@127.0.0.1:${port}/creditgate`;
  await poll(
    async () => {
      if (child.exitCode !== null) throw new Error(`pgbouncer exited at start:\n${output}`);
      const client = new pg.Client({ connectionString: url });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query('SELECT 1');
        return true;
      } catch {
        return undefined;
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    10_000,
    'pgbouncer to accept connections',
  );
  return {
    url,
    output: () => output,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

let db: FreshDatabase;
let upstream: SimulatedUpstream;
let bouncer: PgBouncer;
let servers: [ServerProcess, ServerProcess, ServerProcess];

const start = () => spawnServer({ databaseUrl: bouncer.url, upstreamBaseURL: upstream.baseURL, env: { ...SERVER_ENV, DATABASE_DIRECT_URL: db.url } });

beforeAll(async () => {
  [db, upstream] = await Promise.all([freshDatabase(), startSimulatedUpstream()]);
  bouncer = await startPgBouncer(db);
  servers = (await Promise.all([start(), start(), start()])) as typeof servers;
});

afterAll(async () => {
  await stopAllServers();
  await bouncer?.stop();
  await upstream?.close();
  await db?.drop();
});

const lastMessage = (request: RecordedRequest) => String(request.body?.messages?.at(-1)?.content ?? '');

const upstreamRequestFor = (content: string) =>
  poll(async () => upstream.requests.find((request) => lastMessage(request) === content), 15_000, `the upstream request "${content}"`);

/** A multi-call job created on `runOn` with a long stream there, cancelled through `cancelVia`. */
async function crossInstanceCancel(team: TeamSetup, runOn: ServerProcess, cancelVia: ServerProcess, label: string) {
  const created = await api(runOn.url, 'POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'cancelled-elsewhere' } });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const jobId: string = created.body.job_id;
  const stream = openStream(runOn, `/api/jobs/${jobId}/llm-call-stream`, team.key, { messages: [{ role: 'user', content: label }] });
  await stream.started;
  const request = await upstreamRequestFor(label);
  return {
    jobId,
    async cancel(): Promise<{ result: StreamResult; closed: RecordedRequest; cancelMs: number }> {
      const cancelledAt = Date.now();
      const cancel = await api(cancelVia.url, 'POST', `/api/jobs/${jobId}/cancel`, { token: team.key });
      expect(cancel.status, JSON.stringify(cancel.body)).toBe(200);
      expect(cancel.body).toMatchObject({ job_id: jobId, status: 'cancelled' });
      const closed = await upstream.waitForClosed(request.id, 10_000);
      return { result: await stream.done, closed, cancelMs: closed.closedAt! - cancelledAt };
    },
  };
}

function expectCancelled({ result, closed, cancelMs }: Awaited<ReturnType<Awaited<ReturnType<typeof crossInstanceCancel>>['cancel']>>) {
  expect(closed.abortedByClient, 'the upstream request was aborted').toBe(true);
  expect(closed.finishedAt).toBeUndefined();
  // Through NOTIFY on the other instance's direct connection; generous under load on a 2-core machine.
  expect(cancelMs, 'the stream on the other instance stopped soon after the cancel').toBeLessThan(5_000);
  expect(result.status).toBe(200);
  expect(result.transportError).toBeUndefined();
  const parsed = parseSse(result.text);
  expect(parsed.errors.length, result.text.slice(-300)).toBeGreaterThan(0);
  expect(parsed.endsWithDone).toBe(true);
}

describe('three creditgate processes behind PgBouncer in transaction mode', () => {
  it('named prepared statements do break through this PgBouncer (so the instances really run without them)', async () => {
    const pool = new pg.Pool({ connectionString: bouncer.url, max: 20 });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) => pool.query({ name: 'cg_probe', text: 'SELECT $1::int + 1 AS n', values: [i] })),
    );
    await pool.end();
    expect(outcomes.filter((outcome) => outcome.status === 'rejected').length).toBeGreaterThan(0);
  });

  it('sell exactly the credits there are, settle each job once and cancel across instances, through a kill -9', async () => {
    upstream.setResponder((request) => {
      const content = lastMessage(request);
      if (content.startsWith('cancel-')) return slowStream(CANCEL_CHUNKS, CANCEL_CHUNK_DELAY_MS);
      if (content === 'drain') return slowStream(3, 5);
      return slowStream(CHUNKS, CHUNK_DELAY_MS);
    });
    const [a, b, c] = servers;
    const team = await fundedTeam(a.url, CREDITS);
    const cancelTeam = await fundedTeam(b.url, 100);
    for (const server of servers) {
      expect((await api(server.url, 'GET', `/api/credits/teams/${team.teamId}/balance`, { token: team.key })).status).toBe(200);
    }

    // Never more server connections than PgBouncer's pool, however many the three pools ask for.
    let peakServerConnections = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const [row] = await query(db.pool, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'creditgate'`, [db.name]);
        peakServerConnections = Math.max(peakServerConnections, row.n);
        await sleep(50);
      }
    })().catch(() => undefined); // after a failed assertion the pool is gone; a sampler that failed leaves the peak at 0

    // Each instance's paid streams are told apart at the upstream by their message. c's requests go first: with group
    // commit an instance's 50 requests are one or two batches, and the instance whose batch commits last may find the
    // 60 credits gone, while c must die with paid streams of its own. a's and b's follow once c's flow.
    const send = (i: number) => {
      const server = servers[i % 3]!;
      const content = `load-${'abc'[i % 3]}-${i}`;
      const stream = openStream(server, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'load', user_id: `u${i}`, messages: [{ role: 'user', content }] });
      return { server, stream };
    };
    const indexes = Array.from({ length: REQUESTS }, (_, i) => i);
    const load = indexes.filter((i) => i % 3 === 2).map(send);
    // Streams running on a and b, each to be cancelled through the other, while the load runs.
    const cancels = Promise.all(
      Array.from({ length: CANCELS }, (_, i) => crossInstanceCancel(cancelTeam, i % 2 === 0 ? a : b, i % 2 === 0 ? b : a, `cancel-${i}`)),
    );
    cancels.catch(() => undefined);

    // c dies with paid streams of its own flowing, a's and b's too, and starts again at once.
    const flowing = (prefix: string) => upstream.requests.filter((request) => lastMessage(request).startsWith(prefix) && request.closedAt === undefined).length;
    const cEnded = Promise.all(load.map((l) => l.stream.done)).then((ended) => {
      const statuses = ended.map((result) => `${result.status} ${result.text.slice(0, 120)}`);
      throw new Error(`every request to c ended before two of its streams flowed:\n${[...new Set(statuses)].join('\n')}`);
    });
    cEnded.catch(() => undefined); // it does end once c is killed
    await Promise.race([poll(async () => (flowing('load-c-') >= 2 ? true : undefined), 30_000, 'paid streams flowing on c'), cEnded]);
    load.push(...indexes.filter((i) => i % 3 !== 2).map(send));
    await poll(async () => (flowing('load-a-') + flowing('load-b-') >= 2 ? true : undefined), 30_000, 'paid streams flowing on a and b');
    await c.kill9();
    const restarting = start();
    restarting.catch(() => undefined); // awaited below; a failed assertion before must not leave it unhandled
    const cancelled = await Promise.all((await cancels).map((cancel) => cancel.cancel()));
    for (const outcome of cancelled) expectCancelled(outcome);

    const results = await Promise.all(load.map(async (l) => ({ server: l.server, ...(await l.stream.done) })));
    sampling = false;
    await sampler;
    expect(peakServerConnections).toBeGreaterThan(0);
    expect(peakServerConnections, 'server connections of the pooled instances').toBeLessThanOrEqual(POOL_SIZE);

    const paid = new Set<string>();
    let refused = 0;
    for (const result of results) {
      if (result.server === c && (result.transportError || result.status === 0)) continue; // died with c
      expect(result.transportError, `${result.server.url}: ${result.transportError}`).toBeUndefined();
      if (result.status === 402) {
        expect((safeJson(result.text) as any)?.error?.code).toBe('insufficient_credits');
        refused++;
        continue;
      }
      expect(result.status, result.text.slice(0, 300)).toBe(200);
      const stream = parseSse(result.text);
      expect(stream.errors).toEqual([]);
      expect(stream.endsWithDone).toBe(true);
      expect(stream.content).toBe(expectedContent(CHUNKS));
      paid.add(result.headers!.get('x-job-id')!);
    }
    expect(refused, 'requests refused for want of credits').toBeGreaterThan(0);
    const [orphans] = await query(db.pool, `SELECT count(*)::int AS n FROM jobs WHERE team_id = $1 AND status IN ('pending', 'in_progress')`, [team.teamId]);
    expect(orphans.n, 'c died holding credits for streams in flight').toBeGreaterThan(0);

    // What c left open is swept (by any instance) once its calls' leases lapse: aged here as if CALL_LEASE_SECONDS had passed.
    await ageOpenWork(db.pool);
    await poll(
      async () => {
        const [row] = await query(
          db.pool,
          `SELECT (SELECT count(*) FROM jobs WHERE status IN ('pending', 'in_progress'))::int AS jobs,
                  (SELECT coalesce(sum(held_micro), 0) FROM credit_balances)::bigint AS held`,
        );
        return row.jobs === 0 && Number(row.held) === 0 ? true : undefined;
      },
      15_000,
      'the sweepers to settle every job the dead instance left open',
    );

    // Whatever the sweep gave back is sold now, c back on the same database among the sellers, and not one job more.
    const restarted = await restarting;
    const { balanceMicro } = await expectLedgerConsistent(db.pool, team.teamId, { jobs: true });
    const left = balanceMicro / MICRO;
    const drain = await Promise.all(
      Array.from({ length: left + 3 }, (_, i) =>
        openStream([a, b, restarted][i % 3]!, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'drain', messages: [{ role: 'user', content: 'drain' }] }).done,
      ),
    );
    expect(drain.filter((r) => r.status === 200)).toHaveLength(left);
    expect(drain.filter((r) => r.status === 402)).toHaveLength(3);
    for (const result of drain.filter((r) => r.status === 200)) paid.add(result.headers!.get('x-job-id')!);

    // Exactly CREDITS jobs sold, each once: the paid streams and the dead instance's abandoned ones.
    const jobs = await jobsOf(db.pool, team.teamId);
    const charged = jobs.filter((job) => job.charges > 0);
    expect(charged).toHaveLength(CREDITS);
    for (const job of jobs) {
      expect(job.charges + job.releases, `job ${job.id} settled exactly once`).toBe(1);
      if (job.charges) expect(job.charged_micro).toBe(MICRO);
    }
    for (const jobId of paid) expect(jobs.find((job) => job.id === jobId)).toMatchObject({ status: 'completed', charges: 1 });
    // The dead instance's: expired by a sweeper (or completed by c itself just before the kill, its answer lost).
    for (const job of jobs.filter((j) => !paid.has(j.id))) expect(['expired', 'completed']).toContain(job.status);
    expect(await expectLedgerConsistent(db.pool, team.teamId, { jobs: true })).toEqual({ balanceMicro: 0, heldMicro: 0 });

    // The restarted instance listens again: cancels cross to it and from it.
    const afterRestart = await Promise.all([
      crossInstanceCancel(cancelTeam, restarted, a, 'cancel-to-restarted'),
      crossInstanceCancel(cancelTeam, b, restarted, 'cancel-from-restarted'),
    ]);
    for (const outcome of await Promise.all(afterRestart.map((cancel) => cancel.cancel()))) expectCancelled(outcome);

    const cancelJobs = await jobsOf(db.pool, cancelTeam.teamId);
    expect(cancelJobs).toHaveLength(CANCELS + 2);
    for (const job of cancelJobs) expect(job).toMatchObject({ status: 'cancelled', charges: 1, releases: 0, charged_micro: MICRO });
    expect(await expectLedgerConsistent(db.pool, cancelTeam.teamId, { jobs: true })).toEqual({ balanceMicro: (100 - CANCELS - 2) * MICRO, heldMicro: 0 });
    expect(await openCalls(db.pool, team.teamId)).toBe(0);
    expect(await openCalls(db.pool, cancelTeam.teamId)).toBe(0);

    // The survivors logged no error through all this, and every instance kept its LISTEN on a direct connection.
    for (const server of [a, b, restarted]) expect(server.output()).not.toMatch(/"level":(50|60)/);
    const [listeners] = await query(db.pool, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'creditgate-notifier'`, [db.name]);
    expect(listeners.n).toBe(3);
  });
});
