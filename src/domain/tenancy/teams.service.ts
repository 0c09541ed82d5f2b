import { eq, sql } from 'drizzle-orm';
import type { CreateTeamRequest, CreateTeamResponse, SetBudgetModeRequest, Team, UpdateTeamRequest } from '../../contracts/index.js';
import { afterCommit, sqlState, UNIQUE_VIOLATION, withTransaction, type DbOrTx } from '../../db/client.js';
import { organizations, teams } from '../../db/schema/index.js';
import { conflict, notFound } from '../../lib/errors.js';
import { issueApiKey } from '../api-keys/api-keys.service.js';
import { type ServiceContext } from '../context.js';
import { actorLabel, assertTeamAccess } from '../actor.js';
import { recordEvent } from '../webhooks/webhook-events.js';
import { DEFAULT_BUDGET, resolveBudgetSettings } from '../billing/billing-settings.models.js';
import { creditsToMicro } from '../ledger/ledger.models.js';
import { openBalance } from '../ledger/ledger.repository.js';
import { getCreditBalance, grantCredits, presentBudget } from '../ledger/ledger.service.js';
import { changedLimits, NO_LIMITS, presentLimits } from '../limits/limits.models.js';
import { changedBalanceAlerts, presentBalanceAlerts } from '../ledger/balance-alerts.models.js';
import { assertNotArchived, assignModelGroups, listTeamModelGroups, replaceModelGroups, requireTeam, type TeamRow } from './teams.repository.js';

/** Creates the team, its balance, its first grant and its first virtual key in one transaction. */
export async function createTeam(ctx: ServiceContext, input: CreateTeamRequest): Promise<CreateTeamResponse> {
  return withTransaction(ctx.db, async (tx) => {
    const [organization] = await tx.select({ id: organizations.id }).from(organizations).where(eq(organizations.id, input.organization_id));
    if (!organization) throw notFound('organization', 'organization_id');
    const budget = resolveBudgetSettings(DEFAULT_BUDGET, input);
    try {
      await tx.insert(teams).values({
        id: input.team_id,
        organizationId: input.organization_id,
        alias: input.team_alias ?? null,
        ...budget,
        ...changedLimits(NO_LIMITS, input.limits),
        ...changedBalanceAlerts(input.balance_alerts),
        stripeCustomerId: input.stripe_customer_id ?? null,
        metadata: input.metadata ?? {},
      });
    } catch (error) {
      if (sqlState(error) === UNIQUE_VIOLATION) throw conflict(`team ${input.team_id} already exists`, 'already_exists');
      throw error;
    }
    await assignModelGroups(tx, input.team_id, input.model_groups ?? []);
    await openBalance(tx, input.team_id);
    const actor = actorLabel(ctx.actor);
    if (input.credits_allocated) {
      await grantCredits(tx, { teamId: input.team_id, amountMicro: creditsToMicro(input.credits_allocated), reason: 'initial allocation', actor });
    }
    const key = await issueApiKey(tx, input.team_id, actor, { name: 'default' });
    const { virtual_key, ...keyInfo } = key;
    return { ...(await getTeam({ ...ctx, db: tx }, input.team_id)), virtual_key, key: keyInfo };
  });
}

export async function getTeam(ctx: ServiceContext, teamId: string): Promise<Team> {
  assertTeamAccess(ctx.actor, teamId);
  const team = await requireTeam(ctx.db, teamId);
  const [groups, balance] = await Promise.all([listTeamModelGroups(ctx.db, teamId), getCreditBalance(ctx, teamId)]);
  return {
    team_id: team.id,
    organization_id: team.organizationId,
    team_alias: team.alias,
    status: team.status,
    model_groups: groups,
    ...presentBudget(team),
    credits: { balance: balance.balance, held: balance.held, credits_remaining: balance.credits_remaining },
    limits: presentLimits(team),
    balance_alerts: presentBalanceAlerts(team),
    stripe_customer_id: team.stripeCustomerId,
    metadata: team.metadata,
    created_at: team.createdAt.toISOString(),
    updated_at: team.updatedAt.toISOString(),
  };
}

/**
 * The team's row, locked for the change about to be made to it, refused if the team is archived: archiving updates
 * the same row, so an edit either waits for the archive and is refused or is committed before it.
 */
async function lockTeamForChange(tx: DbOrTx, teamId: string): Promise<TeamRow> {
  const [team] = await tx.select().from(teams).where(eq(teams.id, teamId)).for('no key update');
  if (!team) throw notFound('team', 'team_id');
  assertNotArchived(team);
  return team;
}

/** Suspending blocks the team's keys at once (they are checked against the team's status on every request). */
export async function setTeamStatus(ctx: ServiceContext, teamId: string, status: 'active' | 'suspended'): Promise<Team> {
  await withTransaction(ctx.db, async (tx) => {
    const team = await lockTeamForChange(tx, teamId);
    // Suspending a suspended team changes nothing and tells no one.
    if (team.status === status) return;
    await tx.update(teams).set({ status, updatedAt: sql`now()` }).where(eq(teams.id, teamId));
    await recordEvent(tx, status === 'suspended' ? 'team.suspended' : 'team.resumed', teamId, { team_id: teamId });
    await afterCommit(tx, () => ctx.caches.invalidate({ teamId }));
  });
  return getTeam(ctx, teamId);
}

export async function setBudgetMode(ctx: ServiceContext, teamId: string, input: SetBudgetModeRequest) {
  return withTransaction(ctx.db, async (tx) => {
    const team = await lockTeamForChange(tx, teamId);
    const budget = resolveBudgetSettings(team, input);
    await tx.update(teams).set({ ...budget, updatedAt: sql`now()` }).where(eq(teams.id, teamId));
    await afterCommit(tx, () => ctx.caches.invalidate({ teamId }));
    return getCreditBalance({ ...ctx, db: tx }, teamId);
  });
}

/**
 * Edits a team: alias, metadata, model groups, billing settings and limits, in one transaction; what is omitted
 * stays. Every instance sees the change by the time this answers (its cached settings are dropped after commit). An
 * archived team is refused (409 team_archived), as its keys, credits and status are.
 */
export async function updateTeam(ctx: ServiceContext, teamId: string, input: UpdateTeamRequest): Promise<Team> {
  await withTransaction(ctx.db, async (tx) => {
    const team = await lockTeamForChange(tx, teamId);
    const budget = resolveBudgetSettings(team, input);
    await tx
      .update(teams)
      .set({
        ...(input.team_alias !== undefined && { alias: input.team_alias }),
        ...(input.metadata !== undefined && { metadata: input.metadata }),
        ...budget,
        ...changedLimits(team, input.limits),
        ...changedBalanceAlerts(input.balance_alerts),
        ...(input.stripe_customer_id !== undefined && { stripeCustomerId: input.stripe_customer_id }),
        updatedAt: sql`now()`,
      })
      .where(eq(teams.id, teamId));
    if (input.model_groups) await replaceModelGroups(tx, teamId, input.model_groups);
    await afterCommit(tx, () => ctx.caches.invalidate({ teamId }));
  });
  return getTeam(ctx, teamId);
}
