/**
 * `npm run seed:demo`: fills creditgate's database with a realistic data set for the operator console, through the
 * real domain code (the services the HTTP routes call, against the simulated upstream): organizations, model groups,
 * teams in every budget mode, keys, top-ups, and jobs over the last N days (one-shot calls, multi-call jobs, failed
 * and cancelled ones, teams running out of credits and topped up again). Each day's jobs are created in turn and
 * then moved back to that day, spread over its hours; the hourly usage rollups are rebuilt at the end.
 *
 *   npm run seed:demo                                   # 1,000 teams, 100,000 jobs over 30 days
 *   SEED_TEAMS=20 SEED_JOBS=500 npm run seed:demo       # a small one
 *
 * It uses the same configuration as `npm start` (DATABASE_URL, else the embedded PostgreSQL under DATA_DIR).
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { sql } from 'drizzle-orm';
import type { BudgetMode } from '../src/contracts/index.js';
import { loadConfig } from '../src/config.js';
import { withTransaction } from '../src/db/client.js';
import { createDeps, serviceContext, type Deps } from '../src/deps.js';
import type { Actor } from '../src/domain/actor.js';
import type { ServiceContext } from '../src/domain/context.js';
import { createAndCall, createAndCallStream } from '../src/domain/jobs/create-and-call.service.js';
import { callInJob } from '../src/domain/jobs/job-calls.service.js';
import { cancelJob, completeJob, createJob } from '../src/domain/jobs/jobs.service.js';
import { addCredits } from '../src/domain/ledger/ledger.service.js';
import { refreshUsageRollups } from '../src/domain/reports/usage-rollups.js';
import { createModelGroup } from '../src/domain/tenancy/model-groups.service.js';
import { createOrganization } from '../src/domain/tenancy/organizations.service.js';
import { createTeam } from '../src/domain/tenancy/teams.service.js';
import { AppError } from '../src/lib/errors.js';
import type { StreamSink } from '../src/sse/sink.js';
import { createLogger } from '../src/lib/logger.js';
import { startSimulatedUpstream, type RecordedRequest, type UpstreamScript } from '../src/upstream/simulated-server.js';

export interface SeedOptions {
  teams: number;
  jobs: number;
  days: number;
  /** Jobs in flight at once. */
  concurrency: number;
  progress?: (line: string) => void;
}

export interface SeedResult {
  organizations: number;
  teams: number;
  jobs: number;
  refused: number;
  seconds: number;
}

const COMPANIES = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark', 'wayne', 'tyrell', 'cyberdyne', 'wonka', 'soylent', 'aperture', 'vandelay', 'pied-piper', 'dunder', 'oscorp', 'massive', 'gringotts', 'monarch', 'nakatomi'];
const DEPARTMENTS = ['support', 'sales', 'research', 'legal', 'marketing', 'ops', 'hr', 'finance', 'docs', 'search'];
const JOB_TYPES = ['chat', 'ticket_reply', 'summarize', 'classify', 'extract', 'translate', 'draft_email'];
const REPLIES = [
  'Thanks for reaching out! Your refund was issued today and should arrive within 5 business days.',
  'Summary: revenue grew 12% quarter over quarter, driven by the enterprise tier; churn stayed flat.',
  'Category: billing. Priority: high. Sentiment: frustrated but polite.',
  '{"invoice_number": "INV-2026-0042", "total": "1,240.00", "currency": "EUR"}',
  'Bonjour ! Votre commande a été expédiée et arrivera mardi.',
  'Here is a draft:\n\nHi Dana,\n\nFollowing up on our call, I have attached the revised proposal.\n\nBest,\nSam',
];

/** A deterministic pseudo-random sequence, so two runs of the same size look alike. */
function random(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state * 1_664_525 + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

interface SeedTeam {
  teamId: string;
  organizationId: string;
  keyId: string;
  group: string;
  /** How busy it is relative to the others. */
  weight: number;
  mode: BudgetMode;
}

function adminContext(deps: Deps): ServiceContext {
  return contextFor(deps, { kind: 'admin', adminUserId: null });
}

function contextFor(deps: Deps, actor: Actor): ServiceContext {
  return serviceContext(deps, actor, `seed_${randomBytes(6).toString('hex')}`);
}

const teamContext = (deps: Deps, team: SeedTeam) =>
  contextFor(deps, {
    kind: 'team',
    teamId: team.teamId,
    organizationId: team.organizationId,
    keyId: team.keyId,
    keyLimits: { requestsPerMinute: null, tokensPerMinute: null, maxConcurrentJobs: null, maxConcurrentCalls: null },
  });

/** What the simulated upstream answers: varied lengths, token counts and latencies, and a few failures. */
function upstreamScript(next: () => number, request: RecordedRequest): UpstreamScript {
  const roll = next();
  if (roll < 0.02) return { status: 500, errorMessage: 'upstream overloaded' };
  const reply = REPLIES[Math.floor(next() * REPLIES.length)]!;
  const words = reply.split(' ');
  const large = String(request.body?.model ?? '').includes('large') || String(request.body?.model ?? '').includes('4o');
  const firstDelay = Math.round((large ? 8 : 3) + next() * (large ? 25 : 10));
  return {
    steps: words.map((word, index) => ({ type: 'content' as const, text: index === 0 ? word : ` ${word}`, ...(index === 0 && { delayMs: firstDelay }) })),
    usage: { prompt_tokens: Math.round(40 + next() * 1_500), completion_tokens: Math.round(20 + next() * (large ? 900 : 400)) },
  };
}

/** Runs `work` for 0..count-1 with at most `concurrency` at once. */
async function pool(count: number, concurrency: number, work: (index: number) => Promise<void>): Promise<void> {
  let nextIndex = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (nextIndex < count) await work(nextIndex++);
    }),
  );
}

/** A stream's reader that takes every frame at once, as a fast client would. */
function readingSink(): StreamSink {
  let opened = false;
  return {
    open: () => void (opened = true),
    get opened() {
      return opened;
    },
    write: () => undefined,
    end: () => undefined,
    onAbort: () => () => undefined,
    closed: false,
  };
}

/** Every model of the group failed before answering: the job is recorded as failed (and free), which is realistic. */
const upstreamFailed = (error: unknown) => {
  if (!(error instanceof AppError && ['upstream_error', 'upstream_timeout'].includes(error.code))) throw error;
};

const isRefusal = (error: unknown) => error instanceof AppError && ['insufficient_credits', 'rate_limited', 'conflict'].includes(error.code);

export async function seedDemo(deps: Deps, setUpstream: (responder: (request: RecordedRequest) => UpstreamScript) => void, options: SeedOptions): Promise<SeedResult> {
  const started = Date.now();
  const say = options.progress ?? (() => undefined);
  const next = random(options.teams * 7919 + options.jobs);
  setUpstream((request) => upstreamScript(next, request));
  const admin = adminContext(deps);
  const tag = randomBytes(2).toString('hex');

  const groups = [
    { group_name: `fast-${tag}`, display_name: 'Fast', models: [{ model_name: 'sim-small', priority: 0 }, { model_name: 'gpt-4o-mini', priority: 1 }] },
    { group_name: `smart-${tag}`, display_name: 'Smart', models: [{ model_name: 'sim-large', priority: 0 }, { model_name: 'gpt-4o', priority: 1 }] },
    { group_name: `mini-${tag}`, display_name: 'GPT-4o mini', models: [{ model_name: 'gpt-4o-mini', priority: 0 }] },
  ];
  for (const group of groups) await createModelGroup(admin, group);

  const organizationCount = Math.max(1, Math.ceil(options.teams / 10));
  const organizations: string[] = [];
  for (let i = 0; i < organizationCount; i++) {
    const company = COMPANIES[i % COMPANIES.length]!;
    const organizationId = `${company}-${Math.floor(i / COMPANIES.length) + 1}-${tag}`;
    await createOrganization(admin, { organization_id: organizationId, name: `${company[0]!.toUpperCase()}${company.slice(1).replace('-', ' ')} ${Math.floor(i / COMPANIES.length) + 1}` });
    organizations.push(organizationId);
  }

  const teams: SeedTeam[] = [];
  await pool(options.teams, 8, async (i) => {
    const organizationId = organizations[i % organizations.length]!;
    const department = DEPARTMENTS[Math.floor(i / organizations.length) % DEPARTMENTS.length]!;
    const modeRoll = next();
    const mode: BudgetMode = modeRoll < 0.6 ? 'job_based' : modeRoll < 0.85 ? 'consumption_tokens' : 'consumption_usd';
    const group = groups[i % 7 === 0 ? 1 : i % 5 === 0 ? 2 : 0]!.group_name;
    const created = await createTeam(admin, {
      organization_id: organizationId,
      team_id: `${organizationId}-${department}-${i}`,
      team_alias: `${department[0]!.toUpperCase()}${department.slice(1)}`,
      model_groups: [group],
      credits_allocated: Math.round(200 + next() * 5_000),
      budget_mode: mode,
      ...(mode === 'job_based' && { credits_per_job: 1 + Math.floor(next() * 3) }),
      ...(mode === 'consumption_tokens' && { tokens_per_credit: 500 + Math.floor(next() * 4) * 500 }),
      ...(mode === 'consumption_usd' && { credits_per_dollar: '1000' }),
    });
    // A few teams do most of the work, as in real life.
    teams.push({ teamId: created.team_id, organizationId, keyId: created.key.key_id, group, weight: 1 / (1 + (i % 50)), mode });
  });
  // Everything was set up a month ago.
  await deps.db.execute(sql`UPDATE teams SET created_at = now() - make_interval(days => ${options.days + 1}), updated_at = now() - make_interval(days => ${options.days + 1})
                             WHERE organization_id LIKE ${`%-${tag}`}`);
  say(`created ${organizations.length} organizations, ${teams.length} teams and ${groups.length} model groups`);

  const totalWeight = teams.reduce((sum, team) => sum + team.weight, 0);
  const pickTeam = () => {
    let roll = next() * totalWeight;
    for (const team of teams) if ((roll -= team.weight) <= 0) return team;
    return teams.at(-1)!;
  };

  let refused = 0;
  let done = 0;
  const messages = [{ role: 'user' as const, content: 'Please help with the request below.' }];
  const runJob = async () => {
    const team = pickTeam();
    const ctx = teamContext(deps, team);
    const jobType = JOB_TYPES[Math.floor(next() * JOB_TYPES.length)]!;
    const never = () => () => undefined;
    const kind = next();
    try {
      if (kind < 0.4) {
        // Streamed one-shot calls: these have a time to first token.
        await createAndCallStream(ctx, { team_id: team.teamId, job_type: jobType, messages, max_tokens: 1_000 }, readingSink()).catch(upstreamFailed);
      } else if (kind < 0.78) {
        await createAndCall(ctx, { team_id: team.teamId, job_type: jobType, messages, max_tokens: 1_000 }, never).catch(upstreamFailed);
      } else {
        const job = await createJob(ctx, { team_id: team.teamId, job_type: jobType, user_id: `user-${Math.floor(next() * 500)}` });
        const calls = 2 + Math.floor(next() * 3);
        for (let call = 0; call < calls; call++) {
          await callInJob(ctx, job.job_id, { messages, max_tokens: 800 }, never).catch(upstreamFailed);
        }
        if (kind > 0.97) await cancelJob(contextFor(deps, { kind: 'admin', adminUserId: null }), job.job_id);
        else await completeJob(ctx, job.job_id, { status: kind > 0.95 ? 'failed' : 'completed' });
      }
    } catch (error) {
      if (!isRefusal(error)) throw error;
      refused++;
      // Out of credits: the operator tops the team up (sometimes only after a while).
      if (next() < 0.5) await addCredits(adminContext(deps), team.teamId, { credits: Math.round(500 + next() * 3_000), reason: 'top-up (invoice)' });
    }
    done++;
  };

  for (let day = options.days - 1; day >= 0; day--) {
    // Weekdays are busier than weekends, and the months grow a little.
    const date = new Date(Date.now() - day * 86_400_000);
    const weekend = [0, 6].includes(date.getUTCDay());
    const share = (weekend ? 0.6 : 1.1) * (0.85 + (0.3 * (options.days - day)) / options.days);
    const count = day === 0 ? options.jobs - done : Math.min(options.jobs - done, Math.round((options.jobs / options.days) * share));
    const [{ now: batchStart }] = (await deps.db.execute<{ now: string }>(sql`SELECT clock_timestamp()::text AS now`)).rows as [{ now: string }];
    await pool(Math.max(0, count), options.concurrency, runJob);
    const [{ now: batchEnd }] = (await deps.db.execute<{ now: string }>(sql`SELECT clock_timestamp()::text AS now`)).rows as [{ now: string }];
    if (day > 0) await backdate(deps, batchStart, batchEnd, day, tag);
    say(`day -${day}: ${count} jobs (${done}/${options.jobs}, ${refused} refused for credits so far)`);
  }

  // The rollups summarise what the days now say: rebuilt from scratch.
  await deps.db.execute(sql`DELETE FROM usage_rollup_state`);
  await deps.db.execute(sql`DELETE FROM usage_rollups`);
  await refreshUsageRollups(deps.db);
  await deps.db.execute(sql`ANALYZE`);
  return { organizations: organizations.length, teams: teams.length, jobs: done, refused, seconds: Math.round((Date.now() - started) / 1000) };
}

/**
 * Moves what one batch wrote (between batchStart and batchEnd, database time) back `daysAgo` days, spreading its
 * jobs over that day's hours in the order they were made: each job moves with its calls and ledger entries by the
 * same amount, so durations, order and balances stay true. Demo data only: the ledger's append-only trigger is
 * switched off for this one transaction.
 */
async function backdate(deps: Deps, batchStart: string, batchEnd: string, daysAgo: number, tag: string): Promise<void> {
  // Only this run's teams: several seeds may fill one database at once.
  const ours = sql`team_id IN (SELECT id FROM teams WHERE organization_id LIKE ${`%-${tag}`})`;
  await withTransaction(deps.db, async (tx) => {
    await tx.execute(sql`ALTER TABLE credit_ledger DISABLE TRIGGER credit_ledger_append_only`);
    // Where each moment of the batch lands: the day `daysAgo` days back, from 06:00 to 23:00 UTC-ish, stretched.
    const target = (column: string) =>
      sql.raw(
        `(date_trunc('day', now()) - make_interval(days => ${daysAgo}) + interval '5 hours' + (${column} - '${batchStart}'::timestamptz) * (64800 / greatest(extract(epoch FROM '${batchEnd}'::timestamptz - '${batchStart}'::timestamptz), 0.001)))`,
      );
    await tx.execute(sql`
      CREATE TEMP TABLE seed_shift ON COMMIT DROP AS
        SELECT id, ${target('created_at')} - created_at AS delta FROM jobs WHERE created_at >= ${batchStart}::timestamptz AND ${ours}`);
    await tx.execute(sql`UPDATE jobs j SET created_at = j.created_at + s.delta, updated_at = j.updated_at + s.delta, completed_at = j.completed_at + s.delta
                           FROM seed_shift s WHERE j.id = s.id`);
    await tx.execute(sql`UPDATE llm_calls c SET created_at = c.created_at + s.delta, completed_at = c.completed_at + s.delta, heartbeat_at = c.heartbeat_at + s.delta
                           FROM seed_shift s WHERE c.job_id = s.id`);
    await tx.execute(sql`UPDATE credit_ledger l SET created_at = l.created_at + s.delta FROM seed_shift s WHERE l.job_id = s.id`);
    await tx.execute(sql`UPDATE credit_ledger SET created_at = ${target('created_at')} WHERE job_id IS NULL AND created_at >= ${batchStart}::timestamptz AND ${ours}`);
    await tx.execute(sql`ALTER TABLE credit_ledger ENABLE TRIGGER credit_ledger_append_only`);
  });
}

async function main(): Promise<void> {
  const number = (name: string, fallback: number) => {
    const value = Number(process.env[name] ?? fallback);
    if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive whole number`);
    return value;
  };
  const options = { teams: number('SEED_TEAMS', 1_000), jobs: number('SEED_JOBS', 100_000), days: number('SEED_DAYS', 30), concurrency: number('SEED_CONCURRENCY', 24) };
  // Demo data: commits need not wait for the disk (a crash loses the last few, never corrupts anything).
  process.env.PGOPTIONS ??= '-c synchronous_commit=off';
  const upstream = await startSimulatedUpstream();
  const config = loadConfig({ ...process.env, LLM_BASE_URL: upstream.baseURL, LOG_LEVEL: process.env.LOG_LEVEL ?? 'error' });
  const deps = await createDeps(config, createLogger(config.LOG_LEVEL));
  if (deps.generatedMasterKey) process.stdout.write(`\ncreditgate generated an admin MASTER_KEY (shown only this once, store it now):\n\n  MASTER_KEY=${deps.generatedMasterKey}\n\n`);
  console.log(`seeding ${options.teams} teams and ${options.jobs} jobs over ${options.days} days...`);
  try {
    const result = await seedDemo(deps, (responder) => upstream.setResponder(responder), { ...options, progress: (line) => console.log(line) });
    console.log(`done in ${result.seconds} s: ${result.organizations} organizations, ${result.teams} teams, ${result.jobs} jobs (${result.refused} refused for lack of credits)`);
  } finally {
    await deps.close();
    await upstream.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
