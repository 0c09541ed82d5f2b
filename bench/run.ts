/**
 * creditgate's benchmark (`npm run bench`; never a timed unit test). See bench/README.md.
 *
 * Env: BENCH_SECONDS (measured seconds per level, default 5), BENCH_QUICK=1 (smoke run), BENCH_LEVELS
 * ("1,16,64,100"), BENCH_SAT_LEVELS ("16,64"), BENCH_OPEN_STREAMS (1000), BENCH_PHASES ("paced,saturation,memory"),
 * BENCH_ARMS ("upstream,proxy,create-and-call-stream,v1-chat-completions"),
 * BENCH_CPU_PROF=1 (profile the creditgate process), DATABASE_URL (else an embedded PostgreSQL in a temporary
 * directory that is deleted afterwards).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.js';
import { buildArms, startBenchUpstream, UPSTREAM_SHAPE, type Arm, type BenchUpstream, type UpstreamMode } from './arms.js';
import { createClientAgent, openHeldStreams, runClosedLoop, type LevelResult } from './load.js';
import { formatHeapGrowth, heapGrowth } from './heap.js';
import { formatProfile, summariseProfile, type ProfileSummary } from './profile.js';
import type { QueryCounts, ServerMessage, ServerOptions, ServerRequest, ServerStats } from './server.js';

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
  const all = ['paced', 'saturation', 'memory'];
  const raw = process.env.BENCH_PHASES;
  if (!raw) return new Set(all);
  const phases = raw.split(',').map((part) => part.trim());
  if (phases.some((phase) => !all.includes(phase))) throw new Error(`BENCH_PHASES must list some of ${all.join(', ')}, got "${raw}"`);
  return new Set(phases);
}

const ARM_IDS = ['upstream', 'proxy', 'create-and-call-stream', 'v1-chat-completions'];
function envArms(): Set<string> {
  const raw = process.env.BENCH_ARMS;
  if (!raw) return new Set(ARM_IDS);
  const arms = raw.split(',').map((part) => part.trim());
  if (arms.some((arm) => !ARM_IDS.includes(arm))) throw new Error(`BENCH_ARMS must list some of ${ARM_IDS.join(', ')}, got "${raw}"`);
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
  streamTimeoutMs: 30_000,
  // About four connections per database core: more only queue on the team's balance row (see bench/README.md).
  dbPoolMax: envNumber('BENCH_DB_POOL_MAX', 8, 1, 290),
  /** Teams the creditgate arms bill, worker i billing team i mod teams (1: all contend for one balance row). */
  teams: envNumber('BENCH_TEAMS', 1, 1, 200),
  teamCredits: 10_000_000,
  heapSnapshots: process.env.BENCH_HEAP_SNAPSHOT === '1',
  cpuProfile: process.env.BENCH_CPU_PROF === '1' || process.execArgv.some((arg) => arg.startsWith('--cpu-prof')),
};
const TARGETS = { ttftRatioVsProxy: 1.5, addedTtftAtC1Ms: 1, billedJobsPerSecond: 1000, kibPerOpenStream: 64 };
const MASTER_KEY = 'mk-bench-master-key-0123456789abcdef';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const RESULTS_DIR = path.join(HERE, 'results');
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

  static async start(options: ServerOptions, profileDir?: string): Promise<ServerProcess> {
    // The child runs TypeScript like the bench does: keep tsx's loader flags, drop any --cpu-prof of our own.
    const inherited = process.execArgv.filter((arg, i, all) => !arg.startsWith('--cpu-prof') && !all[i - 1]?.match(/^--cpu-prof-(dir|name|interval)$/));
    if (!inherited.some((arg) => arg.includes('tsx'))) inherited.push('--import', 'tsx');
    const execArgv = [...inherited, '--expose-gc', ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])];
    const child = fork(path.join(HERE, 'server.ts'), [JSON.stringify(options)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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
    const server = new ServerProcess(child, ready.creditgateUrl, ready.proxyUrl);
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
 * CPU time used so far by every PostgreSQL process on the machine (Linux, /proc), in ms: on a 2-core machine the
 * database competes with creditgate for the same cores, so its cost per job matters as much as the server's.
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
  dbQueriesPerStream: number | null;
  dbQueryMeanMs: number | null;
  /** CPU of all PostgreSQL processes per successful stream (creditgate arms). */
  dbCpuUsPerStream: number | null;
  /** The bench process itself: load generator + scripted upstream. */
  benchCpuPct: number;
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
  server: ServerProcess;
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

async function runPhase(ctx: Context, arm: Arm, concurrency: number, phase: PhaseRecord['phase'], mode: UpstreamMode): Promise<PhaseRecord> {
  ctx.upstream.setMode(mode);
  const isServer = arm.kind !== 'upstream';
  const teamBefore = arm.kind === 'creditgate' ? await ctx.ledger.teamCharges() : 0;
  await ctx.server.queries();
  const before = await ctx.server.resetPeak();
  const machineBefore = await machineCpu();
  const dbCpuBefore = arm.kind === 'creditgate' ? await postgresCpuMs() : undefined;
  const benchBefore = process.cpuUsage();
  const started = performance.now();

  const activity = arm.kind === 'creditgate' ? sampleDbActivity(ctx.pool) : undefined;
  const result = await runClosedLoop(arm.targets, ctx.agent, {
    concurrency,
    rampMs: SETTINGS.rampMs,
    measureMs: SETTINGS.measuredSecondsPerLevel * 1000,
    streamTimeoutMs: SETTINGS.streamTimeoutMs,
  });

  const wallMs = performance.now() - started;
  const dbActivity = await activity?.stop();
  const benchCpu = process.cpuUsage(benchBefore);
  const machineAfter = await machineCpu();
  const dbCpuAfter = dbCpuBefore === undefined ? undefined : await postgresCpuMs();
  const after = await ctx.server.stats();
  const queries = await ctx.server.queries();
  const serverCpuUs = after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system;
  const dbQueries = after.dbQueries - before.dbQueries;
  const resources: Resources = {
    serverCpuPct: isServer ? round((100 * serverCpuUs) / 1000 / wallMs, 1) : null,
    serverCpuUsPerStream: isServer && result.ok > 0 ? round(serverCpuUs / result.ok, 0) : null,
    serverRssMiB: isServer ? round(after.rss / 2 ** 20, 1) : null,
    serverPeakRssMiB: isServer ? round(after.peakRss / 2 ** 20, 1) : null,
    dbQueriesPerStream: arm.kind === 'creditgate' && result.started > 0 ? round(dbQueries / result.started, 2) : null,
    dbQueryMeanMs: arm.kind === 'creditgate' && dbQueries > 0 ? round((after.dbQueryMs - before.dbQueryMs) / dbQueries, 3) : null,
    dbCpuUsPerStream:
      dbCpuBefore !== undefined && dbCpuAfter !== undefined && result.ok > 0 ? round(((dbCpuAfter - dbCpuBefore) * 1000) / result.ok, 0) : null,
    benchCpuPct: round((100 * (benchCpu.user + benchCpu.system)) / 1000 / wallMs, 1) ?? 0,
    machineCpuPct:
      machineBefore && machineAfter && machineAfter.total > machineBefore.total
        ? round((100 * (machineAfter.busy - machineBefore.busy)) / (machineAfter.total - machineBefore.total), 1)
        : null,
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
    `  ${phase.padEnd(10)} ${arm.label.padEnd(31)} c=${String(concurrency).padEnd(4)} ${fmt(result.okPerSecond, 0).padStart(6)} ok/s` +
      `  ttft p50 ${fmt(result.ttft.p50)} ms  total p50 ${fmt(result.total.p50)} ms  errors ${result.errors}` +
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
async function measureMemory(ctx: Context, arm: Arm): Promise<MemoryRecord> {
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
    await ctx.server.gc();
    await ctx.server.heapSnapshot(path.join(snapshotDir, 'before.heapsnapshot'));
  }
  const before = await ctx.server.gc();
  const held = await openHeldStreams(arm.targets, ctx.agent, count, SETTINGS.openStreamsPaceMs, 60_000);
  await sleep(1000);
  const loaded = await ctx.server.gc();
  const upstreamOpenStreams = ctx.upstream.upstream.openStreams();
  if (snapshotDir) await ctx.server.heapSnapshot(path.join(snapshotDir, 'with-streams.heapsnapshot'));
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
  record.heapAfterCloseMiB = round((await ctx.server.gc()).heapUsed / 2 ** 20, 1) ?? 0;
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

interface Added {
  ttftP50: number;
  ttftP99: number;
  totalP50: number;
  totalP99: number;
}

function addedOver(record: PhaseRecord, baseline: PhaseRecord | undefined): Added | undefined {
  if (!baseline || baseline === record) return undefined;
  return {
    ttftP50: record.result.ttft.p50 - baseline.result.ttft.p50,
    ttftP99: record.result.ttft.p99 - baseline.result.ttft.p99,
    totalP50: record.result.total.p50 - baseline.result.total.p50,
    totalP99: record.result.total.p99 - baseline.result.total.p99,
  };
}

function baselineOf(records: PhaseRecord[], record: PhaseRecord, arm: string): PhaseRecord | undefined {
  return records.find((r) => r.phase === record.phase && r.concurrency === record.concurrency && r.arm === arm);
}

function latencyTable(records: PhaseRecord[]): string {
  const rows = records.map((r) => {
    const overUpstream = addedOver(r, baselineOf(records, r, 'upstream'));
    const overProxy = r.kind === 'creditgate' ? addedOver(r, baselineOf(records, r, 'proxy')) : undefined;
    const errors = r.result.errors === 0 ? '0' : `${r.result.errors} (${Object.entries(r.result.errorKinds).map(([k, n]) => `${k}:${n}`).join(',')})`;
    return [
      r.armLabel,
      String(r.concurrency),
      fmt(r.result.okPerSecond, 0),
      String(r.result.ok),
      errors,
      fmt(r.result.ttft.p50),
      fmt(r.result.ttft.p99),
      `${signed(overUpstream?.ttftP50)} / ${signed(overUpstream?.ttftP99)}`,
      `${signed(overProxy?.ttftP50)} / ${signed(overProxy?.ttftP99)}`,
      fmt(r.result.total.p50),
      fmt(r.result.total.p99),
      `${signed(overUpstream?.totalP50)} / ${signed(overUpstream?.totalP99)}`,
      `${signed(overProxy?.totalP50)} / ${signed(overProxy?.totalP99)}`,
    ];
  });
  return renderTable(
    ['arm', 'conc', 'ok/s', 'ok', 'errors', 'TTFT p50', 'TTFT p99', '+TTFT vs (1) p50/p99', '+TTFT vs (2) p50/p99', 'total p50', 'total p99', '+total vs (1) p50/p99', '+total vs (2) p50/p99'],
    rows,
  );
}

function resourceTable(records: PhaseRecord[]): string {
  const rows = records.map((r) => [
    r.armLabel,
    String(r.concurrency),
    r.kind === 'creditgate' ? fmt(r.result.okPerSecond, 0) : '—',
    fmt(r.resources.serverCpuPct, 0),
    fmt(r.resources.serverCpuUsPerStream, 0),
    fmt(r.resources.serverRssMiB, 0),
    fmt(r.resources.serverPeakRssMiB, 0),
    fmt(r.resources.dbQueriesPerStream, 1),
    fmt(r.resources.dbQueryMeanMs, 2),
    fmt(r.resources.dbCpuUsPerStream, 0),
    fmt(r.resources.benchCpuPct, 0),
    fmt(r.resources.machineCpuPct, 0),
    r.charges ? `${r.charges.chargedOnce}/${r.charges.okStreams}${r.charges.ok ? ' ok' : ` MISMATCH lost ${r.charges.lost} double ${r.charges.double} team Δ ${r.charges.teamChargeDelta}`}` : '—',
  ]);
  return renderTable(
    ['arm', 'conc', 'billed jobs/s', 'srv CPU %', 'srv CPU µs/stream', 'srv RSS MiB', 'peak RSS MiB', 'DB queries/stream', 'DB query ms', 'DB CPU µs/stream', 'bench CPU %', 'machine CPU %', 'charged once / ok'],
    rows,
  );
}

interface TargetResult {
  target: string;
  arm: string;
  detail: string;
  pass: boolean;
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

function evaluateTargets(paced: PhaseRecord[], saturation: PhaseRecord[], memory: MemoryRecord[]): TargetResult[] {
  const targets: TargetResult[] = [];
  const all = [...paced, ...saturation];
  const creditgateArms = [...new Set(all.filter((r) => r.kind === 'creditgate').map((r) => r.arm))];
  const hasBaselines = paced.some((r) => r.arm === 'upstream') && paced.some((r) => r.arm === 'proxy');
  for (const arm of creditgateArms) {
    const records = hasBaselines ? paced.filter((r) => r.arm === arm) : [];
    const label = all.find((r) => r.arm === arm)?.armLabel ?? arm;
    const parts: string[] = [];
    let pass = true;
    for (const r of records) {
      const cg = addedOver(r, baselineOf(paced, r, 'upstream'))?.ttftP50 ?? NaN;
      const proxy = addedOver(baselineOf(paced, r, 'proxy') ?? r, baselineOf(paced, r, 'upstream'))?.ttftP50 ?? NaN;
      const ok = Number.isFinite(cg) && Number.isFinite(proxy) && cg <= TARGETS.ttftRatioVsProxy * Math.max(proxy, 0);
      pass &&= ok;
      parts.push(`c=${r.concurrency}: ${fmt(cg)} vs ${fmt(proxy)} ms (${Number.isFinite(cg / proxy) && proxy > 0 ? `${(cg / proxy).toFixed(1)}x` : 'n/a'})`);
    }
    if (records.length > 0) {
      targets.push({ target: `added TTFT p50 ≤ ${TARGETS.ttftRatioVsProxy}x the proxy's, every concurrency`, arm: label, detail: parts.join('; '), pass });
    }

    const c1 = records.find((r) => r.concurrency === 1);
    const c1Added = c1 ? (addedOver(c1, baselineOf(paced, c1, 'upstream'))?.ttftP50 ?? NaN) : NaN;
    if (records.length > 0) targets.push({
      target: `added TTFT p50 < ${TARGETS.addedTtftAtC1Ms} ms at concurrency 1`,
      arm: label,
      detail: c1 ? `${fmt(c1Added)} ms over the upstream` : 'concurrency 1 not measured',
      pass: Number.isFinite(c1Added) && c1Added < TARGETS.addedTtftAtC1Ms,
    });

    const sat = saturation.filter((r) => r.arm === arm);
    const clean = sat.filter((r) => r.result.errors === 0 && r.charges?.ok);
    const best = clean.reduce<PhaseRecord | undefined>((a, b) => (!a || b.result.okPerSecond > a.result.okPerSecond ? b : a), undefined);
    if (sat.length > 0) targets.push({
      target: `≥ ${TARGETS.billedJobsPerSecond} billed streamed jobs/s, no errors (zero-delay upstream)`,
      arm: label,
      detail: best
        ? `${fmt(best.result.okPerSecond, 0)} jobs/s at c=${best.concurrency}` +
          (sat.length > clean.length ? ` (${sat.length - clean.length} level(s) had errors or charge mismatches)` : '') +
          cpuBudget(best)
        : sat.length
          ? `every level had errors or charge mismatches (best ${fmt(Math.max(...sat.map((r) => r.result.okPerSecond)), 0)} ok/s)`
          : 'not measured',
      pass: (best?.result.okPerSecond ?? 0) >= TARGETS.billedJobsPerSecond,
    });
  }
  for (const m of memory.filter((record) => record.arm !== 'proxy')) {
    targets.push({
      target: `< ${TARGETS.kibPerOpenStream} KiB RSS per idle open stream`,
      arm: m.armLabel,
      detail: `${fmt(m.kibPerStream, 1)} KiB/stream over ${m.opened} open streams (RSS ${m.rssBeforeMiB} -> ${m.rssWithStreamsMiB} MiB)`,
      pass: m.opened >= m.requested * 0.99 && m.kibPerStream !== null && m.kibPerStream < TARGETS.kibPerOpenStream,
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
  // Other work on the machine skews every number: say so.
  const idleBefore = await machineCpu();
  await sleep(1000);
  const idleAfter = await machineCpu();
  const busyBeforePct =
    idleBefore && idleAfter && idleAfter.total > idleBefore.total ? (100 * (idleAfter.busy - idleBefore.busy)) / (idleAfter.total - idleBefore.total) : undefined;
  const loadBefore = os.loadavg().map((n) => n.toFixed(2)).join(' ');
  const fdLimit = await openFileLimit();
  // Each open stream costs the bench process 2 descriptors (client socket, upstream socket) and the server 2.
  if (fdLimit !== undefined && fdLimit < SETTINGS.openStreams * 2 + 1000) {
    const fitted = Math.max(10, Math.floor((fdLimit - 1000) / 2));
    process.stderr.write(`bench: open-file limit ${fdLimit} is too low for ${SETTINGS.openStreams} open streams; using ${fitted} (raise it with ulimit -n)\n`);
    SETTINGS.openStreams = fitted;
  }

  // PostgreSQL: DATABASE_URL, or an embedded cluster in a temporary directory that is deleted afterwards.
  let databaseUrl = process.env.DATABASE_URL || undefined;
  let databaseNote = 'DATABASE_URL';
  if (!databaseUrl) {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'creditgate-bench-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    process.stdout.write('starting an embedded PostgreSQL...\n');
    const embedded = await startEmbeddedPostgres({ dataDir, persistent: false });
    cleanups.push(() => embedded.stop());
    databaseUrl = embedded.url;
    databaseNote = 'embedded PostgreSQL (temporary, fsync off)';
  }
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2, application_name: 'creditgate-bench' });
  pool.on('error', () => undefined);
  cleanups.push(() => pool.end());

  const upstream = await startBenchUpstream();
  cleanups.push(() => upstream.upstream.close());
  const agent = createClientAgent();
  cleanups.push(async () => agent.destroy());

  const serverOptions: ServerOptions = { databaseUrl, upstreamBaseURL: upstream.upstream.baseURL, masterKey: MASTER_KEY, dbPoolMax: SETTINGS.dbPoolMax };
  let profileDir: string | undefined;
  if (SETTINGS.cpuProfile) {
    profileDir = path.join(RESULTS_DIR, 'profiles', startedAt.toISOString().replace(/[:.]/g, '-'));
    await mkdir(profileDir, { recursive: true });
  }
  process.stdout.write('starting creditgate (migrations on first start)...\n');
  const server = await ServerProcess.start(serverOptions, profileDir);

  // A tenant: organization, model group over the simulated model, team with credits and its virtual key.
  const suffix = randomBytes(3).toString('hex');
  const organizationId = `bench-org-${suffix}`;
  const modelGroup = `bench-group-${suffix}`;
  await api(server.creditgateUrl, 'POST', '/api/organizations/create', MASTER_KEY, { organization_id: organizationId, name: 'creditgate bench' });
  await api(server.creditgateUrl, 'POST', '/api/model-groups/create', MASTER_KEY, {
    group_name: modelGroup,
    models: [{ model_name: 'sim-small', priority: 0 }],
  });
  const teams: { teamId: string; virtualKey: string }[] = [];
  for (let i = 0; i < SETTINGS.teams; i++) {
    const teamId = `bench-team-${suffix}-${i}`;
    const team = await api<{ virtual_key: string }>(server.creditgateUrl, 'POST', '/api/teams/create', MASTER_KEY, {
      organization_id: organizationId,
      team_id: teamId,
      model_groups: [modelGroup],
      credits_allocated: SETTINGS.teamCredits,
    });
    teams.push({ teamId, virtualKey: team.virtual_key });
  }
  const teamIds = teams.map((team) => team.teamId);
  const ledger = new Ledger(pool, teamIds);
  const chargesAtStart = await ledger.teamCharges();
  const counters = { creditgateOkStreams: 0 };
  const armsFor = (s: ServerProcess) =>
    buildArms({ upstreamUrl: upstream.upstream.url, proxyUrl: s.proxyUrl, creditgateUrl: s.creditgateUrl, teams, modelGroup });

  const header = [
    `creditgate benchmark  ${startedAt.toISOString()}${QUICK ? '  (QUICK smoke run: numbers are not meaningful)' : ''}`,
    `machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, ${os.platform()} ${os.release()}`,
    `  before the bench: machine ${busyBeforePct === undefined ? '?' : busyBeforePct.toFixed(0)}% busy, load average ${loadBefore}` +
      (busyBeforePct !== undefined && busyBeforePct > 15 ? '  WARNING: other work is running; the numbers are skewed' : ''),
    `processes: this bench process runs the load generator AND the scripted upstream; creditgate (built in-process with`,
    `  loadConfig/createDeps/createApp, LOG_LEVEL=silent, DB_POOL_MAX=${SETTINGS.dbPoolMax}${process.env.EARLY_UPSTREAM_MIN_HOLDS ? `, EARLY_UPSTREAM_MIN_HOLDS=${process.env.EARLY_UPSTREAM_MIN_HOLDS}` : ''}) and the pass-through proxy run in one child`,
    `  process (bench/server.ts), whose CPU/RSS are the "srv" columns; PostgreSQL: ${databaseNote}. All on 127.0.0.1, sharing the CPUs.`,
    `upstream: ${UPSTREAM_SHAPE.chunks} content chunks, first after ${UPSTREAM_SHAPE.firstTokenDelayMs} ms, then every ${UPSTREAM_SHAPE.chunkDelayMs} ms (saturation: no delays)`,
    `load: closed loop; at each concurrency N, N workers each start their next stream when the previous ends, first starts`,
    `  staggered evenly over ${SETTINGS.rampMs / 1000} s (not measured), then ${SETTINGS.measuredSecondsPerLevel} s measured; levels ${SETTINGS.levels.join(', ')};`,
    `  saturation levels ${SETTINGS.saturationLevels.join(', ')}; memory: ${SETTINGS.openStreams} streams held open after their first chunk.`,
    `  TTFT = request sent -> first data: chunk with non-empty content; total = request sent -> end of the stream; ms.`,
    `  A stream counts as ok with HTTP 200, all ${UPSTREAM_SHAPE.chunks} chunks' content, no error event and [DONE].`,
    SETTINGS.teams === 1
      ? `tenant: one team (job_based, 1 credit per job) billed by every creditgate stream: all jobs contend for its balance row.`
      : `tenant: ${SETTINGS.teams} teams (job_based, 1 credit per job); worker i bills team i mod ${SETTINGS.teams}.`,
  ].join('\n');
  process.stdout.write(`\n${header}\n\n`);

  // Warm-up: JIT, connection pools, keep-alive sockets (not reported; creditgate successes count towards charges).
  // Against the zero-delay upstream, so each arm serves hundreds of requests first, as a server in production has:
  // otherwise the first level (c=1) would time code that V8 has not optimised yet.
  const arms = armsFor(server).filter((arm) => ARMS.has(arm.id));
  upstream.setMode('zero');
  for (const arm of arms) {
    const warm = await runClosedLoop(arm.targets, agent, { concurrency: 16, rampMs: 200, measureMs: QUICK ? 500 : 2000, streamTimeoutMs: SETTINGS.streamTimeoutMs });
    if (arm.kind === 'creditgate') counters.creditgateOkStreams += warm.ok;
    if (warm.errors > 0) process.stderr.write(`warm-up of ${arm.label}: ${warm.errors} errors ${JSON.stringify(warm.errorKinds)}\n`);
  }
  upstream.forgetRequests();

  const ctx: Context = { pool, server, upstream, agent, ledger, counters };
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
  await server.close();

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
  for (const armId of memoryArms.includes('create-and-call-stream') ? memoryArms : [...memoryArms, 'none']) {
    const fresh = await ServerProcess.start(serverOptions);
    const arm = armsFor(fresh).find((a) => a.id === armId);
    if (arm) memory.push(await measureMemory({ ...ctx, server: fresh }, arm));
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
    targets.map((t) => [t.pass ? 'PASS' : 'FAIL', t.target, t.arm, t.detail]),
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
        `${r.armLabel.padEnd(30)} ${r.phase.padEnd(10)} c=${String(r.concurrency).padEnd(4)} ` +
        Object.entries(r.dbConnections ?? {})
          .map(([what, n]) => `${what} ${n}`)
          .join(', '),
    );
  const section = (present: boolean, lines: string[]) => (present ? [...lines, ''] : []);
  const report = [
    '',
    header,
    '',
    ...section(paced.length > 0, [
      'STREAMING LATENCY, paced upstream (ms; "+ vs (1)" = added over the upstream directly, "+ vs (2)" = over the pass-through proxy)',
      latencyTable(paced),
      '',
      'RESOURCES, paced upstream (srv = the creditgate/proxy process; bench = load generator + upstream; DB = creditgate\'s queries)',
      resourceTable(paced),
    ]),
    ...section(saturation.length > 0, [
      'SATURATION, zero-delay upstream',
      latencyTable(saturation),
      '',
      resourceTable(saturation),
      '',
    ]),
    ...section(queryLines.length > 0, ['DATABASE ROUND TRIPS PER STREAM (statement, times per stream, mean latency until the result)', ...queryLines]),
    ...section(activityLines.length > 0, [
      `DATABASE CONNECTIONS of creditgate (pool max ${SETTINGS.dbPoolMax}): average number running a query, waiting (Lock: on a row another`,
      `transaction holds), idle in transaction (waiting for Node's next statement) or idle, sampled from pg_stat_activity every 100 ms`,
      ...activityLines,
    ]),
    ...section(memory.length > 0, [
      `MEMORY PER OPEN STREAM (${SETTINGS.openStreams} streams held open after their first chunk; RSS after GC, fresh process)`,
      memoryTable,
      ...memory.flatMap((m) => (m.heapGrowth ? ['', `${m.armLabel}: ${m.heapGrowth}`] : [])),
    ]),
    `CHARGES over the whole run: ${runCheck.creditgateOkStreams} successful creditgate streams + ${runCheck.leftAfterOutput} left by their clients after output, ${runCheck.ledgerCharges} ledger charges, balance credits_used ${runCheck.balanceCreditsUsed}, held ${runCheck.balanceHeld}: ${runCheck.ok ? 'OK (no lost or double charges)' : 'MISMATCH'}`,
    '',
    'TARGETS (informative; the bench exits 0 either way)',
    targetTable,
    ...(profile ? ['', formatProfile(profile)] : []),
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
    settings: { ...SETTINGS, phases: [...PHASES], arms: [...ARMS], upstream: UPSTREAM_SHAPE, database: databaseNote, openFileLimit: fdLimit ?? null },
    layout: 'load generator + scripted upstream in the bench process; creditgate and the pass-through proxy in one child process (bench/server.ts)',
    targets: TARGETS,
    paced,
    saturation,
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
