import type { DbOrTx } from '../../db/client.js';
import type { TtlCache } from '../../lib/ttl-cache.js';
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

/** From the cache when fresh; a change of the team or of a model group drops it (see Caches). */
export async function loadTeamSnapshot(db: DbOrTx, cache: TtlCache<TeamSnapshot>, teamId: string): Promise<TeamSnapshot> {
  const snapshot = await cache.getOrLoad(teamId, async () => {
    const [team, groups] = await Promise.all([requireTeam(db, teamId), listTeamModelGroups(db, teamId)]);
    return { value: { team, groups, models: await modelsOf(db, groups) } };
  });
  return snapshot!;
}
