import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { expect, inject } from 'vitest';
import type { UpstreamScript } from '../../src/upstream/simulated-server.js';
import { createDatabaseFromTemplate } from '../helpers/postgres.js';

/**
 * Shared machinery of the reliability suite: real creditgate processes (`node --import tsx src/main.ts`), fresh
 * databases cloned from the migrated template, raw HTTP/SSE helpers and the ledger invariants every test checks.
 * Everything listens and connects on 127.0.0.1 only.
 */

export const MASTER_KEY = 'mk-reliability-master-key-0123456789';
export const MICRO = 1_000_000;
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

export async function query<T extends pg.QueryResultRow = any>(pool: pg.Pool, text: string, params: unknown[] = []): Promise<T[]> {
  const { rows } = await pool.query<T>(text, params);
  return rows;
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

/** A free TCP port on 127.0.0.1 (LOG_LEVEL=warn hides the `listening on` line, so the port is chosen here). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ['DATABASE_URL', 'TEST_DATABASE_URL', 'LLM_BASE_URL', 'LLM_API_KEY', 'MASTER_KEY', 'JWT_SECRET', 'PORT', 'HOST']) delete env[name];
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
 * Starts `node --import tsx src/main.ts` with `LOG_LEVEL=warn` on a port chosen here and resolves once `/health`
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

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function poll<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export interface JsonResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export async function api<T = any>(
  baseUrl: string,
  method: string,
  route: string,
  options: { token?: string | null; body?: unknown; headers?: Record<string, string> } = {},
): Promise<JsonResponse<T>> {
  const token = options.token === undefined ? MASTER_KEY : options.token;
  const headers: Record<string, string> = { ...options.headers };
  if (token) headers.authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers['content-type'] ??= 'application/json';
  const response = await fetch(baseUrl + route, {
    method,
    headers,
    ...(options.body !== undefined && { body: JSON.stringify(options.body) }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  const isJson = response.headers.get('content-type')?.includes('json');
  return { status: response.status, headers: response.headers, body: isJson && text ? JSON.parse(text) : text };
}

export const uniqueId = (prefix: string) => `${prefix}-${Math.random().toString(16).slice(2, 10)}`;

export interface FundedTeam {
  teamId: string;
  key: string;
  group: string;
  organization: string;
}

/** An organization, a model group and a team with `credits` credits, all through the admin API. */
export async function fundedTeam(
  baseUrl: string,
  credits: number,
  options: { masterKey?: string; team?: Record<string, unknown> } = {},
): Promise<FundedTeam> {
  const token = options.masterKey ?? MASTER_KEY;
  const organization = uniqueId('org');
  const group = uniqueId('grp');
  const teamId = uniqueId('team');
  const org = await api(baseUrl, 'POST', '/api/organizations/create', { token, body: { organization_id: organization, name: `Org ${organization}` } });
  expect(org.status, JSON.stringify(org.body)).toBe(201);
  const grp = await api(baseUrl, 'POST', '/api/model-groups/create', { token, body: { group_name: group, models: [{ model_name: 'sim-small', priority: 0 }] } });
  expect(grp.status, JSON.stringify(grp.body)).toBe(201);
  const team = await api(baseUrl, 'POST', '/api/teams/create', {
    token,
    body: { organization_id: organization, team_id: teamId, model_groups: [group], credits_allocated: credits, ...options.team },
  });
  expect(team.status, JSON.stringify(team.body)).toBe(201);
  expect(team.body.virtual_key).toMatch(/^sk-/);
  return { teamId, key: team.body.virtual_key, group, organization };
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

export function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------------------------

export interface StreamResult {
  /** 0 when no HTTP answer came at all. */
  status: number;
  headers: Headers | undefined;
  contentType: string;
  text: string;
  /** The body could not be read to its end (connection reset, process killed, timeout). */
  transportError: string | undefined;
  /** Milliseconds from the request to the end of the body (or the transport error). */
  elapsedMs: number;
}

export interface OpenStream {
  /** Resolves when the status line and headers arrived and, for a 200, the first body bytes too. */
  started: Promise<void>;
  /** Resolves (never rejects) once the whole body was read or the transport failed. */
  done: Promise<StreamResult>;
}

/**
 * A POST whose answer is read incrementally: `started` resolves when the stream is really flowing (first bytes of
 * a 200 in hand), `done` with everything received. Transport failures are captured, never thrown.
 */
export function openStream(
  url: string,
  token: string,
  body: unknown,
  options: { headers?: Record<string, string>; timeoutMs?: number } = {},
): OpenStream {
  const startedAt = performance.now();
  let markStarted!: () => void;
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  const done = (async (): Promise<StreamResult> => {
    let status = 0;
    let headers: Headers | undefined;
    let text = '';
    let transportError: string | undefined;
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...options.headers },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
      });
      status = response.status;
      headers = response.headers;
      if (status !== 200 || !response.body) markStarted();
      const decoder = new TextDecoder();
      for await (const chunk of response.body ?? []) {
        text += decoder.decode(chunk as Uint8Array, { stream: true });
        if (text.length > 0) markStarted();
      }
      text += decoder.decode();
    } catch (error) {
      transportError = error instanceof Error ? `${error.name}: ${error.message}${error.cause ? ` (${String((error.cause as Error).message ?? error.cause)})` : ''}` : String(error);
    } finally {
      markStarted();
    }
    return {
      status,
      headers,
      contentType: headers?.get('content-type') ?? '',
      text,
      transportError,
      elapsedMs: Math.round(performance.now() - startedAt),
    };
  })();
  return { started, done };
}

export interface ParsedStream {
  content: string;
  errors: unknown[];
  endsWithDone: boolean;
  chunks: number;
  /** Lines that are neither `data:` frames, comments nor blank. */
  junk: string[];
}

export function parseSse(text: string): ParsedStream {
  const parsed: ParsedStream = { content: '', errors: [], endsWithDone: false, chunks: 0, junk: [] };
  const data: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('data: ')) data.push(line.slice('data: '.length));
    else if (line !== '' && !line.startsWith(':')) parsed.junk.push(line);
  }
  parsed.endsWithDone = data.at(-1) === '[DONE]';
  for (const payload of data) {
    if (payload === '[DONE]') continue;
    const event = safeJson(payload) as any;
    if (event === undefined) {
      parsed.junk.push(payload);
      continue;
    }
    if (event.error) {
      parsed.errors.push(event.error);
      continue;
    }
    parsed.chunks++;
    for (const choice of event.choices ?? []) {
      if (typeof choice.delta?.content === 'string') parsed.content += choice.delta.content;
    }
  }
  return parsed;
}

/** An upstream stream of `chunks` words, `delayMs` apart. */
export function slowStream(chunks: number, delayMs: number): UpstreamScript {
  return { steps: Array.from({ length: chunks }, (_, i) => ({ type: 'content' as const, text: `w${i} `, delayMs })) };
}

export const expectedContent = (chunks: number) => Array.from({ length: chunks }, (_, i) => `w${i} `).join('');

// ---------------------------------------------------------------------------------------------------------------
// Money invariants
// ---------------------------------------------------------------------------------------------------------------

export interface LedgerState {
  balanceMicro: number;
  heldMicro: number;
  /** Number of ledger entries of each type. */
  entries: Record<string, number>;
}

export async function ledgerState(pool: pg.Pool, teamId: string): Promise<LedgerState> {
  const [row] = await query(
    pool,
    `SELECT b.balance_micro::bigint AS balance, b.held_micro::bigint AS held,
            (SELECT coalesce(jsonb_object_agg(t, n), '{}'::jsonb)
               FROM (SELECT entry_type::text AS t, count(*)::int AS n FROM credit_ledger WHERE team_id = $1 GROUP BY entry_type) c) AS entries
       FROM credit_balances b WHERE b.team_id = $1`,
    [teamId],
  );
  return { balanceMicro: Number(row?.balance ?? NaN), heldMicro: Number(row?.held ?? NaN), entries: row?.entries ?? {} };
}

/**
 * The balance row equals the sum of the team's ledger (amount and held), nothing is negative, no job was settled
 * twice, and nothing was charged for a job that did not complete (job_based mode).
 */
export async function expectLedgerConsistent(pool: pg.Pool, teamId: string): Promise<{ balanceMicro: number; heldMicro: number }> {
  const [row] = await query(
    pool,
    `SELECT b.balance_micro::bigint AS balance_micro, b.held_micro::bigint AS held_micro,
            (SELECT coalesce(sum(amount_micro), 0) FROM credit_ledger WHERE team_id = $1)::bigint AS ledger_balance,
            (SELECT coalesce(sum(held_delta_micro), 0) FROM credit_ledger WHERE team_id = $1)::bigint AS ledger_held
       FROM credit_balances b WHERE b.team_id = $1`,
    [teamId],
  );
  expect(row, `no balance row for ${teamId}`).toBeDefined();
  const balanceMicro = Number(row.balance_micro);
  const heldMicro = Number(row.held_micro);
  expect(Number(row.ledger_balance), 'SUM(amount_micro) = balance_micro').toBe(balanceMicro);
  expect(Number(row.ledger_held), 'SUM(held_delta_micro) = held_micro').toBe(heldMicro);
  expect(balanceMicro, 'balance >= 0').toBeGreaterThanOrEqual(0);
  expect(heldMicro, 'held >= 0').toBeGreaterThanOrEqual(0);
  expect(balanceMicro - heldMicro, 'available >= 0').toBeGreaterThanOrEqual(0);

  const twice = await query(
    pool,
    `SELECT job_id, count(*)::int AS n FROM credit_ledger
      WHERE team_id = $1 AND job_id IS NOT NULL AND entry_type IN ('charge', 'release')
      GROUP BY job_id HAVING count(*) > 1`,
    [teamId],
  );
  expect(twice, 'jobs settled more than once').toEqual([]);
  const chargedButNotCompleted = await query(
    pool,
    `SELECT l.job_id, j.status::text FROM credit_ledger l JOIN jobs j ON j.id = l.job_id
      WHERE l.team_id = $1 AND l.entry_type = 'charge' AND j.status <> 'completed'`,
    [teamId],
  );
  expect(chargedButNotCompleted, 'charges for jobs that did not complete').toEqual([]);
  // Every settled job gave back exactly its hold; every open job still holds what its hold entries say.
  const holdMismatch = await query(
    pool,
    `SELECT j.id, j.status::text, j.hold_micro::bigint AS hold, coalesce(sum(l.held_delta_micro), 0)::bigint AS ledger_hold
       FROM jobs j LEFT JOIN credit_ledger l ON l.job_id = j.id
      WHERE j.team_id = $1
      GROUP BY j.id
     HAVING coalesce(sum(l.held_delta_micro), 0) <> j.hold_micro`,
    [teamId],
  );
  expect(holdMismatch, 'jobs whose hold differs from their ledger entries').toEqual([]);
  return { balanceMicro, heldMicro };
}

export interface JobSummary {
  id: string;
  status: string;
  charges: number;
  releases: number;
  charged_micro: number;
}

export async function jobsOf(pool: pg.Pool, teamId: string): Promise<JobSummary[]> {
  const rows = await query(
    pool,
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

export async function openCalls(pool: pg.Pool, teamId: string): Promise<number> {
  const [row] = await query(pool, `SELECT count(*)::int AS n FROM llm_calls WHERE team_id = $1 AND status = 'in_progress'`, [teamId]);
  return row?.n ?? 0;
}

/** Moves the clock of every open job (and of orphaned Idempotency-Key claims) an hour back, as if the timeout had passed. */
export async function ageOpenWork(pool: pg.Pool): Promise<void> {
  await pool.query(`UPDATE jobs SET updated_at = now() - interval '1 hour' WHERE status IN ('pending', 'in_progress')`);
  await pool.query(`UPDATE idempotency_keys SET created_at = now() - interval '1 hour' WHERE status = 'in_progress'`);
}
