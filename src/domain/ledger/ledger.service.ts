import type { AddCreditsRequest, AddCreditsResponse, CreditBalance, CreditTransaction } from '../../contracts/index.js';
import { withTransaction, type Transaction } from '../../db/client.js';
import { teams } from '../../db/schema/index.js';
import { AppError } from '../../lib/errors.js';
import { type ServiceContext } from '../context.js';
import { actorLabel } from '../actor.js';
import { recordEvent } from '../webhooks/webhook-events.js';
import { assertNotArchived, requireTeam } from '../tenancy/teams.repository.js';
import { creditsToMicro, microToCredits } from './ledger.models.js';
import {
  applyLedgerChange,
  findBalance,
  listLedgerEntries,
  sumLedgerByType,
  type LedgerEntry,
} from './ledger.repository.js';

export async function addCredits(ctx: ServiceContext, teamId: string, input: AddCreditsRequest): Promise<AddCreditsResponse> {
  return withTransaction(ctx.db, async (tx) => {
    assertNotArchived(await requireTeam(tx, teamId));
    const transaction = await grantCredits(tx, { teamId, amountMicro: creditsToMicro(input.credits), reason: input.reason, actor: actorLabel(ctx.actor) });
    return { transaction, balance: await getCreditBalance({ ...ctx, db: tx }, teamId) };
  });
}

/** Every grant, whoever makes it (an admin, a new team's allocation, a Stripe payment): its entry and credits.added. */
export async function grantCredits(
  tx: Transaction,
  grant: { teamId: string; amountMicro: number; reason: string | null; actor: string; source?: Record<string, unknown> },
): Promise<CreditTransaction> {
  const entry = await applyLedgerChange(tx, { teamId: grant.teamId, entryType: 'grant', amountMicro: grant.amountMicro, reason: grant.reason, actor: grant.actor });
  if (!entry) throw new AppError('internal', `team ${grant.teamId} has no credit balance`);
  const transaction = presentTransaction(entry);
  await recordEvent(tx, 'credits.added', grant.teamId, { team_id: grant.teamId, transaction, ...(grant.source && { source: grant.source }) });
  return transaction;
}

export async function getCreditBalance(ctx: ServiceContext, teamId: string): Promise<CreditBalance> {
  const team = await requireTeam(ctx.db, teamId);
  const [balance, totals] = await Promise.all([findBalance(ctx.db, teamId), sumLedgerByType(ctx.db, teamId)]);
  const balanceMicro = balance?.balanceMicro ?? 0;
  const heldMicro = balance?.heldMicro ?? 0;
  const granted = (totals.get('grant') ?? 0) + Math.max(0, totals.get('adjustment') ?? 0);
  const used = -((totals.get('charge') ?? 0) + (totals.get('refund') ?? 0));
  return {
    team_id: teamId,
    balance: microToCredits(balanceMicro),
    held: microToCredits(heldMicro),
    credits_remaining: microToCredits(balanceMicro - heldMicro),
    credits_allocated: microToCredits(granted),
    credits_used: microToCredits(used),
    credits_owed: microToCredits(balance?.owedMicro ?? 0),
    ...presentBudget(team),
    updated_at: (balance?.updatedAt ?? team.updatedAt).toISOString(),
  };
}

export async function listCreditTransactions(
  ctx: ServiceContext,
  teamId: string,
  query: { limit: number; cursor?: string | undefined },
) {
  await requireTeam(ctx.db, teamId);
  const { rows, hasMore } = await listLedgerEntries(ctx.db, teamId, query.limit, query.cursor);
  return {
    data: rows.map(presentTransaction),
    has_more: hasMore,
    next_cursor: hasMore ? (rows.at(-1)?.id ?? null) : null,
  };
}

export function presentBudget(team: typeof teams.$inferSelect) {
  return {
    budget_mode: team.budgetMode,
    credits_per_job: team.creditsPerJob,
    tokens_per_credit: team.tokensPerCredit,
    credits_per_dollar: team.creditsPerDollar,
    waive_failed_jobs: team.waiveFailedJobs,
    max_calls_per_job: team.maxCallsPerJob,
    max_tokens_per_job: team.maxTokensPerJob,
  };
}

export function presentTransaction(entry: LedgerEntry): CreditTransaction {
  return {
    transaction_id: entry.id,
    team_id: entry.teamId,
    type: entry.entryType,
    amount: microToCredits(entry.amountMicro),
    held_change: microToCredits(entry.heldDeltaMicro),
    balance_after: microToCredits(entry.balanceAfterMicro),
    held_after: microToCredits(entry.heldAfterMicro),
    job_id: entry.jobId,
    reason: entry.reason,
    actor: entry.actor,
    created_at: entry.createdAt.toISOString(),
  };
}
