import type pg from 'pg';
import type { SimulatedUpstream } from '../../../src/upstream/simulated-server.js';
import { query } from '../../helpers/postgres.js';
import type { Cluster } from './cluster.js';
import { sawOutput, type Observations, type OperationObservation } from './observations.js';
import type { SimTeam } from './teams.js';
import { tagOfRequest } from './upstream-plans.js';

/**
 * The invariants checked once the run is over and everything has settled, read from the database itself and
 * judged against the billing rules (README.md, "How billing works") and
 * against what the clients saw. Each check returns violations with what is needed to debug them.
 */

export interface Violation {
  invariant: string;
  message: string;
  details?: unknown;
}

const MICRO = 1_000_000n;
const PICO_PER_USD = 10n ** 12n;
const OPEN = new Set(['pending', 'in_progress']);
/** How long an upstream request may outlive its client (or a cancel) on this busy 2-core machine. */
export const ABORT_SLACK_MS = 2_000;
export const RSS_LIMIT_MB = 400;

const ceilDiv = (a: bigint, b: bigint) => (a + b - 1n) / b;

function parseDecimal(value: string | null, scale: number): bigint {
  const match = /^(\d+)(?:\.(\d+))?$/.exec((value ?? '0').trim());
  if (!match) throw new Error(`not a decimal: ${value}`);
  return BigInt(match[1]!) * 10n ** BigInt(scale) + BigInt((match[2] ?? '').padEnd(scale, '0').slice(0, scale) || '0');
}

interface TeamRow {
  team_id: string;
  budget_mode: string;
  credits_per_job: number;
  tokens_per_credit: number | null;
  credits_per_dollar: string | null;
  waive: boolean;
  balance: string;
  held: string;
  ledger_balance: string;
  ledger_held: string;
  open_holds: string;
}

interface JobRow {
  id: string;
  team_id: string;
  job_type: string;
  status: string;
  hold_micro: string;
  ledger_held: string;
  reserved: string;
  charges: number;
  releases: number;
  charged: string;
}

interface CallRow {
  id: string;
  job_id: string;
  status: string;
  streamed: boolean;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  cost_usd: string;
  usage_source: string | null;
  content_length: number;
  has_tools: boolean;
  finish_reason: string | null;
  error: string | null;
  model_used: string | null;
  delivered_column: boolean | null;
  tag: string | null;
}

async function hasColumn(db: pg.Pool, table: string, column: string): Promise<boolean> {
  const rows = await query(db, `SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = $2`, [table, column]);
  return rows.length > 0;
}

/** Delivered, as the spec defines it: any content or tool call, reported completion tokens, success, or reserved. */
export function delivered(call: CallRow): boolean {
  return (
    call.delivered_column === true ||
    call.status === 'success' ||
    call.completion_tokens > 0 ||
    call.content_length > 0 ||
    call.has_tools ||
    call.usage_source === 'reserved'
  );
}

/** What the spec says a settled job costs at least (micro-credits), from its delivered calls. */
export function expectedChargeMicro(team: TeamRow, job: JobRow, calls: CallRow[]): bigint {
  const used = calls.filter(delivered);
  if (used.length === 0) return 0n;
  if (job.status === 'failed' && team.waive) return 0n;
  switch (team.budget_mode) {
    case 'job_based':
      return BigInt(team.credits_per_job) * MICRO;
    case 'consumption_tokens': {
      const tokens = used.reduce((sum, call) => sum + BigInt(call.total_tokens), 0n);
      return ceilDiv(tokens * MICRO, BigInt(team.tokens_per_credit ?? 1));
    }
    case 'consumption_usd': {
      const pico = used.reduce((sum, call) => sum + parseDecimal(call.cost_usd, 12), 0n);
      return ceilDiv(pico * parseDecimal(team.credits_per_dollar, 6), PICO_PER_USD);
    }
    default:
      throw new Error(`unknown budget mode ${team.budget_mode}`);
  }
}

export interface Snapshot {
  teams: TeamRow[];
  jobs: JobRow[];
  calls: CallRow[];
  openQueueItems: number;
}

export async function readSnapshot(db: pg.Pool, teamIds: string[]): Promise<Snapshot> {
  const waiveColumn = (await hasColumn(db, 'teams', 'waive_failed_jobs')) ? 't.waive_failed_jobs' : 'false';
  const deliveredColumn = (await hasColumn(db, 'llm_calls', 'delivered')) ? 'c.delivered' : 'NULL::boolean';
  const teams = await query<TeamRow>(
    db,
    `SELECT t.id AS team_id, t.budget_mode::text, t.credits_per_job, t.tokens_per_credit, t.credits_per_dollar::text,
            coalesce(${waiveColumn}, false) AS waive,
            b.balance_micro::text AS balance, b.held_micro::text AS held,
            (SELECT coalesce(sum(amount_micro), 0) FROM credit_ledger l WHERE l.team_id = t.id)::text AS ledger_balance,
            (SELECT coalesce(sum(held_delta_micro), 0) FROM credit_ledger l WHERE l.team_id = t.id)::text AS ledger_held,
            (SELECT coalesce(sum(hold_micro), 0) FROM jobs j WHERE j.team_id = t.id AND j.status IN ('pending', 'in_progress'))::text AS open_holds
       FROM teams t JOIN credit_balances b ON b.team_id = t.id
      WHERE t.id = ANY($1)`,
    [teamIds],
  );
  const jobs = await query<JobRow>(
    db,
    `SELECT j.id, j.team_id, j.job_type, j.status::text, j.hold_micro::text,
            coalesce(sum(l.held_delta_micro), 0)::text AS ledger_held,
            coalesce(sum(l.held_delta_micro) FILTER (WHERE l.entry_type = 'hold' AND l.held_delta_micro > 0), 0)::text AS reserved,
            count(l.id) FILTER (WHERE l.entry_type = 'charge')::int AS charges,
            count(l.id) FILTER (WHERE l.entry_type = 'release')::int AS releases,
            coalesce(-sum(l.amount_micro), 0)::text AS charged
       FROM jobs j LEFT JOIN credit_ledger l ON l.job_id = j.id
      WHERE j.team_id = ANY($1)
      GROUP BY j.id`,
    [teamIds],
  );
  const calls = await query<CallRow>(
    db,
    `SELECT c.id, c.job_id, c.status::text, c.streamed, c.prompt_tokens, c.completion_tokens, c.total_tokens, c.cost_usd::text,
            c.usage_source::text, coalesce(length(c.response_content), 0) AS content_length, c.tool_calls IS NOT NULL AS has_tools,
            c.finish_reason, left(c.error, 200) AS error, c.model_used, ${deliveredColumn} AS delivered_column,
            substring(c.request_messages::text from '\\[sim:([a-z0-9]+)\\]') AS tag
       FROM llm_calls c
      WHERE c.team_id = ANY($1)
      ORDER BY c.created_at, c.id`,
    [teamIds],
  );
  const [queue] = await query(db, `SELECT count(*)::int AS n FROM queue_requests WHERE status IN ('queued', 'processing')`);
  return { teams, jobs, calls, openQueueItems: queue?.n ?? 0 };
}

export interface CheckInput {
  snapshot: Snapshot;
  simTeams: SimTeam[];
  observations: Observations;
  upstream: SimulatedUpstream;
  cluster: Cluster;
}

/** A compact description of a job for a violation: team, status, money, calls, and what its client saw. */
function describeJob(input: CheckInput, job: JobRow, calls: CallRow[], team: TeamRow | undefined) {
  const sim = input.simTeams.find((t) => t.teamId === job.team_id);
  const op = input.observations.ofJob(job.id) ?? calls.map((c) => (c.tag ? input.observations.ofTag(c.tag)?.op : undefined)).find(Boolean);
  return {
    job_id: job.id,
    team: `${sim?.label ?? job.team_id} (${team?.budget_mode}${team?.waive ? ', waives failed' : ''})`,
    job_type: job.job_type,
    status: job.status,
    charged_micro: Number(job.charged),
    reserved_micro: Number(job.reserved),
    hold_micro: Number(job.hold_micro),
    settlements: { charges: job.charges, releases: job.releases },
    calls: calls.map((c) => ({
      id: c.id,
      tag: c.tag,
      status: c.status,
      delivered: delivered(c),
      tokens: `${c.prompt_tokens}+${c.completion_tokens}`,
      cost_usd: c.cost_usd,
      usage_source: c.usage_source,
      content_chars: c.content_length,
      tools: c.has_tools,
      finish: c.finish_reason,
      error: c.error,
    })),
    client: op ? describeOperation(op) : undefined,
    upstream: calls.flatMap((c) => (c.tag ? upstreamOf(input, c.tag) : [])),
  };
}

/** The upstream requests of a call (one per attempt): the token limit creditgate sent, how and when each ended. */
function upstreamOf(input: CheckInput, tag: string) {
  return input.upstream.requests
    .filter((r) => tagOfRequest(r.body) === tag)
    .map((r) => ({
      id: r.id,
      tag,
      model: r.body?.model,
      max_tokens: r.body?.max_tokens,
      max_completion_tokens: r.body?.max_completion_tokens,
      aborted: r.abortedByClient,
      ms: (r.closedAt ?? Date.now()) - r.startedAt,
    }));
}

export function describeOperation(op: OperationObservation) {
  return {
    op: op.op,
    behaviour: op.behaviour,
    abandoned: op.abandoned || undefined,
    calls: op.calls.map((c) => ({
      tag: c.tag,
      pid: c.pid,
      endpoint: c.endpoint.replace(/job_[a-z0-9]+/, ':job'),
      status: c.status,
      content_chunks: c.contentChunks,
      done: c.sawDone,
      error_events: c.errorEvents || undefined,
      left: c.leftWhere,
      transport_error: c.transportError,
      ms: c.endedAt - c.startedAt,
    })),
    endings: op.endings.map((e) => `${e.requested}: ${e.status}${e.code ? ` ${e.code}` : ''}${e.creditsCharged !== undefined ? ` charged ${e.creditsCharged}` : ''}`),
    notes: op.notes.length ? op.notes : undefined,
  };
}

/** 1 and 2: each balance equals its ledger, nothing negative, and what is held is what open jobs hold. */
function checkBalances(input: CheckInput): Violation[] {
  const violations: Violation[] = [];
  for (const team of input.snapshot.teams) {
    const label = input.simTeams.find((t) => t.teamId === team.team_id)?.label ?? team.team_id;
    const [balance, held] = [BigInt(team.balance), BigInt(team.held)];
    const details = { team: label, mode: team.budget_mode, balance, held, ledger_balance: team.ledger_balance, ledger_held: team.ledger_held, open_job_holds: team.open_holds };
    if (balance !== BigInt(team.ledger_balance) || held !== BigInt(team.ledger_held)) {
      violations.push({ invariant: '1 balance = ledger', message: `${label}: balance row differs from the sum of its ledger`, details });
    }
    if (balance < 0n || held < 0n || balance - held < 0n) {
      violations.push({ invariant: '1 nothing negative', message: `${label}: balance, held or available below zero`, details });
    }
    if (held !== BigInt(team.open_holds)) {
      violations.push({ invariant: '2 held = open jobs', message: `${label}: held ${held} but open jobs hold ${team.open_holds}`, details });
    }
  }
  return violations;
}

/** 2 (per job), 3, 4 and 5 (jobs and calls). */
function checkJobs(input: CheckInput): Violation[] {
  const violations: Violation[] = [];
  const teams = new Map(input.snapshot.teams.map((t) => [t.team_id, t]));
  const callsOf = new Map<string, CallRow[]>();
  for (const call of input.snapshot.calls) callsOf.set(call.job_id, [...(callsOf.get(call.job_id) ?? []), call]);

  for (const job of input.snapshot.jobs) {
    const team = teams.get(job.team_id)!;
    const calls = callsOf.get(job.id) ?? [];
    const add = (invariant: string, message: string) => violations.push({ invariant, message: `${job.id}: ${message}`, details: describeJob(input, job, calls, team) });
    const charged = BigInt(job.charged);
    const settlements = job.charges + job.releases;

    if (BigInt(job.ledger_held) !== BigInt(job.hold_micro)) add('2 job hold = its ledger', `hold_micro ${job.hold_micro} but its ledger entries hold ${job.ledger_held}`);
    if (OPEN.has(job.status)) {
      if (settlements > 0) add('3 settled at most once', `open (${job.status}) yet settled ${settlements} time(s)`);
      if (job.status === 'in_progress' && !calls.some((c) => c.status === 'in_progress')) add('5 no in_progress job without a live call', 'in_progress with no call in progress');
      add('5 nothing left open', `still ${job.status} after the clients finished and the sweeper's timeout passed`);
      continue;
    }
    if (settlements > 1) add('3 settled at most once', `settled ${settlements} times (${job.charges} charges, ${job.releases} releases)`);
    if (settlements === 0) add('3 settled at most once', `${job.status} but never settled (no charge or release entry)`);
    if (BigInt(job.hold_micro) !== 0n) add('2 job hold = its ledger', `${job.status} but still holds ${job.hold_micro}`);

    const expected = expectedChargeMicro(team, job, calls);
    const anyDelivered = calls.some(delivered);
    if (charged < expected) add('4 charged >= delivered usage', `charged ${charged} < ${expected} owed for its delivered calls`);
    if (!anyDelivered && charged !== 0n) add('4 nothing delivered, nothing charged', `charged ${charged} though no call delivered output`);
    const ceiling = BigInt(job.reserved) + BigInt(calls.length);
    if (charged > ceiling) add('4 charged <= reserved', `charged ${charged} > reserved ${job.reserved} + ${calls.length} µ rounding`);
    const op = input.observations.ofJob(job.id);
    const waived = team.waive && job.status === 'failed';
    if (op && sawOutput(op) && charged <= 0n && !waived) add('4 client saw output, job charged', `the client received output, the job ended ${job.status} and was charged 0`);
  }
  const jobs = new Map(input.snapshot.jobs.map((j) => [j.id, j]));
  for (const call of input.snapshot.calls) {
    if (call.status !== 'in_progress') continue;
    const job = jobs.get(call.job_id)!;
    violations.push({
      invariant: '5 no call left in_progress',
      message: `${call.id} (tag ${call.tag}) still in_progress; its job ${job.id} is ${job.status}`,
      details: describeJob(input, job, callsOf.get(job.id) ?? [], teams.get(job.team_id)),
    });
  }
  if (input.snapshot.openQueueItems > 0) {
    violations.push({ invariant: '5 no queue item open', message: `${input.snapshot.openQueueItems} queue items still queued or processing` });
  }
  return violations;
}

/** 6: nothing open upstream, and every upstream request whose client left (or whose job was cancelled) stopped. */
function checkUpstream(input: CheckInput): Violation[] {
  const violations: Violation[] = [];
  const { upstream, observations } = input;
  if (upstream.openStreams() !== 0) {
    const open = upstream.requests.filter((r) => r.closedAt === undefined);
    violations.push({
      invariant: '6 no upstream request left open',
      message: `${upstream.openStreams()} upstream requests still open`,
      details: open.slice(0, 20).map((r) => ({ id: r.id, tag: tagOfRequest(r.body), startedAt: new Date(r.startedAt).toISOString() })),
    });
  }
  for (const request of upstream.requests) {
    const tag = tagOfRequest(request.body);
    const seen = tag ? observations.ofTag(tag) : undefined;
    if (!seen) continue;
    // A cancel the server accepted (a refused one changes nothing to stop), from when it answered.
    const cancelAt = seen.op.endings.find((e) => e.requested === 'cancel' && e.status === 200)?.answeredAt;
    const leftAt = seen.call?.leftAt;
    const reasons = [leftAt !== undefined ? { at: leftAt, why: `client left (${seen.call?.leftWhere})` } : undefined, cancelAt !== undefined ? { at: cancelAt, why: 'the cancel was answered' } : undefined].filter(
      (r): r is { at: number; why: string } => r !== undefined,
    );
    if (reasons.length === 0) continue;
    const first = reasons.reduce((a, b) => (a.at <= b.at ? a : b));
    // Finished normally before the client left (or within a moment of it): nothing to abort.
    if (request.finishedAt !== undefined && !request.abortedByClient && request.finishedAt <= first.at + ABORT_SLACK_MS) continue;
    const deadline = Math.max(first.at, request.startedAt) + ABORT_SLACK_MS;
    const end = request.closedAt ?? Number.POSITIVE_INFINITY;
    if (end > deadline) {
      violations.push({
        invariant: '6 upstream aborted when its client left',
        message: `upstream request ${request.id} (tag ${tag}) ran ${end === Number.POSITIVE_INFINITY ? 'on (still open)' : `${end - Math.max(first.at, request.startedAt)} ms`} after: ${first.why}`,
        details: {
          upstream: { id: request.id, tag, abortedByClient: request.abortedByClient, started: request.startedAt - first.at, finished: request.finishedAt && request.finishedAt - first.at, closed: request.closedAt && request.closedAt - first.at },
          client: describeOperation(seen.op),
        },
      });
    }
  }
  return violations;
}

/** 6 (the API's side of it): a cancel aborts the job's in-flight calls; it is not refused because they run. */
function checkCancels(input: CheckInput): Violation[] {
  return input.observations.operations.flatMap((op) =>
    op.endings
      .filter((e) => e.requested === 'cancel' && e.status === 409 && e.code === 'calls_in_progress')
      .map((e) => ({
        invariant: '6 cancel aborts in-flight calls',
        message: `job ${op.jobId}: cancel refused with 409 calls_in_progress instead of aborting its calls`,
        details: { client: describeOperation(op), upstream: op.calls.flatMap((c) => upstreamOf(input, c.tag)), cancelAt: e.at },
      })),
  );
}

/**
 * A graceful stop (SIGTERM) ends every answer it had begun (a stream gets an error event and [DONE]) instead of
 * cutting the connection. Requests that got no answer at all are not judged (the spec does not say how a plain
 * request still waiting for its model ends). kill -9 may cut anything.
 */
function checkGracefulStop(input: CheckInput): Violation[] {
  return input.observations.operations.flatMap((op) =>
    op.calls
      .filter((call) => call.status > 0 && call.transportError && input.cluster.stoppedHow(call.pid) === 'SIGTERM')
      .map((call) => ({
        invariant: '8 SIGTERM ends accepted requests cleanly',
        message: `${call.tag} on the SIGTERMed instance (pid ${call.pid}): ${call.transportError}`,
        details: describeOperation(op),
      })),
  );
}

/** 7: each surviving process back within a memory bound. */
async function checkMemory(input: CheckInput): Promise<Violation[]> {
  const rss = await input.cluster.rss();
  return rss
    .filter((p) => p.rssMb >= RSS_LIMIT_MB)
    .map((p) => ({ invariant: '7 RSS bounded', message: `instance ${p.slot} (pid ${p.pid}) RSS ${p.rssMb} MB >= ${RSS_LIMIT_MB} MB` }));
}

export async function checkInvariants(input: CheckInput): Promise<Violation[]> {
  return [...checkBalances(input), ...checkJobs(input), ...checkUpstream(input), ...checkCancels(input), ...checkGracefulStop(input), ...(await checkMemory(input))];
}
