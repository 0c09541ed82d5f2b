/**
 * creditgate's benchmark (`npm run bench`; never a timed unit test). See bench/README.md.
 *
 * Env: BENCH_SECONDS (measured seconds per level, default 5), BENCH_QUICK=1 (smoke run), BENCH_LEVELS
 * ("1,16,64,100"), BENCH_SAT_LEVELS ("16,64"), BENCH_OPEN_STREAMS (1000), BENCH_PHASES ("paced,saturation,idle,memory"),
 * BENCH_ARMS (all of ARM_IDS in bench/arms.ts), BENCH_PROMPT_BYTES (the user message's length; a short sentence),
 * BENCH_CPU_PROF=1 (profile the creditgate process), DATABASE_URL (else an embedded PostgreSQL in a temporary
 * directory that is deleted afterwards).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.js';
import {
  ARM_IDS,
  buildArms,
  SERVER_VARIANTS,
  startBenchUpstream,
  UPSTREAM_SHAPE,
  type Arm,
  type BenchTeam,
  type BenchUpstream,
  type ServerKey,
  type ServerVariant,
  type UpstreamMode,
} from './arms.js';
import { measureIdleGaps, median, type IdleGapRecord } from './idle.js';
import { createClientAgent, openHeldStreams, runClosedLoop, type LevelResult } from './load.js';
import { formatHeapGrowth, heapGrowth } from './heap.js';
import { formatProfile, summariseProfile, type ProfileSummary } from './profile.js';
import type { EffectiveConfig, QueryCounts, ServerMessage, ServerOptions, ServerRequest, ServerStats } from './server.js';

// ---------------------------------------------------------------------------------------------- settings

function envNumber(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) throw new Error(`${name} must be a number in [${min}, ${max}], got "${raw}"`);
  return value;
}

function envLevels(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (!raw) return fallback;
  const levels = raw.split(',').map((part) => Number(part.trim()));
  if (levels.length === 0 || levels.some((n) => !Number.isInteger(n) || n < 1 || n > 2000)) {
    throw new Error(`${name} must be a comma-separated list of integers in [1, 2000], got "${raw}"`);
  }
  return levels;
}

function envPhases(): Set<string> {
  const all = ['paced', 'saturation', 'idle', 'memory'];
  const raw = process.env.BENCH_PHASES;
  if (!raw) return new Set(all);
  const phases = raw.split(',').map((part) => part.trim());
  if (phases.some((phase) => !all.includes(phase))) throw new Error(`BENCH_PHASES must list some of ${all.join(', ')}, got "${raw}"`);
  return new Set(phases);
}

function envArms(): Set<string> {
  const raw = process.env.BENCH_ARMS;
  if (!raw) return new Set(ARM_IDS);
  const arms = raw.split(',').map((part) => part.trim());
  if (arms.some((arm) => !(ARM_IDS as readonly string[]).includes(arm))) throw new Error(`BENCH_ARMS must list some of ${ARM_IDS.join(', ')}, got "${raw}"`);
  return new Set(arms);
}

const QUICK = process.env.BENCH_QUICK === '1';
const PHASES = envPhases();
const ARMS = envArms();
const SETTINGS = {
  quick: QUICK,
  measuredSecondsPerLevel: envNumber('BENCH_SECONDS', QUICK ? 1 : 5, 0.2, 600),
  rampMs: 1000,
  levels: envLevels('BENCH_LEVELS', QUICK ? [1, 16] : [1, 16, 64, 100]),
  saturationLevels: envLevels('BENCH_SAT_LEVELS', QUICK ? [16] : [16, 64]),
  openStreams: envNumber('BENCH_OPEN_STREAMS', QUICK ? 200 : 1000, 1, 5000),
  openStreamsPaceMs: QUICK ? 500 : 2000,
  /** The idle phase: bursts of this many paced streams before and after a gap of this long, so many times. */
  idleBurst: 16,
  idleGapMs: envNumber('BENCH_IDLE_GAP_SECONDS', 12, 1, 600) * 1000,
  idleReps: QUICK ? 1 : 3,
  streamTimeoutMs: 30_000,
  /** Teams the creditgate arms bill, worker i billing team i mod teams (1: all contend for one balance row). */
  teams: envNumber('BENCH_TEAMS', 1, 1, 200),
  teamCredits: 10_000_000,
  heapSnapshots: process.env.BENCH_HEAP_SNAPSHOT === '1',
  cpuProfile: process.env.BENCH_CPU_PROF === '1' || process.execArgv.some((arg) => arg.startsWith('--cpu-prof')),
};
const TARGETS = {
  /** Billed jobs/s at saturation, as a share of the bare proxy's streams/s in the same run. */
  jobsShareOfProxy: 0.4,
  /** Added TTFT p50 (over the upstream) at most this times the proxy's, at the paced levels 1, 16, 64, 100. */
  addedP50RatioVsProxy: 1.5,
  addedP50Levels: [1, 16, 64, 100],
  /** Added TTFT p99 at most this times the proxy's, at every level (paced and saturation). */
  addedP99RatioVsProxy: 3,
  /** Database round trips per job at saturation (amortised). */
  roundTripsPerJob: 1,
  kibPerOpenStream: 64,
  openStreamsForMemory: 1000,
};
const MASTER_KEY = 'mk-bench-master-key-0123456789abcdef';
/** Arm (5)'s teams: every limit of src/contracts/limits.ts set, far above what the bench asks for (never refuses). */
const LIMITS_OF_LIMITED_TEAMS = {
  requests_per_minute: 100_000_000,
  tokens_per_minute: 1_000_000_000,
  max_concurrent_jobs: 1_000_000,
  max_concurrent_calls: 1_000_000,
};
const HERE = path.dirname(fileURLToPath(import.meta.url));
const RESULTS_DIR = path.join(HERE, 'results');
const BENCH_START = performance.now();
const elapsed = () => `${Math.round((performance.now() - BENCH_START) / 1000)} s`;
/** Whatever happens, the bench stops by itself. */
const HARD_LIMIT_MS = 30 * 60_000;

// ---------------------------------------------------------------------------------------------- cleanup

const cleanups: (() => Promise<unknown>)[] = [];
let cleaningUp: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    for (const step of cleanups.splice(0).reverse()) {
      await step().catch((error: unknown) => process.stderr.write(`bench cleanup step failed: ${String(error)}\n`));
    }
  })();
  return cleaningUp;
}
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    interrupted = true;
    process.stderr.write(`\nbench: ${signal}, cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------- the server process

/** creditgate and the pass-through proxy, in a child process that the bench forks (bench/server.ts). */
class ServerProcess {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (m: ServerMessage & { type: 'reply' }) => void; reject: (e: Error) => void }>();
  private exited = false;

  private constructor(
    private readonly child: ChildProcess,
    readonly creditgateUrl: string,
    readonly proxyUrl: string,
    /** creditgate's configuration as loaded in that process (null: the proxy's process). */
    readonly config: EffectiveConfig | null,
    /** Where its logger (stdout) writes. */
    readonly logFile: string,
  ) {
    child.on('message', (raw) => {
      const message = raw as ServerMessage;
      if (message.type !== 'reply') return;
      const waiter = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      waiter?.resolve(message);
    });
    child.on('exit', () => {
      this.exited = true;
      for (const waiter of this.waiting.values()) waiter.reject(new Error('the bench server process exited'));
      this.waiting.clear();
    });
  }

  static async start(options: ServerOptions, logFile: string, profileDir?: string): Promise<ServerProcess> {
    // The child runs TypeScript like the bench does: keep tsx's loader flags, drop any --cpu-prof of our own.
    const inherited = process.execArgv.filter((arg, i, all) => !arg.startsWith('--cpu-prof') && !all[i - 1]?.match(/^--cpu-prof-(dir|name|interval)$/));
    if (!inherited.some((arg) => arg.includes('tsx'))) inherited.push('--import', 'tsx');
    const execArgv = [...inherited, '--expose-gc', ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])];
    // creditgate logs to stdout (src/main.ts): here into a file, as a service manager would collect it.
    const logFd = openSync(logFile, 'a');
    const child = fork(path.join(HERE, 'server.ts'), [JSON.stringify(options)], { execArgv, stdio: ['ignore', logFd, 'inherit', 'ipc'] });
    closeSync(logFd);
    const ready = await new Promise<ServerMessage & { type: 'ready' }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the bench server did not start within 180 s')), 180_000);
      child.once('exit', (code) => reject(new Error(`the bench server exited during start (code ${code})`)));
      child.on('message', (raw) => {
        const message = raw as ServerMessage;
        if (message.type === 'ready') {
          clearTimeout(timer);
          resolve(message);
        }
      });
    }).catch((error: unknown) => {
      child.kill('SIGKILL');
      throw error;
    });
    const server = new ServerProcess(child, ready.creditgateUrl, ready.proxyUrl, ready.config, logFile);
    cleanups.push(() => server.close());
    return server;
  }

  private request(cmd: ServerRequest['cmd'], timeoutMs = 30_000, file?: string): Promise<ServerMessage & { type: 'reply' }> {
    if (this.exited) return Promise.reject(new Error('the bench server process has exited'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`the bench server did not answer ${cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, {
        resolve: (message) => {
          clearTimeout(timer);
          if (message.error) reject(new Error(message.error));
          else resolve(message);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.child.send((cmd === 'heapSnapshot' ? { id, cmd, file: file ?? '' } : { id, cmd }) satisfies ServerRequest);
    });
  }

  async stats(): Promise<ServerStats> {
    return (await this.request('stats')).stats as ServerStats;
  }
  async resetPeak(): Promise<ServerStats> {
    return (await this.request('resetPeak')).stats as ServerStats;
  }
  async gc(): Promise<ServerStats> {
    return (await this.request('gc')).stats as ServerStats;
  }
  async heapSnapshot(file: string): Promise<void> {
    await this.request('heapSnapshot', 300_000, file);
  }
  async queries(): Promise<QueryCounts> {
    return (await this.request('queries')).queries ?? {};
  }
  /** Bytes its logger has written so far. */
  async logBytes(): Promise<number> {
    return (await stat(this.logFile).catch(() => ({ size: 0 }))).size;
  }

  /** Closes creditgate (its pool, notifier, sweeper) and waits for the process to exit. */
  async close(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    await this.request('close', 30_000).catch(() => this.child.kill('SIGKILL'));
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------- helpers

async function api<T = any>(baseUrl: string, method: string, route: string, token: string, body?: unknown): Promise<T> {
  const response = await fetch(baseUrl + route, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route} answered ${response.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text) as T;
}

/** Busy and total jiffies of the whole machine (Linux), to tell whether it was saturated. */
async function machineCpu(): Promise<{ busy: number; total: number } | undefined> {
  try {
    const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
    const values = line.trim().split(/\s+/).slice(1).map(Number);
    const total = values.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/**
 * The bench's PostgreSQL server (its postmaster's pid, from postmaster.pid in its data directory), so that the
 * database CPU counts that server only and not the PostgreSQL of tests that other people run on the same machine.
 * Undefined when it cannot be read (a remote DATABASE_URL): then every `postgres` process is counted.
 */
let ourPostmaster: number | undefined;
async function findPostmaster(pool: pg.Pool): Promise<number | undefined> {
  try {
    const { rows } = await pool.query<{ data_directory: string }>('SHOW data_directory');
    const pid = Number((await readFile(path.join(rows[0]?.data_directory ?? '', 'postmaster.pid'), 'utf8')).split('\n')[0]);
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.includes('(postgres)') ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU time used so far by the bench's PostgreSQL server, the postmaster and its children (Linux, /proc), in ms: on
 * a 2-core machine the database competes with creditgate for the same cores, so its cost per job matters as much
 * as the server's.
 */
async function postgresCpuMs(): Promise<number | undefined> {
  try {
    const ticksPerSecond = 100;
    let ticks = 0;
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      const close = stat.lastIndexOf(')');
      if (close < 0 || stat.slice(stat.indexOf('(') + 1, close) !== 'postgres') continue;
      const fields = stat.slice(close + 2).split(' ');
      const pid = Number(entry);
      if (ourPostmaster !== undefined && pid !== ourPostmaster && Number(fields[1]) !== ourPostmaster) continue;
      // utime + stime, and cutime + cstime: a backend that exits hands its time to the postmaster's.
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    }
    return (ticks * 1000) / ticksPerSecond;
  } catch {
    return undefined;
  }
}

async function openFileLimit(): Promise<number | undefined> {
  try {
    const line = (await readFile('/proc/self/limits', 'utf8')).split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.trim().split(/\s{2,}/)[1];
    return soft === 'unlimited' ? Infinity : Number(soft) || undefined;
  } catch {
    return undefined;
  }
}

const round = (value: number, digits = 2) => (Number.isFinite(value) ? Math.round(value * 10 ** digits) / 10 ** digits : null);

// ---------------------------------------------------------------------------------------------- charges

interface ChargeCheck {
  okStreams: number;
  /** Successful streams whose job has exactly one charge. */
  chargedOnce: number;
  /** Successful streams with no charge (or no X-Job-Id). */
  lost: number;
  /** Successful streams whose job was charged more than once. */
  double: number;
  /** Failed streams whose job was charged anyway (informative). */
  failedCharged: number;
  /** Charges the team's ledger gained during the phase. */
  teamChargeDelta: number;
  ok: boolean;
}

class Ledger {
  constructor(
    private readonly pool: pg.Pool,
    private readonly teamIds: string[],
  ) {}

  /** Charges in the ledger of the bench's teams. */
  async teamCharges(): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM credit_ledger WHERE team_id = ANY($1::text[]) AND entry_type = 'charge'`,
      [this.teamIds],
    );
    return rows[0]?.n ?? 0;
  }

  async chargesOf(jobIds: string[]): Promise<Map<string, number>> {
    if (jobIds.length === 0) return new Map();
    const { rows } = await this.pool.query<{ job_id: string; n: number }>(
      `SELECT job_id, count(*)::int AS n FROM credit_ledger WHERE entry_type = 'charge' AND job_id = ANY($1::text[]) GROUP BY job_id`,
      [jobIds],
    );
    return new Map(rows.map((row) => [row.job_id, row.n]));
  }

  async jobStatuses(jobIds: string[]): Promise<Record<string, number>> {
    const { rows } = await this.pool.query<{ status: string; n: number }>(
      `SELECT status::text, count(*)::int AS n FROM jobs WHERE id = ANY($1::text[]) GROUP BY status ORDER BY status`,
      [jobIds],
    );
    return Object.fromEntries(rows.map((row) => [row.status, row.n]));
  }

  async check(result: Pick<LevelResult, 'ok' | 'okJobIds' | 'failedJobIds'>, teamChargesBefore: number): Promise<ChargeCheck> {
    const charges = await this.chargesOf([...result.okJobIds, ...result.failedJobIds]);
    const okCounts = result.okJobIds.map((id) => charges.get(id) ?? 0);
    const chargedOnce = okCounts.filter((n) => n === 1).length;
    const double = okCounts.filter((n) => n > 1).length;
    const lost = result.ok - chargedOnce - double;
    const failedCharged = result.failedJobIds.filter((id) => (charges.get(id) ?? 0) > 0).length;
    const teamChargeDelta = (await this.teamCharges()) - teamChargesBefore;
    return {
      okStreams: result.ok,
      chargedOnce,
      lost,
      double,
      failedCharged,
      teamChargeDelta,
      ok: lost === 0 && double === 0 && teamChargeDelta === chargedOnce + failedCharged,
    };
  }
}

// ---------------------------------------------------------------------------------------------- phases

interface Resources {
  /** Server process CPU (user+system) over the phase's wall time, in % of one core. */
  serverCpuPct: number | null;
  serverCpuUsPerStream: number | null;
  serverRssMiB: number | null;
  serverPeakRssMiB: number | null;
  /** Queries the server sent to PostgreSQL per stream started (creditgate arms): database round trips per job. */
  dbQueriesPerStream: number | null;
  dbQueryMeanMs: number | null;
  /** CPU of all PostgreSQL processes per successful stream (for the proxy: what the idle servers' background work costs). */
  dbCpuUsPerStream: number | null;
  /** Server process + PostgreSQL CPU per successful stream: what one billed job costs (the proxy: its process alone). */
  cpuUsPerJob: number | null;
  /** Bytes the server's logger wrote per successful stream. */
  logBytesPerStream: number | null;
  /** The server process's read and write system calls per successful stream (sockets, its log file, its IPC). */
  syscallsPerStream: { reads: number; writes: number } | null;
  /** The bench process itself: load generator + scripted upstream. */
  benchCpuPct: number;
  /** Every PostgreSQL process, in % of one core. */
  dbCpuPct: number | null;
  /** The whole machine's busy time minus the server, the bench and PostgreSQL, in % of one core: other work (and the idle bench servers). */
  otherCpuPct: number | null;
  machineCpuPct: number | null;
}

interface PhaseRecord {
  phase: 'paced' | 'saturation';
  arm: string;
  armLabel: string;
  kind: Arm['kind'];
  upstream: UpstreamMode;
  concurrency: number;
  result: Omit<LevelResult, 'okJobIds' | 'failedJobIds'>;
  resources: Resources;
  charges?: ChargeCheck;
  /** What creditgate's database connections were doing, on average over the phase (sampled every 100 ms). */
  dbConnections?: Record<string, number>;
  /** SQL statements per successful stream (creditgate arms), most frequent first. */
  queriesPerStream?: { sql: string; perStream: number; meanMs: number }[];
}

interface Context {
  pool: pg.Pool;
  servers: Partial<Record<ServerKey, ServerProcess>>;
  upstream: BenchUpstream;
  agent: http.Agent;
  ledger: Ledger;
  counters: { creditgateOkStreams: number };
}

/**
 * Samples pg_stat_activity for creditgate's connections every 100 ms: how many are running a query, waiting
 * (on a lock: another transaction holds the row), idle in a transaction (waiting for Node's next statement) or
 * idle in the pool. stop() returns the average number of connections in each state.
 */
function sampleDbActivity(pool: pg.Pool): { stop(): Promise<Record<string, number>> } {
  const totals = new Map<string, number>();
  let samples = 0;
  let busy: Promise<void> | undefined;
  const tick = () => {
    if (busy) return;
    busy = pool
      .query<{ what: string; n: number }>(
        `SELECT CASE WHEN state = 'active' AND wait_event_type IS NOT NULL THEN 'waiting ' || wait_event_type || ':' || wait_event
                     WHEN state = 'active' THEN 'running'
                     ELSE coalesce(state, '?') END AS what, count(*)::int AS n
           FROM pg_stat_activity
          WHERE application_name = 'creditgate' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
          GROUP BY 1`,
      )
      .then(({ rows }) => {
        samples++;
        for (const row of rows) totals.set(row.what, (totals.get(row.what) ?? 0) + row.n);
      })
      .catch(() => undefined)
      .finally(() => {
        busy = undefined;
      });
  };
  const timer = setInterval(tick, 100);
  return {
    async stop() {
      clearInterval(timer);
      await busy;
      return Object.fromEntries(
        [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([what, n]) => [what, round(n / Math.max(1, samples), 1) ?? 0]),
      );
    },
  };
}

function serverOf(ctx: Context, arm: Arm): ServerProcess {
  const server = ctx.servers[arm.server];
  if (!server) throw new Error(`no ${arm.server} server process for ${arm.id}`);
  return server;
}

async function runPhase(ctx: Context, arm: Arm, concurrency: number, phase: PhaseRecord['phase'], mode: UpstreamMode): Promise<PhaseRecord> {
  ctx.upstream.setMode(mode);
  const server = serverOf(ctx, arm);
  const isServer = arm.kind !== 'upstream';
  const teamBefore = arm.kind === 'creditgate' ? await ctx.ledger.teamCharges() : 0;
  await server.queries();
  const before = await server.resetPeak();
  const logBefore = await server.logBytes();
  const machineBefore = await machineCpu();
  const dbCpuBefore = await postgresCpuMs();
  const benchBefore = process.cpuUsage();
  const started = performance.now();

  // pg_stat_activity is sampled at saturation only: ten queries a second would add to the database's CPU per job
  // at the slow paced levels (c=1 runs about four jobs a second).
  const activity = arm.kind === 'creditgate' && phase === 'saturation' ? sampleDbActivity(ctx.pool) : undefined;
  const result = await runClosedLoop(arm.targets, ctx.agent, {
    concurrency,
    // One worker has nothing to stagger; the zero-delay upstream needs less time to settle than the paced one.
    rampMs: concurrency === 1 ? 250 : phase === 'saturation' ? SETTINGS.rampMs / 2 : SETTINGS.rampMs,
    measureMs: SETTINGS.measuredSecondsPerLevel * 1000,
    streamTimeoutMs: SETTINGS.streamTimeoutMs,
  });

  const wallMs = performance.now() - started;
  const dbActivity = await activity?.stop();
  const benchCpu = process.cpuUsage(benchBefore);
  const machineAfter = await machineCpu();
  const dbCpuAfter = dbCpuBefore === undefined ? undefined : await postgresCpuMs();
  const after = await server.stats();
  const queries = await server.queries();
  const logAfter = await server.logBytes();
  const serverCpuUs = after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system;
  const dbQueries = after.dbQueries - before.dbQueries;
  const dbCpuUs = dbCpuBefore !== undefined && dbCpuAfter !== undefined ? (dbCpuAfter - dbCpuBefore) * 1000 : undefined;
  const serverCpuPct = isServer ? (100 * serverCpuUs) / 1000 / wallMs : 0;
  const benchCpuPct = (100 * (benchCpu.user + benchCpu.system)) / 1000 / wallMs;
  const dbCpuPct = dbCpuUs === undefined ? undefined : (100 * dbCpuUs) / 1000 / wallMs;
  const machineCpuPct =
    machineBefore && machineAfter && machineAfter.total > machineBefore.total
      ? (100 * (machineAfter.busy - machineBefore.busy)) / (machineAfter.total - machineBefore.total)
      : undefined;
  const resources: Resources = {
    serverCpuPct: isServer ? round((100 * serverCpuUs) / 1000 / wallMs, 1) : null,
    serverCpuUsPerStream: isServer && result.ok > 0 ? round(serverCpuUs / result.ok, 0) : null,
    serverRssMiB: isServer ? round(after.rss / 2 ** 20, 1) : null,
    serverPeakRssMiB: isServer ? round(after.peakRss / 2 ** 20, 1) : null,
    dbQueriesPerStream: arm.kind === 'creditgate' && result.started > 0 ? round(dbQueries / result.started, 2) : null,
    dbQueryMeanMs: arm.kind === 'creditgate' && dbQueries > 0 ? round((after.dbQueryMs - before.dbQueryMs) / dbQueries, 3) : null,
    dbCpuUsPerStream: isServer && dbCpuUs !== undefined && result.ok > 0 ? round(dbCpuUs / result.ok, 0) : null,
    cpuUsPerJob:
      isServer && result.ok > 0 ? round((serverCpuUs + (arm.kind === 'creditgate' ? (dbCpuUs ?? NaN) : 0)) / result.ok, 0) : null,
    logBytesPerStream: isServer && result.ok > 0 ? round((logAfter - logBefore) / result.ok, 0) : null,
    syscallsPerStream:
      isServer && result.ok > 0 && after.syscalls.reads > 0
        ? {
            reads: round((after.syscalls.reads - before.syscalls.reads) / result.ok, 1) ?? 0,
            writes: round((after.syscalls.writes - before.syscalls.writes) / result.ok, 1) ?? 0,
          }
        : null,
    benchCpuPct: round(benchCpuPct, 1) ?? 0,
    dbCpuPct: dbCpuPct === undefined ? null : round(dbCpuPct, 1),
    // The machine's busy share is of all its cores; the others are in % of one core.
    otherCpuPct:
      machineCpuPct === undefined || dbCpuPct === undefined
        ? null
        : round(Math.max(0, machineCpuPct * os.cpus().length - serverCpuPct - benchCpuPct - dbCpuPct), 0),
    machineCpuPct: machineCpuPct === undefined ? null : round(machineCpuPct, 1),
  };
  const { okJobIds, failedJobIds, ...summary } = result;
  const record: PhaseRecord = { phase, arm: arm.id, armLabel: arm.label, kind: arm.kind, upstream: mode, concurrency, result: summary, resources };
  if (dbActivity) record.dbConnections = dbActivity;
  if (arm.kind === 'creditgate') {
    ctx.counters.creditgateOkStreams += result.ok;
    record.charges = await ctx.ledger.check(result, teamBefore);
    if (result.started > 0) {
      record.queriesPerStream = Object.entries(queries)
        .map(([sql, { n, ms }]) => ({ sql, perStream: round(n / result.started, 2) ?? 0, meanMs: round(ms / n, 3) ?? 0 }))
        .filter((q) => q.perStream >= 0.05)
        .sort((a, b) => b.perStream - a.perStream);
    }
  }
  ctx.upstream.forgetRequests();
  process.stdout.write(
    `  ${elapsed().padStart(5)} ${phase.padEnd(10)} ${arm.label.padEnd(33)} c=${String(concurrency).padEnd(4)} ${fmt(result.okPerSecond, 0).padStart(6)} ok/s` +
      `  ttft p50/p99/p99.9 ${fmt(result.ttft.p50)}/${fmt(result.ttft.p99)}/${fmt(result.ttft.p999)} ms  errors ${result.errors}` +
      `${record.charges ? `  charges ${record.charges.ok ? 'ok' : 'MISMATCH'}` : ''}\n`,
  );
  await sleep(250);
  return record;
}

interface MemoryRecord {
  arm: string;
  armLabel: string;
  requested: number;
  opened: number;
  failed: number;
  errorKinds: Record<string, number>;
  upstreamOpenStreams: number;
  rssBeforeMiB: number;
  rssWithStreamsMiB: number;
  kibPerStream: number | null;
  heapKibPerStream: number | null;
  /** Cancelled streams charged (job_based: a cancelled job is free). */
  cancelledCharged?: number;
  /** Status of the held streams' jobs after the clients left (all should end `cancelled`). */
  jobStatuses?: Record<string, number>;
  /** How long after the clients left until none of those jobs was still open (null: not within 30 s). */
  settledAfterMs?: number | null;
  /**
   * Heap (after GC) once the streams were closed and settled, to compare with before: a leak would show here (so
   * would anything loaded once on that path, e.g. the tokenizer counting the tokens of calls without usage).
   */
  heapBeforeMiB: number;
  heapAfterCloseMiB: number;
  /** BENCH_HEAP_SNAPSHOT=1: what the open streams kept alive, by constructor. */
  heapGrowth?: string;
}

/** RSS of a fresh server process before and with `openStreams` streams held open after their first chunk. */
async function measureMemory(ctx: Context, arm: Arm, server: ServerProcess): Promise<MemoryRecord> {
  const count = SETTINGS.openStreams;
  // Warm up (JIT, pools, sockets) with ordinary streams first.
  ctx.upstream.setMode('zero');
  const warm = await runClosedLoop(arm.targets, ctx.agent, { concurrency: 64, rampMs: 200, measureMs: 1000, streamTimeoutMs: SETTINGS.streamTimeoutMs });
  if (arm.kind === 'creditgate') ctx.counters.creditgateOkStreams += warm.ok;
  ctx.upstream.forgetRequests();
  ctx.upstream.setMode('hold');
  await sleep(500);
  // BENCH_HEAP_SNAPSHOT=1 (diagnostic): snapshots before and with the streams; the RSS figures are then perturbed.
  const snapshotDir = SETTINGS.heapSnapshots && arm.kind === 'creditgate' ? path.join(RESULTS_DIR, 'heap', new Date().toISOString().replace(/[:.]/g, '-')) : undefined;
  if (snapshotDir) {
    await mkdir(snapshotDir, { recursive: true });
    await server.gc();
    await server.heapSnapshot(path.join(snapshotDir, 'before.heapsnapshot'));
  }
  const before = await server.gc();
  const held = await openHeldStreams(arm.targets, ctx.agent, count, SETTINGS.openStreamsPaceMs, 60_000);
  await sleep(1000);
  const loaded = await server.gc();
  const upstreamOpenStreams = ctx.upstream.upstream.openStreams();
  if (snapshotDir) await server.heapSnapshot(path.join(snapshotDir, 'with-streams.heapsnapshot'));
  await held.close();
  for (let waited = 0; ctx.upstream.upstream.openStreams() > 0 && waited < 30_000; waited += 100) await sleep(100);
  ctx.upstream.forgetRequests();
  const record: MemoryRecord = {
    arm: arm.id,
    armLabel: arm.label,
    requested: count,
    opened: held.opened,
    failed: held.failed,
    errorKinds: held.errorKinds,
    upstreamOpenStreams,
    rssBeforeMiB: round(before.rss / 2 ** 20, 1) ?? 0,
    rssWithStreamsMiB: round(loaded.rss / 2 ** 20, 1) ?? 0,
    kibPerStream: held.opened > 0 ? round((loaded.rss - before.rss) / 1024 / held.opened, 1) : null,
    heapKibPerStream: held.opened > 0 ? round((loaded.heapUsed + loaded.external - before.heapUsed - before.external) / 1024 / held.opened, 1) : null,
    heapBeforeMiB: round(before.heapUsed / 2 ** 20, 1) ?? 0,
    heapAfterCloseMiB: 0,
  };
  if (arm.kind === 'creditgate') {
    // The cancelled jobs are settled after their clients left: wait (bounded) until none is open.
    const closedAt = performance.now();
    record.settledAfterMs = null;
    for (let waited = 0; waited <= 30_000; waited += 250) {
      record.jobStatuses = await ctx.ledger.jobStatuses(held.jobIds);
      if (!record.jobStatuses.pending && !record.jobStatuses.in_progress) {
        record.settledAfterMs = Math.round(performance.now() - closedAt);
        break;
      }
      await sleep(250);
    }
    const charges = await ctx.ledger.chargesOf(held.jobIds);
    record.cancelledCharged = [...charges.values()].reduce((a, b) => a + b, 0);
  }
  record.heapAfterCloseMiB = round((await server.gc()).heapUsed / 2 ** 20, 1) ?? 0;
  if (snapshotDir) {
    const growth = await heapGrowth(path.join(snapshotDir, 'before.heapsnapshot'), path.join(snapshotDir, 'with-streams.heapsnapshot'), 30);
    record.heapGrowth = formatHeapGrowth(growth, Math.max(1, held.opened));
    // Hundreds of MiB each; the summary is what matters.
    await rm(snapshotDir, { recursive: true, force: true });
  }
  process.stdout.write(
    `  memory     ${arm.label.padEnd(31)} ${record.opened}/${count} open: RSS ${record.rssBeforeMiB} -> ${record.rssWithStreamsMiB} MiB,` +
      ` ${fmt(record.kibPerStream ?? NaN, 1)} KiB per open stream\n`,
  );
  return record;
}

// ---------------------------------------------------------------------------------------------- report

function fmt(value: number | null | undefined, digits = 2): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '—' : value.toFixed(digits);
}
function signed(value: number | null | undefined, digits = 2): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '—' : `${value >= 0 ? '+' : ''}${value.toFixed(digits)}`;
}

function renderTable(headers: string[], rows: string[][], leftColumns = 1): string {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i < leftColumns ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

interface Spread {
  p50: number;
  p99: number;
  p999: number;
}

/** TTFT percentiles of `record` minus those of `baseline` (the same level): what the arm adds. */
function addedTtft(record: PhaseRecord | undefined, baseline: PhaseRecord | undefined): Spread | undefined {
  if (!record || !baseline || baseline === record) return undefined;
  return {
    p50: record.result.ttft.p50 - baseline.result.ttft.p50,
    p99: record.result.ttft.p99 - baseline.result.ttft.p99,
    p999: record.result.ttft.p999 - baseline.result.ttft.p999,
  };
}

function baselineOf(records: PhaseRecord[], record: PhaseRecord, arm: string): PhaseRecord | undefined {
  return records.find((r) => r.phase === record.phase && r.concurrency === record.concurrency && r.arm === arm);
}

const spread = (value: Spread | undefined, show: (n: number | undefined) => string = fmt) =>
  `${show(value?.p50)} / ${show(value?.p99)} / ${show(value?.p999)}`;

function latencyTable(records: PhaseRecord[]): string {
  const rows = records.map((r) => {
    const overUpstream = r.kind === 'upstream' ? undefined : addedTtft(r, baselineOf(records, r, 'upstream'));
    const overProxy = r.kind === 'creditgate' ? addedTtft(r, baselineOf(records, r, 'proxy')) : undefined;
    const errors = r.result.errors === 0 ? '0' : `${r.result.errors} (${Object.entries(r.result.errorKinds).map(([k, n]) => `${k}:${n}`).join(',')})`;
    return [
      r.armLabel,
      String(r.concurrency),
      fmt(r.result.okPerSecond, 0),
      String(r.result.samples),
      errors,
      spread(r.result.ttft),
      spread(overUpstream, (n) => signed(n)),
      spread(overProxy, (n) => signed(n)),
      `${fmt(r.result.total.p50)} / ${fmt(r.result.total.p99)}`,
    ];
  });
  return renderTable(
    ['arm', 'conc', 'ok/s', 'n', 'errors', 'TTFT p50 / p99 / p99.9', 'added TTFT vs (1) p50 / p99 / p99.9', 'added TTFT vs (2) p50 / p99 / p99.9', 'total p50 / p99'],
    rows,
  );
}

function resourceTable(records: PhaseRecord[]): string {
  const rows = records.map((r) => {
    const proxy = baselineOf(records, r, 'proxy');
    return [
      r.armLabel,
      String(r.concurrency),
      fmt(r.result.okPerSecond, 0),
      fmt(r.resources.serverCpuPct, 0),
      fmt(r.resources.serverCpuUsPerStream, 0),
      r.kind === 'upstream' ? '—' : fmt(r.resources.dbCpuUsPerStream, 0),
      r.kind === 'creditgate' ? fmt(r.resources.cpuUsPerJob, 0) : '—',
      r.kind === 'creditgate' ? fmt(proxy?.resources.serverCpuUsPerStream, 0) : '—',
      r.kind === 'creditgate' ? fmt(r.resources.dbQueriesPerStream, 2) : r.kind === 'proxy' ? '0' : '—',
      fmt(r.resources.dbQueryMeanMs, 2),
      fmt(r.resources.logBytesPerStream, 0),
      r.resources.syscallsPerStream ? `${fmt(r.resources.syscallsPerStream.reads, 1)} / ${fmt(r.resources.syscallsPerStream.writes, 1)}` : '—',
      fmt(r.resources.serverRssMiB, 0),
      fmt(r.resources.benchCpuPct, 0),
      fmt(r.resources.dbCpuPct, 0),
      fmt(r.resources.otherCpuPct, 0),
      fmt(r.resources.machineCpuPct, 0),
      r.charges ? `${r.charges.chargedOnce}/${r.charges.okStreams}${r.charges.ok ? ' ok' : ` MISMATCH lost ${r.charges.lost} double ${r.charges.double} team Δ ${r.charges.teamChargeDelta}`}` : '—',
    ];
  });
  return renderTable(
    [
      'arm',
      'conc',
      'ok/s',
      'srv CPU %',
      'srv µs/stream',
      'DB µs/stream',
      'srv+DB µs/job',
      '(2) µs/stream',
      'DB trips/job',
      'DB query ms',
      'log B/stream',
      'srv reads / writes per stream',
      'srv RSS MiB',
      'bench CPU %',
      'DB CPU %',
      'other CPU %',
      'machine %',
      'charged once / ok',
    ],
    rows,
  );
}

function idleTable(records: IdleGapRecord[]): string {
  const rows = records.map((r) => [
    r.armLabel,
    `${fmt(median(r.reps.map((rep) => rep.warmP50)))} / ${fmt(median(r.reps.map((rep) => rep.warmMax)))}`,
    `${fmt(median(r.reps.map((rep) => rep.afterP50)))} / ${fmt(median(r.reps.map((rep) => rep.afterMax)))}`,
    `${signed(r.addedP50)} / ${signed(r.addedMax)}`,
    String(r.errors),
  ]);
  return renderTable(['arm', 'warm TTFT p50 / max', 'after the gap p50 / max', 'added by the gap p50 / max', 'errors'], rows);
}

/** Item 3 of issue 17: what a billed job costs next to what the bare proxy costs per stream, at saturation. */
function costTable(saturation: PhaseRecord[]): string {
  const rows = saturation
    .filter((r) => r.kind === 'creditgate')
    .map((r) => {
      const proxy = baselineOf(saturation, r, 'proxy');
      const proxyUs = proxy?.resources.serverCpuUsPerStream;
      return [
        r.armLabel,
        String(r.concurrency),
        fmt(r.result.okPerSecond, 0),
        fmt(proxy?.result.okPerSecond, 0),
        proxy ? `${fmt((100 * r.result.okPerSecond) / proxy.result.okPerSecond, 0)}%` : '—',
        fmt(r.resources.serverCpuUsPerStream, 0),
        fmt(r.resources.dbCpuUsPerStream, 0),
        fmt(r.resources.cpuUsPerJob, 0),
        fmt(proxyUs, 0),
        proxyUs && r.resources.cpuUsPerJob ? `${(r.resources.cpuUsPerJob / proxyUs).toFixed(1)}x` : '—',
        fmt(r.resources.dbQueriesPerStream, 2),
        '0',
      ];
    });
  return renderTable(
    ['arm', 'conc', 'jobs/s', '(2) streams/s', 'share', 'creditgate µs/job', 'PostgreSQL µs/job', 'total µs/job', '(2) µs/stream', 'ratio', 'DB round trips/job', '(2) round trips'],
    rows,
  );
}

/** The variants of (3) next to (3) at each level: what limits, group commit off and tuning change. */
function variantTable(records: PhaseRecord[]): string {
  const rows = records
    .filter((r) => r.arm.startsWith('create-and-call-stream-'))
    .flatMap((r) => {
      const base = baselineOf(records, r, 'create-and-call-stream');
      if (!base) return [];
      const pair = (a: number | null | undefined, b: number | null | undefined, digits = 2) => `${fmt(a, digits)} -> ${fmt(b, digits)}`;
      return [
        [
          r.armLabel,
          r.phase,
          String(r.concurrency),
          pair(base.result.okPerSecond, r.result.okPerSecond, 0),
          pair(base.result.ttft.p50, r.result.ttft.p50),
          pair(base.result.ttft.p99, r.result.ttft.p99),
          pair(base.result.ttft.p999, r.result.ttft.p999),
          pair(base.resources.cpuUsPerJob, r.resources.cpuUsPerJob, 0),
          pair(base.resources.dbQueriesPerStream, r.resources.dbQueriesPerStream),
        ],
      ];
    });
  return renderTable(['variant', 'phase', 'conc', 'ok/s (3) -> it', 'TTFT p50', 'TTFT p99', 'TTFT p99.9', 'srv+DB µs/job', 'DB trips/job'], rows, 2);
}

interface TargetResult {
  target: string;
  arm: string;
  detail: string;
  /** null: not measurable in this run (e.g. a quick run's fewer open streams). */
  pass: boolean | null;
}

/**
 * What one job costs in CPU at that level, and what it implies: creditgate is one process (one core at most), so
 * its CPU per job caps its jobs/s on this CPU whatever else the machine runs.
 */
function cpuBudget(record: PhaseRecord): string {
  const { serverCpuUsPerStream: server, dbCpuUsPerStream: db } = record.resources;
  if (!server) return '';
  return `; CPU per job: creditgate ${fmt(server, 0)} µs${db ? ` + PostgreSQL ${fmt(db, 0)} µs` : ''}, so one creditgate process tops out near ${fmt(1e6 / server, 0)} jobs/s on this CPU`;
}

const ratio = (value: number, of: number) => (of > 0 && Number.isFinite(value) ? `${(value / of).toFixed(1)}x` : 'n/a (proxy ≤ 0)');

function evaluateTargets(paced: PhaseRecord[], saturation: PhaseRecord[], memory: MemoryRecord[]): TargetResult[] {
  const targets: TargetResult[] = [];
  const all = [...paced, ...saturation];
  const creditgateArms = [...new Set(all.filter((r) => r.kind === 'creditgate').map((r) => r.arm))];
  const hasBaselines = all.some((r) => r.arm === 'upstream') && all.some((r) => r.arm === 'proxy');
  const proxySat = saturation.filter((r) => r.arm === 'proxy');
  const proxyBest = proxySat.reduce<PhaseRecord | undefined>((a, b) => (!a || b.result.okPerSecond > a.result.okPerSecond ? b : a), undefined);
  for (const arm of creditgateArms) {
    const label = all.find((r) => r.arm === arm)?.armLabel ?? arm;

    // Billed jobs/s at saturation against the bare proxy's streams/s in the same run.
    const sat = saturation.filter((r) => r.arm === arm);
    const clean = sat.filter((r) => r.result.errors === 0 && r.charges?.ok);
    const best = clean.reduce<PhaseRecord | undefined>((a, b) => (!a || b.result.okPerSecond > a.result.okPerSecond ? b : a), undefined);
    if (sat.length > 0) {
      const share = best && proxyBest ? best.result.okPerSecond / proxyBest.result.okPerSecond : NaN;
      targets.push({
        target: `billed jobs/s at saturation ≥ ${TARGETS.jobsShareOfProxy * 100}% of the proxy's streams/s`,
        arm: label,
        detail: best
          ? `${fmt(best.result.okPerSecond, 0)} jobs/s at c=${best.concurrency} vs the proxy's ${fmt(proxyBest?.result.okPerSecond, 0)} streams/s (c=${proxyBest?.concurrency ?? '?'}): ${fmt(100 * share, 0)}%` +
            (sat.length > clean.length ? ` (${sat.length - clean.length} level(s) had errors or charge mismatches)` : '') +
            cpuBudget(best)
          : `every level had errors or charge mismatches (best ${fmt(Math.max(...sat.map((r) => r.result.okPerSecond)), 0)} ok/s)`,
        pass: proxyBest ? share >= TARGETS.jobsShareOfProxy : null,
      });
    }

    if (hasBaselines) {
      // Added TTFT p50 (over the upstream) against the proxy's, at the paced levels.
      const p50Levels = paced.filter((r) => r.arm === arm && TARGETS.addedP50Levels.includes(r.concurrency));
      const parts: string[] = [];
      let pass = p50Levels.length > 0;
      for (const r of p50Levels) {
        const cg = addedTtft(r, baselineOf(paced, r, 'upstream'))?.p50 ?? NaN;
        const proxy = addedTtft(baselineOf(paced, r, 'proxy'), baselineOf(paced, r, 'upstream'))?.p50 ?? NaN;
        const ok = Number.isFinite(cg) && Number.isFinite(proxy) && cg <= TARGETS.addedP50RatioVsProxy * Math.max(proxy, 0);
        pass &&= ok;
        parts.push(`c=${r.concurrency}: ${fmt(cg)} vs ${fmt(proxy)} ms (${ratio(cg, proxy)})`);
      }
      if (p50Levels.length > 0) {
        targets.push({ target: `added TTFT p50 ≤ ${TARGETS.addedP50RatioVsProxy}x the proxy's (paced c=${TARGETS.addedP50Levels.join(',')})`, arm: label, detail: parts.join('; '), pass });
      }

      // Added TTFT p99 against the proxy's, at every level.
      const p99Parts: string[] = [];
      let p99Pass = true;
      const levels = all.filter((r) => r.arm === arm);
      for (const r of levels) {
        const cg = addedTtft(r, baselineOf(all, r, 'upstream'))?.p99 ?? NaN;
        const proxy = addedTtft(baselineOf(all, r, 'proxy'), baselineOf(all, r, 'upstream'))?.p99 ?? NaN;
        const ok = Number.isFinite(cg) && Number.isFinite(proxy) && cg <= TARGETS.addedP99RatioVsProxy * Math.max(proxy, 0);
        p99Pass &&= ok;
        p99Parts.push(`${r.phase === 'saturation' ? 'sat ' : ''}c=${r.concurrency}: ${fmt(cg)} vs ${fmt(proxy)} ms (${ratio(cg, proxy)})`);
      }
      if (levels.length > 0) {
        targets.push({ target: `added TTFT p99 ≤ ${TARGETS.addedP99RatioVsProxy}x the proxy's, every level`, arm: label, detail: p99Parts.join('; '), pass: p99Pass });
      }
    }

    if (sat.length > 0) {
      const trips = sat.map((r) => r.resources.dbQueriesPerStream ?? NaN);
      targets.push({
        target: `DB round trips per job < ${TARGETS.roundTripsPerJob} at saturation (amortised)`,
        arm: label,
        detail: sat.map((r, i) => `c=${r.concurrency}: ${fmt(trips[i])}`).join('; ') + ' (the proxy: 0)',
        pass: trips.every((n) => n < TARGETS.roundTripsPerJob),
      });
    }
  }
  for (const m of memory.filter((record) => record.arm !== 'proxy')) {
    const enough = m.requested >= TARGETS.openStreamsForMemory;
    targets.push({
      target: `< ${TARGETS.kibPerOpenStream} KiB RSS per idle open stream at ${TARGETS.openStreamsForMemory} streams`,
      arm: m.armLabel,
      detail:
        `${fmt(m.kibPerStream, 1)} KiB/stream over ${m.opened} open streams (RSS ${m.rssBeforeMiB} -> ${m.rssWithStreamsMiB} MiB)` +
        (enough ? '' : `; only ${m.requested} streams asked for, so not judged`),
      pass: enough ? m.opened >= m.requested * 0.99 && m.kibPerStream !== null && m.kibPerStream < TARGETS.kibPerOpenStream : null,
    });
  }
  return targets;
}

// ---------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const hardLimit = setTimeout(() => {
    process.stderr.write(`bench: still running after ${HARD_LIMIT_MS / 60_000} minutes, giving up\n`);
    void cleanup().finally(() => process.exit(1));
  }, HARD_LIMIT_MS);
  hardLimit.unref();
  http.globalAgent.maxSockets = Infinity;

  const startedAt = new Date();
  // Other work on the machine skews every number: say so first.
  const cores = os.cpus().length;
  const loadAverage = os.loadavg();
  const loadBefore = loadAverage.map((n) => n.toFixed(2)).join(' ');
  const idleBefore = await machineCpu();
  await sleep(1000);
  const idleAfter = await machineCpu();
  const busyBeforePct =
    idleBefore && idleAfter && idleAfter.total > idleBefore.total ? (100 * (idleAfter.busy - idleBefore.busy)) / (idleAfter.total - idleBefore.total) : undefined;
  const loadHigh = (loadAverage[0] ?? 0) > 0.25 * cores || (busyBeforePct !== undefined && busyBeforePct > 15);
  const loadLine =
    `before the bench: load average ${loadBefore} (1, 5, 15 min) on ${cores} cores, machine ${busyBeforePct === undefined ? '?' : busyBeforePct.toFixed(0)}% busy over 1 s` +
    (loadHigh ? `\n  WARNING: the machine is busy with other work; every number below is skewed by it (see the "other CPU %" column)` : '');
  process.stdout.write(`${loadLine}\n`);
  const fdLimit = await openFileLimit();
  // Each open stream costs the bench process 2 descriptors (client socket, upstream socket) and the server 2.
  if (fdLimit !== undefined && fdLimit < SETTINGS.openStreams * 2 + 1000) {
    const fitted = Math.max(10, Math.floor((fdLimit - 1000) / 2));
    process.stderr.write(`bench: open-file limit ${fdLimit} is too low for ${SETTINGS.openStreams} open streams; using ${fitted} (raise it with ulimit -n)\n`);
    SETTINGS.openStreams = fitted;
  }

  // The servers' logs go to files in a temporary directory, deleted at the end (their sizes are reported).
  const logDir = await mkdtemp(path.join(os.tmpdir(), 'creditgate-bench-logs-'));
  cleanups.push(() => rm(logDir, { recursive: true, force: true }));

  // PostgreSQL: DATABASE_URL, or an embedded cluster in a temporary directory that is deleted afterwards.
  let databaseUrl = process.env.DATABASE_URL || undefined;
  let databaseNote = 'DATABASE_URL';
  if (!databaseUrl) {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'creditgate-bench-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    process.stdout.write(`${elapsed()}: starting an embedded PostgreSQL...\n`);
    const embedded = await startEmbeddedPostgres({ dataDir, persistent: false });
    cleanups.push(() => embedded.stop());
    databaseUrl = embedded.url;
    databaseNote = 'embedded PostgreSQL (temporary, fsync off)';
  }
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2, application_name: 'creditgate-bench' });
  pool.on('error', () => undefined);
  cleanups.push(() => pool.end());
  ourPostmaster = await findPostmaster(pool);
  const postgresCpuNote = ourPostmaster
    ? `its CPU = the postmaster (pid ${ourPostmaster}) and its children, from /proc`
    : 'its CPU = every postgres process on the machine (its postmaster.pid was not readable)';

  const upstream = await startBenchUpstream();
  cleanups.push(() => upstream.upstream.close());
  const agent = createClientAgent();
  cleanups.push(async () => agent.destroy());

  const optionsFor = (variant: ServerVariant): ServerOptions => ({
    databaseUrl: databaseUrl as string,
    upstreamBaseURL: upstream.upstream.baseURL,
    masterKey: MASTER_KEY,
    env: SERVER_VARIANTS[variant].env,
  });
  let profileDir: string | undefined;
  if (SETTINGS.cpuProfile) {
    profileDir = path.join(RESULTS_DIR, 'profiles', startedAt.toISOString().replace(/[:.]/g, '-'));
    await mkdir(profileDir, { recursive: true });
  }
  // One server process per variant the chosen arms need (the default one also runs the proxy), started one after
  // the other (the first runs the migrations). The default one is always started: it sets the tenant up.
  const variantOf: Record<string, ServerVariant> = {
    'create-and-call-stream-no-group-commit': 'no-group-commit',
    'create-and-call-stream-tuned': 'tuned',
  };
  const variants = (['default', 'no-group-commit', 'tuned'] as ServerVariant[]).filter(
    (variant) => variant === 'default' || [...ARMS].some((id) => variantOf[id] === variant),
  );
  const servers: Partial<Record<ServerKey, ServerProcess>> = {};
  let logSeq = 0;
  const logFileFor = (key: ServerKey) => path.join(logDir, `${String(++logSeq).padStart(2, '0')}-${key}.log`);
  // The default one first (it runs the migrations), then the others side by side.
  process.stdout.write(`${elapsed()}: starting creditgate, ${SERVER_VARIANTS.default.label} (migrations on first start)...\n`);
  servers.default = await ServerProcess.start(optionsFor('default'), logFileFor('default'), profileDir);
  // The bare proxy in a process of its own, so its CPU per stream is not mixed with an idle creditgate's timers.
  const proxyOptions = (): ServerOptions => ({ ...optionsFor('default'), proxyOnly: true });
  const others: [ServerKey, ServerOptions][] = [
    ...variants.filter((variant) => variant !== 'default').map((variant): [ServerKey, ServerOptions] => [variant, optionsFor(variant)]),
    ...(ARMS.has('proxy') || ARMS.has('upstream') ? [['proxy', proxyOptions()] as [ServerKey, ServerOptions]] : []),
  ];
  process.stdout.write(`${elapsed()}: starting ${others.map(([key]) => key).join(', ')}...\n`);
  await Promise.all(
    others.map(async ([key, options]) => {
      servers[key] = await ServerProcess.start(options, logFileFor(key));
    }),
  );
  process.stdout.write(`${elapsed()}: servers ready\n`);
  const server = servers.default as ServerProcess;

  // A tenant: organization, model group over the simulated model, teams with credits and their virtual keys; as
  // many again with every limit set (through the admin API) far above what the bench asks for, so the limit
  // checks run on every call and never refuse one.
  const suffix = randomBytes(3).toString('hex');
  const organizationId = `bench-org-${suffix}`;
  const modelGroup = `bench-group-${suffix}`;
  await api(server.creditgateUrl, 'POST', '/api/organizations/create', MASTER_KEY, { organization_id: organizationId, name: 'creditgate bench' });
  await api(server.creditgateUrl, 'POST', '/api/model-groups/create', MASTER_KEY, {
    group_name: modelGroup,
    models: [{ model_name: 'sim-small', priority: 0 }],
  });
  const createTeam = async (teamId: string): Promise<BenchTeam> => {
    const team = await api<{ virtual_key: string }>(server.creditgateUrl, 'POST', '/api/teams/create', MASTER_KEY, {
      organization_id: organizationId,
      team_id: teamId,
      model_groups: [modelGroup],
      credits_allocated: SETTINGS.teamCredits,
    });
    return { teamId, virtualKey: team.virtual_key };
  };
  const teams: BenchTeam[] = [];
  const limitedTeams: BenchTeam[] = [];
  for (let i = 0; i < SETTINGS.teams; i++) teams.push(await createTeam(`bench-team-${suffix}-${i}`));
  if (ARMS.has('create-and-call-stream-limits')) {
    for (let i = 0; i < SETTINGS.teams; i++) {
      const team = await createTeam(`bench-team-${suffix}-limited-${i}`);
      const updated = await api<{ limits: Record<string, number | null> }>(server.creditgateUrl, 'PATCH', `/api/teams/${team.teamId}`, MASTER_KEY, {
        limits: LIMITS_OF_LIMITED_TEAMS,
      });
      for (const [name, value] of Object.entries(LIMITS_OF_LIMITED_TEAMS)) {
        if (updated.limits?.[name] !== value) throw new Error(`team ${team.teamId}: limit ${name} is ${updated.limits?.[name]} after PATCH, not ${value}`);
      }
      limitedTeams.push(team);
    }
  }
  const teamIds = [...teams, ...limitedTeams].map((team) => team.teamId);
  const ledger = new Ledger(pool, teamIds);
  const chargesAtStart = await ledger.teamCharges();
  const counters = { creditgateOkStreams: 0 };
  const armsFor = (all: Partial<Record<ServerKey, ServerProcess>>) =>
    buildArms({
      upstreamUrl: upstream.upstream.url,
      proxyUrl: all.proxy?.proxyUrl ?? '',
      creditgateUrls: Object.fromEntries(Object.entries(all).flatMap(([key, s]) => (key === 'proxy' ? [] : [[key, s.creditgateUrl]]))),
      teams,
      limitedTeams,
      modelGroup,
    });

  const describe = (config: EffectiveConfig | null) =>
    config === null
      ? '?'
      : `LOG_LEVEL=${config.LOG_LEVEL}, DB_POOL_MAX=${config.DB_POOL_MAX}, ` +
    `DB_GROUP_COMMIT=${config.DB_GROUP_COMMIT === null ? '(not read by this version: ignored)' : String(config.DB_GROUP_COMMIT)}, ` +
    `EARLY_UPSTREAM_MIN_HOLDS=${config.EARLY_UPSTREAM_MIN_HOLDS}`;
  const header = [
    `creditgate benchmark  ${startedAt.toISOString()}${QUICK ? '  (QUICK smoke run: numbers are not meaningful)' : ''}`,
    `machine: ${cores} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, ${os.platform()} ${os.release()}`,
    `  ${loadLine}`,
    `processes: this bench process runs the load generator AND the scripted upstream; each creditgate server process`,
    `  (bench/server.ts: loadConfig/createLogger/createDeps/createApp as src/main.ts, logging to a file) is a child`,
    `  whose CPU/RSS are the "srv" columns; PostgreSQL: ${databaseNote},`,
    `  ${postgresCpuNote}. All on 127.0.0.1, sharing the CPUs.`,
    ...variants.map((variant) => `  ${variant.padEnd(15)} ${SERVER_VARIANTS[variant].label}: ${describe((servers[variant] as ServerProcess).config)}`),
    `  the pass-through proxy (2) runs alone in a process of its own; arm (5) bills teams with limits ${JSON.stringify(LIMITS_OF_LIMITED_TEAMS)}`,
    `upstream: ${UPSTREAM_SHAPE.chunks} content chunks, first after ${UPSTREAM_SHAPE.firstTokenDelayMs} ms, then every ${UPSTREAM_SHAPE.chunkDelayMs} ms (saturation: no delays)`,
    `load: closed loop; at each concurrency N, N workers each start their next stream when the previous ends, first starts`,
    `  staggered evenly over ${SETTINGS.rampMs / 1000} s (saturation ${SETTINGS.rampMs / 2000} s, c=1 0.25 s; not measured), then ${SETTINGS.measuredSecondsPerLevel} s measured; levels ${SETTINGS.levels.join(', ')};`,
    `  saturation levels ${SETTINGS.saturationLevels.join(', ')}; memory: ${SETTINGS.openStreams} streams held open after their first chunk.`,
    `  TTFT = request sent -> first data: chunk with non-empty content; total = request sent -> end of the stream; ms.`,
    `  p99.9 over fewer than 1,000 streams (column n) is the slowest one. A stream counts as ok with HTTP 200, all`,
    `  ${UPSTREAM_SHAPE.chunks} chunks' content, no error event and [DONE].`,
    SETTINGS.teams === 1
      ? `tenant: one team (job_based, 1 credit per job) billed by every creditgate stream (arm (5): another, with limits): all jobs contend for its balance row.`
      : `tenant: ${SETTINGS.teams} teams (job_based, 1 credit per job); worker i bills team i mod ${SETTINGS.teams}.`,
  ].join('\n');
  process.stdout.write(`\n${header}\n\n`);

  // Warm-up: JIT, connection pools, keep-alive sockets (not reported; creditgate successes count towards charges).
  // Against the zero-delay upstream, so each arm serves hundreds of requests first, as a server in production has:
  // otherwise the first level (c=1) would time code that V8 has not optimised yet.
  const arms = armsFor(servers).filter((arm) => ARMS.has(arm.id));
  upstream.setMode('zero');
  for (const arm of arms) {
    const warm = await runClosedLoop(arm.targets, agent, { concurrency: 16, rampMs: 200, measureMs: QUICK ? 500 : 1500, streamTimeoutMs: SETTINGS.streamTimeoutMs });
    if (arm.kind === 'creditgate') counters.creditgateOkStreams += warm.ok;
    if (warm.errors > 0) process.stderr.write(`warm-up of ${arm.label}: ${warm.errors} errors ${JSON.stringify(warm.errorKinds)}\n`);
  }
  upstream.forgetRequests();
  process.stdout.write(`${elapsed()}: warmed up\n`);

  const ctx: Context = { pool, servers, upstream, agent, ledger, counters };
  const paced: PhaseRecord[] = [];
  if (PHASES.has('paced')) process.stdout.write('paced upstream:\n');
  for (const concurrency of PHASES.has('paced') ? SETTINGS.levels : []) {
    for (const arm of arms) paced.push(await runPhase(ctx, arm, concurrency, 'paced', 'paced'));
  }
  const saturation: PhaseRecord[] = [];
  if (PHASES.has('saturation')) process.stdout.write('saturation (zero-delay upstream):\n');
  for (const concurrency of PHASES.has('saturation') ? SETTINGS.saturationLevels : []) {
    for (const arm of arms) saturation.push(await runPhase(ctx, arm, concurrency, 'saturation', 'zero'));
  }
  let idle: IdleGapRecord[] = [];
  const idleArms = arms.filter((arm) => arm.id === 'proxy' || arm.id === 'create-and-call-stream');
  if (PHASES.has('idle') && idleArms.length > 0) {
    process.stdout.write(`after a quiet spell (${SETTINGS.idleGapMs / 1000} s idle, bursts of ${SETTINGS.idleBurst} paced streams):\n`);
    upstream.setMode('paced');
    const teamBefore = await ledger.teamCharges();
    idle = await measureIdleGaps(idleArms, agent, { gapMs: SETTINGS.idleGapMs, burst: SETTINGS.idleBurst, reps: SETTINGS.idleReps, timeoutMs: SETTINGS.streamTimeoutMs });
    const okStreams = idle.reduce((sum, record) => sum + (record.arm === 'proxy' ? 0 : record.okStreams), 0);
    counters.creditgateOkStreams += okStreams;
    const charged = (await ledger.teamCharges()) - teamBefore;
    if (charged !== okStreams) process.stdout.write(`  CHARGES MISMATCH in the idle phase: ${charged} charges for ${okStreams} successful streams\n`);
    upstream.forgetRequests();
  }
  const logBytes = Object.fromEntries(await Promise.all(variants.map(async (variant) => [variant, await (servers[variant] as ServerProcess).logBytes()] as const)));
  const serverConfigs: Partial<Record<ServerVariant, EffectiveConfig>> = Object.fromEntries(
    variants.flatMap((variant) => (servers[variant]?.config ? [[variant, servers[variant]?.config]] : [])),
  );
  const armVariant = (id: string): ServerKey => arms.find((arm) => arm.id === id)?.server ?? 'default';
  for (const one of Object.values(servers)) await one.close();

  let profile: ProfileSummary | undefined;
  if (profileDir) {
    // One profile per thread (CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile): the main thread is 0; the
    // others are tsx's module loader.
    const files = (await readdir(profileDir)).filter((file) => file.endsWith('.cpuprofile'));
    const sized = await Promise.all(files.map(async (file) => ({ file, size: (await stat(path.join(profileDir, file))).size })));
    const main = sized.find(({ file }) => file.split('.')[4] === '0') ?? sized.sort((a, b) => b.size - a.size)[0];
    if (main) profile = await summariseProfile(path.join(profileDir, main.file), 30);
  }

  // Memory per open stream: a fresh server process for each arm, so freed memory of earlier phases does not hide it.
  if (PHASES.has('memory')) process.stdout.write('memory per open stream (fresh server process each):\n');
  const memory: MemoryRecord[] = [];
  let balance: { credits_used: number; held: number } | undefined;
  const memoryArms = ['proxy', 'create-and-call-stream'].filter((id) => PHASES.has('memory') && ARMS.has(id));
  const memoryRuns = memoryArms.includes('create-and-call-stream') ? memoryArms : [...memoryArms, 'none'];
  // Fresh processes, started side by side (each measures its own RSS, idle until its turn).
  const freshServers = await Promise.all(
    memoryRuns.map((armId) => ServerProcess.start(armId === 'proxy' ? proxyOptions() : optionsFor('default'), logFileFor(armId === 'proxy' ? 'proxy' : 'default'))),
  );
  for (const [index, armId] of memoryRuns.entries()) {
    const fresh = freshServers[index] as ServerProcess;
    const arm = armsFor(armId === 'proxy' ? { proxy: fresh } : { default: fresh }).find((a) => a.id === armId);
    if (arm) memory.push(await measureMemory({ ...ctx, servers: armId === 'proxy' ? { proxy: fresh } : { default: fresh } }, arm, fresh));
    if (armId !== 'proxy') {
      // Every hold released once the cancelled jobs settled.
      for (let waited = 0; waited < 15_000; waited += 250) {
        balance = { credits_used: 0, held: 0 };
        for (const teamId of teamIds) {
          const one = await api<{ credits_used: number; held: number }>(fresh.creditgateUrl, 'GET', `/api/credits/teams/${teamId}/balance`, MASTER_KEY);
          balance.credits_used += Number(one.credits_used);
          balance.held += Number(one.held);
        }
        if (balance.held === 0) break;
        await sleep(250);
      }
    }
    await fresh.close();
  }

  // Whole run: every successful creditgate stream charged once, and every stream of the memory phase too (their
  // clients left after output arrived, which is billed), nothing else charged, nothing left held.
  const totalCharges = (await ledger.teamCharges()) - chargesAtStart;
  const creditsUsed = Number(balance?.credits_used);
  const held = Number(balance?.held);
  const leftAfterOutput = memory.reduce((sum, m) => sum + (m.cancelledCharged ?? 0), 0);
  const runCheck = {
    creditgateOkStreams: counters.creditgateOkStreams,
    leftAfterOutput,
    ledgerCharges: totalCharges,
    balanceCreditsUsed: creditsUsed,
    balanceHeld: held,
    ok: totalCharges === counters.creditgateOkStreams + leftAfterOutput && creditsUsed === totalCharges && held === 0,
  };

  const targets = evaluateTargets(paced, saturation, memory);
  const memoryTable = renderTable(
    ['arm', 'open streams', 'failed', 'RSS before MiB', 'RSS with streams MiB', 'KiB/stream (RSS)', 'KiB/stream (heap+external)', 'heap MiB before -> after close', 'cancelled charged', 'their jobs afterwards'],
    memory.map((m) => [
      m.armLabel,
      `${m.opened}/${m.requested}`,
      m.failed === 0 ? '0' : `${m.failed} ${JSON.stringify(m.errorKinds)}`,
      fmt(m.rssBeforeMiB, 1),
      fmt(m.rssWithStreamsMiB, 1),
      fmt(m.kibPerStream, 1),
      fmt(m.heapKibPerStream, 1),
      `${fmt(m.heapBeforeMiB, 1)} -> ${fmt(m.heapAfterCloseMiB, 1)}`,
      m.cancelledCharged === undefined ? '—' : String(m.cancelledCharged),
      m.jobStatuses
        ? Object.entries(m.jobStatuses).map(([status, n]) => `${status}:${n}`).join(' ') +
          (m.settledAfterMs === null ? ' (still open after 30 s)' : ` (all settled ${((m.settledAfterMs ?? 0) / 1000).toFixed(1)} s after the clients left)`)
        : '—',
    ]),
  );
  const targetTable = renderTable(
    ['result', 'target', 'arm', 'measured'],
    targets.map((t) => [t.pass === null ? 'n/a' : t.pass ? 'PASS' : 'FAIL', t.target, t.arm, t.detail]),
    4,
  );
  const queryLines = (saturation.length > 0 ? saturation : paced)
    .filter((r) => r.kind === 'creditgate' && r.queriesPerStream)
    .filter((r, i, all) => all.findIndex((o) => o.arm === r.arm) === i)
    .map(
      (r) =>
        `${r.armLabel} (${r.phase} c=${r.concurrency}): ${fmt(r.resources.dbQueriesPerStream, 1)} queries per stream\n` +
        (r.queriesPerStream ?? []).map((q) => `  ${q.perStream.toFixed(2).padStart(5)}x  ${q.meanMs.toFixed(2).padStart(6)} ms  ${q.sql}`).join('\n'),
    );

  const activityLines = [...paced, ...saturation]
    .filter((r) => r.dbConnections)
    .map(
      (r) =>
        `${r.armLabel.padEnd(33)} ${r.phase.padEnd(10)} c=${String(r.concurrency).padEnd(4)} pool max ${String(serverConfigs[armVariant(r.arm) as ServerVariant]?.DB_POOL_MAX ?? '?').padEnd(3)} ` +
        Object.entries(r.dbConnections ?? {})
          .map(([what, n]) => `${what} ${n}`)
          .join(', '),
    );
  // Every creditgate arm's charges were checked at every level it ran.
  const chargeLines = [...new Set([...paced, ...saturation].filter((r) => r.kind === 'creditgate').map((r) => r.arm))].map((arm) => {
    const levels = [...paced, ...saturation].filter((r) => r.arm === arm);
    const bad = levels.filter((r) => !r.charges?.ok);
    const ok = levels.reduce((sum, r) => sum + (r.charges?.okStreams ?? 0), 0);
    const once = levels.reduce((sum, r) => sum + (r.charges?.chargedOnce ?? 0), 0);
    return `  ${(levels[0]?.armLabel ?? arm).padEnd(33)} ${levels.length} levels checked, ${once}/${ok} successful streams charged exactly once: ${bad.length === 0 ? 'ok' : `MISMATCH at ${bad.map((r) => `${r.phase} c=${r.concurrency}`).join(', ')}`}`;
  });
  const logLines = variants.map(
    (variant) =>
      `  ${variant.padEnd(15)} LOG_LEVEL=${serverConfigs[variant]?.LOG_LEVEL}: ${fmt((logBytes[variant] ?? 0) / 2 ** 20, 1)} MiB written to ${path.basename(servers[variant]?.logFile ?? '')} over the paced and saturation phases`,
  );
  const section = (present: boolean, lines: string[]) => (present ? [...lines, ''] : []);
  const report = [
    '',
    header,
    '',
    ...section(paced.length > 0, [
      'STREAMING LATENCY, paced upstream (ms; "added vs (1)" = the arm\'s percentile minus the upstream\'s at the same level, "vs (2)" = minus the proxy\'s; n = streams timed)',
      latencyTable(paced),
      '',
      'RESOURCES, paced upstream (srv = the arm\'s server process; DB = every PostgreSQL process; srv+DB µs/job = what one billed job costs; (2) = the proxy at the same level;',
      '  DB trips/job = queries creditgate sent per job started, background work included; other CPU % = the rest of the machine, in % of one core)',
      resourceTable(paced),
    ]),
    ...section(saturation.length > 0, [
      'SATURATION, zero-delay upstream',
      latencyTable(saturation),
      '',
      resourceTable(saturation),
      '',
      'COST PER BILLED JOB at saturation, next to the pass-through proxy (2) at the same level',
      costTable(saturation),
      '',
    ]),
    ...section(arms.some((arm) => arm.id.startsWith('create-and-call-stream-')) && ARMS.has('create-and-call-stream'), [
      'VARIANTS of (3): (5) team limits set, (6) DB_GROUP_COMMIT=false, (7) tuned; each as "(3) -> variant", same level, same run',
      variantTable([...paced, ...saturation]),
    ]),
    ...section(queryLines.length > 0, ['DATABASE ROUND TRIPS PER STREAM (statement, times per stream, mean latency until the result)', ...queryLines]),
    ...section(activityLines.length > 0, [
      `DATABASE CONNECTIONS of every creditgate process at saturation: average number running a query, waiting (Lock: on a row another`,
      `transaction holds), idle in transaction (waiting for Node's next statement) or idle, sampled from pg_stat_activity every 100 ms`,
      ...activityLines,
    ]),
    ...section(idle.length > 0, [
      `AFTER A QUIET SPELL: TTFT of a burst of ${SETTINGS.idleBurst} paced streams right before, and right after, ${SETTINGS.idleGapMs / 1000} s with nothing running (medians over ${SETTINGS.idleReps})`,
      idleTable(idle),
    ]),
    ...section(memory.length > 0, [
      `MEMORY PER OPEN STREAM (${SETTINGS.openStreams} streams held open after their first chunk; RSS after GC, fresh process)`,
      memoryTable,
      ...memory.flatMap((m) => (m.heapGrowth ? ['', `${m.armLabel}: ${m.heapGrowth}`] : [])),
    ]),
    'CHARGES per creditgate arm (ledger checked after each level: one charge per successful job, no other charge)',
    ...chargeLines,
    `CHARGES over the whole run: ${runCheck.creditgateOkStreams} successful creditgate streams + ${runCheck.leftAfterOutput} left by their clients after output, ${runCheck.ledgerCharges} ledger charges, balance credits_used ${runCheck.balanceCreditsUsed}, held ${runCheck.balanceHeld}: ${runCheck.ok ? 'OK (no lost or double charges)' : 'MISMATCH'}`,
    '',
    'TARGETS (informative; the bench exits 0 either way)',
    targetTable,
    ...(profile ? ['', formatProfile(profile)] : []),
    '',
    'LOGS (the normal logger, stdout of each server process, to a file)',
    ...logLines,
    '',
    `after the bench (${elapsed()}): load average ${os.loadavg().map((n) => n.toFixed(2)).join(' ')}`,
    '',
  ].join('\n');
  process.stdout.write(report);

  await mkdir(RESULTS_DIR, { recursive: true });
  const json = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, totalMemGiB: round(os.totalmem() / 2 ** 30, 1), node: process.version, platform: `${os.platform()} ${os.release()}` },
    machineBusyBeforePct: busyBeforePct === undefined ? null : round(busyBeforePct, 1),
    loadAverageBefore: loadBefore,
    loadAverageAfter: os.loadavg().map((n) => n.toFixed(2)).join(' '),
    servers: serverConfigs,
    logBytes,
    settings: { ...SETTINGS, phases: [...PHASES], arms: [...ARMS], upstream: UPSTREAM_SHAPE, database: databaseNote, openFileLimit: fdLimit ?? null },
    layout: 'load generator + scripted upstream in the bench process; one creditgate child process per variant (bench/server.ts), the pass-through proxy in the default one',
    targets: TARGETS,
    paced,
    saturation,
    idle,
    memory,
    runCheck,
    targetResults: targets,
    ...(profile && { profile }),
  };
  const text = `${JSON.stringify(json, null, 2)}\n`;
  await writeFile(path.join(RESULTS_DIR, 'latest.json'), text);
  await writeFile(path.join(RESULTS_DIR, `bench-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`), text);
  process.stdout.write(`results written to ${path.relative(process.cwd(), path.join(RESULTS_DIR, 'latest.json'))}\n`);
}

main()
  .then(() => cleanup())
  .then(() => process.exit(0))
  .catch(async (error: unknown) => {
    if (interrupted) return; // the signal handler cleans up and exits
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    await cleanup();
    process.exit(1);
  });
