import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { expect, inject } from 'vitest';
import { MICRO, expectLedgerConsistent } from '../helpers/ledger.js';
import { openStream, parseSse, type StreamResult } from '../helpers/sse.js';
import { poll } from '../helpers/wait.js';
import type { UpstreamScript } from '../../src/upstream/simulated-server.js';
import { freePort, jsonRequest, type ApiResponse } from '../helpers/app.js';
import { setupTeam, type AdminApi, type SetupTeamOptions, type TeamSetup } from '../helpers/factories.js';
import { createDatabaseFromTemplate, query, type Database } from '../helpers/postgres.js';
import { sleep } from '../helpers/wait.js';

/**
 * Machinery of the reliability suite: real creditgate processes (`node --import tsx src/main.ts`), fresh
 * databases cloned from the migrated template, JSON requests to those processes, the upstream scripts and the
 * database reads its tests share. Teams, SSE and the ledger invariants come from test/helpers.
 * Everything listens and connects on 127.0.0.1 only.
 */

export const MASTER_KEY = 'mk-reliability-master-key-0123456789';
export const CHAT = { messages: [{ role: 'user', content: 'Say hello' }] };

const ENTRY = path.resolve('src/main.ts');

// ---------------------------------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------------------------------

export interface FreshDatabase {
  url: string;
  name: string;
  /** The cluster's maintenance database (`postgres`), for statements about `name` itself. */
  serverUrl: string;
  /** A small pool on `url` for the test's own checks. */
  pool: pg.Pool;
  drop(): Promise<void>;
}

export async function freshDatabase(): Promise<FreshDatabase> {
  const serverUrl = inject('postgresServerUrl');
  const database = await createDatabaseFromTemplate(serverUrl, inject('postgresTemplate'));
  const pool = new pg.Pool({ connectionString: database.url, max: 3 });
  // The outage test terminates every connection to the database, the test's own idle ones included.
  pool.on('error', () => undefined);
  return {
    url: database.url,
    name: new URL(database.url).pathname.slice(1),
    serverUrl,
    pool,
    async drop() {
      await pool.end().catch(() => undefined);
      await database.drop();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Real server processes
// ---------------------------------------------------------------------------------------------------------------

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  /** Everything the process wrote on stdout and stderr so far (capped). */
  output(): string;
  exited(): boolean;
  /** SIGKILL: no drain, no cleanup, exactly like a crash or an OOM kill. */
  kill9(): Promise<void>;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<ServerProcess>();

// Last resort if the test worker itself goes down before afterAll: no creditgate process outlives it.
process.once('exit', () => {
  for (const server of running) if (!server.exited()) server.child.kill('SIGKILL');
});

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ['DATABASE_URL', 'DATABASE_DIRECT_URL', 'DB_PREPARED_STATEMENTS', 'TEST_DATABASE_URL', 'LLM_BASE_URL', 'LLM_API_KEY', 'MASTER_KEY', 'JWT_SECRET', 'PORT', 'HOST']) {
    delete env[name];
  }
  return { ...env, ...extra };
}

export interface SpawnOptions {
  databaseUrl: string;
  upstreamBaseURL: string;
  env?: Record<string, string>;
  /** How long to wait for /health. */
  startTimeoutMs?: number;
}

/**
 * Starts `node --import tsx src/main.ts` with `LOG_LEVEL=warn` (which hides the `listening on` line) on a port chosen here and resolves once `/health`
 * answers 200. Every process started here is tracked, so `stopAllServers` in afterAll ends them even after a
 * failed assertion.
 */
export async function spawnServer(options: SpawnOptions): Promise<ServerProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', ENTRY], {
    env: childEnv({
      DATABASE_URL: options.databaseUrl,
      LLM_BASE_URL: options.upstreamBaseURL,
      MASTER_KEY,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      DB_POOL_MAX: '10',
      ...options.env,
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const append = (data: Buffer) => {
    output += data.toString();
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  let hasExited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exit.then(() => (hasExited = true));

  const url = `http://127.0.0.1:${port}`;
  const server: ServerProcess = {
    url,
    child,
    output: () => output,
    exited: () => hasExited,
    async kill9() {
      if (!hasExited) child.kill('SIGKILL');
      await exit;
      running.delete(server);
    },
    async stop(graceMs = 10_000) {
      if (!hasExited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exit;
        clearTimeout(timer);
      }
      running.delete(server);
    },
  };
  running.add(server);

  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  for (;;) {
    if (hasExited) throw new Error(`creditgate exited before answering /health:\n${output}`);
    const healthy = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) }).then(
      (response) => response.status === 200,
      () => false,
    );
    if (healthy) return server;
    if (Date.now() > deadline) {
      await server.kill9();
      throw new Error(`creditgate did not answer /health within the start timeout:\n${output}`);
    }
    await sleep(100);
  }
}

/** For afterAll: ends every process this module started and that is still alive. */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...running].map((server) => server.stop(3_000)));
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------------------------

/** A JSON request to a creditgate process; the reliability master key is the default credential. */
export function api<T = any>(
  baseUrl: string,
  method: string,
  route: string,
  options: { token?: string | null; body?: unknown; headers?: Record<string, string> } = {},
): Promise<ApiResponse<T>> {
  return jsonRequest<T>(baseUrl, MASTER_KEY, method, route, { ...options, timeoutMs: 30_000 });
}

/** The admin API of a creditgate process for the factories of test/helpers (`masterKey` as the credential). */
export function adminApi(baseUrl: string, masterKey = MASTER_KEY): AdminApi {
  return { request: (method, route, options = {}) => api(baseUrl, method, route, { token: masterKey, ...options }) };
}

/** An organization, a model group and a team with `credits` credits and a `sk-` key (`setupTeam` over `adminApi`). */
export async function fundedTeam(
  baseUrl: string,
  credits: number,
  options: { masterKey?: string; team?: SetupTeamOptions['team'] } = {},
): Promise<TeamSetup> {
  const team = await setupTeam(adminApi(baseUrl, options.masterKey), { credits, team: options.team });
  expect(team.key).toMatch(/^sk-/);
  return team;
}

/** The contract's error envelope: `{ error: { type, code, message, param, request_id? } }`. */
export function isErrorShape(body: unknown): boolean {
  if (!body || typeof body !== 'object') return false;
  const error = (body as { error?: unknown }).error;
  if (!error || typeof error !== 'object') return false;
  const e = error as Record<string, unknown>;
  return (
    typeof e.type === 'string' &&
    typeof e.code === 'string' &&
    typeof e.message === 'string' &&
    (e.param === null || typeof e.param === 'string') &&
    (e.request_id === undefined || typeof e.request_id === 'string')
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Upstream scripts
// ---------------------------------------------------------------------------------------------------------------

/** An upstream stream of `chunks` words, `delayMs` apart. */
export function slowStream(chunks: number, delayMs: number): UpstreamScript {
  return { steps: Array.from({ length: chunks }, (_, i) => ({ type: 'content' as const, text: `w${i} `, delayMs })) };
}

export const expectedContent = (chunks: number) => Array.from({ length: chunks }, (_, i) => `w${i} `).join('');

// ---------------------------------------------------------------------------------------------------------------
// Money and work, read from the database (the ledger invariants are in test/helpers/ledger.ts)
// ---------------------------------------------------------------------------------------------------------------

export interface LedgerState {
  balanceMicro: number;
  heldMicro: number;
  /** Number of ledger entries of each type. */
  entries: Record<string, number>;
}

export async function ledgerState(database: Database, teamId: string): Promise<LedgerState> {
  const [row] = await query(
    database,
    `SELECT b.balance_micro::bigint AS balance, b.held_micro::bigint AS held,
            (SELECT coalesce(jsonb_object_agg(t, n), '{}'::jsonb)
               FROM (SELECT entry_type::text AS t, count(*)::int AS n FROM credit_ledger WHERE team_id = $1 GROUP BY entry_type) c) AS entries
       FROM credit_balances b WHERE b.team_id = $1`,
    [teamId],
  );
  return { balanceMicro: Number(row?.balance ?? NaN), heldMicro: Number(row?.held ?? NaN), entries: row?.entries ?? {} };
}

export interface JobSummary {
  id: string;
  status: string;
  charges: number;
  releases: number;
  charged_micro: number;
}

export async function jobsOf(database: Database, teamId: string): Promise<JobSummary[]> {
  const rows = await query(
    database,
    `SELECT j.id, j.status::text AS status,
            count(*) FILTER (WHERE l.entry_type = 'charge')::int AS charges,
            count(*) FILTER (WHERE l.entry_type = 'release')::int AS releases,
            coalesce(-sum(l.amount_micro) FILTER (WHERE l.entry_type = 'charge'), 0)::bigint AS charged_micro
       FROM jobs j LEFT JOIN credit_ledger l ON l.job_id = j.id
      WHERE j.team_id = $1
      GROUP BY j.id ORDER BY j.created_at, j.id`,
    [teamId],
  );
  return rows.map((r) => ({ id: r.id, status: r.status, charges: r.charges, releases: r.releases, charged_micro: Number(r.charged_micro) }));
}

export async function openCalls(database: Database, teamId: string): Promise<number> {
  const [row] = await query(database, `SELECT count(*)::int AS n FROM llm_calls WHERE team_id = $1 AND status = 'in_progress'`, [teamId]);
  return row?.n ?? 0;
}

/** Moves the clock of every open job (and of orphaned Idempotency-Key claims) an hour back, as if the timeout had passed. */
export async function ageOpenWork(database: Database): Promise<void> {
  await query(database, `UPDATE jobs SET updated_at = now() - interval '1 hour' WHERE status IN ('pending', 'in_progress')`);
  await query(database, `UPDATE llm_calls SET heartbeat_at = now() - interval '1 hour' WHERE status = 'in_progress'`);
  await query(database, `UPDATE idempotency_keys SET created_at = now() - interval '1 hour' WHERE status = 'in_progress'`);
}

// ---------------------------------------------------------------------------------------------------------------
// Streams cut by a database failure, and what they may cost
// ---------------------------------------------------------------------------------------------------------------

/** How one create-and-call stream of `chunks` scripted words ended, as its client saw it. */
export interface StreamOutcome {
  jobId: string;
  chunks: number;
  /** `[DONE]` and no error event. */
  complete: boolean;
  /** The whole answer and `[DONE]`, with `recording_deferred` errors only: delivered, its record written later. */
  deferred: boolean;
}

/**
 * Reads each stream's ending: every client got its whole stream or an error event, never a silent cut (soft, so
 * the money checks after it still run and report).
 */
export function streamOutcomes(results: StreamResult[], lengths: number[]): StreamOutcome[] {
  return results.map((result, i) => {
    const chunks = lengths[i]!;
    expect(result.transportError, `stream ${i} (${chunks} chunks) was cut: ${result.text.slice(-300)}`).toBeUndefined();
    expect(result.status).toBe(200);
    const parsed = parseSse(result.text);
    const jobId = result.headers?.get('x-job-id') ?? '';
    expect(jobId).toMatch(/^job_/);
    const complete = parsed.endsWithDone && parsed.errors.length === 0;
    const deferred =
      parsed.endsWithDone && parsed.errors.length > 0 && parsed.errors.every((error) => (error as { code?: string }).code === 'recording_deferred');
    if (complete || deferred) expect(parsed.content).toBe(expectedContent(chunks));
    else expect.soft(parsed.errors.length, `stream ${i} (${chunks} chunks) ended without [DONE] and without an error event: ${result.text.slice(-300)}`).toBeGreaterThan(0);
    return { jobId, chunks, complete, deferred };
  });
}

/**
 * Once nothing is open any more: a stream that saw `[DONE]` was charged once (one credit, job_based), one whose
 * recording was deferred once too (its output was delivered), one that saw an error not at all (its hold released).
 * Returns the jobs.
 */
async function expectChargedAsSeen(database: Database, teamId: string, outcomes: StreamOutcome[]): Promise<JobSummary[]> {
  const all = await jobsOf(database, teamId);
  const jobs = new Map(all.map((job) => [job.id, job]));
  for (const outcome of outcomes) {
    const job = jobs.get(outcome.jobId);
    expect(job, `job of the ${outcome.chunks}-chunk stream`).toBeDefined();
    if (outcome.deferred) {
      // Its output was delivered: charged once, when its record was written (completed) or, if the record never
      // could be, at its reservation when its call was abandoned (expired). Never given away, never twice.
      expect(['completed', 'expired'], `the ${outcome.chunks}-chunk stream was delivered, its recording deferred`).toContain(job!.status);
      expect(job!.charges, `the ${outcome.chunks}-chunk stream was delivered: charged once`).toBe(1);
    } else if (outcome.complete) {
      expect(job, `the ${outcome.chunks}-chunk stream saw [DONE]: its job is completed and charged once`).toMatchObject({
        status: 'completed',
        charges: 1,
        charged_micro: MICRO,
      });
    } else {
      expect(job!.status, `the ${outcome.chunks}-chunk stream saw an error: its job is not completed`).not.toBe('completed');
      expect(job!.charges, `the ${outcome.chunks}-chunk stream saw an error: nothing is charged`).toBe(0);
      expect(job!.releases).toBe(1);
    }
  }
  return all;
}

/**
 * After a database failure: the instance serves a new stream, whatever the failure left open is swept (its clock
 * moved past the timeout), every stream was charged as its client saw it, and the balance is the credits less the
 * charges, with nothing held.
 */
export async function expectRecovered(server: ServerProcess, db: FreshDatabase, team: TeamSetup, credits: number, outcomes: StreamOutcome[]): Promise<void> {
  const after = await openStream(server, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'after', messages: [{ role: 'user', content: 'chunks=3' }] }).done;
  expect(after.status, after.text).toBe(200);
  expect(parseSse(after.text).endsWithDone).toBe(true);

  await ageOpenWork(db.pool);
  await poll(
    async () => {
      const [row] = await query(db.pool, `SELECT count(*)::int AS n FROM jobs WHERE status IN ('pending', 'in_progress')`);
      return row.n === 0 ? true : undefined;
    },
    20_000,
    'the sweeper to settle every job the failure left open',
  );
  const jobs = await expectChargedAsSeen(db.pool, team.teamId, outcomes);
  expect(await openCalls(db.pool, team.teamId)).toBe(0);
  const charged = jobs.reduce((sum, job) => sum + job.charges, 0);
  expect(await expectLedgerConsistent(db.pool, team.teamId, { jobs: true })).toEqual({ balanceMicro: (credits - charged) * MICRO, heldMicro: 0 });
  expect(server.exited(), 'the server survived').toBe(false);
}
