/**
 * The two statements every billed job runs (open it with its hold, settle it with its charge), straight against
 * PostgreSQL without HTTP, to answer two questions (docs/operations.md, "Several instances behind PgBouncer"):
 *
 * - what named prepared statements save over unnamed ones (DB_PREPARED_STATEMENTS=false, for a transaction pooler
 *   without prepared statement support): per-job latency at concurrency 1 and jobs/s at concurrency 8, teams apart;
 * - how many holds and settlements one team's balance row takes per second (every job of the team updates it twice)
 *   against the same work spread over many teams.
 *
 * DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx bench/db-statements.ts
 * It creates its own database on that server and drops it at the end. Never part of `npm test`. With the server
 * on this machine (and /proc readable) it also reads the CPU the serving backend used per job at concurrency 1,
 * which a busy machine disturbs much less than latencies. Then group commit (DB_GROUP_COMMIT) on and off, 8 and 64
 * workers on one team's balance row and 64 over 16 teams: jobs/s, open + settle time, round trips per job. Append `?options=-c%20synchronous_commit%3Doff` to the
 * URL to take the WAL flush out of the statements' time (never in production: see docs/operations.md).
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import pg from 'pg';
import { connectDatabase, migrateDatabase, type DatabaseHandle } from '../src/db/client.js';
import { GroupCommit } from '../src/db/group-commit.js';
import { createLogger } from '../src/lib/logger.js';
import { insertJobWithHold, settleJobRow, type NewJob } from '../src/domain/billing/settlement.repository.js';
import { newId } from '../src/lib/ids.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const TEAMS = 16;
const MICRO = 1_000_000;
const NO_LIMITS = { maxJobs: null, maxCalls: null, keyMaxJobs: null, keyMaxCalls: null };

async function admin(url: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** One job: hold a credit, then charge it. Returns the two statements' durations in ms. */
async function oneJob(handle: DatabaseHandle, teamId: string): Promise<[number, number]> {
  const job: NewJob = {
    id: newId('job'),
    teamId,
    keyId: null,
    jobType: 'bench',
    userId: null,
    metadata: {},
    actor: 'bench',
    timeoutSeconds: 3600,
    autoComplete: false,
  };
  const t0 = performance.now();
  const opened = await insertJobWithHold(handle.db, job, { atLeastMicro: MICRO, upToMicro: MICRO }, NO_LIMITS);
  if (!opened) throw new Error('hold refused');
  const t1 = performance.now();
  const settled = await settleJobRow(handle.db, { id: job.id, teamId, keyId: null, holdMicro: MICRO }, { status: 'completed', chargeMicro: MICRO, actor: 'bench' });
  if (!settled) throw new Error('settle refused');
  return [t1 - t0, performance.now() - t1];
}

/** CPU seconds a PostgreSQL backend on this machine used so far (utime + stime), or undefined without /proc. */
async function backendCpuSeconds(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Level {
  jobsPerSecond: number;
  openMs: number;
  settleMs: number;
}

/** `workers` closed loops for SECONDS; worker i bills team `teamOf(i)`. */
async function run(handle: DatabaseHandle, workers: number, teamOf: (worker: number) => string): Promise<Level> {
  const deadline = performance.now() + SECONDS * 1000;
  let jobs = 0;
  let openMs = 0;
  let settleMs = 0;
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      while (performance.now() < deadline) {
        const [open, settle] = await oneJob(handle, teamOf(worker));
        jobs++;
        openMs += open;
        settleMs += settle;
      }
    }),
  );
  return { jobsPerSecond: jobs / SECONDS, openMs: openMs / jobs, settleMs: settleMs / jobs };
}

async function main(): Promise<void> {
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) throw new Error('set DATABASE_URL to a PostgreSQL server (a database is created there and dropped)');
  const name = `cg_bench_statements_${randomBytes(4).toString('hex')}`;
  await admin(serverUrl, `CREATE DATABASE "${name}"`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  try {
    const setup = connectDatabase(url.toString(), { max: 2 });
    await migrateDatabase(setup.pool);
    const teams = Array.from({ length: TEAMS }, (_, i) => `bench-team-${i}`);
    await setup.pool.query(`INSERT INTO organizations (id, name) VALUES ('bench', 'bench')`);
    for (const team of teams) {
      await setup.pool.query(`INSERT INTO teams (id, organization_id) VALUES ($1, 'bench')`, [team]);
      await setup.pool.query(`INSERT INTO credit_balances (team_id, balance_micro) VALUES ($1, $2)`, [team, 1e15]);
    }
    await setup.close();

    console.log(`load average before: ${loadavg().map((n) => n.toFixed(1)).join(' ')}; ${SECONDS} s per level`);
    const rows: string[] = [];
    // Alternated twice, so a change in the machine's load shows up as disagreement between the rounds.
    for (const round of [1, 2]) {
      for (const prepared of [true, false]) {
        // Concurrency 1 on a one-connection pool, whose backend's CPU is read before and after.
        const single = connectDatabase(url.toString(), { max: 1, preparedStatements: prepared });
        for (let i = 0; i < 50; i++) await oneJob(single, teams[0]!); // warm-up: statements prepared, plans cached
        const backend = (await single.pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        const cpuBefore = await backendCpuSeconds(backend);
        const serial = await run(single, 1, () => teams[0]!);
        const cpuAfter = await backendCpuSeconds(backend);
        await single.close();
        const cpuPerJob =
          cpuBefore === undefined || cpuAfter === undefined ? 'n/a' : `${(((cpuAfter - cpuBefore) / (serial.jobsPerSecond * SECONDS)) * 1e6).toFixed(0)} µs`;

        const handle = connectDatabase(url.toString(), { max: 8, preparedStatements: prepared });
        await run(handle, 8, (worker) => teams[worker]!); // warm-up: connections opened, statements prepared
        const apart = await run(handle, 8, (worker) => teams[worker]!);
        const oneTeam = await run(handle, 8, () => teams[8]!);
        await handle.close();
        const label = prepared ? 'named (default)' : 'unnamed';
        rows.push(
          `| ${round} | ${label} | ${serial.openMs.toFixed(2)} / ${serial.settleMs.toFixed(2)} ms | ${cpuPerJob} | ${serial.jobsPerSecond.toFixed(0)} | ${apart.jobsPerSecond.toFixed(0)} | ${oneTeam.jobsPerSecond.toFixed(0)} (${(2 * oneTeam.jobsPerSecond).toFixed(0)} row updates/s) |`,
        );
        console.log(rows.at(-1));
      }
    }
    console.log('\n| round | statements | c=1: open / settle | c=1: backend CPU per job | c=1 jobs/s | c=8, 8 teams, jobs/s | c=8, one team, jobs/s |');
    console.log('|---|---|---|---|---|---|---|');
    for (const row of rows) console.log(row);

    // Group commit (DB_GROUP_COMMIT) against one statement per round trip, on the default pool of 20.
    const grouped: string[] = [];
    for (const round of [1, 2]) {
      for (const groupCommitOn of [false, true]) {
        const handle = connectDatabase(url.toString(), { max: 20 });
        const groupCommit = groupCommitOn ? await GroupCommit.install(handle.pool, handle.db, createLogger('silent')) : undefined;
        await run(handle, 64, (worker) => teams[worker % TEAMS]!); // warm-up
        const cells: string[] = [];
        for (const [workers, teamOf] of [
          [8, () => teams[9]!],
          [64, () => teams[9]!],
          [64, (worker: number) => teams[worker % TEAMS]!],
        ] as const) {
          const before = groupCommit ? { ...groupCommit.stats } : undefined;
          const level = await run(handle, workers, teamOf);
          const jobs = level.jobsPerSecond * SECONDS;
          const roundTrips = before && groupCommit ? groupCommit.stats.batches - before.batches + (groupCommit.stats.alone - before.alone) : 2 * jobs;
          cells.push(`${level.jobsPerSecond.toFixed(0)} jobs/s, ${(level.openMs + level.settleMs).toFixed(1)} ms, ${(roundTrips / jobs).toFixed(2)} rt/job`);
        }
        await handle.close();
        grouped.push(`| ${round} | ${groupCommitOn ? 'on (default)' : 'off'} | ${cells.join(' | ')} |`);
        console.log(grouped.at(-1));
      }
    }
    console.log('\n| round | group commit | c=8, one team | c=64, one team | c=64, 16 teams |');
    console.log('|---|---|---|---|---|');
    for (const row of grouped) console.log(row);
    console.log(`load average after: ${loadavg().map((n) => n.toFixed(1)).join(' ')}`);
  } finally {
    await admin(serverUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
