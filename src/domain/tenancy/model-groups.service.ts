import { asc, eq, sql } from 'drizzle-orm';
import type { CreateModelGroupRequest, ModelGroup, UpdateModelGroupRequest } from '../../contracts/index.js';
import { afterCommit, sqlState, UNIQUE_VIOLATION, withTransaction, type DbOrTx } from '../../db/client.js';
import { modelGroupModels, modelGroups, teamModelGroups } from '../../db/schema/index.js';
import { modelsOf } from './model-groups.repository.js';
import { conflict, notFound } from '../../lib/errors.js';
import { findModelPrice } from '../billing/model-prices.service.js';
import type { ServiceContext } from '../context.js';

export async function createModelGroup(ctx: ServiceContext, input: CreateModelGroupRequest): Promise<ModelGroup> {
  return withTransaction(ctx.db, async (tx) => {
    try {
      await tx.insert(modelGroups).values({
        name: input.group_name,
        displayName: input.display_name ?? null,
        description: input.description ?? null,
      });
    } catch (error) {
      if (sqlState(error) === UNIQUE_VIOLATION) throw conflict(`model group ${input.group_name} already exists`, 'already_exists');
      throw error;
    }
    await replaceModels(tx, input.group_name, input.models);
    return requireModelGroup(ctx, tx, input.group_name);
  });
}

export async function updateModelGroup(ctx: ServiceContext, groupName: string, input: UpdateModelGroupRequest): Promise<ModelGroup> {
  return withTransaction(ctx.db, async (tx) => {
    const updated = await tx
      .update(modelGroups)
      .set({
        ...(input.display_name !== undefined && { displayName: input.display_name }),
        ...(input.description !== undefined && { description: input.description }),
        updatedAt: sql`now()`,
      })
      .where(eq(modelGroups.name, groupName))
      .returning({ name: modelGroups.name });
    if (updated.length === 0) throw notFound('model group', 'group_name');
    if (input.models) await replaceModels(tx, groupName, input.models);
    await afterCommit(tx, () => ctx.caches.invalidate({ allTeams: true }));
    return requireModelGroup(ctx, tx, groupName);
  });
}

/** A group some team still uses cannot be deleted: the team would silently lose its models. */
export async function deleteModelGroup(ctx: ServiceContext, groupName: string): Promise<{ group_name: string; deleted: true }> {
  return withTransaction(ctx.db, async (tx) => {
    const users = await tx
      .select({ teamId: teamModelGroups.teamId })
      .from(teamModelGroups)
      .where(eq(teamModelGroups.groupName, groupName))
      .limit(5);
    if (users.length > 0) {
      throw conflict(`model group ${groupName} is assigned to teams (${users.map((u) => u.teamId).join(', ')})`, 'in_use');
    }
    const deleted = await tx.delete(modelGroups).where(eq(modelGroups.name, groupName)).returning({ name: modelGroups.name });
    if (deleted.length === 0) throw notFound('model group', 'group_name');
    await afterCommit(tx, () => ctx.caches.invalidate({ allTeams: true }));
    return { group_name: groupName, deleted: true as const };
  });
}

export async function getModelGroup(ctx: ServiceContext, groupName: string): Promise<ModelGroup> {
  return requireModelGroup(ctx, ctx.db, groupName);
}

export async function listModelGroups(ctx: ServiceContext): Promise<{ data: ModelGroup[] }> {
  const groups = await ctx.db.select().from(modelGroups).orderBy(asc(modelGroups.name));
  const models = await modelsOf(ctx.db, groups.map((group) => group.name));
  return { data: await Promise.all(groups.map((group) => presentModelGroup(ctx, group, models.get(group.name) ?? []))) };
}

async function requireModelGroup(ctx: ServiceContext, db: DbOrTx, groupName: string): Promise<ModelGroup> {
  const [group] = await db.select().from(modelGroups).where(eq(modelGroups.name, groupName));
  if (!group) throw notFound('model group', 'group_name');
  const models = await modelsOf(db, [groupName]);
  return presentModelGroup(ctx, group, models.get(groupName) ?? []);
}

async function replaceModels(db: DbOrTx, groupName: string, models: CreateModelGroupRequest['models']): Promise<void> {
  await db.delete(modelGroupModels).where(eq(modelGroupModels.groupName, groupName));
  await db
    .insert(modelGroupModels)
    .values(models.map((model) => ({ groupName, modelName: model.model_name, priority: model.priority })));
}

/** Unpriced models are named, so an operator sees which calls consumption_usd teams would be refused. */
async function presentModelGroup(ctx: ServiceContext, group: typeof modelGroups.$inferSelect, models: { model_name: string; priority: number }[]): Promise<ModelGroup> {
  const priced = await Promise.all(models.map((model) => findModelPrice(ctx.db, ctx.caches, model.model_name)));
  return {
    group_name: group.name,
    display_name: group.displayName,
    description: group.description,
    models,
    unpriced_models: models.filter((_, index) => !priced[index]).map((model) => model.model_name),
    created_at: group.createdAt.toISOString(),
    updated_at: group.updatedAt.toISOString(),
  };
}
