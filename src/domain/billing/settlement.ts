/**
 * Every movement of a job's credits, and nothing else moves them: open a job with its hold, reserve a call's worst
 * case before it leaves (extending the hold or lowering the call's completion limit), record a finished call, and
 * settle the job exactly once by the billing policy (billing-policy.models.ts). Callers read top down:
 * open → relay (call-relay.ts) → record / settle → end the response.
 *
 * Transaction policy of each movement is stated on it. Side effects (the available-credits hint, call leases) are
 * applied only after the statement or transaction that justifies them has committed.
 */
import { eq, sql } from 'drizzle-orm';
import { answerLost, sqlState, UNIQUE_VIOLATION, withTransaction, type DbOrTx } from '../../db/client.js';
import { llmCalls } from '../../db/schema/index.js';
import { AppError, conflict, notFound } from '../../lib/errors.js';
import { retryInBackground } from '../../lib/retry.js';
import type { ServiceContext } from '../context.js';
import { findJob, isOpen, lockJob, markJobActivity, type JobRow } from '../jobs/jobs.repository.js';
import { creditsToMicro } from '../ledger/ledger.models.js';
import { callUsageOf } from '../llm/call-record.js';
import { limitCompletion, type CallHandle } from '../llm/call-relay.js';
import { StreamAccumulator } from '../llm/stream-accumulator.js';
import { UpstreamError } from '../../upstream/errors.js';
import {
  insertCall,
  listCallBilling,
  listJobCalls,
  saveCallRecordRow,
  type CallBilling,
  type CallRecord,
  type CallUsage,
  type LlmCallRow,
  type NewCall,
} from '../llm/calls.repository.js';
import type { ModelRoute } from '../llm/model-routing.js';
import { callsInProgress, insufficientCredits, jobLimitReached, jobNotOpen, modelUnpriced } from './billing.errors.js';
import { consumptionOf, jobChargeFor, type FinalJobStatus } from './billing-policy.models.js';
import type { BudgetSettings } from './billing-settings.models.js';
import { findModelPrice } from './model-prices.service.js';
import { callCostPico, highestPrice, picoToUsd, tokenRate, type TokenRate } from './pricing.models.js';
import {
  callHoldRange,
  completionLimitUnderCap,
  completionLimitWithin,
  minimalCompletion,
  promptTokenBound,
  requestedCompletionLimit,
  type CompletionLimitField,
  type PromptParts,
} from './reservation.models.js';
import { creditBalances } from '../../db/schema/index.js';
import { concurrencyLimitReached, concurrencyLimits, rateSubjects, type Limits } from '../limits/limits.models.js';
import type { RateAdmission } from '../limits/rate-limiter.js';
import { moveCounters } from '../ledger/ledger.repository.js';
import {
  extendJobHold,
  findBudgetSettings,
  insertJobWithHold,
  settleJobRow,
  type ConcurrencyLimits,
  type HoldRange,
  type NewJob,
  type OpenedJob,
} from './settlement.repository.js';

/** What the settlement needs of a team: how it pays, and its concurrency limits. */
export type BillingTeam = BudgetSettings & Limits;

export type { NewJob } from './settlement.repository.js';

export interface PreparedCall {
  record: NewCall;
  handle: CallHandle;
}

// ---------------------------------------------------------------------------------------------------------------
// Pricing a call before it leaves
// ---------------------------------------------------------------------------------------------------------------

/**
 * What the call's tokens cost under the team's mode: undefined in job_based mode. In consumption_usd a call may fall
 * back between the route's models, so it is priced at the dearest of them, and a model without a price is refused
 * (it could not be billed).
 */
export async function callRate(ctx: ServiceContext, team: BudgetSettings, route: ModelRoute): Promise<TokenRate | undefined> {
  if (team.budgetMode !== 'consumption_usd') return tokenRate(team, undefined);
  const prices = [];
  for (const model of route.candidates) {
    const price = await findModelPrice(ctx.db, ctx.caches, model);
    if (!price) throw modelUnpriced(model);
    prices.push(price);
  }
  return tokenRate(team, highestPrice(prices));
}

/** What a call asks for, as its reservation sees it: its prompt's token bound and its completion limit. */
interface CallBounds {
  promptBound: number;
  limit: number;
  field: CompletionLimitField;
}

/** Read off the upstream request's body, whose fields the request contract validated. */
function callBounds(ctx: ServiceContext, handle: CallHandle): CallBounds {
  const { params } = handle;
  const prompt: PromptParts = { messages: handle.messages, tools: params.tools, functions: params.functions, response_format: params.response_format };
  const limits = { max_tokens: params.max_tokens as number | undefined, max_completion_tokens: params.max_completion_tokens as number | undefined };
  return { promptBound: promptTokenBound(prompt), ...requestedCompletionLimit(limits, ctx.config.DEFAULT_MAX_TOKENS) };
}

/** job_based: the completion limit the job's token cap leaves this call (409 when not even a minimal answer fits). */
function limitUnderJobCap(team: BudgetSettings, committedTokens: number, { promptBound, limit }: CallBounds): number {
  const allowed = completionLimitUnderCap(team.maxTokensPerJob, committedTokens, promptBound, limit);
  if (allowed < minimalCompletion(limit)) {
    throw jobLimitReached(`this job has used the ${team.maxTokensPerJob} tokens one job may use (max_tokens_per_job); create a new job`);
  }
  return allowed;
}

const notEnoughForCall = () =>
  insufficientCredits('the team cannot reserve this call: its prompt and a minimal answer cost more than the credits available');

// ---------------------------------------------------------------------------------------------------------------
// Opening jobs
// ---------------------------------------------------------------------------------------------------------------

/** What a new job holds before any call: its price in job_based mode, a configured opening amount otherwise. */
export function openingHoldMicro(team: BudgetSettings, consumptionHoldCredits: number): number {
  return creditsToMicro(team.budgetMode === 'job_based' ? team.creditsPerJob : consumptionHoldCredits);
}

/**
 * A job for calls to come: its hold and the job in one autocommit statement; 402 when the team cannot afford the
 * hold. N concurrent jobs of a team that can afford K of them leave exactly K open.
 */
export async function openJob(ctx: ServiceContext, team: BillingTeam, job: NewJob): Promise<OpenedJob> {
  const holdMicro = openingHoldMicro(team, ctx.config.CONSUMPTION_HOLD_CREDITS);
  const limits = concurrencyLimitsOf(ctx, team);
  const opened = await insertJobWithHold(ctx.db, job, { atLeastMicro: holdMicro, upToMicro: holdMicro }, limits);
  if (!opened) {
    const refusal = await refusalOf(ctx.db, job, limits, { jobs: 1, calls: 0 }, holdMicro);
    throw refusal ?? insufficientCredits(`team ${job.teamId} has fewer than the ${holdMicro / 1e6} credits a new job reserves`);
  }
  return noteAvailable(ctx, job.teamId, opened);
}

/**
 * Admits a call against its team's and key's per-minute windows (requests, and its worst case in tokens), with no
 * database round trip as long as this instance holds an allowance; 429 when a window is spent.
 */
function admitRate(ctx: ServiceContext, teamId: string, team: Limits, worstCaseTokens: number): Promise<RateAdmission> {
  const key = ctx.actor.kind === 'team' ? ctx.actor : undefined;
  return ctx.limiter.admit(rateSubjects(teamId, team, key), worstCaseTokens);
}

/** The team's concurrency limits and those of the key the request came with. */
function concurrencyLimitsOf(ctx: ServiceContext, team: Limits): ConcurrencyLimits {
  return concurrencyLimits(team, ctx.actor.kind === 'team' ? ctx.actor.keyLimits : undefined);
}

/**
 * Why a statement that opens a job or a call wrote nothing, read after the fact (only refusals pay this read): a
 * concurrency limit reached (429), or else the credits (undefined: the caller's 402).
 */
async function refusalOf(
  db: DbOrTx,
  subject: { teamId: string; keyId: string | null },
  limits: ConcurrencyLimits,
  adding: { jobs: number; calls: number },
  atLeastMicro: number,
): Promise<Error | undefined> {
  const [row] = await db.select().from(creditBalances).where(eq(creditBalances.teamId, subject.teamId));
  if (!row) return undefined;
  const keyJobs = subject.keyId ? (row.keyOpenJobs[subject.keyId] ?? 0) : 0;
  const keyCalls = subject.keyId ? (row.keyCallsInFlight[subject.keyId] ?? 0) : 0;
  if (row.balanceMicro - row.heldMicro < atLeastMicro) return undefined;
  const candidates = [
    { subject: 'team' as const, what: 'jobs' as const, count: row.openJobs, limit: limits.maxJobs, delta: adding.jobs },
    { subject: 'key' as const, what: 'jobs' as const, count: keyJobs, limit: limits.keyMaxJobs, delta: adding.jobs },
    { subject: 'team' as const, what: 'calls' as const, count: row.callsInFlight, limit: limits.maxCalls, delta: adding.calls },
    { subject: 'key' as const, what: 'calls' as const, count: keyCalls, limit: limits.keyMaxCalls, delta: adding.calls },
  ].filter((c): c is typeof c & { limit: number } => c.limit !== null && c.delta > 0);
  // The limit that is full now; or, if a slot freed since the statement ran, the one nearest to full.
  const culprit = candidates.find((c) => c.count + c.delta > c.limit) ?? candidates.sort((a, b) => b.count / b.limit - a.count / a.limit)[0];
  return culprit ? concurrencyLimitReached(culprit.subject, culprit.what, culprit.limit) : undefined;
}

function noteAvailable(ctx: ServiceContext, teamId: string, opened: OpenedJob): OpenedJob {
  ctx.caches.availableCredits.set(teamId, opened.availableMicro);
  return opened;
}

export interface OpenedOneShot {
  /** The job's hold once written; while it is being written (an early start), the call's `notBefore`. */
  held: Promise<number>;
  early: boolean;
  admission: RateAdmission;
}

/**
 * A one-shot request's job, hold and call in one autocommit statement. The hold is the call's reservation (the
 * consumption modes: at least a minimal answer, ideally the whole completion limit, which is then lowered to what
 * was held) or the job's price (job_based, the call limited by the job's token cap).
 *
 * When this instance has just seen the team afford EARLY_UPSTREAM_MIN_HOLDS such holds, the statement is sent a
 * tick after the call starts: the upstream is contacted while the hold is written, nothing reaches the client
 * before it is, and a refused hold aborts the call. Such an early hold must be the whole reservation.
 */
export async function openOneShot(ctx: ServiceContext, team: BillingTeam, job: NewJob, call: PreparedCall): Promise<OpenedOneShot> {
  const { handle } = call;
  const rate = await callRate(ctx, team, handle.route);
  const bounds = callBounds(ctx, handle);
  let range: HoldRange;
  if (rate) {
    const { minMicro, fullMicro } = callHoldRange(rate, bounds.promptBound, bounds.limit);
    range = { atLeastMicro: minMicro, upToMicro: fullMicro };
  } else {
    limitCompletion(handle, limitUnderJobCap(team, 0, bounds), bounds.field);
    const price = openingHoldMicro(team, 0);
    range = { atLeastMicro: price, upToMicro: price };
  }
  const limits = concurrencyLimitsOf(ctx, team);
  // A team with concurrency limits expects refusals: its calls never start before their hold (and slot) is written.
  const minHolds = Object.values(limits).some((limit) => limit !== null) ? 0 : ctx.config.EARLY_UPSTREAM_MIN_HOLDS;
  const early = minHolds > 0 && (ctx.caches.availableCredits.get(job.teamId) ?? 0) >= range.upToMicro * minHolds;
  if (early) {
    range = { atLeastMicro: range.upToMicro, upToMicro: range.upToMicro };
    if (rate) limitCompletion(handle, bounds.limit, bounds.field);
  }
  const first = {
    call: call.record,
    promptBoundTokens: bounds.promptBound,
    reservesHold: rate !== undefined,
    maxTokens: handle.maxTokens,
    maxTokensIfWholeHold: rate ? bounds.limit : null,
  };
  const admission = await admitRate(ctx, job.teamId, team, bounds.promptBound + bounds.limit);
  const open = async () => {
    const opened = await insertJobWithHold(ctx.db, job, range, limits, first).catch((error: unknown) => {
      ctx.limiter.cancel(admission);
      if (answerLost(error)) releaseOneShotIfOpened(ctx, team, job, handle);
      throw error;
    });
    if (!opened) {
      ctx.limiter.cancel(admission);
      ctx.caches.availableCredits.delete(job.teamId);
      throw (await refusalOf(ctx.db, job, limits, { jobs: 1, calls: 1 }, range.atLeastMicro)) ?? notEnoughForCall();
    }
    noteAvailable(ctx, job.teamId, opened);
    ctx.leases.hold(handle.callId);
    return opened.heldMicro;
  };
  if (!early) {
    const heldMicro = await open();
    if (rate) limitCompletion(handle, completionLimitWithin(rate, bounds.promptBound, bounds.limit, heldMicro), bounds.field);
    return { held: Promise.resolve(heldMicro), early, admission };
  }
  // Early, the statement is sent a tick later: the upstream request, made in the caller's next synchronous steps,
  // reaches its socket in that tick, so the database write does not delay it.
  const held = new Promise((resolve) => process.nextTick(resolve)).then(open);
  held.catch(() => undefined); // the relay awaits it (and reports its refusal)
  return { held, early, admission };
}

/**
 * A one-shot job whose opening statement lost its answer: settled failed and free if it was written (see
 * releaseIfWritten); a sweep may have ended it first, which leaves nothing to do.
 */
function releaseOneShotIfOpened(ctx: ServiceContext, team: BudgetSettings, job: NewJob, handle: CallHandle): void {
  releaseIfWritten(ctx, handle, async (record) => {
    const row = await findJob(ctx.db, job.id);
    if (!row) return 'absent';
    if (!isOpen(row)) return 'released';
    const settlement = oneShotSettlement(team, job, 'failed', record, job.actor);
    // Settled or changed by someone else meanwhile: the next attempt finds out which.
    if (!(await trySettle(ctx.db, row, settlement, { id: handle.callId, record }))) throw new Error(`job ${job.id} changed while its lost opening was released`);
    return 'released';
  });
}

/** How long a write whose answer was lost is looked for before it is taken as never done. */
const LOST_ANSWER_WINDOW_MS = 5_000;

/**
 * The write that reserved a call (with its job, for a one-shot request) was sent and its answer lost: the
 * connection broke. It may have committed, leaving a call "in flight" that was never made (the caller was refused
 * and the upstream request aborted); left alone, the stale-call sweep would take it for a dead instance's call and
 * bill it at its reservation. So this instance keeps the call's lease and, as soon as the database answers (retried
 * in the background), has `release` end what was written, the call recorded as never started and free. Not finding
 * it ('absent') is believed only after LOST_ANSWER_WINDOW_MS: the statement may still be running on a backend that
 * has not yet noticed its client left.
 */
function releaseIfWritten(ctx: ServiceContext, handle: CallHandle, release: (neverStarted: CallRecord) => Promise<'absent' | 'released'>): void {
  ctx.leases.hold(handle.callId);
  const lostAt = performance.now();
  const neverStarted = UpstreamError.aborted('not_admitted', 'never started: the answer to the statement that reserved it was lost');
  ctx.log.warn({ job_id: handle.jobId, call_id: handle.callId }, 'the answer to the write reserving a call was lost; what it wrote, if anything, is released');
  const attempt = async () => {
    const usage = await callUsageOf(handle, { status: 'failed', model: null, accumulator: new StreamAccumulator(), ttftMs: null, error: neverStarted, opened: false });
    const outcome = await release(await priced(ctx, usage));
    if (outcome === 'absent' && performance.now() - lostAt < LOST_ANSWER_WINDOW_MS) throw new Error(`call ${handle.callId} not written, or not yet`);
  };
  void retryInBackground(attempt, ctx.log, `release call ${handle.callId}`).finally(() => ctx.leases.release(handle.callId));
}

// ---------------------------------------------------------------------------------------------------------------
// Calls of a job
// ---------------------------------------------------------------------------------------------------------------

/** Where a job stands: what its finished calls consumed and what its calls in flight may still consume. */
function jobStanding(team: BudgetSettings, calls: CallBilling[]) {
  const finished = consumptionOf(calls.filter((call) => call.status !== 'in_progress'));
  const inFlight = calls.filter((call) => call.status === 'in_progress');
  return {
    calls: calls.length,
    /** What the job would pay if it ended now, in micro-credits. */
    usedMicro: jobChargeFor(team, 'completed', finished),
    usedTokens: finished.usage.totalTokens,
    inFlightMicro: inFlight.reduce((sum, call) => sum + call.reservedMicro, 0),
    inFlightTokens: inFlight.reduce((sum, call) => sum + call.promptBoundTokens + (call.maxTokens ?? 0), 0),
  };
}

/**
 * Reserves a call of a multi-call job before it leaves, in one transaction that locks the job: the job must be
 * open and the team's; in job_based mode the job's call and token caps bound it; in the consumption modes the
 * job's hold must cover what its finished calls used plus the worst case of every call in flight, this one
 * included, so the hold is extended from the team's available credits (the completion limit lowered to what
 * could be held; 402 if not even a minimal answer). The call is written in flight and the job is in_progress.
 */
export async function reserveCall(ctx: ServiceContext, team: BillingTeam, call: PreparedCall, actor: string): Promise<RateAdmission> {
  const { handle } = call;
  const rate = await callRate(ctx, team, handle.route);
  const bounds = callBounds(ctx, handle);
  const limits = concurrencyLimitsOf(ctx, team);
  const keyId = ctx.actor.kind === 'team' ? ctx.actor.keyId : null;
  const admission = await admitRate(ctx, handle.teamId, team, bounds.promptBound + bounds.limit);
  await withTransaction(ctx.db, async (tx) => {
    const job = await lockJob(tx, handle.jobId, handle.teamId);
    if (!job) throw notFound('job', 'job_id');
    if (!isOpen(job)) throw jobNotOpen(job.id, job.status);
    const counter = { jobs: 0, calls: 1, keyId, ...limits };
    if (!(await moveCounters(tx, job.teamId, counter))) throw (await refusalOf(tx, { teamId: job.teamId, keyId }, limits, counter, 0))!;
    const standing = jobStanding(team, await listCallBilling(tx, job.id));
    // A one-shot job (or a queue item's own) ends with its one call: no second call may join it.
    if (job.autoComplete && standing.calls > 0) throw jobNotOpen(job.id, 'a one-shot job');
    let reservedMicro = 0;
    if (!rate) {
      if (standing.calls >= team.maxCallsPerJob) {
        throw jobLimitReached(`this job has made the ${team.maxCallsPerJob} calls one job may make (max_calls_per_job); create a new job`);
      }
      limitCompletion(handle, limitUnderJobCap(team, standing.usedTokens + standing.inFlightTokens, bounds), bounds.field);
    } else {
      const { minMicro, fullMicro } = callHoldRange(rate, bounds.promptBound, bounds.limit);
      const headroom = job.holdMicro - standing.usedMicro - standing.inFlightMicro;
      reservedMicro = fullMicro;
      if (headroom < fullMicro) {
        const range = { atLeastMicro: Math.max(0, minMicro - headroom), upToMicro: fullMicro - headroom };
        const added = await extendJobHold(tx, job, range, actor, 'hold extended to reserve a call');
        if (added === undefined) throw notEnoughForCall();
        reservedMicro = headroom + added;
      }
      limitCompletion(handle, completionLimitWithin(rate, bounds.promptBound, bounds.limit, reservedMicro), bounds.field);
    }
    await insertCall(tx, { id: job.id, teamId: job.teamId, keyId }, call.record, { promptBoundTokens: bounds.promptBound, maxTokens: handle.maxTokens, reservedMicro });
    await markJobActivity(tx, job.id);
  }).catch((error: unknown) => {
    ctx.limiter.cancel(admission);
    if (answerLost(error)) releaseCallIfReserved(ctx, handle);
    throw error;
  });
  ctx.leases.hold(handle.callId);
  return admission;
}

/** A call's record, priced: by the model the upstream says it served, else by the route's model that answered. */
async function priced(ctx: ServiceContext, usage: CallUsage): Promise<CallRecord> {
  const price =
    (usage.modelUsed ? await findModelPrice(ctx.db, ctx.caches, usage.modelUsed) : undefined) ??
    (usage.routedModel ? await findModelPrice(ctx.db, ctx.caches, usage.routedModel) : undefined);
  return { ...usage, costUsd: picoToUsd(callCostPico(price, usage.promptTokens, usage.completionTokens)) };
}

export interface RecordedCall {
  record: CallRecord;
  /** false: the database did not take it; it is retried in the background (say so in-band). */
  recorded: boolean;
}

/**
 * Records a finished call of a multi-call job, in one transaction that locks the job: its record, the job back to
 * pending when no other call is in flight, and, should its usage have outgrown the hold (an upstream that reported
 * more than was reserved), the hold extended as far as the team's credits allow. If the database fails, the record
 * is retried in the background while the call keeps its lease.
 */
export async function recordCall(
  ctx: ServiceContext,
  team: BudgetSettings,
  handle: CallHandle,
  admission: RateAdmission,
  usage: CallUsage,
  actor: string,
): Promise<RecordedCall> {
  const record = await priced(ctx, usage);
  ctx.limiter.settle(admission, record.totalTokens);
  const recorded = await whileLeased(ctx, handle.callId, () =>
    withTransaction(ctx.db, async (tx) => {
      const job = await lockJob(tx, handle.jobId);
      await endCall(tx, handle.callId, record);
      if (job && isOpen(job) && team.budgetMode !== 'job_based') {
        const standing = jobStanding(team, await listCallBilling(tx, job.id));
        const shortfall = standing.usedMicro + standing.inFlightMicro - job.holdMicro;
        if (shortfall > 0) await extendJobHold(tx, job, { atLeastMicro: 0, upToMicro: shortfall }, actor, 'hold extended to usage');
      }
      await markJobActivity(tx, handle.jobId);
    }),
  );
  return { record, recorded };
}

/** A call of a multi-call job whose reservation lost its answer: recorded as never started if it was written. */
function releaseCallIfReserved(ctx: ServiceContext, handle: CallHandle): void {
  releaseIfWritten(ctx, handle, (record) =>
    withTransaction(ctx.db, async (tx) => {
      await lockJob(tx, handle.jobId);
      const [call] = await tx.select({ status: llmCalls.status }).from(llmCalls).where(eq(llmCalls.id, handle.callId));
      if (!call) return 'absent' as const;
      await endCall(tx, handle.callId, record);
      await markJobActivity(tx, handle.jobId);
      return 'released' as const;
    }),
  );
}

/** Records a call still in flight, and takes it off its team's and key's counts of calls in flight. */
async function endCall(tx: DbOrTx, callId: string, record: CallRecord): Promise<void> {
  const ended = await saveCallRecordRow(tx, callId, record);
  if (ended) await moveCounters(tx, ended.teamId, { jobs: 0, calls: -1, keyId: ended.keyId });
}

/**
 * Runs the write that ends a call's life (its record, or its record and its job's settlement); on a database
 * failure retries it in the background. The call's lease is held until the write is done or given up, so no
 * sweeper abandons a call whose record is only late. Resolves true when written now.
 */
async function whileLeased(ctx: ServiceContext, callId: string, write: () => Promise<unknown>): Promise<boolean> {
  try {
    await write();
    ctx.leases.release(callId);
    return true;
  } catch (error) {
    ctx.log.error({ err: error, call_id: callId }, 'could not record a call; retrying in the background');
    void retryInBackground(write, ctx.log, `record call ${callId}`).then(() => ctx.leases.release(callId));
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Settling jobs
// ---------------------------------------------------------------------------------------------------------------

export interface Settlement {
  jobId: string;
  /** Restricts the job to this team (a team key's request); omitted by the server's own sweeper. */
  teamId?: string | undefined;
  status: FinalJobStatus;
  metadata?: Record<string, unknown> | undefined;
  errorMessage?: string | undefined;
  actor: string;
}

export interface SettledJob {
  job: JobRow;
  calls: LlmCallRow[];
}

const SETTLE_ATTEMPTS = 5;

/**
 * Ends a job exactly once, in one autocommit statement (see settleJobRow): its hold becomes the charge the billing
 * policy gives for what its calls delivered, whatever status the caller reports, and the rest is released. A job
 * with a call in flight is not settled (409). Every later settle with the same status answers the same (rebuilt
 * from the closed job); another status is a conflict. The charge never exceeds what the team has, its hold included.
 */
export async function settleJob(db: DbOrTx, settlement: Settlement): Promise<SettledJob> {
  for (let attempt = 0; attempt < SETTLE_ATTEMPTS; attempt++) {
    const job = await findJob(db, settlement.jobId, settlement.teamId);
    if (!job) throw notFound('job', 'job_id');
    const calls = await listJobCalls(db, job.id);
    if (!isOpen(job)) {
      if (job.status === settlement.status) return { job, calls };
      throw conflict(`job ${job.id} is already ${job.status}`, 'job_already_settled');
    }
    if (calls.some((call) => call.status === 'in_progress')) throw callsInProgress(job.id);
    const team = await findBudgetSettings(db, job.teamId);
    const chargeMicro = jobChargeFor(team, settlement.status, consumptionOf(calls));
    const settled = await trySettle(db, job, { ...settlement, chargeMicro });
    if (settled) return { job: settled, calls };
  }
  throw conflict(`job ${settlement.jobId} kept changing while it was being settled; retry`, 'job_busy');
}

function trySettle(db: DbOrTx, job: Pick<JobRow, 'id' | 'teamId' | 'keyId' | 'holdMicro'>, settlement: Settlement & { chargeMicro: number }, call?: { id: string; record: CallRecord }) {
  return settleJobRow(db, job, settlement, call).catch((error: unknown) => {
    // Another settle of the same job won the race: the ledger allows one settlement per job.
    if (sqlState(error) === UNIQUE_VIOLATION) return undefined;
    throw error;
  });
}

/** How a one-shot job ends with its one call: charged for what the call's record says it consumed. */
function oneShotSettlement(
  team: BudgetSettings,
  job: Pick<JobRow, 'id' | 'teamId'>,
  status: FinalJobStatus,
  record: CallRecord,
  actor: string,
): Settlement & { chargeMicro: number } {
  const chargeMicro = jobChargeFor(team, status, consumptionOf([{ ...record, reservedMicro: 0 }]));
  return { jobId: job.id, teamId: job.teamId, status, errorMessage: record.error ?? undefined, actor, chargeMicro };
}

/**
 * Records the one call of a one-shot job and settles the job in a single autocommit statement, from what this
 * process knows (the job's hold, its one call, the team's settings) without reading them back. If the job changed
 * meanwhile (the sweeper abandoned the call), the record is written alone and the general settle decides.
 * A database failure is retried in the background.
 */
export async function settleOneShot(
  ctx: ServiceContext,
  team: BudgetSettings,
  job: Pick<JobRow, 'id' | 'teamId' | 'keyId' | 'holdMicro'>,
  callId: string,
  admission: RateAdmission,
  usage: CallUsage,
  status: FinalJobStatus,
  actor: string,
): Promise<RecordedCall> {
  const record = await priced(ctx, usage);
  ctx.limiter.settle(admission, record.totalTokens);
  const settlement = oneShotSettlement(team, job, status, record, actor);
  const recorded = await whileLeased(ctx, callId, async () => {
    if (await trySettle(ctx.db, job, settlement, { id: callId, record })) return;
    await withTransaction(ctx.db, (tx) => endCall(tx, callId, record));
    await settleJob(ctx.db, settlement).catch((error: unknown) => {
      // Already settled by the sweeper (which billed an abandoned call at its reservation): nothing is left to do.
      if (!(error instanceof AppError && error.reason === 'job_already_settled')) throw error;
    });
  });
  return { record, recorded };
}

/** The calls of a job that are still in flight, by any instance (a cancel waits for them to be recorded). */
export async function callsInFlight(db: DbOrTx, jobId: string): Promise<number> {
  const result = await db.execute<{ n: string }>(sql`SELECT count(*) AS n FROM ${llmCalls} WHERE job_id = ${jobId} AND status = 'in_progress'`);
  return Number(result.rows[0]?.n ?? 0);
}
