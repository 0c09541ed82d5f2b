import { eq } from 'drizzle-orm';
import { withTransaction, type Transaction } from '../../db/client.js';
import { jobs } from '../../db/schema/index.js';
import { storableText } from '../../lib/text.js';
import { findModelPrice } from '../billing/model-prices.service.js';
import { callCostPico, jobChargeMicro, picoToUsd } from '../billing/pricing.models.js';
import { actorLabel, type ServiceContext } from '../context.js';
import { isOpen, listJobCalls, lockBalance, lockJob, saveCallRecordRow, totalsOf, type CallRecord } from '../jobs/jobs.repository.js';
import { applyLedgerChange } from '../ledger/ledger.repository.js';
import { loadTeamSnapshot } from '../tenancy/team-snapshot.js';
import { requireTeam } from '../tenancy/teams.repository.js';
import type { CallHandle, CallOutcome } from './llm-call.service.js';
import { estimateCompletionTokens, estimatePromptTokens } from './token-estimate.js';

/**
 * Writes the call's record: content, tool calls, finish reason, tokens (the upstream's usage, else counted with
 * a tokenizer), cost from the price table, latency and time to first token. In the consumption modes it then
 * extends the job's hold to cover what the job has used so far, as far as the team's credits allow.
 */
export async function finishLlmCall(ctx: ServiceContext, handle: CallHandle, outcome: CallOutcome): Promise<CallRecord> {
  const record = await callRecordOf(ctx, handle, outcome);
  await saveCallRecord(ctx, handle, record);
  return record;
}

/** What a finished call is recorded as (see finishLlmCall). */
export async function callRecordOf(ctx: ServiceContext, handle: CallHandle, outcome: CallOutcome): Promise<CallRecord> {
  const { accumulator } = outcome;
  const usage = accumulator.usage ?? {
    prompt_tokens: await estimatePromptTokens(handle.messages),
    completion_tokens: await estimateCompletionTokens(accumulator.content, accumulator.toolCalls),
  };
  const modelUsed = accumulator.model ?? outcome.model;
  const price = modelUsed ? await findModelPrice(ctx.db, ctx.caches, outcome.model ?? modelUsed) : undefined;
  const costPico = callCostPico(price, usage.prompt_tokens, usage.completion_tokens);
  const latencyMs = Math.round(performance.now() - handle.startedAt);
  // Whatever the model produced is stored, even characters PostgreSQL refuses (they become U+FFFD).
  const toolCalls = accumulator.toolCalls.map((call) => ({
    ...call,
    id: storableText(call.id),
    function: { name: storableText(call.function.name), arguments: storableText(call.function.arguments) },
  }));
  return {
    status: outcome.status,
    modelUsed: storableText(outcome.model ?? modelUsed ?? '') || null,
    responseContent: storableText(accumulator.content) || null,
    toolCalls: toolCalls.length > 0 ? toolCalls : null,
    finishReason: accumulator.finishReason ? storableText(accumulator.finishReason) : null,
    promptTokens: usage.prompt_tokens,
    completionTokens: usage.completion_tokens,
    totalTokens: usage.prompt_tokens + usage.completion_tokens,
    usageSource: accumulator.usage ? ('upstream' as const) : ('estimated' as const),
    costUsd: picoToUsd(costPico),
    latencyMs,
    ttftMs: outcome.ttftMs,
    error: outcome.error?.message ?? null,
  };
}

/** Writes the record; in the consumption modes also extends the job's hold to what it has used so far. */
export async function saveCallRecord(ctx: ServiceContext, handle: CallHandle, record: CallRecord): Promise<void> {
  const { team } = await loadTeamSnapshot(ctx.db, ctx.caches, handle.teamId);
  // The job was touched when the call began; only the consumption modes move credits here.
  if (team.budgetMode === 'job_based') {
    await saveCallRecordRow(ctx.db, handle.callId, record);
    return;
  }
  await withTransaction(ctx.db, async (tx) => {
    await saveCallRecordRow(tx, handle.callId, record);
    await extendHoldToUsage(tx, handle.jobId, actorLabel(ctx.actor));
  });
}

async function extendHoldToUsage(tx: Transaction, jobId: string, actor: string): Promise<void> {
  const job = await lockJob(tx, jobId);
  if (!job || !isOpen(job)) return;
  const team = await requireTeam(tx, job.teamId);
  if (team.budgetMode === 'job_based') return;
  const needed = jobChargeMicro(team, totalsOf(await listJobCalls(tx, jobId))) - job.holdMicro;
  if (needed <= 0) return;
  const balance = await lockBalance(tx, job.teamId);
  const extension = Math.min(needed, balance ? balance.balanceMicro - balance.heldMicro : 0);
  if (extension <= 0) return;
  const entry = await applyLedgerChange(tx, {
    teamId: job.teamId,
    entryType: 'hold',
    amountMicro: 0,
    heldDeltaMicro: extension,
    jobId,
    reason: 'hold extended to usage',
    actor,
  });
  if (entry) await tx.update(jobs).set({ holdMicro: job.holdMicro + extension }).where(eq(jobs.id, jobId));
}
