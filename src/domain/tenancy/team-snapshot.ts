import type { DbOrTx } from '../../db/client.js';
import type { TtlCache } from '../../lib/ttl-cache.js';
import { readThroughCache } from '../caches.js';
import { modelsOf } from './model-groups.repository.js';
import { listTeamModelGroups, requireTeam, type TeamRow } from './teams.repository.js';

/** A team's settings and the models it may use, as the hot path needs them. */
export interface TeamSnapshot {
  team: TeamRow;
  /** Its model groups, the default first. */
  groups: string[];
  /** The models of each group, in the order they are tried. */
  models: Map<string, { model_name: string; priority: number }[]>;
}

/**
 * From the cache when fresh; a change of the team or of a model group drops it (see Caches). Load it before a
 * transaction and pass it in: inside one it is read on the transaction, uncached (see readThroughCache).
 */
export async function loadTeamSnapshot(db: DbOrTx, cache: TtlCache<TeamSnapshot>, teamId: string): Promise<TeamSnapshot> {
  const snapshot = await readThroughCache(cache, db, teamId, async (reader) => {
    // One after the other: a miss takes one pool connection, not two, and a transaction's client runs one statement at a time anyway.
    const team = await requireTeam(reader, teamId);
    const groups = await listTeamModelGroups(reader, teamId);
    return { value: { team, groups, models: await modelsOf(reader, groups) } };
  });
  return snapshot!;
}
