import { asc, inArray } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { modelGroupModels } from '../../db/schema/index.js';

/** The models of each group, in the order they are tried. */
export async function modelsOf(db: DbOrTx, groupNames: string[]) {
  const byGroup = new Map<string, { model_name: string; priority: number }[]>();
  if (groupNames.length === 0) return byGroup;
  const rows = await db
    .select()
    .from(modelGroupModels)
    .where(inArray(modelGroupModels.groupName, groupNames))
    .orderBy(asc(modelGroupModels.priority), asc(modelGroupModels.modelName));
  for (const row of rows) {
    const list = byGroup.get(row.groupName) ?? [];
    list.push({ model_name: row.modelName, priority: row.priority });
    byGroup.set(row.groupName, list);
  }
  return byGroup;
}
