import { and, eq, ne, sql } from 'drizzle-orm';
import type { CreateTeamRequest, CreateTeamResponse, SetBudgetModeRequest, Team, UpdateTeamRequest } from '../../contracts/index.js';
import { afterCommit, sqlState, UNIQUE_VIOLATION, withTransaction } from '../../db/client.js';
import { organizations, teams } from '../../db/schema/index.js';
import { AppError, conflict, notFound } from '../../lib/errors.js';
import { issueApiKey } from '../api-keys/api-keys.service.js';
import { type ServiceContext } from '../context.js';
import { actorLabel, assertTeamAccess } from '../actor.js';
import { DEFAULT_BUDGET, resolveBudgetSettings } from '../billing/billing-settings.models.js';
import { creditsToMicro } from '../ledger/ledger.models.js';
import { applyLedgerChange, openBalance } from '../ledger/ledger.repository.js';
import { getCreditBalance, presentBudget } from '../ledger/ledger.service.js';
import { changedLimits, NO_LIMITS, presentLimits } from '../limits/limits.models.js';
import { assertNotArchived, assignModelGroups, listTeamModelGroups, replaceModelGroups, requireTeam } from './teams.repository.js';

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
      const grant = await applyLedgerChange(tx, {
        teamId: input.team_id,
        entryType: 'grant',
        amountMicro: creditsToMicro(input.credits_allocated),
        reason: 'initial allocation',
        actor,
      });
      if (!grant) throw new AppError('internal', 'initial grant failed');
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
    metadata: team.metadata,
    created_at: team.createdAt.toISOString(),
    updated_at: team.updatedAt.toISOString(),
  };
}

/** Suspending blocks the team's keys at once (they are checked against the team's status on every request). */
export async function setTeamStatus(ctx: ServiceContext, teamId: string, status: 'active' | 'suspended'): Promise<Team> {
  assertNotArchived(await requireTeam(ctx.db, teamId));
  const updated = await ctx.db
    .update(teams)
    .set({ status, updatedAt: sql`now()` })
    .where(and(eq(teams.id, teamId), ne(teams.status, 'archived')))
    .returning({ id: teams.id });
  if (updated.length === 0) throw notFound('team', 'team_id');
  await ctx.caches.invalidate({ teamId });
  return getTeam(ctx, teamId);
}

export async function setBudgetMode(ctx: ServiceContext, teamId: string, input: SetBudgetModeRequest) {
  return withTransaction(ctx.db, async (tx) => {
    const team = await requireTeam(tx, teamId);
    const budget = resolveBudgetSettings(team, input);
    await tx.update(teams).set({ ...budget, updatedAt: sql`now()` }).where(eq(teams.id, teamId));
    await afterCommit(tx, () => ctx.caches.invalidate({ teamId }));
    return getCreditBalance({ ...ctx, db: tx }, teamId);
  });
}

/**
 * Edits a team: alias, metadata, model groups, billing settings and limits, in one transaction; what is omitted
 * stays. Every instance sees the change by the time this answers (its cached settings are dropped after commit).
 */
export async function updateTeam(ctx: ServiceContext, teamId: string, input: UpdateTeamRequest): Promise<Team> {
  await withTransaction(ctx.db, async (tx) => {
    const team = await requireTeam(tx, teamId);
    const budget = resolveBudgetSettings(team, input);
    await tx
      .update(teams)
      .set({
        ...(input.team_alias !== undefined && { alias: input.team_alias }),
        ...(input.metadata !== undefined && { metadata: input.metadata }),
        ...budget,
        ...changedLimits(team, input.limits),
        updatedAt: sql`now()`,
      })
      .where(eq(teams.id, teamId));
    if (input.model_groups) await replaceModelGroups(tx, teamId, input.model_groups);
    await afterCommit(tx, () => ctx.caches.invalidate({ teamId }));
  });
  return getTeam(ctx, teamId);
}
